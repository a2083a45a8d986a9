"""A visual report on a trained classifier: PNG figures and one HTML page.

:func:`write_report` evaluates a model on images, draws the training curves,
the confusion matrix, the most confident mistakes, the reliability diagram and,
for softmax regression, the per-class weight templates, and brings figures and
metrics together in ``report.html``, with a "Model and data" section saying
which model file, dataset and training run the numbers belong to. The metrics
come from :func:`softmaxreg.metrics.classification_metrics`, as those of
``evaluate``.

matplotlib is an optional extra (``pip install 'softmaxreg[report]'``). It is
imported only here, and only its object-oriented API with the Agg canvas is
used: no pyplot, no change to matplotlib's global state.

Every file is written to a temporary file in the output folder and renamed
over its final name, so a crash never leaves a half-written file behind.
"""

import html
import io
import json
import math
import os

import numpy as np

from softmaxreg.errors import DataError, MissingDependencyError
from softmaxreg.metrics import classification_metrics
from softmaxreg.saving import atomic_write_bytes

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

#: Above this many classes the confusion-matrix figure shows colours only
#: (the counts stay in the HTML table) and thins its tick labels.
MAX_CLASSES_WITH_COUNTS = 20

#: Keys accepted in the ``info`` argument of :func:`write_report`.
INFO_KEYS = ("model_path", "dataset", "n_samples", "provenance")


def figure_pixels(name):
    """(width, height) in pixels of the PNG written for figure ``name``."""
    width, height = FIGURE_SIZES[name]
    return round(width * DPI), round(height * DPI)


def write_report(model, x, y, out_dir, *, history=None, class_names=None, title=None,
                 info=None):
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
        names are replaced, each one whole (temporary file, then rename).
    history : dict or History, optional
        Keras-style per-epoch lists: ``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy`` (what ``fit`` returns), or the L-BFGS estimator's
        per-iteration objective under ``iteration_loss``. The training-curve
        figure is drawn only if given; a panel without data is left out and
        the page says why.
    class_names : sequence of str, optional
        One name per class; defaults to the model's, else "0", "1", ...
    title : str, optional
        Heading of the HTML page.
    info : dict, optional
        What the numbers belong to, shown in the page's "Model and data"
        section and in small captions under the figures. Keys, all optional:
        ``model_path`` (str or path of the model file), ``dataset`` (str, the
        evaluated data, e.g. "mnist test split"), ``n_samples`` (int, must
        equal ``len(y)``) and ``provenance`` (the model file's training record:
        dataset, seed, epochs, interrupted, options, ...).

    Returns
    -------
    dict
        ``paths`` (figure name -> PNG path, plus ``metrics`` for
        metrics.json and ``html`` for report.html), ``metrics`` (the dict of
        :func:`classification_metrics`) and ``notes`` (list of str: what was
        left out of the figures and why, as shown on the page).

    Raises
    ------
    MissingDependencyError
        matplotlib is not installed (a subclass of ImportError).
    TypeError, ValueError
        ``info`` is not a dict, holds an unknown key or a value of the wrong
        type, or its ``n_samples`` differs from ``len(y)``.
    """
    figure_api = _matplotlib()
    history = getattr(history, "history", history)  # a History object's dict
    x = np.asarray(x)
    info = _checked_info(info, len(x))
    proba = np.asarray(model.predict_proba(_model_input(model, x)))
    if class_names is None:
        class_names = _model_class_names(model, proba.shape[1])
    labels = _label_indices(model, y)
    metrics = classification_metrics(labels, proba, class_names)
    labels = np.asarray(labels).astype(np.int64)

    os.makedirs(out_dir, exist_ok=True)
    context = _Context(model, history, info, metrics)
    drawings = _drawings(model, context, x, labels, proba)
    paths = {}
    for name, draw in drawings.items():
        paths[name] = _save_figure(figure_api, name, draw, out_dir)
    paths["metrics"] = os.path.join(out_dir, "metrics.json")
    _write_atomically(paths["metrics"], json.dumps(metrics, indent=1))
    paths["html"] = _write_html(out_dir, paths, context, title)
    return {"paths": paths, "metrics": metrics, "notes": list(context.notes)}


class _Context:
    """What every figure and the page share: the run, the data, the notes."""

    def __init__(self, model, history, info, metrics):
        self.model_class = _config(model).get("class_name") or type(model).__name__
        self.iterations = _iteration_based(model, history)
        self.panels = _curve_panels(history, self.iterations)
        self.history = history if self.panels else None
        self.info = info
        self.metrics = metrics
        self.notes = []


def _drawings(model, context, x, labels, proba):
    """Figure name -> function drawing it on a Figure, for the figures to make."""
    metrics = context.metrics
    drawings = {}
    if context.panels:
        drawings["training_curves"] = lambda fig: _draw_curves(fig, context)
        context.notes.extend(_curve_notes(context))
    else:
        context.notes.append("Training curves: not drawn, no training history "
                             "was given.")
    drawings["confusion_matrix"] = lambda fig: _draw_confusion(fig, context)
    drawings["mistakes"] = lambda fig: _draw_mistakes(fig, x, labels, proba, context)
    drawings["reliability"] = lambda fig: _draw_reliability(fig, context)
    templates = weight_templates(model)
    if templates is not None:
        drawings["weights"] = lambda fig: _draw_templates(fig, templates, metrics)
    else:
        context.notes.append("Weight templates: not drawn, they exist only for a "
                             "model without hidden layer on 28x28 images.")
    return drawings


def _checked_info(info, n_samples):
    """Validate the ``info`` argument; return a dict with the known keys only."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise TypeError(f"info must be a dict with keys among {list(INFO_KEYS)}; "
                        f"got {type(info).__name__}")
    unknown = sorted(set(info) - set(INFO_KEYS), key=str)
    if unknown:
        raise ValueError(f"info has unknown keys {unknown}; the known ones are "
                         f"{list(INFO_KEYS)}")
    checked = {key: value for key, value in info.items() if value is not None}
    for key, kinds in (("model_path", (str, os.PathLike)), ("dataset", (str,)),
                       ("provenance", (dict,))):
        if key in checked and not isinstance(checked[key], kinds):
            expected = " or ".join(kind.__name__ for kind in kinds)
            raise TypeError(f"info[{key!r}] must be {expected}; got "
                            f"{type(checked[key]).__name__}")
    given = checked.get("n_samples")
    if given is not None and (isinstance(given, bool) or given != n_samples):
        raise ValueError(f"info['n_samples'] must equal the number of samples "
                         f"evaluated, len(x) = {n_samples}; got {given!r}")
    if "model_path" in checked:
        checked["model_path"] = os.fspath(checked["model_path"])
    return checked


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


