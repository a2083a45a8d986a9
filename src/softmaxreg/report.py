"""A visual report on a trained classifier: PNG figures and one HTML page.

:func:`write_report` evaluates a model on images, draws the training curves,
the confusion matrix, the most confident mistakes, the reliability diagram and,
for softmax regression, the per-class weight templates, and brings figures and
metrics together in ``report.html``. The metrics come from
:func:`softmaxreg.metrics.classification_metrics`, as those of ``evaluate``.

matplotlib is an optional extra (``pip install 'softmaxreg[report]'``). It is
imported only here, and only its object-oriented API with the Agg canvas is
used: no pyplot, no change to matplotlib's global state.
"""

import html
import json
import os

import numpy as np

from softmaxreg.errors import DataError, MissingDependencyError
from softmaxreg.metrics import classification_metrics

#: Resolution of every figure, in dots per inch; sizes below are in inches.
DPI = 100
FIGURE_SIZES = {
    "training_curves": (10.0, 4.0),
    "confusion_matrix": (7.0, 6.0),
    "mistakes": (8.0, 8.0),
    "weights": (10.0, 4.5),
    "reliability": (6.0, 6.0),
}

#: How many of the most confident mistakes the grid shows.
N_MISTAKES = 25


def figure_pixels(name):
    """(width, height) in pixels of the PNG written for figure ``name``."""
    width, height = FIGURE_SIZES[name]
    return round(width * DPI), round(height * DPI)


def write_report(model, x, y, out_dir, *, history=None, class_names=None, title=None):
    """Evaluate ``model`` on ``(x, y)`` and write figures and report.html.

    Parameters
    ----------
    model : object with ``predict_proba(x)``
        A :class:`~softmaxreg.Sequential`, a
        :class:`~softmaxreg.SoftmaxRegression` or anything returning
        probabilities of shape (n_samples, n_classes).
    x : numpy.ndarray of shape (n_samples, 28, 28) or (n_samples, n_features)
        Images already scaled as the model expects. They are flattened for a
        model that takes flat rows (the estimator, or a config whose input
        shape is one-dimensional).
    y : array-like of shape (n_samples,)
        True integer labels.
    out_dir : str or os.PathLike
        Folder to write into; created if missing. Existing files of the same
        names are replaced.
    history : dict or History, optional
        Keras-style per-epoch lists: ``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy`` (what ``fit`` returns). The training-curve figure is
        drawn only if given.
    class_names : sequence of str, optional
        One name per class; defaults to the model's, else "0", "1", ...
    title : str, optional
        Heading of the HTML page.

    Returns
    -------
    dict
        ``paths`` (figure name -> PNG path, plus ``metrics`` for
        metrics.json and ``html`` for report.html) and
        ``metrics`` (the dict of :func:`classification_metrics`).

    Raises
    ------
    MissingDependencyError
        matplotlib is not installed (a subclass of ImportError).
    """
    figure_api = _matplotlib()
    history = getattr(history, "history", history)  # a History object's dict
    x = np.asarray(x)
    proba = np.asarray(model.predict_proba(_model_input(model, x)))
    if class_names is None:
        class_names = _model_class_names(model, proba.shape[1])
    labels = _label_indices(model, y)
    metrics = classification_metrics(labels, proba, class_names)
    labels = np.asarray(labels).astype(np.int64)

    os.makedirs(out_dir, exist_ok=True)
    drawings = {
        "training_curves": (lambda fig: _draw_curves(fig, history))
        if _has_curves(history) else None,
        "confusion_matrix": lambda fig: _draw_confusion(fig, metrics),
        "mistakes": lambda fig: _draw_mistakes(fig, x, labels, proba, metrics),
        "reliability": lambda fig: _draw_reliability(fig, metrics),
    }
    templates = weight_templates(model)
    if templates is not None:
        drawings["weights"] = lambda fig: _draw_templates(fig, templates, metrics)

    paths = {}
    for name, draw in drawings.items():
        if draw is not None:
            paths[name] = _save_figure(figure_api, name, draw, out_dir)
    paths["metrics"] = os.path.join(out_dir, "metrics.json")
    with open(paths["metrics"], "w", encoding="utf-8") as stream:
        json.dump(metrics, stream, indent=1)
    paths["html"] = _write_html(out_dir, paths, metrics, history, title)
    return {"paths": paths, "metrics": metrics}


