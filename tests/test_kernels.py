"""The compiled kernels against the NumPy code they replace.

The Adam update must match NumPy bit for bit; the products and the fused loss
to float32 rounding; a whole training step (every gradient) must agree with the
NumPy step, whose gradients test_gradcheck.py checks by finite differences.
"""

import os

import numpy as np
import pytest

import softmaxreg
from softmaxreg import kernels, layers, losses, optimizers

if not kernels.AVAILABLE:
    if os.environ.get("CI"):
        pytest.fail("the compiled kernels (softmaxreg._kernels) were not built; "
                    "CI needs them: is a C compiler installed?", pytrace=False)
    pytest.skip("the compiled kernels were not built", allow_module_level=True)

from softmaxreg import _kernels  # noqa: E402


def _sparse(rng, shape, density):
    x = rng.random(shape, dtype=np.float32)
    x[rng.random(shape) >= density] = 0.0
    return x


# -- Adam ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kwargs", [
    (optimizers.Adam, {}),
    (optimizers.Adam, {"learning_rate": 0.05, "beta_1": 0.0, "epsilon": 1e-3}),
    (optimizers.AdamW, {"weight_decay": 0.1}),
])
def test_adam_kernel_is_bit_identical_to_numpy(cls, kwargs, monkeypatch):
    rng = np.random.default_rng(0)
    n = 10_007  # not a multiple of any vector width
    params = rng.standard_normal(n).astype(np.float32)
    scales = 10.0 ** rng.integers(-6, 2, n)
    grads = [(rng.standard_normal(n) * scales).astype(np.float32)
             for _ in range(5)]
    grads[2][::3] = 0.0

    results = []
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "ENABLED", compiled)
        opt = cls(**kwargs)
        opt.build(n, np.float32)
        assert opt._compiled is compiled
        p = params.copy()
        out = np.empty_like(p)
        for g in grads:
            opt.step(p, g, out=out)
            p, out = out, p
        results.append((p, opt.get_state()))
    (p1, s1), (p2, s2) = results
    np.testing.assert_array_equal(p1, p2)
    for name in s1:
        np.testing.assert_array_equal(s1[name], s2[name])


def test_adam_kernel_on_two_threads_matches_one():
    rng = np.random.default_rng(1)
    n = 70_001
    params, grads = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    outs = []
    for threads in (1, 2):
        opt = optimizers.Adam()
        opt.build(n, np.float32)
        out = np.empty_like(params)
        with opt.parallel():
            opt.step(params, grads, out=out, threads=threads)
        outs.append(out)
    np.testing.assert_array_equal(*outs)