# ------------------------------------------------------------ training curves


def _iteration_based(model, history):
    """True when the history counts L-BFGS iterations, not epochs.

    The estimator's L-BFGS history keeps the per-iteration objective under
    "iteration_loss"; older files kept it under "loss", recognisable by a
    "unit" entry or by the estimator's solver.
    """
    if not isinstance(history, dict):
        return False
    if history.get("iteration_loss"):
        return True
    if history.get("unit") == "iteration":
        return True
    return getattr(model, "solver", None) == "lbfgs"


def _curve_panels(history, iterations):
    """The training-curve panels that have data, as (title, x label, y label, lines).

    ``lines`` is a list of (legend label, values); a panel without any values
    is not returned.
    """
    if not isinstance(history, dict):
        return []
    if iterations:
        values = history.get("iteration_loss") or history.get("loss")
        objective = "objective per sample\n(cross-entropy + L2 penalty)"
        return [("L-BFGS objective per iteration", "L-BFGS iteration", objective,
                 [("training", values)])] if values else []
    panels = []
    for key, label in (("loss", "cross-entropy loss"), ("accuracy", "accuracy")):
        lines = [(name, history.get(prefix + key))
                 for prefix, name in (("", "training"), ("val_", "validation"))]
        lines = [(name, values) for name, values in lines if values]
        if lines:
            panels.append((label.capitalize() + " per epoch", "epoch", label, lines))
    return panels


def _curve_notes(context):
    """Why a training-curve panel is missing, for the page."""
    titles = [panel[0] for panel in context.panels]
    if context.iterations:
        return ["Accuracy per epoch: not drawn, the L-BFGS solver records only "
                "its objective, once per iteration (not per epoch)."]
    if "Accuracy per epoch" not in titles:
        return ["Accuracy per epoch: not drawn, the training history holds no "
                "accuracy (the model was trained without the accuracy metric)."]
    if "Cross-entropy loss per epoch" not in titles:
        return ["Loss per epoch: not drawn, the training history holds no loss."]
    return []


