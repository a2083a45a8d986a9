"""Tests of the visual report: files, sizes, and metrics equal to evaluate's."""

import sys
from html.parser import HTMLParser
from pathlib import Path

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
    # Without info, the page says what it does not know.
    cells = _html_metrics(tmp_path / "report.html")
    assert cells["info.model_path"] == "not given"
    assert cells["info.n_samples"] == str(len(y))
    assert "No training record was given" in (tmp_path / "report.html").read_text()


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
    install = r"pip install 'softmaxreg\[report\]'"
    with pytest.raises(MissingDependencyError, match=install):
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


# ------------------------------------------------ training curves by unit


def test_lbfgs_history_is_drawn_per_iteration_without_empty_panel(toy, tmp_path):
    from softmaxreg import report

    x, y, model = toy
    history = {"iteration_loss": [2.3, 1.1, 0.7, 0.6], "loss": [0.6],
               "epoch_seconds": [0.1] * 4}
    panels = report._curve_panels(history, report._iteration_based(model, history))
    assert [(title, x_label) for title, x_label, _, _ in panels] == [
        ("L-BFGS objective per iteration", "L-BFGS iteration")]
    assert panels[0][3] == [("training", history["iteration_loss"])]

    result = write_report(model, x, y, tmp_path, history=history)
    assert "training_curves" in result["paths"]
    assert any(note.startswith("Accuracy per epoch: not drawn") for note in
               result["notes"])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "last of 4 L-BFGS iterations" in page
    assert "Accuracy per epoch: not drawn, the L-BFGS solver" in page
    assert _html_metrics(tmp_path / "report.html")["history.iteration_loss"] == "0.6000"


def test_estimator_lbfgs_history_is_recognised(tmp_path):
    from softmaxreg import SoftmaxRegression, report

    x, y = _toy_images(200, n_classes=4, seed=2)
    estimator = SoftmaxRegression(max_iter=200).fit(x.reshape(200, -1), y)
    history = estimator.history_
    assert report._iteration_based(estimator, history)
    (panel,) = report._curve_panels(history, True)
    assert panel[1] == "L-BFGS iteration"
    assert len(panel[3][0][1]) == estimator.n_iter_


def test_epoch_history_without_accuracy_omits_that_panel(toy):
    from softmaxreg import report

    x, y, model = toy
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}
    panels = report._curve_panels(history, report._iteration_based(model, history))
    assert [panel[0] for panel in panels] == ["Cross-entropy loss per epoch"]
    assert [name for name, _ in panels[0][3]] == ["training", "validation"]
    context = report._Context(model, history, {}, {})
    assert any("holds no accuracy" in note for note in report._curve_notes(context))
    assert len(report._curve_panels(_HISTORY, False)) == 2


# ------------------------------------------------ figures, drawn and measured


