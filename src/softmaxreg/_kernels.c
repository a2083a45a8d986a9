/* Compiled inner loops of the training step (float32 only).
 *
 * Each function here does in one pass what the NumPy code in optimizers.py,
 * losses.py and layers.py does in several, and is checked against that code
 * by tests/test_kernels.py. softmaxreg/kernels.py is the only caller; it falls
 * back to NumPy when this module was not built.
 *
 *   adam_update      Adam / AdamW parameter update, the same float32
 *                    operations in the same order as Adam._adam_direction,
 *                    hence bit-identical results (built with
 *                    -ffp-contract=off so no multiply-add is fused).
 *   sparse_matmul    z = x W + b (then ReLU), skipping the zero entries of
 *                    x: MNIST digits are about 80% zero pixels.
 *   sparse_matmul_tn g = x^T e (after ReLU's backward), skipping the zero
 *                    entries of x; one output row per input feature.
 *   softmax_head     the last Dense layer, softmax and sparse cross-entropy,
 *                    forward and backward in one call: loss sum, count of
 *                    correct argmax and every gradient (the products are
 *                    small: k is the number of classes).
 *   gather_rows      a batch of rows picked by index, converted to float32.
 *   Worker           a helper thread that gathers the next batch and runs
 *                    half of each Adam update while Python goes on.
 *
 * Arrays arrive through the buffer protocol; every length is checked against
 * the dimensions passed, so a wrong call raises ValueError instead of
 * reading or writing out of bounds. The GIL is released during the loops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

/* Wider vectors where the CPU has them, chosen once at load time. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__clang__)
#define SR_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
/* the products may fuse multiply-adds: their summation order differs from
 * BLAS anyway; the Adam update must not (it matches NumPy bit for bit) */
#define SR_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define SR_CLONES
#define SR_CONTRACT
#endif

/* 16 floats, loaded and stored unaligned; GCC and clang lower it to whatever
 * vector width the function is compiled for (4 SSE, 2 AVX or 1 AVX-512 op). */
#if defined(__GNUC__)
typedef float vf16 __attribute__((vector_size(64), aligned(4), may_alias));
#define SR_VECTORS 1
#endif

/* Arrays come through PyArg_ParseTuple's "O&" with these converters: each
 * takes a C-contiguous buffer of one element type (TypeError otherwise),
 * writable where the kernel writes, and releases it again when a later
 * argument fails (Py_CLEANUP_SUPPORTED). */
static int
typed_buffer(PyObject *obj, Py_buffer *view, int writable, const char *codes,
             Py_ssize_t itemsize, const char *what)
{
    if (obj == NULL) {  /* clean-up call */
        PyBuffer_Release(view);
        return 1;
    }
    int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return 0;
    const char *f = view->format != NULL ? view->format : "B";
    if (*f == '@' || *f == '=' || (*f == '<' && PY_LITTLE_ENDIAN))
        f++;
    if (view->itemsize != itemsize || f[0] == '\0' || f[1] != '\0' ||
        strchr(codes, f[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "_kernels: expected a C-contiguous %s array; "
                     "got items of format '%s' and %zd bytes", what,
                     view->format != NULL ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return 0;
    }
    return Py_CLEANUP_SUPPORTED;
}

#define CONVERTER(name, writable, codes, size, what)                          \
    static int name(PyObject *o, void *v)                                       \
    {                                                                           \
        return typed_buffer(o, v, writable, codes, size, what);                 \
    }
CONVERTER(f32_in, 0, "f", 4, "float32")
CONVERTER(f32_out, 1, "f", 4, "float32")
CONVERTER(i64_in, 0, "lq", 8, "int64")
CONVERTER(i32_in, 0, "il", 4, "int32")
CONVERTER(i32_out, 1, "il", 4, "int32")
CONVERTER(u32_out, 1, "IL", 4, "uint32")

/* The rows a batch is gathered from: float64, float32 or uint8. */
static int
rows_in(PyObject *obj, void *addr)
{
    Py_buffer *view = addr;
    if (obj == NULL)
        return typed_buffer(NULL, view, 0, "", 0, "");
    int ok = typed_buffer(obj, view, 0, "d", 8, "float64, float32 or uint8");
    if (ok)
        return ok;
    PyErr_Clear();
    ok = typed_buffer(obj, view, 0, "f", 4, "float64, float32 or uint8");
    if (ok)
        return ok;
    PyErr_Clear();
    return typed_buffer(obj, view, 0, "B", 1, "float64, float32 or uint8");
}

/* The source kind of a rows_in buffer: 'd', 'f' or 'B'. */
static int
rows_kind(const Py_buffer *view)
{
    return view->itemsize == 8 ? 'd' : view->itemsize == 4 ? 'f' : 'B';
}

/* 0 when buf holds exactly a x b items (the product checked for overflow),
 * else -1 with ValueError. */
static int
check_items(const Py_buffer *buf, Py_ssize_t a, Py_ssize_t b, const char *name)
{
    Py_ssize_t items = buf->itemsize > 0 ? buf->len / buf->itemsize : 0;
    if (a < 0 || b < 0 || (a != 0 && b > PY_SSIZE_T_MAX / a) || items != a * b) {
        PyErr_Format(PyExc_ValueError, "_kernels: %s holds %zd items; expected "
                     "%zd x %zd", name, items, a, b);
        return -1;
    }
    return 0;
}

/* True when n x d entries can be counted in int32 (nonzero positions). */
static int
fits_int32(Py_ssize_t n, Py_ssize_t d)
{
    return n >= 0 && d >= 0 && (d == 0 || n <= INT32_MAX / d);
}

/* ---- Adam ---------------------------------------------------------------- */

SR_CLONES static void
adam_loop(Py_ssize_t n, const float *restrict p, const float *restrict g,
          float *out, float *restrict m, float *restrict v, float b1, float b2,
          float v_factor, float inv_step, float eps_over_step, float decay)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        float gi = g[i];                   /* g' = (1 - b1) g */
        float mi = m[i] * b1 + gi;         /* m = b1 m + (1 - b1) g */
        float sq = (gi * gi) * v_factor;   /* (1 - b2) g^2 */
        float vi = v[i] * b2 + sq;         /* v = b2 v + (1 - b2) g^2 */
        float d = sqrtf(vi) * inv_step + eps_over_step;
        m[i] = mi;
        v[i] = vi;
        out[i] = p[i] * decay - mi / d;    /* p - lr_t m / (sqrt(v) + eps) */
    }
}

