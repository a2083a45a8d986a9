"""The compiled inner loops of the training step, and when they are used.

``_kernels.c`` holds float32 versions of the costliest parts of a training
step: the Adam update (one pass instead of eleven), the products of a Dense
layer with a mostly-zero input (MNIST digits are 82% zero pixels), and
the last Dense layer with its softmax and sparse cross-entropy, forward and
backward in one call instead of a dozen small NumPy ones. The NumPy code in
optimizers.py, layers.py and losses.py stays the reference: it runs for
float64 models, where the extension was not built (no C compiler at install
time), and when ``SOFTMAXREG_KERNELS=numpy`` is set. tests/test_kernels.py
checks each kernel against it.

Where there are two CPUs, a helper thread written in C (``Worker``) gathers
the next batch while a step computes and runs half of each Adam update.

The Adam kernel reproduces the NumPy update bit for bit, on one thread or
two. The products sum in a different order from BLAS, so a model trained
with them differs from one trained without them by float32 rounding; each is
deterministic, so the same seed still gives the same weights on the same
machine.
"""

import os

import numpy as np

try:
    from . import _kernels as _c
except ImportError:  # built without a C compiler: NumPy only
    _c = None

__all__ = ["AVAILABLE", "ENABLED", "WORKER", "SPARSE_DENSITY", "input_density",
           "engine", "describe", "check_environment", "env_threads",
           "default_train_threads",
           "usable_cpus", "Worker", "adam_update", "softmax_head", "gather_kind",
           "gather_rows", "SparseScratch"]

AVAILABLE = _c is not None
"""True when the compiled extension was built and imports."""


_OFF, _ON = ("numpy", "off", "0"), ("auto", "", "on", "1", "compiled")


def _kernels_setting():
    """SOFTMAXREG_KERNELS: "auto" (the default) or "numpy" (kernels off); any
    other value counts as "auto" here and is refused by check_environment."""
    return os.environ.get("SOFTMAXREG_KERNELS", "auto").strip().lower() not in _OFF


ENABLED = AVAILABLE and _kernels_setting()
"""True when training uses the compiled kernels (``SOFTMAXREG_KERNELS=numpy``
turns them off)."""

# Below this fraction of nonzero inputs, skipping zeros beats BLAS for a Dense
# layer's two products (measured crossover about 0.35 for a 32 x 784 x 128
# batch with the zeros scattered at random: 88 against 131 us at 0.2, 181
# against 135 at 0.5). MNIST is 0.18, Fashion-MNIST 0.50.
SPARSE_DENSITY = 0.25

_SAMPLE_ROWS = 1024

WORKER = ENABLED and hasattr(_c, "Worker")
"""True when training may use the compiled helper thread (POSIX, GCC or clang)."""


