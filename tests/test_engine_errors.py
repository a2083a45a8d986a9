"""Bad input to the training engine: each a clear error or warning, nothing lost."""

import os
import signal
import warnings

import numpy as np
import pytest

import softmaxreg as sr
from softmaxreg.callbacks import LambdaCallback
from softmaxreg.errors import DataError, NotFittedError, TrainingError
from softmaxreg.models import DataRangeWarning, NotLearningWarning


def make_model(n_classes=10, optimizer="adam", dtype="float32"):
    model = sr.Sequential([sr.layers.Flatten(),
                           sr.layers.Dense(8, activation="relu"),
                           sr.layers.Dense(n_classes, activation="softmax")],
                          dtype=dtype)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def make_data(n=50, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, 4), dtype=np.float32)
    y = np.arange(n) % n_classes
    return x, y


# -- labels ----------------------------------------------------------------------------

def test_labels_1_to_10_rejected_before_any_step():
    x, y = make_data()
    model = make_model()
    with pytest.raises(DataError, match=r"0\.\.9 .*got 10: 5 of 50 labels are out "
                                        r"of range.*subtract 1"):
        model.fit(x, y + 1, verbose=0, seed=0)
    assert not model.built  # nothing was built, let alone trained


def test_label_minus_one_rejected():
    x, y = make_data()
    y = y.copy()
    y[[3, 7]] = -1
    with pytest.raises(DataError, match=r"got -1: 2 of 50 labels"):
        make_model().fit(x, y, verbose=0, seed=0)


def test_onehot_labels_to_sparse_loss_suggest_argmax():
    x, y = make_data(n=5)
    with pytest.raises(DataError, match=r"shape \(5, 10\).*argmax.*"
                                        "categorical_crossentropy"):
        make_model().fit(x, np.eye(10)[y], verbose=0, seed=0)


def test_label_count_mismatch_gives_both_counts():
    x, _ = make_data(n=5)
    with pytest.raises(DataError, match="x has 5 samples but y has 50 labels"):
        make_model().fit(x, np.arange(50) % 10, verbose=0, seed=0)


def test_whole_float_labels_behave_as_integers():
    x, y = make_data()
    a, b = make_model(), make_model()
    a.fit(x, y, epochs=2, verbose=0, seed=3)
    b.fit(x, y.astype(np.float64), epochs=2, verbose=0, seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.evaluate(x, y) == b.evaluate(x, y.astype(np.float32))


@pytest.mark.parametrize("bad,shown", [(2.5, "2.5"), (np.nan, "nan")])
def test_fractional_or_nan_label_named(bad, shown):
    x, y = make_data()
    y = y.astype(np.float64)
    y[4] = bad
    with pytest.raises(DataError, match=f"label 4 is {shown}"):
        make_model().fit(x, y, verbose=0, seed=0)


def test_one_class_only():
    x, _ = make_data()
    with pytest.raises(DataError, match="at least 2 classes are needed; got only "
                                        "class 3"):
        make_model().fit(x, np.full(50, 3), verbose=0, seed=0)


# -- samples ---------------------------------------------------------------------------

def test_zero_samples():
    with pytest.raises(DataError, match="no training samples"):
        make_model().fit(np.zeros((0, 4, 4)), np.zeros(0, int), verbose=0)


def test_batch_larger_than_data_makes_one_step():
    x, y = make_data(n=3, n_classes=3)
    model = make_model()
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0)
    assert model.optimizer.iterations == 1
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_training_data_names_first_bad_row(bad):
    x, y = make_data()
    x[17, 2, 1] = bad
    x[30, 0, 0] = bad
    with pytest.raises(DataError, match="sample 17 holds NaN or infinity"):
        make_model().fit(x, y, verbose=0, seed=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_image_predict_is_one_sample(dtype):
    x, y = make_data()
    model = make_model(dtype=dtype)
    model.fit(x, y, verbose=0, seed=0)
    assert model.predict(x[0]).shape == (1, 10)
    assert model.predict(x[0].reshape(-1)).shape == (1, 10)
    np.testing.assert_allclose(model.predict(x[0])[0], model.predict(x)[0],
                               rtol=1e-6)
    assert model.predict(x).dtype == np.dtype(dtype)


def test_wrong_sample_shape_suggests_reshape():
    x, y = make_data()
    model = make_model()
    model.fit(x, y, verbose=0, seed=0)
    with pytest.raises(DataError, match=r"samples of shape \(4, 4\).*reshape it to "
                                        r"\(n_samples, 4, 4\)"):
        model.predict(np.zeros((3, 5)))


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="no weights yet"):
        make_model().predict(np.zeros((1, 4, 4)))


# -- warnings --------------------------------------------------------------------------