static void
release_all(Py_buffer *buffers, int count)
{
    for (int i = 0; i < count; i++)
        PyBuffer_Release(&buffers[i]);
}

/* One Adam update: its arrays (n floats each) and scalars. */
typedef struct {
    const float *p, *g;
    float *out, *m, *v;
    Py_ssize_t n;
    float b1, b2, v_factor, inv_step, eps_over_step, decay;
} AdamJob;

/* Parse (p, g, out, m, v, b1, b2, v_factor, inv_step, eps_over_step, decay)
 * into held[0..4] and *job; on failure -1 with nothing left held. */
static int
parse_adam(PyObject *args, Py_buffer held[5], AdamJob *job)
{
    double s[6];
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&dddddd", f32_in, &held[0], f32_in,
                          &held[1], f32_out, &held[2], f32_out, &held[3], f32_out,
                          &held[4], &s[0], &s[1], &s[2], &s[3], &s[4], &s[5]))
        return -1;
    Py_ssize_t n = held[0].len / (Py_ssize_t)sizeof(float);
    if (check_items(&held[1], n, 1, "grads") < 0 ||
        check_items(&held[2], n, 1, "out") < 0 ||
        check_items(&held[3], n, 1, "m") < 0 || check_items(&held[4], n, 1, "v") < 0) {
        release_all(held, 5);
        return -1;
    }
    AdamJob parsed = {held[0].buf, held[1].buf, held[2].buf, held[3].buf,
                      held[4].buf, n, (float)s[0], (float)s[1], (float)s[2],
                      (float)s[3], (float)s[4], (float)s[5]};
    *job = parsed;
    return 0;
}

/* The update of entries start .. stop - 1. */
static void
adam_part(const AdamJob *j, Py_ssize_t start, Py_ssize_t stop)
{
    adam_loop(stop - start, j->p + start, j->g + start, j->out + start,
              j->m + start, j->v + start, j->b1, j->b2, j->v_factor, j->inv_step,
              j->eps_over_step, j->decay);
}

static PyObject *
adam_update(PyObject *self, PyObject *args)
{
    Py_buffer held[5];
    AdamJob job;
    if (parse_adam(args, held, &job) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    adam_part(&job, 0, job.n);
    Py_END_ALLOW_THREADS
    release_all(held, 5);
    Py_RETURN_NONE;
}

/* ---- products with a sparse left operand ----------------------------------- */

/* The nonzeros of x (n, d) are gathered by feature (column): for feature j,
 * entries col_ptr[j] .. col_ptr[j + 1] - 1 of rows / cvals hold the samples
 * where x[:, j] is nonzero and its values there. With that, each row of w (in
 * the forward product) and of g (in the backward one) is read or written once
 * per batch, and the per-sample rows (z, e: n x k, a few kB) stay in the
 * nearest cache. */

/* Gather the nonzeros of x by feature into (col_ptr, rows, cvals). A first
 * pass ORs the rows together (vectorised) to find the features that are zero
 * across the whole batch (about 40% of MNIST's pixels in a batch of 32); a
 * second visits only the others, column by column, compacting without
 * branches. mask is scratch of d uint32. */
SR_CLONES static void
compress_by_feature(Py_ssize_t n, Py_ssize_t d, const float *restrict x,
                    uint32_t *restrict mask, int32_t *restrict col_ptr,
                    int32_t *restrict rows, float *restrict cvals)
{
    for (Py_ssize_t j = 0; j < d; j++)
        mask[j] = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < d; j++) {
            uint32_t bits;
            memcpy(&bits, x + i * d + j, sizeof bits);
            mask[j] |= bits;
        }
    int32_t nnz = 0;
    for (Py_ssize_t j = 0; j < d; j++) {
        col_ptr[j] = nnz;
        if ((mask[j] & 0x7fffffffu) == 0)  /* +0.0 or -0.0 in every sample */
            continue;
        for (Py_ssize_t i = 0; i < n; i++) {
            float a = x[i * d + j];
            rows[nnz] = (int32_t)i;
            cvals[nnz] = a;
            nnz += (a != 0.0f);
        }
    }
    col_ptr[d] = nnz;
}

