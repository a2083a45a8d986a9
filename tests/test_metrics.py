"""Tests of classification_metrics against scikit-learn and hand-made cases."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from softmaxreg.errors import DataError
from softmaxreg.metrics import classification_metrics


def _random_case(dtype, n_samples=300, n_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_samples, n_classes))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)  # (n_samples, n_classes)
    y_true = rng.integers(0, n_classes, size=n_samples)
    # Make the predictions better than chance, so the scores are not trivial.
    hit = rng.random(n_samples) < 0.6
    proba[hit, y_true[hit]] += 2.0
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, proba.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scikit_learn(dtype):
    y_true, proba = _random_case(dtype)
    result = classification_metrics(y_true, proba)
    predicted = proba.argmax(axis=1)
    labels = np.arange(proba.shape[1])

    # float32 rows sum to 1 only within 1e-7; scikit-learn wants it tighter.
    reference = proba.astype(np.float64)
    reference /= reference.sum(axis=1, keepdims=True)
    assert result["loss"] == pytest.approx(
        skm.log_loss(y_true, reference, labels=labels), rel=1e-6)
    assert result["accuracy"] == skm.accuracy_score(y_true, predicted)
    np.testing.assert_array_equal(
        result["confusion_matrix"],
        skm.confusion_matrix(y_true, predicted, labels=labels))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0)
    for key, expected in (("precision", precision), ("recall", recall), ("f1", f1),
                          ("support", support)):
        got = [row[key] for row in result["per_class"]]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert result["macro_avg"]["f1"] == pytest.approx(
        skm.f1_score(y_true, predicted, average="macro", zero_division=0))


def test_never_predicted_class_has_zero_precision_as_scikit_learn():
    y_true = np.array([0, 1, 2, 2])
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0],
                      [0.1, 0.9, 0.0]])
    result = classification_metrics(y_true, proba)
    assert result["per_class"][2] == {"class": "2", "precision": 0.0, "recall": 0.0,
                                      "f1": 0.0, "support": 2}
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]


def test_loss_is_finite_when_a_true_probability_underflows():
    proba = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    result = classification_metrics([1, 0], proba)
    expected = (-np.log(np.finfo(np.float32).tiny) + np.log(2)) / 2
    assert result["loss"] == pytest.approx(expected)


def test_expected_calibration_error_by_hand():
    # Two bins, (0, 0.5] and (0.5, 1]; a confidence of exactly 0.5 is in the first.
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    y_true = [0, 1, 1, 1]  # right, wrong, right, wrong (ties go to class 0)
    result = classification_metrics(y_true, proba, n_bins=2)
    # low bin: one sample, accuracy 0, confidence 0.5 -> gap 0.5
    # high bin: three samples, accuracy 2/3, confidence (0.9 + 0.8 + 0.6) / 3
    high_gap = abs(2 / 3 - (0.9 + 0.8 + 0.6) / 3)
    assert result["ece"] == pytest.approx(0.25 * 0.5 + 0.75 * high_gap)
    assert result["calibration"]["count"] == [1, 3]
    assert result["calibration"]["accuracy"] == [0.0, pytest.approx(2 / 3)]
    assert result["calibration"]["bin_edges"] == [0.0, 0.5, 1.0]


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, size=200_000)
    correct = rng.random(confidence.size) < confidence
    proba = np.stack([confidence, 1 - confidence], axis=1)
    y_true = np.where(correct, 0, 1)
    result = classification_metrics(y_true, proba)
    assert result["ece"] < 0.01
    assert classification_metrics(1 - y_true, proba)["ece"] > 0.4


def test_result_is_json_serialisable_with_names():
    y_true, proba = _random_case(np.float64, n_classes=3)
    result = classification_metrics(y_true, proba, class_names=["cat", "dog", "<b>"])
    assert json.loads(json.dumps(result)) == result
    assert [row["class"] for row in result["per_class"]] == ["cat", "dog", "<b>"]


def test_integral_float_labels_equal_integer_labels():
    y_true, proba = _random_case(np.float64)
    assert classification_metrics(y_true.astype(float), proba) == \
        classification_metrics(y_true, proba)


@pytest.mark.parametrize("y_true, proba, message", [
    ([0, 1], np.ones((2,)), r"shape \(n_samples, n_classes\).*got shape \(2,\)"),
    ([0, 1], np.full((2, 2), 0.6), "row 0 sums to 1.2.*not logits"),
    ([0, 1], np.array([[np.nan, 1.0], [0.5, 0.5]]), "finite, non-negative"),
    ([0, 1, 1], np.full((2, 2), 0.5), r"y_true must have shape .*\(2,\).*\(3,\)"),
    (np.eye(2), np.full((2, 2), 0.5), "one-hot labels use y.argmax"),
    ([0, 2], np.full((2, 2), 0.5), r"integers in 0..1; 1 labels are not, e.g. \[2\]"),
    ([0, 0.5], np.full((2, 2), 0.5), r"e.g. \[0.5\]"),
    (["a", "b"], np.full((2, 2), 0.5), "integer labels; got dtype"),
])
def test_bad_input_is_named(y_true, proba, message):
    with pytest.raises(DataError, match=message):
        classification_metrics(y_true, proba)


def test_class_names_must_match_class_count():
    with pytest.raises(DataError, match=r"one name per class \(2\); got 3"):
        classification_metrics([0, 1], np.full((2, 2), 0.5), class_names="abc")