def _drawn(draw, context, size=(7.0, 6.0)):
    """Draw on a fresh Agg figure and render it; returns the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure, context)
    figure.canvas.draw()
    return figure


def _overlapping_tick_labels(figure):
    """Pairs of visible, non-empty tick labels of one axis whose boxes overlap."""
    renderer = figure.canvas.get_renderer()
    pairs = []
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            boxes = [(label.get_text(), label.get_window_extent(renderer))
                     for label in axis.get_ticklabels()
                     if label.get_visible() and label.get_text()]
            pairs += [(a, b) for i, (a, box_a) in enumerate(boxes)
                      for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]
    return pairs


def _context_for(n_classes, n_samples=2000, boost=3.0, seed=0):
    """Report context of random probabilities, the true class raised by boost."""
    from softmaxreg import report

    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_samples)
    logits = rng.normal(size=(n_samples, n_classes))
    logits[np.arange(n_samples), y] += boost
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = [f"class {k}" for k in range(n_classes)]  # as long as Fashion-MNIST's
    metrics = classification_metrics(y, proba, names)
    return report._Context(object(), None, {}, metrics)


def test_confusion_matrix_scales_with_the_class_count():
    from softmaxreg import report

    few = _drawn(report._draw_confusion, _context_for(10))
    assert len(few.axes[0].texts) == 100  # one count per cell
    assert len(few.axes[0].get_xticklabels()) == 10
    assert "square-root colour scale" in few.axes[1].get_ylabel()
    assert _overlapping_tick_labels(few) == []

    context = _context_for(51)
    many = _drawn(report._draw_confusion, context)
    axes = many.axes[0]
    assert len(axes.texts) == 0  # counts would not fit; the HTML table has them
    assert len(axes.get_xticklabels()) <= report.MAX_CLASSES_WITH_COUNTS
    assert "counts in report.html" in axes.get_title()
    assert any("cell counts left out for 51 classes" in n for n in context.notes)
    assert _overlapping_tick_labels(many) == []


def test_reliability_tick_labels_do_not_collide():
    from softmaxreg import report

    # 10,000 confident samples: four decades of bin counts, where a "0" label
    # once sat on the "1" one.
    for n_classes, boost in ((3, 1.0), (10, 6.0)):
        context = _context_for(n_classes, n_samples=10_000, boost=boost)
        figure = _drawn(report._draw_reliability, context, (6, 6))
        assert _overlapping_tick_labels(figure) == []
        labels = [t.get_text() for t in figure.axes[1].get_yticklabels()]
        assert "0" not in labels and labels[0] == "1"


def _overlapping_titles(figure):
    renderer = figure.canvas.get_renderer()
    boxes = [(axes.get_title(), axes.title.get_window_extent(renderer))
             for axes in figure.axes if axes.get_title()]
    boxes += [(f"image {index}", axes.get_images()[0].get_window_extent(renderer))
              for index, axes in enumerate(figure.axes) if axes.get_images()]
    return [(a, b) for i, (a, box_a) in enumerate(boxes)
            for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


@pytest.mark.parametrize("n_classes", [10, 51])
def test_weight_templates_of_many_classes_have_room(n_classes):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from softmaxreg import report

    templates = np.random.default_rng(3).normal(size=(n_classes, 28, 28))
    figure = Figure(figsize=report.FIGURE_SIZES["weights"], dpi=report.DPI)
    FigureCanvasAgg(figure)
    names = {"class_names": [str(k) for k in range(n_classes)]}
    report._draw_templates(figure, templates, names)
    figure.canvas.draw()
    assert sum(len(axes.get_images()) for axes in figure.axes) == n_classes
    assert _overlapping_titles(figure) == []


# ------------------------------------------------ model and data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_and_data_section_and_captions(toy, tmp_path, dtype):
    from softmaxreg import report

    x, y, model = toy
    provenance = {"dataset": "mnist", "seed": 7, "epochs": 3, "interrupted": True,
                  "options": {"hidden": [128], "optimizer": "adam"},
                  "history": _HISTORY}
    info = {"model_path": tmp_path / "m.safetensors", "dataset": "mnist test",
            "n_samples": len(y), "provenance": provenance}
    result = write_report(model, x.astype(dtype), y, tmp_path, history=_HISTORY,
                          info=info)
    cells = _html_metrics(tmp_path / "report.html")
    assert cells["info.model_path"] == str(tmp_path / "m.safetensors")
    assert cells["info.dataset"] == "mnist test"
    assert cells["info.n_samples"] == str(len(y)) == str(result["metrics"]["n_samples"])
    assert cells["provenance.seed"] == "7" and cells["provenance.epochs"] == "3"
    assert cells["provenance.interrupted"].startswith("yes")
    assert cells["provenance.options"] == 'hidden=[128], optimizer="adam"'
    assert "provenance.history" not in cells

    context = report._Context(model, _HISTORY, report._checked_info(info, len(y)),
                              result["metrics"])
    figure = _drawn(report._draw_confusion, context)
    assert [t.get_text() for t in figure.texts] == [
        f"model m.safetensors  |  evaluated on mnist test  |  {len(y)} samples"]
    assert "interrupted" in report._training_caption(context)
    assert "seed 7" in report._training_caption(context)


@pytest.mark.parametrize("info, error, match", [
    (["model.safetensors"], TypeError, r"info must be a dict.*got list"),
    ({"model": "m"}, ValueError, r"unknown keys \['model'\].*'model_path'"),
    ({"n_samples": 3}, ValueError, r"info\['n_samples'\] must equal.*= 400; got 3"),
    ({"provenance": "mnist"}, TypeError, r"info\['provenance'\] must be dict; got str"),
    ({"dataset": 5}, TypeError, r"info\['dataset'\] must be str; got int"),
])
def test_bad_info_is_refused_before_writing(toy, tmp_path, info, error, match):
    x, y, model = toy
    with pytest.raises(error, match=match):
        write_report(model, x, y, tmp_path / "out", info=info)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------ atomic files


def test_files_are_replaced_whole_or_not_at_all(toy, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    x, y, model = toy
    first = write_report(model, x, y, tmp_path, history=_HISTORY)["paths"]
    before = {name: Path(path).read_bytes() for name, path in first.items()}
    figures = [f"{name}.png" for name in first if name not in ("metrics", "html")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        figures + ["metrics.json", "report.html"])

    original = Figure.savefig

    def crash_half_way(self, target, **kwargs):
        original(self, target, **kwargs)
        if self._suptitle is not None:  # the mistakes grid, after two figures
            if hasattr(target, "truncate"):
                target.truncate(100)
            else:
                with open(target, "r+b") as stream:
                    stream.truncate(100)
            raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        write_report(model, x[::-1], y[::-1], tmp_path, history=_HISTORY)
    for name in ("mistakes", "html", "metrics"):
        assert Path(first[name]).read_bytes() == before[name]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_mistake_titles_with_long_class_names_stay_apart(toy):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from softmaxreg import report

    x, y, model = toy
    proba = model.predict_proba(x)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
             "Shirt", "Sneaker", "Bag", "Ankle boot"]
    context = report._Context(model, None, {}, classification_metrics(y, proba, names))
    figure = Figure(figsize=report.FIGURE_SIZES["mistakes"], dpi=report.DPI)
    FigureCanvasAgg(figure)
    report._draw_mistakes(figure, x, y, proba, context)
    figure.canvas.draw()
    assert sum(len(axes.get_images()) for axes in figure.axes) == report.N_MISTAKES
    assert _overlapping_titles(figure) == []