/* z (n, k) = x (n, d) @ w (d, k) + b (k), given x by feature: z starts as b
 * in every row, then each row j of w is added, times x[i, j], to the rows i
 * of z where x[:, j] is nonzero; relu, unless NULL, gets max(z, 0). Output
 * units go 64 at a time with that part of w's row in registers (4 AVX-512,
 * 8 AVX or 16 SSE registers), then 16. */
SR_CLONES SR_CONTRACT static void
sparse_matmul_loop(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                   const int32_t *restrict col_ptr, const int32_t *restrict rows,
                   const float *restrict cvals, const float *restrict w,
                   const float *restrict b, float *restrict z, float *restrict relu)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (b != NULL)
            memcpy(z + i * k, b, (size_t)k * sizeof(float));
        else
            memset(z + i * k, 0, (size_t)k * sizeof(float));
    }
    for (Py_ssize_t j = 0; j < d; j++) {
        const int32_t lo = col_ptr[j], hi = col_ptr[j + 1];
        if (lo == hi)
            continue;
        const float *restrict wj = w + j * k;
        Py_ssize_t u0 = 0;
#ifdef SR_VECTORS
        for (; u0 + 64 <= k; u0 += 64) {
            const vf16 *wv = (const vf16 *)(wj + u0);
            const vf16 w0 = wv[0], w1 = wv[1], w2 = wv[2], w3 = wv[3];
            for (int32_t t = lo; t < hi; t++) {
                const float a = cvals[t];
                vf16 *zv = (vf16 *)(z + (Py_ssize_t)rows[t] * k + u0);
                zv[0] += a * w0; zv[1] += a * w1; zv[2] += a * w2; zv[3] += a * w3;
            }
        }
        for (; u0 + 16 <= k; u0 += 16) {
            const vf16 w0 = *(const vf16 *)(wj + u0);
            for (int32_t t = lo; t < hi; t++)
                *(vf16 *)(z + (Py_ssize_t)rows[t] * k + u0) += cvals[t] * w0;
        }
#endif
        for (int32_t t = lo; t < hi; t++) {     /* what no vector covers */
            const float a = cvals[t];
            float *restrict zi = z + (Py_ssize_t)rows[t] * k;
            for (Py_ssize_t u = u0; u < k; u++)
                zi[u] += a * wj[u];
        }
    }
    if (relu != NULL)  /* max(z, 0), NaN kept as np.maximum keeps it */
        for (Py_ssize_t t = 0; t < n * k; t++)
            relu[t] = z[t] < 0.0f ? 0.0f : z[t];
}

static PyObject *
sparse_matmul(PyObject *self, PyObject *args)
{
    Py_buffer x, w, b, z, a, mask, col_ptr, rows, cvals;
    Py_ssize_t n, d, k;
    int has_bias, relu;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&O&O&O&nnnpp", f32_in, &x, f32_in, &w,
                          f32_in, &b, f32_out, &z, f32_out, &a, u32_out, &mask,
                          i32_out, &col_ptr, i32_out, &rows, f32_out, &cvals, &n, &d,
                          &k, &has_bias, &relu))
        return NULL;
    PyObject *result = NULL;
    if (!fits_int32(n, d) || d >= INT32_MAX)
        PyErr_SetString(PyExc_ValueError, "_kernels: x has too many entries");
    else if (check_items(&x, n, d, "x") == 0 && check_items(&w, d, k, "w") == 0 &&
             (!has_bias || check_items(&b, k, 1, "b") == 0) &&
             check_items(&z, n, k, "z") == 0 &&
             (!relu || check_items(&a, n, k, "a") == 0) &&
             check_items(&mask, d, 1, "mask") == 0 &&
             check_items(&col_ptr, d + 1, 1, "col_ptr") == 0 &&
             check_items(&rows, n, d, "rows") == 0 &&
             check_items(&cvals, n, d, "cvals") == 0) {
        Py_BEGIN_ALLOW_THREADS
        compress_by_feature(n, d, x.buf, (uint32_t *)mask.buf, col_ptr.buf,
                            rows.buf, cvals.buf);
        sparse_matmul_loop(n, d, k, col_ptr.buf, rows.buf, cvals.buf, w.buf,
                           has_bias ? b.buf : NULL, z.buf, relu ? a.buf : NULL);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    PyBuffer_Release(&b);
    PyBuffer_Release(&z);
    PyBuffer_Release(&a);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&col_ptr);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cvals);
    return result;
}

/* g (d, k) = x^T (d, n) @ e (n, k), x given by feature as sparse_matmul left
 * it, after e *= (z > 0) when relu_z is given (in place: e becomes the
 * gradient wrt z) and gb = column sums of e unless gb is NULL. Row j of g is
 * the sum of the rows of e picked by the nonzeros of feature j, each times
 * its value, summed in registers and written once (zeros for a feature that
 * is zero across the batch). */
