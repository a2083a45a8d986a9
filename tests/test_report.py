"""Tests of the visual report: files, sizes, and metrics equal to evaluate's."""

import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from softmaxreg.errors import DataError, MissingDependencyError
from softmaxreg.metrics import classification_metrics
from softmaxreg.report import figure_pixels, weight_templates, write_report

pytest.importorskip("matplotlib")


def _toy_images(n_samples, n_classes=10, seed=0):
    """Noisy 28x28 images with a faint patch whose place depends on the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_samples)
    images = rng.normal(size=(n_samples, 28, 28))
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[index, 2 + 6 * row:8 + 6 * row, 2 + 6 * col:8 + 6 * col] += 0.8
    return images, labels


class _LinearModel:
    """A softmax regression stand-in holding only a (784, n_classes) kernel."""

    def __init__(self, kernel, bias):
        self.kernel, self.bias = kernel, bias

    def get_weights_dict(self):
        return {"layers.1.kernel": self.kernel, "layers.1.bias": self.bias}

    def predict_proba(self, x):
        logits = x.reshape(len(x), -1) @ self.kernel  # (n_samples, n_classes)
        logits += self.bias
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)


class _HiddenLayerModel(_LinearModel):
    def get_weights_dict(self):
        return {"layers.1.kernel": np.zeros((784, 16)),
                "layers.2.kernel": np.zeros((16, 10))}


def _fitted_linear(x, y, n_classes=10, seed=0):
    """A few hundred gradient steps of softmax regression: imperfect on purpose."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(scale=0.01, size=(784, n_classes))
    bias = np.zeros(n_classes)
    one_hot = np.eye(n_classes)[y]
    rows = x.reshape(len(x), -1)
    model = _LinearModel(kernel, bias)
    for _ in range(30):
        gradient = (model.predict_proba(x) - one_hot) / len(x)  # (n_samples, n_classes)
        model.kernel -= 0.5 * rows.T @ gradient
        model.bias -= 0.5 * gradient.sum(axis=0)
    return model


_HISTORY = {"loss": [1.2, 0.8, 0.6], "accuracy": [0.6, 0.75, 0.8],
            "val_loss": [1.3, 0.9, 0.7], "val_accuracy": [0.55, 0.7, 0.78],
            "epoch_seconds": [0.1, 0.1, 0.1]}


class _MetricCells(HTMLParser):
    """Collects the text of every element carrying data-metric."""

    def __init__(self):
        super().__init__()
        self.cells, self._open = {}, None

    def handle_starttag(self, tag, attrs):
        self._open = dict(attrs).get("data-metric")

    def handle_data(self, data):
        if self._open is not None:
            self.cells[self._open] = data
            self._open = None


def _html_metrics(path):
    parser = _MetricCells()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.cells


def _shown(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@pytest.fixture(scope="module")
def toy():
    """Held-out toy images, their labels and a model fitted on others."""
    x_train, y_train = _toy_images(400, seed=0)
    x, y = _toy_images(400, seed=1)
    return x, y, _fitted_linear(x_train, y_train)


def test_every_figure_is_a_png_of_the_documented_size(toy, tmp_path):
    x, y, model = toy
    result = write_report(model, x, y, tmp_path / "out", history=_HISTORY)
    paths = result["paths"]
    expected = {"training_curves", "confusion_matrix", "mistakes", "reliability",
                "weights", "metrics", "html"}
    assert set(paths) == expected
    for name in expected - {"metrics", "html"}:
        with Image.open(paths[name]) as image:
            assert image.format == "PNG"
            assert image.size == figure_pixels(name)
            image.verify()


def test_html_shows_the_metrics_of_evaluate(toy, tmp_path):
    x, y, model = toy
    result = write_report(model, x, y, tmp_path, history=_HISTORY)
    reference = classification_metrics(y, model.predict_proba(x))
    assert result["metrics"] == reference
    assert 0.3 < reference["accuracy"] < 1.0  # mistakes exist to be shown

    cells = _html_metrics(tmp_path / "report.html")
    for key in ("n_samples", "loss", "accuracy", "ece"):
        assert cells[key] == _shown(reference[key])
    for index, row in enumerate(reference["per_class"]):
        for key in ("precision", "recall", "f1", "support"):
            assert cells[f"per_class.{index}.{key}"] == _shown(row[key])
    for i, counts in enumerate(reference["confusion_matrix"]):
        for j, count in enumerate(counts):
            assert cells[f"confusion_matrix.{i}.{j}"] == str(count)
    assert cells["history.val_accuracy"] == "0.7800"


def test_text_is_escaped(toy, tmp_path):
    x, y, model = toy
    names = ["<script>alert(1)</script>"] + [f"c&{k}" for k in range(1, 10)]
    write_report(model, x, y, tmp_path, class_names=names, title='<b>"mine"</b>')
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "c&amp;3" in page and "&lt;b&gt;&quot;mine&quot;&lt;/b&gt;" in page


def test_without_history_there_are_no_curves(toy, tmp_path):
    x, y, model = toy
    paths = write_report(model, x, y, tmp_path)["paths"]
    assert "training_curves" not in paths
    assert not (tmp_path / "training_curves.png").exists()
    assert "training_curves.png" not in (tmp_path / "report.html").read_text()


def test_weight_templates_only_for_a_model_without_hidden_layer(toy, tmp_path):
    x, y, model = toy
    templates = weight_templates(model)
    assert templates.shape == (10, 28, 28)
    np.testing.assert_array_equal(templates[3].ravel(), model.kernel[:, 3])

    hidden = _HiddenLayerModel(model.kernel, model.bias)
    assert weight_templates(hidden) is None
    paths = write_report(hidden, x, y, tmp_path)["paths"]
    assert "weights" not in paths


def test_estimator_templates_and_flat_input(tmp_path):
    from softmaxreg import SoftmaxRegression

    x, y = _toy_images(300, n_classes=4, seed=1)
    estimator = SoftmaxRegression(max_iter=30).fit(x.reshape(300, -1), y)
    result = write_report(estimator, x, y, tmp_path)  # 3-D x is flattened
    assert weight_templates(estimator).shape == (4, 28, 28)
    assert "weights" in result["paths"]
    assert result["metrics"]["accuracy"] == pytest.approx(
        estimator.score(x.reshape(300, -1), y))


def _sequential(hidden_units, x, y):
    import softmaxreg as sr

    layers = [sr.layers.Flatten()]
    if hidden_units:
        layers.append(sr.layers.Dense(hidden_units, activation="relu"))
    layers.append(sr.layers.Dense(10, activation="softmax"))
    model = sr.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x.astype(np.float32), y, epochs=2, batch_size=64, seed=0,
                        validation_split=0.2, verbose=0)
    return model, history