def _draw_curves(figure, context):
    panels = context.panels
    grid = np.atleast_1d(figure.subplots(1, len(panels)))
    for axes, (title, x_label, y_label, lines) in zip(grid, panels):
        for (name, values), style in zip(lines, ("o-", "s--")):
            if len(values) > 30:  # markers would merge into a thick line
                style = style[1:]
            axes.plot(np.arange(1, len(values) + 1), values, style, label=name)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        _step_ticks(axes, max(len(values) for _, values in lines))
    _caption(figure, _training_caption(context))


def _step_ticks(axes, n_steps):
    """Whole-number epoch (or iteration) ticks, also for a single step."""
    from matplotlib.ticker import MaxNLocator

    axes.set_xlim(0.5, n_steps + 0.5)
    if n_steps <= 10:
        axes.set_xticks(range(1, n_steps + 1))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


# ------------------------------------------------------------ captions


def _caption(figure, text):
    """A small grey line at the bottom of ``figure`` saying what it shows."""
    if not text:
        return
    figure.text(0.01, 0.006, text, fontsize=7, color="0.35", ha="left", va="bottom")
    engine = figure.get_layout_engine()
    if engine is not None:  # constrained layout: keep the axes above the line
        height = figure.get_figheight() * figure.dpi
        engine.set(rect=(0.0, 16 / height, 1.0, 1.0 - 16 / height))


def _evaluation_caption(context):
    info = context.info
    parts = []
    if "model_path" in info:
        parts.append(f"model {os.path.basename(info['model_path'])}")
    if "dataset" in info:
        parts.append(f"evaluated on {info['dataset']}")
    parts.append(f"{context.metrics['n_samples']} samples")
    return "  |  ".join(parts)


def _training_caption(context):
    provenance = context.info.get("provenance") or {}
    parts = []
    if provenance.get("dataset") is not None:
        parts.append(f"trained on {provenance['dataset']}")
    if provenance.get("seed") is not None:
        parts.append(f"seed {provenance['seed']}")
    if provenance.get("interrupted") is True:
        parts.append("interrupted: the curves stop where training was stopped")
    elif provenance.get("interrupted") is False:
        parts.append("ran to the end")
    steps = len(context.panels[0][3][0][1])
    unit = "L-BFGS iterations" if context.iterations else "epochs"
    return "  |  ".join([f"{steps} {unit}", *parts])


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
    buffer = io.BytesIO()
    # No bbox_inches="tight": the PNG keeps exactly the documented size.
    figure.savefig(buffer, dpi=DPI, format="png")
    _write_atomically(path, buffer.getvalue())
    return path