SR_CLONES SR_CONTRACT static void
sparse_matmul_tn_loop(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                      const int32_t *restrict col_ptr, const int32_t *restrict rows,
                      const float *restrict cvals, float *restrict e,
                      float *restrict g, float *restrict gb,
                      const float *restrict relu_z)
{
    if (relu_z != NULL)  /* e *= (z > 0): back through max(z, 0) */
        for (Py_ssize_t t = 0; t < n * k; t++)
            e[t] = relu_z[t] > 0.0f ? e[t] : 0.0f;
    if (gb != NULL) {    /* the bias gradient: column sums of e */
        for (Py_ssize_t u = 0; u < k; u++)
            gb[u] = 0.0f;
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t u = 0; u < k; u++)
                gb[u] += e[i * k + u];
    }
    for (Py_ssize_t j = 0; j < d; j++) {
        float *restrict gj = g + j * k;
        const int32_t lo = col_ptr[j], hi = col_ptr[j + 1];
        if (lo == hi) {
            memset(gj, 0, (size_t)k * sizeof(float));
            continue;
        }
        Py_ssize_t u0 = 0;
#ifdef SR_VECTORS
        for (; u0 + 64 <= k; u0 += 64) {
            vf16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int32_t t = lo; t < hi; t++) {
                const float a = cvals[t];
                const vf16 *ev = (const vf16 *)(e + (Py_ssize_t)rows[t] * k + u0);
                a0 += a * ev[0]; a1 += a * ev[1]; a2 += a * ev[2]; a3 += a * ev[3];
            }
            vf16 *gv = (vf16 *)(gj + u0);
            gv[0] = a0; gv[1] = a1; gv[2] = a2; gv[3] = a3;
        }
        for (; u0 + 16 <= k; u0 += 16) {
            vf16 a0 = {0};
            for (int32_t t = lo; t < hi; t++)
                a0 += cvals[t] * *(const vf16 *)(e + (Py_ssize_t)rows[t] * k + u0);
            *(vf16 *)(gj + u0) = a0;
        }
#endif
        for (Py_ssize_t u = u0; u < k; u++) {
            float s = 0.0f;
            for (int32_t t = lo; t < hi; t++)
                s += cvals[t] * e[(Py_ssize_t)rows[t] * k + u];
            gj[u] = s;
        }
    }
}

static PyObject *
sparse_matmul_tn(PyObject *self, PyObject *args)
{
    Py_buffer col_ptr, rows, cvals, e, g, gb, z;
    Py_ssize_t n, d, k;
    int want_gb, relu;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&O&nnnpp", i32_in, &col_ptr, i32_in,
                          &rows, f32_in, &cvals, f32_out, &e, f32_out, &g, f32_out,
                          &gb, f32_in, &z, &n, &d, &k, &want_gb, &relu))
        return NULL;
    PyObject *result = NULL;
    if (!fits_int32(n, d) || d >= INT32_MAX)
        PyErr_SetString(PyExc_ValueError, "_kernels: x has too many entries");
    else if (check_items(&col_ptr, d + 1, 1, "col_ptr") == 0 &&
             check_items(&rows, n, d, "rows") == 0 &&
             check_items(&cvals, n, d, "cvals") == 0 &&
             check_items(&e, n, k, "e") == 0 && check_items(&g, d, k, "g") == 0 &&
             (!want_gb || check_items(&gb, k, 1, "gb") == 0) &&
             (!relu || check_items(&z, n, k, "z") == 0)) {
        /* the columns must be ones sparse_matmul wrote for this shape */
        const int32_t *cp = col_ptr.buf, *ri = rows.buf;
        int ok = cp[0] == 0 && cp[d] <= n * d;
        for (Py_ssize_t j = 0; ok && j < d; j++)
            ok = cp[j] <= cp[j + 1];
        for (Py_ssize_t t = 0; ok && t < cp[d]; t++)
            ok = ri[t] >= 0 && ri[t] < n;
        if (!ok)
            PyErr_SetString(PyExc_ValueError,
                            "_kernels: col_ptr/rows do not describe an n x d matrix");
        else {
            Py_BEGIN_ALLOW_THREADS
            sparse_matmul_tn_loop(n, d, k, cp, ri, cvals.buf, e.buf, g.buf,
                                  want_gb ? gb.buf : NULL, relu ? z.buf : NULL);
            Py_END_ALLOW_THREADS
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&col_ptr);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cvals);
    PyBuffer_Release(&e);
    PyBuffer_Release(&g);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&z);
    return result;
}

/* ---- fused softmax + sparse cross-entropy ----------------------------------- */

/* For each row: log_softmax through the row maximum (as ops.log_softmax),
 * loss -log p_y summed in double, argmax (first of equal maxima, as NumPy),
 * and grad = scale * (softmax - onehot(y)). Returns -1 on a bad label. */