# ------------------------------------------------------------ model access


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "the report needs matplotlib, an optional extra: "
            "pip install 'softmaxreg[report]'"
        ) from exc
    return Figure, FigureCanvasAgg


def _config(model):
    get_config = getattr(model, "get_config", None)
    if get_config is None:
        return {}
    try:
        config = get_config()
    except Exception:  # NOTE: an unfitted or foreign model may refuse; not needed
        return {}
    return config if isinstance(config, dict) else {}


def _model_input(model, x):
    """Flatten images for a model that takes rows of n_features."""
    config = _config(model)
    input_shape = config.get("input_shape")
    flat = config.get("class_name") == "SoftmaxRegression" or hasattr(model, "coef_")
    if isinstance(input_shape, (list, tuple)) and len(input_shape) == 1:
        flat = True
    if flat and x.ndim > 2:
        return x.reshape(x.shape[0], -1)  # (n_samples, n_features)
    return x


def _label_indices(model, y):
    """Labels as column indices of predict_proba (via ``classes_`` if any)."""
    classes = getattr(model, "classes_", None)
    y = np.asarray(y)
    if classes is None:
        return y
    classes = np.asarray(classes)
    if np.array_equal(classes, np.arange(len(classes))):
        return y
    index = np.searchsorted(classes, y)
    found = (index < len(classes)) & (classes[np.minimum(index, len(classes) - 1)] == y)
    if not found.all():
        unknown = np.unique(y[~found])[:5].tolist()
        raise DataError(
            f"y holds labels the model does not know, e.g. {unknown}; the model's "
            f"classes are {classes.tolist()}"
        )
    return index


def _model_class_names(model, n_classes):
    for names in (_config(model).get("class_names"), getattr(model, "classes_", None)):
        if names is not None and len(names) == n_classes:
            return [str(name) for name in names]
    return None


def weight_templates(model):
    """Per-class weight images of a model without hidden layer, else None.

    Returns an array of shape (n_classes, 28, 28): the estimator's ``coef_``
    of shape (n_classes, 784), or the kernel (784, n_classes) of a model whose
    only weight matrix is that one. Models with hidden layers, or inputs that
    are not 28x28, give None.
    """
    coef = getattr(model, "coef_", None)
    if coef is None:
        get_weights = getattr(model, "get_weights_dict", None)
        matrices = []
        if get_weights is not None:
            try:
                weights = get_weights()
            except Exception:  # NOTE: unbuilt models have no weights yet
                weights = {}
            matrices = [np.asarray(w) for w in weights.values() if np.ndim(w) == 2]
        if len(matrices) != 1:
            return None
        coef = matrices[0].T  # (n_classes, n_features), from the kernel's transpose
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 2 or coef.shape[1] != 28 * 28:
        return None
    return coef.reshape(-1, 28, 28)


# ------------------------------------------------------------ figures


def _save_figure(figure_api, name, draw, out_dir):
    figure_class, canvas_class = figure_api
    # Grids of small images place themselves (subplots_adjust): the
    # constrained layout would cost about a second per figure for them.
    layout = None if name in ("mistakes", "weights") else "constrained"
    figure = figure_class(figsize=FIGURE_SIZES[name], dpi=DPI, layout=layout)
    canvas_class(figure)
    draw(figure)
    path = os.path.join(out_dir, f"{name}.png")
    # No bbox_inches="tight": the PNG keeps exactly the documented size.
    figure.savefig(path, dpi=DPI, format="png")
    return path


def _has_curves(history):
    return isinstance(history, dict) and bool(history.get("loss"))


