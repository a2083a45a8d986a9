"""Classification metrics computed from predicted probabilities, in one place.

The command line's ``evaluate`` and the visual report both call
:func:`classification_metrics`, so the numbers they show are the same.
"""

import numpy as np

from softmaxreg.errors import DataError

#: Number of equal-width confidence bins used for calibration.
N_BINS = 15

# Rows of probabilities must sum to one within this (float32 rounding).
_SUM_TOLERANCE = 1e-3


def classification_metrics(y_true, proba, class_names=None, *, n_bins=N_BINS):
    """Loss, accuracy, confusion matrix, per-class scores and calibration.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer class labels in 0..n_classes-1 (integral floats are accepted).
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities; each row sums to one.
    class_names : sequence of str, optional
        One name per class; defaults to "0", "1", ...
    n_bins : int, default 15
        Equal-width confidence bins over [0, 1] for the calibration error.

    Returns
    -------
    dict
        JSON-serialisable: ``n_samples``, ``n_classes``, ``class_names``,
        ``loss`` (mean cross-entropy), ``accuracy``, ``confusion_matrix``
        (list of rows; row = true class, column = predicted class),
        ``per_class`` (list of dicts with ``class``, ``precision``,
        ``recall``, ``f1``, ``support``), ``macro_avg`` (unweighted means of
        precision, recall and f1), ``ece`` (expected calibration error) and
        ``calibration`` (per-bin ``bin_edges``, ``count``, ``accuracy`` and
        ``confidence``; None for an empty bin).

    Notes
    -----
    A class never predicted has precision 0, and one absent from ``y_true``
    has recall 0, as scikit-learn with ``zero_division=0``.
    """
    labels, proba = _validate(y_true, proba)
    n_samples, n_classes = proba.shape
    names = _class_names(class_names, n_classes)
    predicted = proba.argmax(axis=1)  # (n_samples,)

    # Cross-entropy of the true class; a probability that underflowed to zero
    # is raised to the smallest normal number of its dtype, so the loss stays
    # finite (at most about 87 for float32, 708 for float64).
    floor = np.finfo(proba.dtype).tiny
    true_proba = np.maximum(proba[np.arange(n_samples), labels], floor)
    loss = float(-np.mean(np.log(true_proba.astype(np.float64))))

    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    confidence = proba.max(axis=1).astype(np.float64)  # (n_samples,)
    correct = predicted == labels
    calibration = _calibration(confidence, correct, n_bins)

    return {
        "n_samples": int(n_samples),
        "n_classes": int(n_classes),
        "class_names": names,
        "loss": loss,
        "accuracy": float(correct.mean()),
        "confusion_matrix": confusion.tolist(),
        **_per_class(confusion, names),
        "ece": calibration.pop("ece"),
        "calibration": calibration,
    }


def _validate(y_true, proba):
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] < 2:
        raise DataError(
            "proba must have shape (n_samples, n_classes) with n_samples >= 1 and "
            f"n_classes >= 2; got shape {proba.shape}"
        )
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise DataError("proba must hold finite, non-negative probabilities")
    sums = proba.sum(axis=1, dtype=np.float64)  # (n_samples,)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _SUM_TOLERANCE:
        raise DataError(
            f"each row of proba must sum to 1; row {worst} sums to {sums[worst]:.6g}. "
            "Pass probabilities (predict_proba), not logits."
        )
    return _validate_labels(y_true, proba.shape), proba


def _validate_labels(y_true, shape):
    n_samples, n_classes = shape
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or y_true.shape[0] != n_samples:
        raise DataError(
            f"y_true must have shape (n_samples,) = ({n_samples},) to match proba; "
            f"got shape {y_true.shape}. For one-hot labels use y.argmax(axis=1)."
        )
    if y_true.dtype == bool or not np.issubdtype(y_true.dtype, np.number):
        raise DataError(f"y_true must hold integer labels; got dtype {y_true.dtype}")
    labels = np.asarray(y_true, dtype=np.float64)
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    bad |= (labels < 0) | (labels >= n_classes)
    if bad.any():
        values = np.unique(y_true[bad])[:5].tolist()
        raise DataError(
            f"y_true must hold integers in 0..{n_classes - 1}; {int(bad.sum())} "
            f"labels are not, e.g. {values}"
        )
    return labels.astype(np.int64)


def _class_names(class_names, n_classes):
    if class_names is None:
        return [str(k) for k in range(n_classes)]
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise DataError(
            f"class_names must have one name per class ({n_classes}); "
            f"got {len(names)}"
        )
    return names


def _per_class(confusion, names):
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)  # (n_classes,) column sums
    support = confusion.sum(axis=1)  # (n_classes,) row sums
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    rows = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
         "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    ]
    macro = {"precision": float(precision.mean()), "recall": float(recall.mean()),
             "f1": float(f1.mean())}
    return {"per_class": rows, "macro_avg": macro}


def _ratio(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0."""
    out = np.zeros(len(numerator))
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _calibration(confidence, correct, n_bins):
    """Expected calibration error over equal-width bins (lo, hi] of confidence.

    ECE = sum over bins of (bin count / n_samples) * |bin accuracy - bin mean
    confidence|: 0 when the confidence of each bin matches how often it is right.
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)  # (n_bins,)
    hits = np.bincount(index, weights=correct, minlength=n_bins)
    total_confidence = np.bincount(index, weights=confidence, minlength=n_bins)
    filled = count > 0
    accuracy = _ratio(hits, count)
    mean_confidence = _ratio(total_confidence, count)
    ece = float(np.sum(count * np.abs(accuracy - mean_confidence)) / count.sum())
    return {
        "ece": ece,
        "bin_edges": edges.tolist(),
        "count": count.tolist(),
        "accuracy": [float(a) if f else None for a, f in zip(accuracy, filled)],
        "confidence": [float(c) if f else None
                       for c, f in zip(mean_confidence, filled)],
    }