static Py_ssize_t
softmax_xent_loop(Py_ssize_t n, Py_ssize_t k, const float *z,
                  const int64_t *labels, float *grad, float scale,
                  double *loss_sum, Py_ssize_t *correct)
{
    double total = 0.0;
    Py_ssize_t hits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *zi = z + i * k;
        float *gi = grad + i * k;
        int64_t y = labels[i];
        if (y < 0 || y >= k)
            return i;
        Py_ssize_t best = 0;
        float top = zi[0];
        for (Py_ssize_t c = 1; c < k; c++)
            if (zi[c] > top) {
                top = zi[c];
                best = c;
            }
        float sum = 0.0f;
        for (Py_ssize_t c = 0; c < k; c++) {
            gi[c] = zi[c] - top;
            sum += expf(gi[c]);
        }
        float log_norm = logf(sum);
        for (Py_ssize_t c = 0; c < k; c++)
            gi[c] -= log_norm;             /* log p */
        total -= (double)gi[y];
        hits += (best == y);
        for (Py_ssize_t c = 0; c < k; c++)
            gi[c] = expf(gi[c]);
        gi[y] -= 1.0f;
        for (Py_ssize_t c = 0; c < k; c++)
            gi[c] *= scale;
    }
    *loss_sum = total;
    *correct = hits;
    return -1;
}

/* ---- the softmax head: last Dense layer + fused loss, forward and backward -- */

/* For a model ending in Dense(k) with softmax and sparse cross-entropy, on its
 * input h (n, m): z = h W + b; the loss, argmax hits and gz = scale dL/dz as
 * softmax_xent; gW = h^T gz, gb = column sums of gz; and, unless dh is NULL,
 * dh = gz W^T. k is small (the classes), so W is used transposed (wt, gwt:
 * k x m scratch) to make every inner loop run over m. */
SR_CLONES SR_CONTRACT static void
head_products(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const float *restrict h,
              const float *restrict w, const float *restrict b, float *restrict z,
              float *restrict wt)
{
    for (Py_ssize_t j = 0; j < m; j++)
        for (Py_ssize_t c = 0; c < k; c++)
            wt[c * m + j] = w[j * k + c];
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *restrict hi = h + i * m;
        for (Py_ssize_t c = 0; c < k; c++) {
            const float *restrict wc = wt + c * m;
            Py_ssize_t j = 0;
            float s = 0.0f;
#ifdef SR_VECTORS
            /* 16 partial sums (the compiler may not reorder a float sum) */
            vf16 acc = {0};
            for (; j + 16 <= m; j += 16)
                acc += *(const vf16 *)(hi + j) * *(const vf16 *)(wc + j);
            for (int u = 0; u < 16; u++)
                s += acc[u];
#endif
            for (; j < m; j++)
                s += hi[j] * wc[j];
            z[i * k + c] = s + b[c];
        }
    }
}

SR_CLONES SR_CONTRACT static void
head_backward(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const float *restrict h,
              const float *restrict wt, const float *restrict gz,
              float *restrict gwt, float *restrict gw, float *restrict gb,
              float *restrict dh)
{
    memset(gwt, 0, (size_t)(k * m) * sizeof(float));
    for (Py_ssize_t c = 0; c < k; c++)
        gb[c] = 0.0f;
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *restrict hi = h + i * m;
        const float *restrict gi = gz + i * k;
        for (Py_ssize_t c = 0; c < k; c++) {
            const float a = gi[c];
            float *restrict gc = gwt + c * m;
            for (Py_ssize_t j = 0; j < m; j++)
                gc[j] += a * hi[j];
            gb[c] += a;
        }
        if (dh != NULL) {
            float *restrict di = dh + i * m;
            for (Py_ssize_t j = 0; j < m; j++)
                di[j] = 0.0f;
            for (Py_ssize_t c = 0; c < k; c++) {
                const float a = gi[c];
                const float *restrict wc = wt + c * m;
                for (Py_ssize_t j = 0; j < m; j++)
                    di[j] += a * wc[j];
            }
        }
    }
    for (Py_ssize_t j = 0; j < m; j++)
        for (Py_ssize_t c = 0; c < k; c++)
            gw[j * k + c] = gwt[c * m + j];
}

static PyObject *
softmax_head(PyObject *self, PyObject *args)
{
    Py_buffer h, w, b, labels, z, gz, wt, gwt, gw, gb, dh;
    Py_ssize_t n, m, k;
    double scale;
    int want_dh;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&O&O&O&O&O&O&nnndp", f32_in, &h, f32_in,
                          &w, f32_in, &b, i64_in, &labels, f32_out, &z, f32_out, &gz,
                          f32_out, &wt, f32_out, &gwt, f32_out, &gw, f32_out, &gb,
                          f32_out, &dh, &n, &m, &k, &scale, &want_dh))
        return NULL;
    PyObject *result = NULL;
    if (k < 1)
        PyErr_SetString(PyExc_ValueError, "_kernels: no classes (k < 1)");
    else if (check_items(&h, n, m, "h") == 0 && check_items(&w, m, k, "w") == 0 &&
             check_items(&b, k, 1, "b") == 0 &&
             check_items(&labels, n, 1, "labels") == 0 &&
             check_items(&z, n, k, "z") == 0 && check_items(&gz, n, k, "gz") == 0 &&
             check_items(&wt, k, m, "wt") == 0 && check_items(&gwt, k, m, "gwt") == 0 &&
             check_items(&gw, m, k, "gw") == 0 && check_items(&gb, k, 1, "gb") == 0 &&
             (!want_dh || check_items(&dh, n, m, "dh") == 0)) {
        double loss_sum = 0.0;
        Py_ssize_t correct = 0, bad;
        Py_BEGIN_ALLOW_THREADS
        head_products(n, m, k, h.buf, w.buf, b.buf, z.buf, wt.buf);
        bad = softmax_xent_loop(n, k, z.buf, labels.buf, gz.buf, (float)scale,
                                &loss_sum, &correct);
        if (bad < 0)
            head_backward(n, m, k, h.buf, wt.buf, gz.buf, gwt.buf, gw.buf, gb.buf,
                          want_dh ? dh.buf : NULL);
        Py_END_ALLOW_THREADS
        if (bad >= 0)
            PyErr_Format(PyExc_ValueError,
                         "_kernels: label of row %zd is outside 0..%zd", bad, k - 1);
        else
            result = Py_BuildValue("dn", loss_sum, correct);
    }
    PyBuffer_Release(&h);
    PyBuffer_Release(&w);
    PyBuffer_Release(&b);
    PyBuffer_Release(&labels);
    PyBuffer_Release(&z);
    PyBuffer_Release(&gz);
    PyBuffer_Release(&wt);
    PyBuffer_Release(&gwt);
    PyBuffer_Release(&gw);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&dh);
    return result;
}

