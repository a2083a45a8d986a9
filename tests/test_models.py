"""Sequential: training, determinism, resume, callbacks, progress, file contract."""

import io
import json

import numpy as np
import pytest

import softmaxreg as sr
from softmaxreg import activations, layers
from softmaxreg.callbacks import EarlyStopping, LambdaCallback


def blobs(n=300, n_classes=3, n_features=6, seed=0, dtype=np.float32):
    """Separable Gaussian blobs: a toy problem every optimizer should learn."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    x = centers[y] + rng.normal(size=(n, n_features))
    return x.astype(dtype), y


def mlp(n_classes=3, dtype="float32", hidden="relu", **dense):
    return sr.Sequential([layers.Dense(16, activation=hidden, **dense),
                          layers.Dense(n_classes, activation="softmax")], dtype=dtype)


@pytest.mark.parametrize("optimizer", [
    sr.optimizers.SGD(0.1), sr.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    sr.optimizers.Adam(0.01), sr.optimizers.AdamW(0.01),
], ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_optimizer_learns_blobs(optimizer, dtype):
    x, y = blobs(dtype=dtype)
    model = mlp(dtype=dtype)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0, seed=1)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y)
    assert accuracy > 0.95
    assert model.get_weights()[0].dtype == np.dtype(dtype)


def test_same_seed_bit_identical_and_other_seed_differs():
    x, y = blobs()

    def run(seed):
        model = sr.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.2),
                               layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        history = model.fit(x, y, epochs=3, verbose=0, seed=seed, validation_split=0.2)
        return model.get_weights(), {k: v for k, v in history.history.items()
                                     if k != "epoch_seconds"}

    (w1, h1), (w2, h2), (w3, _) = run(5), run(5), run(6)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2
    assert not np.array_equal(w1[0], w3[0])


def test_resume_at_initial_epoch_is_bit_identical():
    x, y = blobs()

    def fresh():
        model = sr.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.1),
                               layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        return model

    whole = fresh()
    whole.fit(x, y, epochs=4, verbose=0, seed=9)

    first = fresh()
    first.fit(x, y, epochs=2, verbose=0, seed=9)
    weights, state = first.get_weights_dict(), first.optimizer.get_state()
    config = json.loads(json.dumps(first.get_config()))

    resumed = sr.Sequential.from_config(config)
    resumed.set_weights_dict(weights)
    resumed.optimizer.set_state(state)
    resumed.fit(x, y, epochs=4, initial_epoch=2, verbose=0, seed=9)
    for name, array in whole.get_weights_dict().items():
        np.testing.assert_array_equal(resumed.get_weights_dict()[name], array)


def test_history_keys_and_validation_data():
    x, y = blobs()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=2, verbose=0, seed=0,
                        validation_data=(x[:50], y[:50]))
    assert set(history.history) == {
        "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}
    assert all(len(v) == 2 for v in history.history.values())
    assert model.history is history
    val_loss, val_acc = model.evaluate(x[:50], y[:50])
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)


def test_evaluate_is_exact_mean_whatever_the_batch_size():
    x, y = blobs(n=101)
    model = mlp(dtype="float64")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    probs = model.predict(x)
    expected_loss = -np.mean(np.log(probs[np.arange(101), y]))
    expected_acc = np.mean(probs.argmax(axis=1) == y)
    for batch_size in (1, 7, 32, 500):
        loss, acc = model.evaluate(x, y, batch_size=batch_size)
        assert loss == pytest.approx(expected_loss, rel=1e-10)
        assert acc == expected_acc


def test_onehot_loss_and_logits_head():
    x, y = blobs()
    model = sr.Sequential([layers.Dense(3)])
    model.compile(sr.optimizers.Adam(0.05),
                  sr.losses.CategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(x, np.eye(3)[y], epochs=10, verbose=0, seed=0)
    probs = model.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.evaluate(x, np.eye(3)[y])[1] > 0.95


def test_mismatched_head_and_loss_refused():
    model = sr.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="outputs logits.*from_logits=True"):
        model.compile("adam", "sparse_categorical_crossentropy")
    model = mlp()
    with pytest.raises(ValueError, match="applies softmax; use from_logits=False"):
        model.compile("adam", sr.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_early_stopping_restores_best_weights():
    x, y = blobs()
    seen = []

    class Record(sr.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], self.model.get_weights_dict()))

    model = mlp()
    model.compile(sr.optimizers.SGD(2.0), "sparse_categorical_crossentropy")
    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    model.fit(x, y, epochs=30, verbose=0, seed=0, validation_split=0.3,
              callbacks=[Record(), stopper])
    assert stopper.stopped_epoch is not None and len(seen) < 30
    best_loss, best_weights = min(seen, key=lambda item: item[0])
    for name, array in best_weights.items():
        np.testing.assert_array_equal(model.get_weights_dict()[name], array)


def test_early_stopping_needs_its_monitor():
    x, y = blobs()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="'val_loss' is not in the epoch logs"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])


def test_lambda_callback_can_stop_training():
    x, y = blobs()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    epochs = []

    def hook(epoch, logs):
        epochs.append((epoch, round(logs["loss"], 6)))
        if epoch == 1:
            model.stop_training = True

    history = model.fit(x, y, epochs=10, verbose=0, seed=0,
                        callbacks=[LambdaCallback(on_epoch_end=hook)])
    assert [e for e, _ in epochs] == [0, 1]
    assert len(history.history["loss"]) == 2


def test_verbose_2_prints_one_line_per_epoch_and_verbose_1_falls_back():
    x, y = blobs()
    for verbose in (1, 2):
        model = mlp()
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        stream = io.StringIO()
        model.fit(x, y, epochs=2, verbose=verbose, seed=0, stream=stream)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        assert lines[1].startswith("Epoch 2/2 - ")
        assert "us/step - loss: " in lines[1] and "accuracy: " in lines[1]
    quiet = io.StringIO()
    model.fit(x, y, epochs=1, verbose=0, stream=quiet)
    assert quiet.getvalue() == ""


def test_summary_table():
    model = sr.Sequential([layers.Flatten(), layers.Dense(128, activation="relu"),
                           layers.Dense(10, activation="softmax")])
    model.build((28, 28))
    stream = io.StringIO()
    model.summary(stream=stream)
    text = stream.getvalue()
    assert "(None, 784)" in text and "100480" in text and "1290" in text
    assert "Total params: 101770" in text


# -- file contract ---------------------------------------------------------------------

def trained_model():
    x, y = blobs()
    model = sr.Sequential([layers.Rescaling(0.5),
                           layers.Dense(8, activation=sr.nn.relu, l2=1e-4),
                           layers.Dropout(0.1),
                           layers.Dense(3, activation=sr.nn.softmax)])
    model.compile(sr.optimizers.SGD(0.1, momentum=0.9),
                  "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, seed=0)
    return model, x


def test_config_round_trip_through_json_reproduces_predictions():
    model, x = trained_model()
    config = json.loads(json.dumps(model.get_config()))
    assert config["layers"][1]["config"]["activation"] == "relu"
    again = sr.Sequential.from_config(config)
    again.set_weights_dict(model.get_weights_dict())
    np.testing.assert_array_equal(again.predict_proba(x), model.predict(x))
    assert again.get_config() == config
    assert set(model.get_weights_dict()) == {"layers.1.kernel", "layers.1.bias",
                                             "layers.3.kernel", "layers.3.bias"}


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["layers"][1].update(class_name="Lambda"), "unknown layer 'Lambda'"),
    (lambda c: c["layers"][1].update(class_name="os.system"), "unknown layer"),
    (lambda c: c["layers"][1]["config"].update(activation="builtins.eval"),
     "unknown name 'builtins.eval'"),
    (lambda c: c["layers"][1]["config"].update(activation={"f": 1}),
     "activation: expected a name"),
    (lambda c: c["layers"][1]["config"].update(units="8"), "units must be a positive"),
    (lambda c: c["layers"][1]["config"].update(evil=1), "unexpected keyword"),
    (lambda c: c.update(extra=1), r"unknown keys \['extra'\]"),
    (lambda c: c.update(dtype="float16"), "config dtype"),
    (lambda c: c["loss"].update(name="mse"), "unknown loss 'mse'"),
], ids=range(9))
def test_from_config_refuses_bad_descriptions(mutate, message):
    model, _ = trained_model()
    config = json.loads(json.dumps(model.get_config()))
    mutate(config)
    with pytest.raises(ValueError, match=message):
        sr.Sequential.from_config(config)


def test_set_weights_dict_names_the_bad_array():
    model, _ = trained_model()
    weights = model.get_weights_dict()
    weights["layers.3.kernel"] = np.zeros((8, 2), np.float32)
    with pytest.raises(ValueError, match=r"layers\.3\.kernel: expected shape \(8, 3\) "
                                         r"float32; found \(8, 2\) float32"):
        model.set_weights_dict(weights)
    weights.pop("layers.3.kernel")
    with pytest.raises(ValueError, match=r"missing arrays \['layers\.3\.kernel'\]"):
        model.set_weights_dict(weights)


def test_plain_callable_activation_refused_and_custom_class_not_saved():
    with pytest.raises(TypeError, match="derivative is unknown"):
        layers.Dense(3, activation=lambda z: z)

    class Square(activations.Activation):
        name = "square"

        def forward(self, z, out=None):
            return np.multiply(z, z, out=out)

        def backward(self, grad_a, z, a):
            grad_a *= 2 * z
            return grad_a

    model = sr.Sequential([layers.Dense(4, activation=Square()),
                           layers.Dense(3, activation="softmax")])
    model.build((6,), seed=0)
    with pytest.raises(ValueError, match="not a registered activation.*cannot be "
                                         "saved"):
        model.get_config()


def test_keras_names_resolve():
    from softmaxreg import keras

    assert keras.models.Sequential is sr.Sequential
    assert keras.layers.Dense is layers.Dense
    assert sr.keras.optimizers.Adam is sr.optimizers.Adam
    assert activations.get(sr.nn.tanh) is activations.get("tanh")
    adam = sr.optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (
        0.001, 0.9, 0.999, 1e-7)


def test_verbose_1_on_a_terminal_draws_a_live_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    x, y = blobs()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    stream = Terminal()
    model.fit(x, y, epochs=2, batch_size=10, verbose=1, seed=0, stream=stream,
              validation_split=0.1)
    text = stream.getvalue()
    assert text.startswith("Epoch 1/2\n") and "\nEpoch 2/2\n" in text
    assert "\r27/27 |" in text  # redrawn in place, steps done / total
    last = text.rstrip("\n").rsplit("\r", 1)[-1]
    assert "us/step - loss: " in last and "val_accuracy: " in last


def test_validation_split_is_shuffled_with_the_seed_not_the_tail():
    from softmaxreg.models import _split_indices

    train, val = _split_indices(100, 0.2, seed=0)
    assert val.size == 20 and train.size == 80
    assert np.union1d(train, val).tolist() == list(range(100))
    assert val.tolist() != list(range(80, 100))
    np.testing.assert_array_equal(_split_indices(100, 0.2, seed=0)[1], val)
    with pytest.raises(sr.errors.DataError, match="need at least one on each side"):
        _split_indices(1, 0.5, seed=0)


# -- engine settings and Keras names ---------------------------------------------------

def _trained_weights(monkeypatch, threads, dtype, optimizer):
    monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", str(threads))
    x, y = blobs(n=96, dtype=dtype)
    model = sr.Sequential([layers.Dense(4096, activation="relu"),  # > 32768 params
                           layers.Dense(3, activation="softmax")], dtype=dtype)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, seed=4)
    return model.get_weights_dict(), model.optimizer.get_state()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_two_train_threads_are_bit_identical_to_one(monkeypatch, dtype,
                                                        optimizer):
    one = _trained_weights(monkeypatch, 1, dtype, optimizer)
    two = _trained_weights(monkeypatch, 2, dtype, optimizer)
    for first, second in zip(one, two):
        assert set(first) == set(second)
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])
    assert threading_helpers_stopped()


def threading_helpers_stopped():
    import threading
    return not any(t.name == "softmaxreg-optimizer" for t in threading.enumerate())


def test_bad_thread_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("SOFTMAXREG_TRAIN_THREADS", "4")
    x, y = blobs(n=20)
    model = mlp()
    model.compile()
    with pytest.raises(ValueError, match=r"SOFTMAXREG_TRAIN_THREADS: expected 1 "
                                         r"or 2 \(threads\); got '4'"):
        model.fit(x, y, verbose=0, seed=0)


@pytest.mark.parametrize("name", ["acc", "sparse_categorical_accuracy", "accuracy"])
def test_accuracy_metric_logged_under_the_name_given(name):
    x, y = blobs(n=60)
    model = mlp()
    model.compile(metrics=[name])
    history = model.fit(x, y, epochs=2, verbose=0, seed=0,
                        validation_data=(x[:20], y[:20]))
    assert set(history.history) == {"loss", name, "val_loss", "val_" + name,
                                    "epoch_seconds"}
    loss, accuracy = model.evaluate(x, y)
    assert accuracy == pytest.approx(np.mean(model.predict(x).argmax(1) == y))
    assert sr.Sequential.from_config(model.get_config()).metrics == [name]


def test_unknown_metric_lists_the_accepted_names():
    with pytest.raises(ValueError, match="unknown metric 'f1'.*accuracy, named one of "
                                         "accuracy, acc, sparse_categorical_accuracy"):
        mlp().compile(metrics=["f1"])


def test_model_save_and_keras_load_model_round_trip(tmp_path):
    x, y = blobs(n=60)
    model = mlp()
    model.compile(metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = sr.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert isinstance(loaded, sr.Sequential) and loaded.metrics == ["accuracy"]
    assert sr.keras.models.load_model is sr.models.load_model


def test_keras_namespace_lists_no_implementation_modules():
    names = dir(sr.keras)
    assert "importlib" not in names and "_importlib" not in names
    assert {"Sequential", "layers", "models", "datasets"} <= set(names)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prescaled_step_matches_the_plain_step(dtype):
    # the model folds gradient_scale() into the loss gradient: same update
    rng = np.random.default_rng(0)
    params = rng.normal(size=50).astype(dtype)
    grads = rng.normal(size=50).astype(dtype)
    for make in (lambda: sr.optimizers.Adam(0.01),
                 lambda: sr.optimizers.SGD(0.1, momentum=0.9)):
        plain, folded = make(), make()
        plain.build(50, dtype)
        folded.build(50, dtype)
        a, b = params.copy(), params.copy()
        for _ in range(3):
            plain.step(a, grads)
            folded.step(b, grads * dtype(folded.gradient_scale()), prescaled=True)
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12)
        for name, state in plain.get_state().items():
            np.testing.assert_allclose(state, folded.get_state()[name], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_sample_predict_fast_path_matches_batch(dtype):
    x, y = blobs(n=40)
    model = mlp(dtype=dtype)
    model.compile()
    model.fit(x, y, verbose=0, seed=0)
    batch = model.predict(x.astype(np.float64))
    one = model.predict(x[3].astype(np.float64))
    assert one.shape == (1, 3) and one.dtype == np.dtype(dtype)
    np.testing.assert_allclose(one[0], batch[3], rtol=1e-6)
    np.testing.assert_allclose(one.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("optimizer", [sr.optimizers.SGD(0.5), sr.optimizers.Adam(0.1)],
                         ids=repr)
def test_one_fit_step_is_one_optimizer_step_on_the_true_gradient(optimizer):
    # fit folds the optimizer's gradient scale into the loss and L2 gradients;
    # the update must equal the plain step on loss_and_gradients' gradient
    x, y = blobs(n=16, dtype=np.float64)
    model = mlp(dtype="float64", l2=0.05)
    model.compile(optimizer=optimizer)
    model.build(x.shape[1:], seed=2)
    before = model.get_weights_dict()
    _, grads = model.loss_and_gradients(x, y)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, seed=2)

    reference = type(optimizer)(**{k: v for k, v in optimizer.get_config().items()
                                   if k != "class_name"})
    names = list(before)
    flat = np.concatenate([before[n].ravel() for n in names])
    reference.build(flat.size, np.float64)
    reference.step(flat, np.concatenate([grads[n].ravel() for n in names]))
    after = np.concatenate([w.ravel() for w in model.get_weights_dict().values()])
    np.testing.assert_allclose(after, flat, rtol=1e-12, atol=1e-15)