def usable_cpus():
    """How many CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Worker:
    """The helper thread of one ``fit``, as a context manager.

    It gathers the next batch while the current step computes, and runs half
    of each Adam update. It only ever touches array memory (never Python
    objects), so it runs alongside the Python thread without the GIL; the
    arrays of a job are held until the job is done.
    """

    def __init__(self):
        self._thread = _c.Worker()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._thread.stop()  # after the job in flight, if any
        return False

    @property
    def alive(self):
        return self._thread.alive

    @property
    def waited(self):
        """Seconds the training loop has spent waiting for this thread."""
        return self._thread.waited

    def gather(self, x, idx, out, kind):
        """Start ``out[...] = x[idx]`` (as ``gather_rows``); ``wait()`` for it."""
        self._thread.gather(x, idx, out, *_rows(x), kind)

    def wait(self):
        """Return when the job in flight, if any, is done."""
        self._thread.wait()

    def adam_update(self, params, grads, out, m, v, beta_1, beta_2, v_factor,
                    inv_step, eps_over_step, decay):
        """``adam_update`` on two threads; returns when both halves are done."""
        self._thread.adam_update(params, grads, out, m, v, beta_1, beta_2, v_factor,
                                 inv_step, eps_over_step, decay)


def input_density(x):
    """Fraction of nonzero values in (up to) 1024 evenly spaced rows of ``x``.

    Deterministic for a given ``x``, so that a resumed run makes the same
    choice of kernel as the run it continues.
    """
    n = x.shape[0]
    if n == 0:
        return 1.0
    rows = x[::max(1, n // _SAMPLE_ROWS)][:_SAMPLE_ROWS]
    return np.count_nonzero(rows) / rows.size


def check_environment():
    """Raise ValueError naming any SOFTMAXREG_* setting with a bad value.

    ``fit`` and ``softmaxreg train`` call it before they start.
    """
    value = os.environ.get("SOFTMAXREG_KERNELS", "auto").strip().lower()
    if value not in _OFF + _ON:
        raise ValueError(f"SOFTMAXREG_KERNELS: expected 'auto' or 'numpy'; got "
                         f"{value!r}: set one of those, or unset it")
    for name in ("SOFTMAXREG_TRAIN_THREADS", "SOFTMAXREG_BLAS_THREADS"):
        env_threads(name)


def env_threads(name, default=None):
    """1 or 2 threads from the environment variable ``name``, else ``default``.

    Raises ValueError naming the variable for any other value.
    """
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    if value.strip() not in ("1", "2"):
        raise ValueError(f"{name}: expected 1 or 2 (threads); got {value!r}: set it to "
                         "1 or 2, or unset it")
    return int(value)


def default_train_threads(dtype):
    """2 where a float32 model can use the compiled helper thread on a second
    CPU, else 1 (the NumPy update gains from a second thread only for very
    large models)."""
    return 2 if WORKER and np.dtype(dtype) == np.float32 and usable_cpus() >= 2 else 1


def engine(dtype):
    """"compiled" or "numpy": the code that trains a model of ``dtype``.

    Runs on the two differ by float32 rounding; threads do not matter.
    """
    return "compiled" if ENABLED and np.dtype(dtype) == np.float32 else "numpy"


def describe(dtype=np.float32):
    """What trains a model of ``dtype``, in a few words (for the CLI, which
    has called check_environment)."""
    if not ENABLED or np.dtype(dtype) != np.float32:
        why = ("float64 model" if ENABLED else "turned off by SOFTMAXREG_KERNELS"
               if AVAILABLE else "compiled kernels not built")
        return f"NumPy ({why})"
    threads = env_threads("SOFTMAXREG_TRAIN_THREADS") or default_train_threads(dtype)
    if threads == 1 or not WORKER:
        return "compiled kernels, 1 thread"
    return "compiled kernels + helper thread"


def adam_update(params, grads, out, m, v, beta_1, beta_2, v_factor, inv_step,
                eps_over_step, decay):
    """Adam step in one pass; see Adam._adam_direction for the formula."""
    _c.adam_update(params, grads, out, m, v, beta_1, beta_2, v_factor, inv_step,
                   eps_over_step, decay)


def softmax_head(h, w, b, labels, z, grad_z, grad_w, grad_b, dh, scratch, scale):
    """The last Dense layer with softmax and sparse cross-entropy, both ways.

    ``z = h @ w + b``; writes ``grad_z = scale * (softmax(z) - onehot(labels))``,
    ``grad_w = h.T @ grad_z``, ``grad_b = grad_z.sum(0)`` and, unless ``dh`` is
    None, ``dh = grad_z @ w.T``. ``scratch`` is (2, k, m) float32. Returns
    ``(loss_sum, n_correct)``, the summed loss and the count of rows whose
    argmax is the label.
    """
    n, m = h.shape
    k = w.shape[1]
    return _c.softmax_head(h, w, b, labels, z, grad_z, scratch[0], scratch[1], grad_w,
                           grad_b, z if dh is None else dh, n, m, k, scale,
                           dh is not None)


_GATHER_KINDS = {np.dtype(np.float64): "d", np.dtype(np.float32): "f",
                 np.dtype(np.uint8): "B"}


def gather_kind(x, dtype):
    """The source kind for ``gather_rows`` from ``x`` into a C-contiguous
    buffer of ``dtype``, or None where it does not apply (kernels off, dtype
    not float32, x not C-contiguous or of another dtype)."""
    if not (ENABLED and np.dtype(dtype) == np.float32 and x.flags.c_contiguous):
        return None
    return _GATHER_KINDS.get(x.dtype)


def gather_rows(x, idx, out, kind):
    """``out[...] = x[idx]`` converted to float32 in one pass; ``idx`` int64
    and ``out`` C-contiguous float32; indices checked."""
    _c.gather_rows(x, idx, out, *_rows(x), kind)


def _rows(x):
    """(rows, values per row) of x, for the gather kernels."""
    rows = x.shape[0]
    return rows, x.size // rows if rows else 0


class SparseScratch:
    """Buffers for one Dense layer's sparse products on batches of ``n`` rows.

    ``matmul`` leaves the input's nonzeros here, grouped by feature, for
    ``matmul_tn``, which must be called on the same input.
    """

    def __init__(self, n, d):
        self.n, self.d = n, d
        self.mask = np.empty(d, np.uint32)
        self.col_ptr = np.empty(d + 1, np.int32)
        self.rows = np.empty(n * d, np.int32)
        self.cvals = np.empty(n * d, np.float32)

    def matmul(self, x, w, b, z, relu=None):
        """``z = x @ w + b`` (b may be None), skipping zeros of x; also
        ``relu = max(z, 0)`` when an array is given."""
        n, d = x.shape
        _c.sparse_matmul(x, w, w if b is None else b, z, z if relu is None else relu,
                         self.mask, self.col_ptr, self.rows, self.cvals, n, d,
                         w.shape[1], b is not None, relu is not None)

    def matmul_tn(self, e, g, gb=None, relu_z=None):
        """``g = x.T @ e`` for the x of the last ``matmul``.

        With ``relu_z`` (the z of that ``matmul``), ``e`` is first multiplied
        in place by ``z > 0``; with ``gb``, it gets the column sums of ``e``.
        """
        _c.sparse_matmul_tn(self.col_ptr, self.rows, self.cvals, e, g,
                            g if gb is None else gb, e if relu_z is None else relu_z,
                            self.n, self.d, g.shape[1], gb is not None,
                            relu_z is not None)