/* ---- gathering a batch ------------------------------------------------------ */

/* out (count, row_len) float32 = rows idx of x (.., row_len), converting
 * from float64, float32 or uint8 (src 'd', 'f', 'B') in the same pass. */
static void
gather_loop(const void *x, int src, const int64_t *idx, Py_ssize_t count,
            Py_ssize_t row_len, float *out)
{
    for (Py_ssize_t t = 0; t < count; t++) {
        float *restrict o = out + t * row_len;
        if (src == 'd') {
            const double *r = (const double *)x + idx[t] * row_len;
            for (Py_ssize_t j = 0; j < row_len; j++)
                o[j] = (float)r[j];
        }
        else if (src == 'f')
            memcpy(o, (const float *)x + idx[t] * row_len,
                   (size_t)row_len * sizeof(float));
        else {
            const uint8_t *r = (const uint8_t *)x + idx[t] * row_len;
            for (Py_ssize_t j = 0; j < row_len; j++)
                o[j] = (float)r[j];
        }
    }
}

/* The index in idx (count of them) outside 0..rows-1, or -1 when all are in. */
static Py_ssize_t
bad_index(const int64_t *idx, Py_ssize_t count, Py_ssize_t rows)
{
    for (Py_ssize_t t = 0; t < count; t++)
        if (idx[t] < 0 || idx[t] >= rows)
            return t;
    return -1;
}

static void
index_error(const int64_t *idx, Py_ssize_t bad, Py_ssize_t rows)
{
    PyErr_Format(PyExc_IndexError, "_kernels: gather: index %lld (at position %zd) "
                 "is outside 0..%zd", (long long)idx[bad], bad, rows - 1);
}

/* One batch gather: out (count, row_len) = float32(x[idx]). */
typedef struct {
    const void *x;
    const int64_t *idx;
    float *out;
    Py_ssize_t count, row_len;
    int src;
} GatherJob;

/* Parse (x, idx, out, rows, row_len, kind) into held[0..2] and *job, checking
 * sizes and indices; on failure -1 with nothing left held. */
static int
parse_gather(PyObject *args, Py_buffer held[3], GatherJob *job)
{
    Py_ssize_t rows, row_len;
    int kind;
    if (!PyArg_ParseTuple(args, "O&O&O&nnC", rows_in, &held[0], i64_in, &held[1],
                          f32_out, &held[2], &rows, &row_len, &kind))
        return -1;
    Py_ssize_t count = held[1].len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *idx = held[1].buf;
    Py_ssize_t bad = -1;
    if (kind != rows_kind(&held[0]))
        PyErr_Format(PyExc_TypeError, "_kernels: gather: kind '%c' does not match "
                     "x's items", kind);
    else if (check_items(&held[0], rows, row_len, "x") == 0 &&
             check_items(&held[2], count, row_len, "out") == 0) {
        bad = bad_index(idx, count, rows);
        if (bad < 0) {
            GatherJob parsed = {held[0].buf, idx, held[2].buf, count, row_len, kind};
            *job = parsed;
            return 0;
        }
        index_error(idx, bad, rows);
    }
    release_all(held, 3);
    return -1;
}