def test_raw_pixels_to_model_trained_on_unit_range_warn():
    x, y = make_data()
    model = make_model()
    model.fit(x, y, verbose=0, seed=0)
    raw = (x * 255).round()
    with pytest.warns(DataRangeWarning, match=r"\[0, 255\].*trained on inputs in "
                                              r"\[.*divide by 255"):
        model.predict(raw)
    with pytest.warns(DataRangeWarning):
        model.evaluate(raw, y)


def test_constant_loss_at_ln_k_warns_not_learning():
    x = np.zeros((40, 4, 4), np.float32)
    y = np.arange(40) % 10
    model = make_model()
    with pytest.warns(NotLearningWarning, match=r"not learning.*2\.3026 ~ ln\(10\)"):
        model.fit(x, y, batch_size=40, epochs=2, verbose=0, seed=0)


# -- divergence and interruption -------------------------------------------------------

@pytest.mark.parametrize("scale", [1e30, 1e36])
def test_divergence_stops_with_last_finite_weights(scale):
    x, y = make_data()
    x = x * np.float32(scale)
    model = make_model(optimizer=sr.optimizers.SGD(learning_rate=1000.0))
    with pytest.raises(TrainingError, match="loss became (nan|inf).*Lower the "
                                            "learning rate"):
        model.fit(x, y, epochs=3, verbose=0, seed=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_ctrl_c_stops_at_a_step_boundary_and_keeps_history():
    x, y = make_data(n=64)

    def interrupt(epoch, logs=None):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    model = make_model()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=0,
                  callbacks=[LambdaCallback(on_epoch_begin=interrupt)])
    assert signal.getsignal(signal.SIGINT) is before
    assert len(model.history.history["loss"]) == 1
    assert model.optimizer.iterations == 4 + 1  # one epoch, then one more step
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_non_numeric_inputs_and_labels():
    x, y = make_data()
    with pytest.raises(DataError, match="x: expected a numeric array; got dtype <U1"):
        make_model().fit(np.full((50, 4, 4), "a"), y, verbose=0)
    with pytest.raises(DataError, match="expected integer class labels; got dtype"):
        make_model().fit(x, y.astype(str), verbose=0)


def test_nan_at_predict_time_names_the_row():
    x, y = make_data()
    model = make_model()
    model.fit(x, y, verbose=0, seed=0)
    x[2, 0, 0] = np.nan
    with pytest.raises(DataError, match="sample 2 holds NaN"):
        model.predict(x)


def test_loss_far_above_uniform_warns_learning_rate_too_large():
    # too large a rate that stays below the divergence limit (lr 1000 raises)
    x, y = make_data(n=200)
    model = make_model(optimizer=sr.optimizers.SGD(learning_rate=30.0))
    with pytest.warns(NotLearningWarning, match=r"far above ln\(10\).*learning rate "
                                                r"too large \(now 30\)"):
        model.fit(x * 255, y, epochs=3, verbose=0, seed=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_learning_rate_raises_with_the_rate_and_keeps_good_weights(optimizer,
                                                                        dtype):
    # the stable loss never becomes NaN here: it climbs to 1e8 and more instead
    x, y = make_data(n=400)
    opt = {"adam": sr.optimizers.Adam, "sgd": sr.optimizers.SGD}[optimizer](1000.0)
    model = make_model(optimizer=opt, dtype=dtype)
    with pytest.raises(TrainingError, match=r"diverged: the batch loss reached .* "
                                            r"above the divergence limit .*Lower the "
                                            r"learning rate \(now 1000\)"):
        model.fit(x, y, epochs=5, batch_size=20, verbose=0, seed=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # the weights kept are those before the bad step, far below the limit (the
    # weights that gave the bad loss are 30 to 1000 times worse)
    loss, _ = model.evaluate(x, y, batch_size=400)
    assert loss < 1e3 * np.log(10)


def test_divergence_limit_uses_the_first_batch_loss():
    # raw pixels give a large first loss; a steady model is not stopped by it
    x, y = make_data(n=200)
    model = make_model(optimizer=sr.optimizers.SGD(learning_rate=0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotLearningWarning)
        history = model.fit(x * 255, y, epochs=2, verbose=0, seed=0)
    assert history.history["loss"][0] > 10 * np.log(10)


def test_divergence_makes_no_numpy_warning():
    x, y = make_data()
    model = make_model(optimizer=sr.optimizers.SGD(learning_rate=1e30))
    with pytest.raises(TrainingError, match="diverged"):
        model.fit(x * np.float32(1e30), y, epochs=3, verbose=0, seed=0)


@pytest.mark.parametrize("labels", [[-1], np.array([-1], np.int8), [-1.0]])
def test_negative_label_reported_as_given(labels):
    x, _ = make_data(n=2)
    y = np.concatenate([np.asarray(labels), [0]])
    with pytest.raises(DataError, match=r"got -1: 1 of 2 labels"):
        make_model().fit(x, y, verbose=0, seed=0)