def _write_atomically(path, data):
    """Write bytes or text (UTF-8) to a temporary file, then rename it to path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    atomic_write_bytes(path, data)


def _draw_confusion(figure, context):
    from matplotlib.colors import PowerNorm

    metrics = context.metrics
    confusion = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    support = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    share = confusion / support  # (n_classes, n_classes) row-normalised
    n_classes = len(metrics["class_names"])
    axes = figure.subplots()
    # Square-root colour scale: a few percent of confusion stays visible next
    # to a diagonal near 1. The colour bar says so and marks small shares.
    image = axes.imshow(share, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0))
    colorbar = figure.colorbar(
        image, ax=axes, ticks=[0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1],
        label="share of the true class's samples (square-root colour scale)")
    colorbar.ax.tick_params(labelsize=8)
    counts = n_classes <= MAX_CLASSES_WITH_COUNTS
    if counts:
        _confusion_counts(axes, confusion, share)
    else:
        context.notes.append(
            f"Confusion matrix figure: cell counts left out for {n_classes} "
            "classes (they would not fit); the table below holds them.")
    _confusion_ticks(axes, metrics["class_names"])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    what = "cells: counts" if counts else "counts in report.html"
    axes.set_title(f"Confusion matrix, {what} (accuracy {metrics['accuracy']:.4f})")
    _caption(figure, _evaluation_caption(context))


def _confusion_counts(axes, confusion, share):
    size = 8 if len(confusion) <= 10 else 6
    for (row, col), count in np.ndenumerate(confusion):
        colour = "white" if share[row, col] > 0.5 else "black"
        axes.text(col, row, f"{int(count)}", ha="center", va="center",
                  color=colour, fontsize=size)


def _confusion_ticks(axes, names):
    """Every class's name up to 20 classes, else every k-th; upright x labels.

    x labels stand vertical beyond 10 classes or 4 characters, so that long
    names never run into their neighbours.
    """
    n_classes = len(names)
    step = math.ceil(n_classes / MAX_CLASSES_WITH_COUNTS)
    ticks = np.arange(0, n_classes, step)
    shown = [names[index] for index in ticks]
    size = 10 if n_classes <= 10 else 8
    if n_classes <= 10 and max(len(name) for name in shown) <= 4:
        axes.set_xticks(ticks, shown, fontsize=size)
    else:
        axes.set_xticks(ticks, shown, fontsize=size, rotation=90)
    axes.set_yticks(ticks, shown, fontsize=size)


def _most_confident_mistakes(labels, proba, count):
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = proba[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def _draw_mistakes(figure, x, labels, proba, context):
    chosen = _most_confident_mistakes(labels, proba, N_MISTAKES)
    side = int(np.ceil(np.sqrt(N_MISTAKES)))
    grid = figure.subplots(side, side, gridspec_kw={
        "left": 0.02, "right": 0.98, "bottom": 0.03, "top": 0.88, "hspace": 0.6})
    names = context.metrics["class_names"]
    low, high = float(x.min()), float(x.max())  # one grey scale for all cells
    high = high if high > low else low + 1.0
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, index in zip(grid.ravel(), chosen):
        image = _as_square(x[index])
        predicted = int(proba[index].argmax())
        # Dark ink on white, as on paper.
        axes.imshow(image, cmap="gray_r", vmin=low, vmax=high)
        # One line each, so that long class names stay inside their cell.
        axes.set_title(
            f"true {names[labels[index]]}\npred {names[predicted]}\n"
            f"p = {proba[index, predicted]:.3f}", fontsize=8)
    figure.suptitle(
        f"The {len(chosen)} most confident mistakes" if len(chosen)
        else "No mistakes")
    _caption(figure, _evaluation_caption(context))


def _as_square(row):
    row = np.asarray(row, dtype=np.float64)
    if row.ndim == 1 and round(np.sqrt(row.size)) ** 2 == row.size:
        side = round(np.sqrt(row.size))
        return row.reshape(side, side)
    return row


def _draw_templates(figure, templates, metrics):
    n_classes = templates.shape[0]
    # Columns so that cells come out about square on the figure's aspect.
    width, height = FIGURE_SIZES["weights"]
    n_cols = max(1, min(n_classes, math.ceil(math.sqrt(n_classes * width / height))))
    n_rows = math.ceil(n_classes / n_cols)
    grid = np.atleast_1d(figure.subplots(n_rows, n_cols, gridspec_kw={
        "left": 0.02, "right": 0.98, "bottom": 0.02, "top": 0.86,
        "hspace": 0.3 if n_rows <= 2 else 0.45}))
    names = metrics["class_names"]
    size = 10 if n_classes <= 10 else 7
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, template, name in zip(grid.ravel(), templates, names):
        # Symmetric scale per class: red pixels raise this class's score,
        # blue pixels lower it, white ones do not matter.
        # The 99th percentile, not the maximum: one extreme border pixel would
        # otherwise wash out the rest of the template (beyond it colours clip).
        limit = float(np.percentile(np.abs(template), 99)) or 1.0
        axes.imshow(template, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes.set_title(f"class {name}" if n_classes <= 10 else name, fontsize=size)
    figure.suptitle("Weight templates (red: evidence for the class, blue: against;"
                    " each scaled to its own 99th percentile of |weight|)")


def _draw_reliability(figure, context):
    metrics = context.metrics
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
    axes.legend(loc="upper left")
    _draw_bin_counts(counts_axes, centres, width, calibration["count"])
    _caption(figure, _evaluation_caption(context))


def _draw_bin_counts(axes, centres, width, count):
    """Samples per bin: log-height bars, each with its count written on top."""
    from matplotlib.ticker import NullLocator

    count = np.asarray(count)
    axes.bar(centres, count, width=width * 0.9, color="gray")
    # A symmetric-log axis keeps empty bins at zero height. Only powers of ten
    # are labelled: a "0" label would sit on top of the "1" one.
    axes.set_yscale("symlog", linthresh=1)
    top = max(int(count.max()), 1)
    axes.set_ylim(0, top * 8)
    powers = [10 ** k for k in range(int(math.log10(top)) + 1)]
    axes.set_yticks(powers, [f"{p:,}" for p in powers], fontsize=8)
    axes.yaxis.set_minor_locator(NullLocator())
    for centre, value in zip(centres, count):
        if value:
            axes.text(centre, value * 1.15, f"{value}", ha="center", va="bottom",
                      fontsize=7)
    axes.set_xlabel("confidence (highest predicted probability)")
    axes.set_ylabel("samples (log)")


# ------------------------------------------------------------ HTML

_FIGURE_CAPTIONS = {
    "training_curves": "Training curves",
    "confusion_matrix": "Confusion matrix",
    "mistakes": "Most confident mistakes",
    "weights": "Weight templates",
    "reliability": "Calibration",
}


def _write_html(out_dir, paths, context, title):
    heading = title or "softmaxreg model report"
    metrics = context.metrics
    body = [f"<h1>{_text(heading)}</h1>", _model_and_data(context),
            _summary_table(metrics), _history_table(context)]
    for name, caption in _FIGURE_CAPTIONS.items():
        if name in paths:
            source = html.escape(os.path.basename(paths[name]), quote=True)
            body.append(
                f'<figure><img src="{source}" alt="{_text(caption)}">'
                f"<figcaption>{_text(caption)}</figcaption></figure>")
    if context.notes:
        items = "".join(f"<li>{_text(note)}</li>" for note in context.notes)
        body.append(f'<h2>Left out of the figures</h2><ul class="notes">{items}</ul>')
    body += [_per_class_table(metrics), _confusion_table(metrics)]
    page = _PAGE.format(title=_text(heading), body="\n".join(body))
    path = os.path.join(out_dir, "report.html")
    _write_atomically(path, page)
    return path


def _text(value):
    return html.escape(str(value), quote=True)


def _cell(value, metric, tag="td"):
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    return f'<{tag} data-metric="{_text(metric)}">{_text(shown)}</{tag}>'


def _rows(pairs, prefix):
    """Table rows of (label, key, value), each value cell tagged prefix + key."""
    return "".join(f"<tr><th>{_text(label)}</th>{_cell(value, prefix + key)}</tr>"
                   for label, key, value in pairs)


def _model_and_data(context):
    """Which model, which data, which training run the page describes."""
    info = context.info
    pairs = [("model file", "model_path", info.get("model_path", "not given")),
             ("model class", "model_class", context.model_class),
             ("evaluated on", "dataset", info.get("dataset", "not given")),
             ("samples evaluated", "n_samples", context.metrics["n_samples"])]
    section = f'<h2>Model and data</h2><table>{_rows(pairs, "info.")}</table>'
    provenance = info.get("provenance")
    if not provenance:
        return section + ("<p>No training record was given (the model file holds "
                          "no provenance, or the model was built in Python).</p>")
    return section + "<h3>Training record</h3><table>" + _rows(
        _provenance_pairs(provenance, context.iterations), "provenance.") + "</table>"


_PROVENANCE_LABELS = {
    "dataset": "trained on", "dataset_fingerprint": "dataset fingerprint",
    "seed": "seed", "epochs": "epochs", "iterations": "L-BFGS iterations",
    "interrupted": "interrupted",
    "train_seconds": "training time (s)", "test_loss": "test loss at training",
    "test_accuracy": "test accuracy at training",
}


def _provenance_pairs(provenance, iterations):
    """(label, key, shown value) for each entry of the training record.

    The history is left out (the curves and the table above show it); other
    unknown entries are shown under their own key, nested ones as JSON.
    """
    pairs = []
    for key, value in provenance.items():
        if key == "history":
            continue
        label = _PROVENANCE_LABELS.get(key, str(key))
        if key == "epochs" and iterations:
            label = "L-BFGS iterations"
        if key == "interrupted" and isinstance(value, bool):
            value = ("yes: the model holds what was trained until the stop"
                     if value else "no: training ran to the end")
        elif isinstance(value, dict):
            value = ", ".join(f"{name}={json.dumps(item, default=str)}"
                              for name, item in sorted(value.items(), key=str))
        elif isinstance(value, list):
            value = json.dumps(value, default=str)
        elif value is None:
            value = "not recorded"
        pairs.append((label, str(key), value))
    return pairs


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


def _history_table(context):
    """The last epoch's (or iteration's) training figures, if there is a history."""
    history = context.history
    if history is None:
        return ""
    if context.iterations:
        key = "iteration_loss" if history.get("iteration_loss") else "loss"
        values = history[key]
        cell = _cell(float(values[-1]), "history." + key)
        return (f"<h2>Training (last of {len(values)} L-BFGS iterations)</h2>"
                f"<table><tr><th>final objective</th>{cell}</tr></table>")
    keys = [key for key in ("loss", "accuracy", "val_loss", "val_accuracy")
            if history.get(key)]
    cells = "".join(
        f"<tr><th>{_text(key)}</th>{_cell(float(history[key][-1]), 'history.' + key)}"
        "</tr>" for key in keys)
    epochs = max(len(history[key]) for key in keys)
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