static PyObject *
gather_rows(PyObject *self, PyObject *args)
{
    Py_buffer held[3];
    GatherJob job;
    if (parse_gather(args, held, &job) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    gather_loop(job.x, job.src, job.idx, job.count, job.row_len, job.out);
    Py_END_ALLOW_THREADS
    release_all(held, 3);
    Py_RETURN_NONE;
}

/* ---- a helper thread for the training loop ----------------------------------- */

/* Worker: one C thread that runs jobs on raw buffers (gathering the next batch
 * while the step computes; half of each Adam update), so it never needs the
 * GIL. One job at a time: post() waits for the previous one to finish; the
 * buffers of a job are held (Py_buffer) until wait() or the next post(), so
 * Python cannot free them under the thread. Hand-offs spin (a step is a few
 * hundred microseconds, a sleep-and-wake costs tens): a waiting caller yields
 * its CPU after a few hundred microseconds (a busy machine), and an idle
 * helper spins a millisecond or so, then naps 1 ms at a time until the next
 * job, stop() or the Worker's deletion (which ends the thread too).
 * Built with GCC or clang on POSIX systems only; elsewhere Worker is absent
 * and the Python side runs everything on the calling thread. */
#if defined(__GNUC__) && !defined(_WIN32)
#define SR_WORKER 1
#include <pythread.h>
#include <sched.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

enum { JOB_NONE, JOB_GATHER, JOB_ADAM };

typedef struct {
    int kind;
    GatherJob gather;
    AdamJob adam;          /* the thread's half: entries half .. n - 1 */
    Py_ssize_t half;
} Job;

typedef struct {
    PyObject_HEAD
    Job job;
    Py_buffer held[5];
    int n_held;
    int posted, done;   /* job counters: the thread runs job `posted` when it
                           moves past `done`; read and written atomically */
    int stop, alive;
    int in_use;         /* a method is running (set and read under the GIL) */
    long long waited_ns;  /* time callers spent waiting for the thread */
} Worker;

static void
run_job(const Job *j)
{
    const GatherJob *g = &j->gather;
    if (j->kind == JOB_GATHER)
        gather_loop(g->x, g->src, g->idx, g->count, g->row_len, g->out);
    else if (j->kind == JOB_ADAM)
        adam_part(&j->adam, j->half, j->adam.n);
}

static void
worker_main(void *arg)
{
    Worker *w = arg;
    int seen = 0;
    for (;;) {
        long spins = 0;
        while (__atomic_load_n(&w->posted, __ATOMIC_ACQUIRE) == seen &&
               !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
            if (++spins < 20000)
                cpu_relax();
            else {
                struct timespec nap = {0, 1000000};
                nanosleep(&nap, NULL);
            }
        }
        if (__atomic_load_n(&w->posted, __ATOMIC_ACQUIRE) == seen)
            break;  /* stop, and no job left */
        seen++;
        run_job(&w->job);
        __atomic_store_n(&w->done, seen, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&w->alive, 0, __ATOMIC_RELEASE);
}

static long long
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Wait (GIL released, spinning) for the job in flight; release its buffers. */
static void
worker_finish(Worker *w)
{
    if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) !=
        __atomic_load_n(&w->posted, __ATOMIC_ACQUIRE)) {
        long long start = now_ns();
        Py_BEGIN_ALLOW_THREADS
        long spins = 0;
        while (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) !=
               __atomic_load_n(&w->posted, __ATOMIC_ACQUIRE)) {
            if (++spins < 4000)
                cpu_relax();
            else
                sched_yield();  /* a busy machine: let the helper have the CPU */
        }
        Py_END_ALLOW_THREADS
        w->waited_ns += now_ns() - start;
    }
    for (int i = 0; i < w->n_held; i++)
        PyBuffer_Release(&w->held[i]);
    w->n_held = 0;
}

/* Methods run one call at a time: a call made while another runs (from a
 * second Python thread) gets RuntimeError. */
static int
worker_enter(Worker *w, int must_be_alive)
{
    if (w->in_use) {
        PyErr_SetString(PyExc_RuntimeError, "_kernels.Worker: in use by another "
                        "thread (a Worker serves one training loop)");
        return -1;
    }
    if (must_be_alive && !__atomic_load_n(&w->alive, __ATOMIC_ACQUIRE)) {
        PyErr_SetString(PyExc_RuntimeError, "_kernels.Worker: not started");
        return -1;
    }
    w->in_use = 1;
    return 0;
}

static PyObject *
worker_leave(Worker *w, PyObject *result)
{
    w->in_use = 0;
    return result;
}

/* Hand over the job in w->job (its buffers already in w->held). */
static void
worker_post(Worker *w)
{
    __atomic_store_n(&w->posted, w->posted + 1, __ATOMIC_RELEASE);
}

static PyObject *
Worker_start(Worker *w, PyObject *noargs)
{
    if (worker_enter(w, 0) < 0)
        return NULL;
    if (__atomic_load_n(&w->alive, __ATOMIC_ACQUIRE))
        return worker_leave(w, Py_NewRef(Py_None));
    w->posted = w->done = 0;
    w->stop = 0;
    w->alive = 1;
    if (PyThread_start_new_thread(worker_main, w) == PYTHREAD_INVALID_THREAD_ID) {
        w->alive = 0;
        PyErr_SetString(PyExc_RuntimeError, "_kernels.Worker: cannot start a thread");
        return worker_leave(w, NULL);
    }
    return worker_leave(w, Py_NewRef(Py_None));
}

/* Finish the job in flight and end the thread (it then touches w no more). */
static void
worker_end(Worker *w)
{
    if (!__atomic_load_n(&w->alive, __ATOMIC_ACQUIRE))
        return;
    worker_finish(w);
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    Py_BEGIN_ALLOW_THREADS
    while (__atomic_load_n(&w->alive, __ATOMIC_ACQUIRE))
        cpu_relax();
    Py_END_ALLOW_THREADS
}

static PyObject *
Worker_stop(Worker *w, PyObject *noargs)
{
    if (worker_enter(w, 0) < 0)
        return NULL;
    worker_end(w);
    return worker_leave(w, Py_NewRef(Py_None));
}

static PyObject *
Worker_wait(Worker *w, PyObject *noargs)
{
    if (worker_enter(w, 0) < 0)
        return NULL;
    worker_finish(w);
    return worker_leave(w, Py_NewRef(Py_None));
}