def test_adam_kernel_rejects_mismatched_buffers():
    a = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="grads"):
        _kernels.adam_update(a, np.zeros(9, np.float32), a, a.copy(), a.copy(),
                             0.9, 0.999, 0.1, 1.0, 1e-7, 1.0)
    with pytest.raises(TypeError, match="float32 array; got items of format 'd'"):
        _kernels.adam_update(a, a, a, np.zeros(10, np.float64), a.copy(),
                             0.9, 0.999, 0.1, 1.0, 1e-7, 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        _kernels.adam_update(a, a, a, np.zeros(20, np.float32)[::2], a.copy(),
                             0.9, 0.999, 0.1, 1.0, 1e-7, 1.0)
    read_only = a.copy()
    read_only.flags.writeable = False
    with pytest.raises((ValueError, BufferError), match="read-only|writable"):
        _kernels.adam_update(a, a, a, read_only, a.copy(), 0.9, 0.999, 0.1, 1.0,
                             1e-7, 1.0)


def test_kernels_refuse_sizes_whose_product_overflows():
    empty = np.zeros(0, np.float32)
    with pytest.raises(ValueError, match="x holds 4 items; expected 4 x 461168601"):
        _kernels.gather_rows(np.zeros(4, np.uint8), np.zeros(0, np.int64), empty, 4,
                             2 ** 62, "B")
    with pytest.raises(ValueError, match=r"z holds 0 items; expected 2147483648 x"):
        _kernels.sparse_matmul(empty, empty, empty, empty, empty,
                               np.zeros(0, np.uint32), np.zeros(0, np.int32),
                               np.zeros(0, np.int32), empty, 2 ** 31, 0, 2 ** 33,
                               False, False)
    with pytest.raises(ValueError, match="h holds 0 items"):
        _kernels.softmax_head(empty, empty, np.zeros(1, np.float32),
                              np.zeros(0, np.int64), empty, empty, empty, empty, empty,
                              np.zeros(1, np.float32), empty, 2 ** 40, 2 ** 40, 1, 1.0,
                              False)


# -- products with a sparse left operand -----------------------------------------------
SHAPES = [(1, 1, 1), (3, 7, 10), (32, 784, 128), (5, 33, 17), (4, 100, 64),
          (6, 50, 130), (2, 9, 80), (0, 5, 4)]


@pytest.mark.parametrize("n, d, k", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_sparse_products_match_dense(n, d, k, density):
    rng = np.random.default_rng(n * 1000 + d + k)
    x = _sparse(rng, (n, d), density)
    if n > 1:
        x[1] = 0.0  # an all-zero sample
    if x.size:
        x.flat[0] = -0.0  # a negative zero is a zero
    w = rng.standard_normal((d, k)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    e = rng.standard_normal((n, k)).astype(np.float32)

    scratch = kernels.SparseScratch(n, d)
    z = np.full((n, k), np.nan, np.float32)
    scratch.matmul(x, w, b, z)
    expected = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5 * np.sqrt(d))
    assert scratch.col_ptr[-1] == np.count_nonzero(x)

    g = np.full((d, k), np.nan, np.float32)
    scratch.matmul_tn(e, g)
    np.testing.assert_allclose(g, x.T.astype(np.float64) @ e, rtol=1e-5,
                               atol=1e-5 * np.sqrt(max(n, 1)))

    z0 = np.full((n, k), np.nan, np.float32)
    scratch.matmul(x, w, None, z0)
    np.testing.assert_allclose(z0, x.astype(np.float64) @ w, rtol=1e-5,
                               atol=1e-5 * np.sqrt(d))


@pytest.mark.parametrize("n, d, k", [(32, 784, 128), (5, 33, 17), (3, 7, 10)])
def test_sparse_products_with_relu_match_numpy_relu(n, d, k):
    rng = np.random.default_rng(d + k)
    x = _sparse(rng, (n, d), 0.3)
    w = rng.standard_normal((d, k)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    scratch = kernels.SparseScratch(n, d)
    z, a = np.empty((n, k), np.float32), np.empty((n, k), np.float32)
    scratch.matmul(x, w, b, z, relu=a)
    np.testing.assert_array_equal(a, np.maximum(z, 0))

    e = rng.standard_normal((n, k)).astype(np.float32)
    expected_e = e * (z > 0)
    g, gb = np.empty((d, k), np.float32), np.empty(k, np.float32)
    scratch.matmul_tn(e, g, gb, relu_z=z)
    np.testing.assert_array_equal(e, expected_e)  # masked in place
    np.testing.assert_allclose(gb, expected_e.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, x.T.astype(np.float64) @ expected_e, rtol=1e-5,
                               atol=1e-5 * np.sqrt(n))


def test_sparse_product_propagates_nan_and_inf():
    x = np.zeros((2, 16), np.float32)
    x[0, 3], x[1, 9] = np.nan, np.inf
    w = np.ones((16, 4), np.float32)
    z = np.empty((2, 4), np.float32)
    kernels.SparseScratch(2, 16).matmul(x, w, None, z)
    assert np.isnan(z[0]).all() and np.isposinf(z[1]).all()


def test_sparse_products_reject_bad_buffers():
    x = np.ones((2, 3), np.float32)
    w = np.ones((3, 4), np.float32)
    scratch = kernels.SparseScratch(2, 3)
    with pytest.raises(ValueError, match="z holds"):
        scratch.matmul(x, w, None, np.empty((2, 5), np.float32))
    scratch.matmul(x, w, None, np.empty((2, 4), np.float32))
    scratch.rows[:] = 99  # columns that do not describe a 2 x 3 matrix
    with pytest.raises(ValueError, match="do not describe"):
        scratch.matmul_tn(np.ones((2, 4), np.float32), np.empty((3, 4), np.float32))


# -- the softmax head: last Dense layer + softmax + cross-entropy ----------------------
def _head(h, w, b, labels, scale, want_dh=True):
    n, m = h.shape
    k = w.shape[1]
    z, gz = np.empty((n, k), np.float32), np.empty((n, k), np.float32)
    gw, gb = np.empty((m, k), np.float32), np.empty(k, np.float32)
    dh = np.empty((n, m), np.float32) if want_dh else None
    scratch = np.empty((2, k, m), np.float32)
    total, correct = kernels.softmax_head(h, w, b, labels, z, gz, gw, gb, dh, scratch,
                                          scale)
    return total, correct, z, gz, gw, gb, dh


@pytest.mark.parametrize("n, m, k", [(1, 1, 2), (32, 128, 10), (7, 33, 3),
                                     (5, 784, 10)])
def test_softmax_head_matches_numpy(n, m, k):
    rng = np.random.default_rng(m + k)
    h = rng.standard_normal((n, m)).astype(np.float32)
    w = (rng.standard_normal((m, k)) / np.sqrt(m) * 4).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    if n:
        h[0] = 0.0
        b[:] = 0.0  # row 0 has all-zero logits: a tie, argmax takes the first
    total, correct, z, gz, gw, gb, dh = _head(h, w, b, labels, 0.3 / max(n, 1))

    logits = (h.astype(np.float64) @ w + b).astype(np.float32)
    np.testing.assert_allclose(z, logits, rtol=1e-5, atol=1e-5)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    expected_gz = np.empty_like(z)
    expected = loss.logits_value_and_grad(z.copy(), labels, expected_gz, 0.3)
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert correct == int(np.count_nonzero(z.argmax(axis=1) == labels))
    np.testing.assert_allclose(gz, expected_gz, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gw, h.T.astype(np.float64) @ gz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, gz.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dh, gz.astype(np.float64) @ w.T, rtol=1e-5, atol=1e-6)


def test_softmax_head_stays_finite_for_huge_logits():
    h = np.array([[1.0]], np.float32)
    w = np.array([[1e4, -1e4, 0.0]], np.float32)
    total, correct, _, gz, *_ = _head(h, w, np.zeros(3, np.float32), np.array([1]),
                                      1.0, want_dh=False)
    assert total == pytest.approx(2e4) and correct == 0
    np.testing.assert_allclose(gz, [[1.0, -1.0, 0.0]], atol=1e-6)


def test_softmax_head_rejects_bad_labels_and_buffers():
    h, w = np.ones((2, 4), np.float32), np.ones((4, 3), np.float32)
    b = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="row 1 is outside 0..2"):
        _head(h, w, b, np.array([0, 3]), 1.0)
    with pytest.raises(TypeError, match="int64 array; got items of format 'i'"):
        _head(h, w, b, np.array([0, 1], np.int32), 1.0)
    with pytest.raises(ValueError, match="labels holds 3 items; expected 2 x 1"):
        _head(h, w, b, np.array([0, 1, 2]), 1.0)
    with pytest.raises(ValueError, match="b holds"):
        _head(h, w, b[:2], np.array([0, 1]), 1.0)


# -- the whole training step -----------------------------------------------------------
def _mlp(*front, learning_rate=0.001):
    model = softmaxreg.Sequential([*front, layers.Flatten(),
                                   layers.Dense(24, activation="relu"),
                                   layers.Dense(5, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _digits_like(rng, n=256):
    """Mostly-zero 8x8 'images' whose class shows in where the ink is."""
    y = rng.integers(0, 5, n)
    x = np.zeros((n, 8, 8), np.float32)
    for i, label in enumerate(y):
        x[i, label, :] = rng.random(8, dtype=np.float32)
        x[i, rng.integers(0, 8), rng.integers(0, 8)] = 1.0
    return x, y


def test_training_step_gradients_match_numpy_step(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = _digits_like(rng, 40)
    grads = []
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "ENABLED", compiled)
        model = _mlp()
        model.fit(x, y, epochs=0, seed=5, verbose=0)  # builds and chooses kernels
        first = model.layers[1]
        assert first.sparse_input is compiled and model._head_kernel is compiled
        model._fused_now = model._fused
        model._first_param_layer = model._param_layer_indices[0]
        xb = model._batch(x, np.arange(40))
        loss_sum, correct = model._gradients(xb, y, y, True, True, 0.1)
        grads.append((loss_sum, correct, model._grads.copy()))
    (l1, c1, g1), (l2, c2, g2) = grads
    assert l1 == pytest.approx(l2, rel=1e-6) and c1 == c2
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-8)


def test_training_with_and_without_kernels_agrees(monkeypatch):
    rng = np.random.default_rng(4)
    x, y = _digits_like(rng)
    runs = []
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "ENABLED", compiled)
        model = _mlp(learning_rate=0.01)
        history = model.fit(x, y, epochs=3, batch_size=16, seed=1, verbose=0)
        runs.append((history.history["loss"], model.get_weights()))
    (loss1, w1), (loss2, w2) = runs
    np.testing.assert_allclose(loss1, loss2, rtol=1e-4)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert loss1[-1] < 0.5 * loss1[0]  # and it learned


def test_same_seed_gives_identical_weights_with_kernels():
    rng = np.random.default_rng(5)
    x, y = _digits_like(rng)
    weights = []
    for _ in range(2):
        model = _mlp()
        model.fit(x, y, epochs=2, batch_size=16, seed=9, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("front, dense_data, expected", [
    ((), False, True),
    ((layers.Rescaling(0.5),), False, True),
    ((layers.Rescaling(1.0, offset=-0.5),), False, False),  # zeros no longer zero
    ((), True, False),                                       # too few zeros
])
def test_first_layer_skips_zeros_only_when_it_pays(front, dense_data, expected):
    rng = np.random.default_rng(6)
    x, y = _digits_like(rng, 64)
    if dense_data:
        x = x + 0.5
    model = _mlp(*front)
    model.fit(x, y, epochs=0, seed=0, verbose=0)
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert dense[0].sparse_input is expected
    assert dense[1].sparse_input is False


def test_float64_models_use_numpy():
    assert kernels.ENABLED
    model = softmaxreg.Sequential([layers.Flatten(), layers.Dense(3)], dtype="float64")
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _digits_like(np.random.default_rng(7), 32)
    model.fit(x, y % 3, epochs=1, verbose=0, seed=0)
    assert not model.layers[1].sparse_input and not model._head_kernel
    assert not model.optimizer._compiled


# -- gathering a batch -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_gather_rows_matches_numpy(dtype):
    rng = np.random.default_rng(8)
    x = (rng.random((50, 3, 7)) * 255).astype(dtype)
    idx = rng.integers(0, 50, 13).astype(np.int64)
    out = np.empty((13, 3, 7), np.float32)
    kind = kernels.gather_kind(x, np.float32)
    assert kind is not None
    kernels.gather_rows(x, idx, out, kind)
    np.testing.assert_array_equal(out, x[idx].astype(np.float32))


def test_gather_rows_checks_indices_and_layout():
    x = np.zeros((4, 3), np.float64)
    out = np.empty((2, 3), np.float32)
    with pytest.raises(IndexError, match=r"index 4 \(at position 1\) is outside 0..3"):
        kernels.gather_rows(x, np.array([0, 4]), out, "d")
    with pytest.raises(TypeError, match="int64 array"):
        kernels.gather_rows(x, np.array([0, 1], np.int32), out, "d")
    with pytest.raises(TypeError, match="kind 'f' does not match"):
        kernels.gather_rows(x, np.array([0, 1]), out, "f")
    assert kernels.gather_kind(x[:, :2], np.float32) is None  # not contiguous
    assert kernels.gather_kind(x.astype(np.int16), np.float32) is None
    assert kernels.gather_kind(x, np.float64) is None


# -- the helper thread -----------------------------------------------------------------
needs_worker = pytest.mark.skipif(not kernels.WORKER,
                                  reason="no compiled helper thread on this platform")


@needs_worker
def test_worker_gathers_like_gather_rows_and_stops():
    rng = np.random.default_rng(9)
    x = rng.random((200, 30))
    idx = rng.integers(0, 200, 17).astype(np.int64)
    out = np.empty((17, 30), np.float32)
    with kernels.Worker() as worker:
        assert worker.alive
        worker.gather(x, idx, out, "d")
        worker.wait()
        np.testing.assert_array_equal(out, x[idx].astype(np.float32))
        with pytest.raises(IndexError, match="outside 0..199"):
            worker.gather(x, np.array([3, 200]), out[:2], "d")
        worker.gather(x, idx[:2], out[:2], "d")  # still usable after an error
        worker.wait()
    assert not worker.alive
    with pytest.raises(RuntimeError, match="not started"):
        worker.gather(x, idx, out, "d")


@needs_worker
def test_worker_refuses_a_second_thread():
    import threading

    x = np.random.default_rng(12).random((5000, 784))
    idx = np.arange(5000, dtype=np.int64)
    out = np.empty((5000, 784), np.float32)
    errors = []

    def hammer(worker):
        for _ in range(200):
            try:
                worker.gather(x, idx[:64], out[:64], "d")
                worker.wait()
            except RuntimeError as exc:
                errors.append(str(exc))

    with kernels.Worker() as worker:
        worker.gather(x, idx, out, "d")  # a long job first, so that callers meet
        threads = [threading.Thread(target=hammer, args=(worker,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not worker.alive
    assert errors  # they did meet, and were told
    assert all("in use by another thread" in message for message in errors)


@needs_worker
@pytest.mark.parametrize("n", [1, 15, 10_007])
def test_worker_adam_update_is_bit_identical_to_one_thread(n):
    rng = np.random.default_rng(n)
    params, grads = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    results = []
    for use_worker in (False, True):
        m, v = np.full(n, 0.1, np.float32), np.full(n, 0.2, np.float32)
        out = np.empty_like(params)
        args = (params, grads, out, m, v, 0.9, 0.999, 0.1, 1000.0, 1e-4, 1.0)
        if use_worker:
            with kernels.Worker() as worker:
                worker.adam_update(*args)
        else:
            kernels.adam_update(*args)
        results.append((out, m, v))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def started_workers(monkeypatch):
    """The helper threads that fits start during the test, in order."""
    started = []

    class Recording(kernels.Worker):
        def __enter__(self):
            started.append(self)
            return super().__enter__()

    monkeypatch.setattr(kernels, "Worker", Recording)
    return started


@needs_worker
def test_training_on_two_threads_is_bit_identical_to_one(monkeypatch, started_workers):
    rng = np.random.default_rng(10)
    x, y = _digits_like(rng, 200)
    x = x.astype(np.float64)  # the tutorial passes float64 pixels
    weights = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", threads)
        model = _mlp(learning_rate=0.01)
        model.fit(x, y, epochs=2, batch_size=4, seed=3, verbose=0,
                  validation_split=0.1)  # 45 steps an epoch: a trial of 11 each way
        weights.append(model.get_weights())
    assert started_workers  # the 2-thread fit used it (steps 12-22 at least) ...
    assert not any(worker.alive for worker in started_workers)  # ... and stopped it
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@needs_worker
def test_helper_thread_stops_when_training_fails(monkeypatch, started_workers):
    helper = softmaxreg.models._Helper

    def on_from_the_start(self, n_steps):  # no trial: the helper runs at once
        self.start()
        self._phase = "decided"
        return self.worker

    monkeypatch.setattr(helper, "epoch_begin", on_from_the_start)
    monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", "2")
    x, y = _digits_like(np.random.default_rng(11), 64)
    model = _mlp(learning_rate=1e6)
    with pytest.raises(softmaxreg.errors.TrainingError, match="diverged"):
        model.fit(x * 1e3, y, epochs=3, batch_size=8, seed=0, verbose=0)
    assert started_workers and not any(worker.alive for worker in started_workers)


def test_describe_names_what_trains(monkeypatch):
    monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", "1")
    assert kernels.describe() == "compiled kernels, 1 thread"
    assert kernels.describe("float64") == "NumPy (float64 model)"
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert kernels.describe() == "NumPy (turned off by SOFTMAXREG_KERNELS)"
    assert kernels.default_train_threads(np.float32) in (1, 2)


@needs_worker
def test_a_helper_that_slows_steps_is_dropped_after_the_trial(monkeypatch,
                                                              started_workers):
    import time

    original = kernels.Worker.adam_update

    def slow(self, *args):  # as if the helper had to wait for a busy CPU
        self.calls = getattr(self, "calls", 0) + 1
        time.sleep(0.002)
        return original(self, *args)

    monkeypatch.setattr(kernels.Worker, "adam_update", slow)
    monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", "2")
    x, y = _digits_like(np.random.default_rng(13), 8 * 128)
    model = _mlp()
    model.fit(x, y, epochs=5, batch_size=8, seed=0, verbose=0)
    trial = softmaxreg.models._Helper.TRIAL
    # tried in epochs 1 and 3 (one epoch skipped after a loss, then two)
    assert len(started_workers) == 2
    # ... and stops it as soon as its steps have outlasted the trial without it
    assert all(1 <= worker.calls < trial for worker in started_workers)
    assert not any(worker.alive for worker in started_workers)


def _bare_helper(ticks):
    """A _Helper for a stand-in model, its clock reading ``ticks`` in turn."""
    from types import SimpleNamespace

    model = SimpleNamespace(optimizer=SimpleNamespace())
    helper = softmaxreg.models._Helper(model, model.optimizer)
    ticks = iter(ticks)
    helper.clock = lambda: next(ticks)
    return helper, model


@needs_worker
@pytest.mark.parametrize("without_s, with_s, kept", [(2.0, 1.0, True),
                                                     (1.0, 1.05, True),  # noise
                                                     (1.0, 2.0, False)])
def test_helper_trial_keeps_the_faster_way(without_s, with_s, kept, started_workers):
    helper, model = _bare_helper([0.0, without_s, without_s, without_s + with_s])
    trial = helper.TRIAL
    with helper:
        assert helper.epoch_begin(1000) is None  # the trial starts without it
        assert helper.after_step(trial - 1) is None
        worker = helper.after_step(trial)
        assert worker is not None and model.optimizer._worker is worker
        assert helper.after_step(2 * trial - 1) is worker
        after = helper.after_step(2 * trial)
        assert (after is worker) is kept and (after is None) is not kept
        assert model.optimizer._worker is after and model._worker is after
    assert not any(worker.alive for worker in started_workers)


@needs_worker
def test_helper_trial_is_lost_as_soon_as_it_cannot_win(started_workers):
    helper, model = _bare_helper([0.0, 1.0, 1.5, 2.2])
    trial = helper.TRIAL
    with helper:
        helper.epoch_begin(1000)
        worker = helper.after_step(trial)  # 1 s without it
        assert helper.after_step(trial + 1) is worker  # 0.5 s with it: go on
        assert helper.after_step(trial + 2) is None  # 1.2 s: lost, at once
        assert model.optimizer._worker is None and helper._skip == 1
        assert not worker.alive


@needs_worker
def test_helper_trial_fits_short_epochs_and_backs_off(started_workers):
    # epochs of 40 steps: trials of 10 each way; each lost, then cut short
    helper, _ = _bare_helper([0.0, 1.0, 9.0] + [0.0, 1.0, 9.0] * 3)
    with helper:
        assert helper.epoch_begin(40) is None
        helper.after_step(10)
        assert helper.after_step(20) is None  # lost: 0.8 s a step against 0.1
        helper.epoch_end(40)
        assert helper.epoch_begin(40) is None  # one epoch without a trial ...
        assert helper._phase == "decided"
        assert helper.epoch_begin(40) is None and helper._phase == "without"  # then
        helper.after_step(10)
        helper.epoch_end(15)  # a trial cut short after 5 steps with it: lost
        assert helper._phase == "decided" and helper._skip == 2  # then two
        assert helper.epoch_begin(10) is None and helper._phase == "decided"
    assert not any(worker.alive for worker in started_workers)


@needs_worker
def test_helper_skips_epochs_too_short_to_time(started_workers):
    helper, _ = _bare_helper([])
    with helper:
        for _ in range(3):
            assert helper.epoch_begin(helper.MIN_STEPS - 1) is None
            assert helper.after_step(4) is None
            helper.epoch_end(helper.MIN_STEPS - 1)
    assert not started_workers


@needs_worker
def test_a_kept_helper_stops_when_steps_wait_for_it(monkeypatch, started_workers):
    monkeypatch.setattr(kernels.Worker, "waited", property(lambda self: self.fake),
                        raising=False)
    helper, _ = _bare_helper([0.0, 2.0, 3.0, 4.0, 5.0])
    trial = helper.TRIAL
    with helper:
        helper.epoch_begin(1000)
        worker = helper.after_step(trial)
        assert helper.after_step(2 * trial) is worker  # kept: 2 s without, 1 with
        worker.fake = 0.5 * trial * helper.MAX_WAIT
        assert helper.after_step(3 * trial) is worker  # waits are fine
        worker.fake += 2 * trial * helper.MAX_WAIT
        assert helper.after_step(4 * trial) is None  # steps wait: stopped
        assert not worker.alive


def test_fit_refuses_a_second_fit_of_the_same_model_or_optimizer():
    x, y = _digits_like(np.random.default_rng(14), 64)
    model = _mlp()
    other = _mlp()
    other.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy")
    seen = []

    def nested(epoch, logs):
        for again in (model, other):
            with pytest.raises(RuntimeError, match="already training"):
                again.fit(x, y, epochs=1, verbose=0)
        seen.append(epoch)

    model.fit(x, y, epochs=1, verbose=0, seed=0,
              callbacks=[softmaxreg.callbacks.LambdaCallback(on_epoch_end=nested)])
    assert seen == [0]
    model.fit(x, y, epochs=1, verbose=0, seed=0)  # free again afterwards


def test_compile_and_other_threads_are_refused_while_fit_runs():
    import threading

    x, y = _digits_like(np.random.default_rng(15), 64)
    model = _mlp()
    flagged = model.optimizer
    seen = {}

    def during(epoch, logs):
        with pytest.raises(RuntimeError, match="compile: the model is training"):
            model.compile("adam", "sparse_categorical_crossentropy")
        model.predict(x[:3])  # fine from fit's own thread (a callback)

        def elsewhere():
            for call in (lambda: model.predict(x[:3]), lambda: model.evaluate(x, y)):
                try:
                    call()
                except RuntimeError as exc:
                    seen.setdefault("errors", []).append(str(exc))

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()

    model.fit(x, y, epochs=1, verbose=0, seed=0,
              callbacks=[softmaxreg.callbacks.LambdaCallback(on_epoch_end=during)])
    assert len(seen["errors"]) == 2
    assert all("training in another thread" in e for e in seen["errors"])
    assert not flagged._in_fit and model.optimizer is flagged
    model.predict(x[:3])  # and from any thread once fit has returned


def test_a_layer_belongs_to_one_model():
    import gc

    dense = layers.Dense(3)
    first = softmaxreg.Sequential([layers.Flatten(), dense])
    with pytest.raises(ValueError, match="already belongs to another model"):
        softmaxreg.Sequential([layers.Flatten(), dense])
    del first
    gc.collect()
    softmaxreg.Sequential([layers.Flatten(), dense])  # free once its model is gone


@pytest.mark.parametrize("name, value", [("SOFTMAXREG_KERNELS", "numpi"),
                                         ("SOFTMAXREG_TRAIN_THREADS", "3"),
                                         ("SOFTMAXREG_BLAS_THREADS", "two")])
def test_bad_settings_are_refused_before_training(monkeypatch, capsys, name, value):
    from softmaxreg import cli

    monkeypatch.setenv(name, value)
    x, y = _digits_like(np.random.default_rng(16), 32)
    with pytest.raises(ValueError, match=f"{name}: expected"):
        _mlp().fit(x, y, epochs=1, verbose=0)
    code = cli.main(["train", "--dataset", "no-such-file.npz"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1  # refused before the dataset is looked at
    assert lines[0].startswith(f"softmaxreg: error: {name}: expected")


@needs_worker
def test_a_worker_dropped_without_stop_ends_its_thread():
    import gc

    def threads():
        return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") \
            else None

    before = threads()
    for _ in range(20):
        worker = _kernels.Worker()
        worker.start()
        del worker
    gc.collect()
    if before is not None:  # each thread has returned; the OS may lag a moment
        import time

        deadline = time.monotonic() + 2.0
        while threads() != before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threads() == before