def _draw_curves(figure, history):
    # NOTE: the estimator's L-BFGS history holds one entry per iteration, not
    # per epoch, and its loss includes the L2 penalty; the axis says "epoch".
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key, label in ((loss_axes, "loss", "cross-entropy loss"),
                             (accuracy_axes, "accuracy", "accuracy")):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            values = history.get(prefix + key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                name = "validation" if prefix else "training"
                if len(values) > 30:  # markers would merge into a thick line
                    style = style[1:]
                axes.plot(epochs, values, style, label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_title(label.capitalize() + " per epoch")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
        _epoch_ticks(axes, len(history["loss"]))


def _epoch_ticks(axes, n_epochs):
    """Whole-number epoch ticks, also for a single epoch."""
    from matplotlib.ticker import MaxNLocator

    axes.set_xlim(0.5, n_epochs + 0.5)
    if n_epochs <= 10:
        axes.set_xticks(range(1, n_epochs + 1))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_confusion(figure, metrics):
    from matplotlib.colors import PowerNorm

    confusion = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    support = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    share = confusion / support  # (n_classes, n_classes) row-normalised
    names = metrics["class_names"]
    axes = figure.subplots()
    # A square-root colour scale, so that a few percent of confusion stands
    # out next to a diagonal near 1.
    image = axes.imshow(share, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0))
    figure.colorbar(image, ax=axes, label="colour: share of the true class")
    if len(names) <= 20:
        for (row, col), count in np.ndenumerate(confusion):
            colour = "white" if share[row, col] > 0.5 else "black"
            axes.text(col, row, f"{int(count)}", ha="center", va="center",
                      color=colour, fontsize=8)
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, names, rotation=45 if len(names) > 10 else 0)
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix, counts (accuracy {metrics['accuracy']:.4f})")