/* gather(x, idx, out, rows, row_len, kind): start out = float32(x[idx]). */
static PyObject *
Worker_gather(Worker *w, PyObject *args)
{
    if (worker_enter(w, 1) < 0)
        return NULL;
    worker_finish(w);
    if (parse_gather(args, w->held, &w->job.gather) < 0)
        return worker_leave(w, NULL);
    w->n_held = 3;
    w->job.kind = JOB_GATHER;
    worker_post(w);
    return worker_leave(w, Py_NewRef(Py_None));
}

/* adam_update(...): as the module's adam_update, the second half of the
 * parameters on the thread, the first on the caller's; returns when both are
 * done. The two halves are disjoint, so the result is that of one thread. */
static PyObject *
Worker_adam_update(Worker *w, PyObject *args)
{
    if (worker_enter(w, 1) < 0)
        return NULL;
    worker_finish(w);
    if (parse_adam(args, w->held, &w->job.adam) < 0)
        return worker_leave(w, NULL);
    w->n_held = 5;
    w->job.kind = JOB_ADAM;
    /* split on a 64-byte boundary so the two threads share no cache line */
    w->job.half = (w->job.adam.n / 2) & ~(Py_ssize_t)15;
    AdamJob mine = w->job.adam;
    worker_post(w);
    Py_BEGIN_ALLOW_THREADS
    adam_part(&mine, 0, w->job.half);
    Py_END_ALLOW_THREADS
    worker_finish(w);
    return worker_leave(w, Py_NewRef(Py_None));
}

static PyObject *
Worker_get_waited(Worker *w, void *closure)
{
    return PyFloat_FromDouble((double)w->waited_ns * 1e-9);
}

static PyObject *
Worker_get_alive(Worker *w, void *closure)
{
    return PyBool_FromLong(__atomic_load_n(&w->alive, __ATOMIC_ACQUIRE));
}

static void
Worker_dealloc(Worker *w)
{
    worker_end(w);  /* dropped without stop(): the thread ends here */
    for (int i = 0; i < w->n_held; i++)
        PyBuffer_Release(&w->held[i]);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef Worker_methods[] = {
    {"start", (PyCFunction)Worker_start, METH_NOARGS, "Start the thread."},
    {"stop", (PyCFunction)Worker_stop, METH_NOARGS,
     "Finish the job in flight, then end the thread."},
    {"wait", (PyCFunction)Worker_wait, METH_NOARGS,
     "Return when the job in flight is done."},
    {"gather", (PyCFunction)Worker_gather, METH_VARARGS,
     "gather(x, idx, out, rows, row_len, kind): start gathering a batch."},
    {"adam_update", (PyCFunction)Worker_adam_update, METH_VARARGS,
     "adam_update(p, g, out, m, v, b1, b2, v_factor, inv_step, eps_over_step, "
     "decay): the Adam update on two threads."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Worker_getset[] = {
    {"alive", (getter)Worker_get_alive, NULL, "True while the thread runs.", NULL},
    {"waited", (getter)Worker_get_waited, NULL,
     "Seconds callers have spent waiting for the thread to finish a job.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WorkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "softmaxreg._kernels.Worker",
    .tp_basicsize = sizeof(Worker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A helper thread for the training loop (see kernels.py).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Worker_dealloc,
    .tp_methods = Worker_methods,
    .tp_getset = Worker_getset,
};
#endif /* SR_WORKER */

static PyMethodDef methods[] = {
    {"gather_rows", gather_rows, METH_VARARGS,
     "gather_rows(x, idx, out, rows, row_len, kind): out = float32(x[idx]) for "
     "x of kind 'd', 'f' or 'B'."},
    {"adam_update", adam_update, METH_VARARGS,
     "adam_update(p, g, out, m, v, b1, b2, v_factor, inv_step, eps_over_step, "
     "decay): Adam step on float32 buffers."},
    {"sparse_matmul", sparse_matmul, METH_VARARGS,
     "sparse_matmul(x, w, b, z, a, mask, col_ptr, rows, cvals, n, d, k, has_bias, "
     "relu): z = x @ w (+ b), zeros of x skipped, a = max(z, 0) if relu; leaves "
     "x's nonzeros by feature in col_ptr, rows, cvals (mask is scratch)."},
    {"sparse_matmul_tn", sparse_matmul_tn, METH_VARARGS,
     "sparse_matmul_tn(col_ptr, rows, cvals, e, g, gb, z, n, d, k, want_gb, relu): "
     "e *= (z > 0) if relu; gb = e.sum(0) if want_gb; g = x.T @ e from x's "
     "nonzeros by feature."},
    {"softmax_head", softmax_head, METH_VARARGS,
     "softmax_head(h, w, b, labels, z, gz, wt, gwt, gw, gb, dh, n, m, k, scale, "
     "want_dh) -> (loss_sum, n_correct): last Dense layer, softmax and sparse "
     "cross-entropy, forward and backward."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "Compiled float32 inner loops of the training step (see kernels.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL)
        return NULL;
#ifdef SR_WORKER
    if (PyType_Ready(&WorkerType) < 0 ||
        PyModule_AddObjectRef(mod, "Worker", (PyObject *)&WorkerType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
#endif
    return mod;
}