def test_sequential_softmax_regression_and_mlp(toy, tmp_path):
    x, y, _ = toy
    linear, history = _sequential(0, x, y)
    result = write_report(linear, x, y, tmp_path / "linear", history=history)
    assert "weights" in result["paths"] and "training_curves" in result["paths"]
    kernel = linear.get_weights_dict()["layers.1.kernel"]
    np.testing.assert_array_equal(weight_templates(linear)[7].ravel(), kernel[:, 7])

    mlp, _ = _sequential(16, x, y)
    assert "weights" not in write_report(mlp, x, y, tmp_path / "mlp")["paths"]


def test_labels_are_mapped_through_classes(toy, tmp_path):
    x, y, model = toy
    named = _LinearModel(model.kernel, model.bias)
    named.classes_ = np.array([f"digit {k}" for k in range(10)])
    result = write_report(named, x, named.classes_[y], tmp_path)
    assert result["metrics"]["accuracy"] == classification_metrics(
        y, model.predict_proba(x))["accuracy"]
    assert result["metrics"]["class_names"][0] == "digit 0"
    with pytest.raises(DataError, match=r"labels the model does not know.*'cat'"):
        write_report(named, x[:2], ["cat", "digit 1"], tmp_path)


def test_missing_matplotlib_says_how_to_install(toy, tmp_path, monkeypatch):
    x, y, model = toy
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'softmaxreg\[report\]'"):
        write_report(model, x, y, tmp_path)


def test_matplotlib_global_state_is_left_alone(toy, tmp_path):
    import matplotlib

    x, y, model = toy
    backend, had_pyplot = matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules
    write_report(model, x, y, tmp_path, history=_HISTORY)
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


@pytest.mark.slow
@pytest.mark.realdata
def test_report_on_mnist_softmax_regression(mnist, tmp_path):
    from softmaxreg import SoftmaxRegression

    (x_train, y_train), (x_test, y_test) = mnist
    x_train = x_train[:20000].astype(np.float32) / 255
    x_test = x_test[:2000].astype(np.float32) / 255
    model = SoftmaxRegression(solver="adam", max_iter=3, random_state=0)
    model.fit(x_train.reshape(len(x_train), -1), y_train[:20000])
    result = write_report(model, x_test, y_test[:2000], tmp_path,
                          history=model.history_, title="MNIST")
    accuracy = model.score(x_test.reshape(len(x_test), -1), y_test[:2000])
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert _html_metrics(tmp_path / "report.html")["accuracy"] == f"{accuracy:.4f}"
    assert accuracy > 0.85
    with Image.open(result["paths"]["weights"]) as image:
        assert image.size == figure_pixels("weights")


@pytest.mark.slow
@pytest.mark.realdata
def test_report_equals_sequential_evaluate_on_mnist(mnist, tmp_path):
    (x_train, y_train), (x_test, y_test) = mnist
    x_train = x_train[:20000].astype(np.float32) / 255
    x_test, y_test = x_test[:2000].astype(np.float32) / 255, y_test[:2000]
    model, history = _sequential(0, x_train, y_train[:20000])
    loss, accuracy = model.evaluate(x_test, y_test)

    result = write_report(model, x_test, y_test, tmp_path, history=history)
    assert result["metrics"]["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["metrics"]["accuracy"] == accuracy
    cells = _html_metrics(tmp_path / "report.html")
    assert cells["loss"] == f"{loss:.4f}" and cells["accuracy"] == f"{accuracy:.4f}"