def _most_confident_mistakes(labels, proba, count):
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = proba[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def _draw_mistakes(figure, x, labels, proba, metrics):
    chosen = _most_confident_mistakes(labels, proba, N_MISTAKES)
    side = int(np.ceil(np.sqrt(N_MISTAKES)))
    grid = figure.subplots(side, side, gridspec_kw={
        "left": 0.02, "right": 0.98, "bottom": 0.02, "top": 0.9, "hspace": 0.45})
    names = metrics["class_names"]
    low, high = float(x.min()), float(x.max())  # one grey scale for all cells
    high = high if high > low else low + 1.0
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, index in zip(grid.ravel(), chosen):
        image = _as_square(x[index])
        predicted = int(proba[index].argmax())
        # Dark ink on white, as on paper.
        axes.imshow(image, cmap="gray_r", vmin=low, vmax=high)
        axes.set_title(
            f"true {names[labels[index]]}, pred {names[predicted]}\n"
            f"p = {proba[index, predicted]:.3f}", fontsize=8)
    figure.suptitle(
        f"The {len(chosen)} most confident mistakes" if len(chosen)
        else "No mistakes")


def _as_square(row):
    row = np.asarray(row, dtype=np.float64)
    if row.ndim == 1 and round(np.sqrt(row.size)) ** 2 == row.size:
        side = round(np.sqrt(row.size))
        return row.reshape(side, side)
    return row


def _draw_templates(figure, templates, metrics):
    n_classes = templates.shape[0]
    n_cols = min(n_classes, 5)
    n_rows = int(np.ceil(n_classes / n_cols))
    grid = np.atleast_1d(figure.subplots(n_rows, n_cols, gridspec_kw={
        "left": 0.02, "right": 0.98, "bottom": 0.02, "top": 0.86, "hspace": 0.2}))
    names = metrics["class_names"]
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, template, name in zip(grid.ravel(), templates, names):
        # Symmetric scale per class: red pixels raise this class's score,
        # blue pixels lower it, white ones do not matter.
        limit = float(np.abs(template).max()) or 1.0
        axes.imshow(template, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes.set_title(f"class {name}", fontsize=10)
    figure.suptitle("Weight templates (red: evidence for, blue: against)")


def _draw_reliability(figure, metrics):
    calibration = metrics["calibration"]
    edges = np.asarray(calibration["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    filled = [a is not None for a in calibration["accuracy"]]
    accuracy = np.array([a if a is not None else 0.0 for a in calibration["accuracy"]])
    axes, counts_axes = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes.bar(centres[filled], accuracy[filled], width=width * 0.9,
             edgecolor="black", label="accuracy in bin")
    axes.plot([0, 1], [0, 1], "k--", zorder=3, label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability diagram (ECE {metrics['ece']:.4f})")
    axes.legend(loc="best")
    counts_axes.bar(centres, calibration["count"], width=width * 0.9, color="gray")
    counts_axes.set_yscale("symlog")
    counts_axes.set_xlabel("confidence (highest predicted probability)")
    counts_axes.set_ylabel("samples")


# ------------------------------------------------------------ HTML

_FIGURE_CAPTIONS = {
    "training_curves": "Training curves",
    "confusion_matrix": "Confusion matrix",
    "mistakes": "Most confident mistakes",
    "weights": "Weight templates",
    "reliability": "Calibration",
}


def _write_html(out_dir, paths, metrics, history, title):
    heading = title or "softmaxreg model report"
    body = [f"<h1>{_text(heading)}</h1>", _summary_table(metrics),
            _history_table(history)]
    for name, caption in _FIGURE_CAPTIONS.items():
        if name in paths:
            source = html.escape(os.path.basename(paths[name]), quote=True)
            body.append(
                f'<figure><img src="{source}" alt="{_text(caption)}">'
                f"<figcaption>{_text(caption)}</figcaption></figure>")
    body += [_per_class_table(metrics), _confusion_table(metrics)]
    page = _PAGE.format(title=_text(heading), body="\n".join(body))
    path = os.path.join(out_dir, "report.html")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page)
    return path


def _text(value):
    return html.escape(str(value), quote=True)


def _cell(value, metric, tag="td"):
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    return f'<{tag} data-metric="{_text(metric)}">{_text(shown)}</{tag}>'


def _summary_table(metrics):
    rows = [("samples", "n_samples"), ("mean cross-entropy loss", "loss"),
            ("accuracy", "accuracy"), ("expected calibration error", "ece")]
    cells = "".join(
        f"<tr><th>{_text(label)}</th>{_cell(metrics[key], key)}</tr>"
        for label, key in rows)
    macro = metrics["macro_avg"]
    cells += "".join(
        f"<tr><th>macro {key}</th>{_cell(macro[key], 'macro_' + key)}</tr>"
        for key in ("precision", "recall", "f1"))
    return f"<h2>Summary</h2><table>{cells}</table>"


def _history_table(history):
    """The last epoch's training figures, if a history was given."""
    if not _has_curves(history):
        return ""
    keys = [key for key in ("loss", "accuracy", "val_loss", "val_accuracy")
            if history.get(key)]
    cells = "".join(
        f"<tr><th>{_text(key)}</th>{_cell(float(history[key][-1]), 'history.' + key)}"
        "</tr>" for key in keys)
    epochs = len(history["loss"])
    return f"<h2>Training (last of {epochs} epochs)</h2><table>{cells}</table>"


def _per_class_table(metrics):
    header = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>" \
             "<th>support</th></tr>"
    rows = []
    for index, row in enumerate(metrics["per_class"]):
        cells = "".join(_cell(row[key], f"per_class.{index}.{key}")
                        for key in ("precision", "recall", "f1", "support"))
        rows.append(f"<tr><th>{_text(row['class'])}</th>{cells}</tr>")
    return f"<h2>Per class</h2><table>{header}{''.join(rows)}</table>"


def _confusion_table(metrics):
    names = metrics["class_names"]
    header = "<tr><th>true \\ predicted</th>" + "".join(
        f"<th>{_text(name)}</th>" for name in names) + "</tr>"
    rows = []
    for i, counts in enumerate(metrics["confusion_matrix"]):
        cells = "".join(_cell(count, f"confusion_matrix.{i}.{j}")
                        for j, count in enumerate(counts))
        rows.append(f"<tr><th>{_text(names[i])}</th>{cells}</tr>")
    return f"<h2>Confusion matrix</h2><table>{header}{''.join(rows)}</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
img {{ max-width: 100%; }}
figure {{ margin: 1.5em 0; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
