"""Cross-entropy values, stability on huge logits, and the public loss API."""

import math

import numpy as np
import pytest

from softmaxreg import losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_give_exact_finite_loss(dtype):
    logits = np.array([[1000, 0, 0], [0, 0, 0]], dtype=dtype)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_gradient(np.array([0, 1]), logits)
    assert value == pytest.approx(math.log(3) / 2, rel=1e-6)
    assert np.isfinite(grad).all()
    assert grad.dtype == dtype


def test_one_float32_sample_with_logit_120():
    logits = np.array([[0, 120, 0]], dtype=np.float32)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_gradient(np.array([0]), logits)
    assert value == pytest.approx(120.0, rel=1e-6)
    np.testing.assert_allclose(grad, [[-1, 1, 0]], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_of_1e4_give_finite_loss_and_gradient(dtype):
    logits = np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    loss = losses.CategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_gradient(np.array([[0.0, 1.0, 0.0]]), logits)
    assert value == pytest.approx(2e4, rel=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0]], atol=1e-6)


def test_sparse_and_onehot_agree_and_match_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(probs[np.arange(6), labels])
    sparse = losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    onehot = losses.categorical_crossentropy(np.eye(4)[labels], probs)
    np.testing.assert_allclose(sparse, expected, rtol=1e-12)
    np.testing.assert_allclose(onehot, expected, rtol=1e-12)


def test_zero_probability_is_clipped_not_infinite():
    loss = losses.SparseCategoricalCrossentropy()
    value = loss(np.array([1]), np.array([[1.0, 0.0]]))
    assert value == pytest.approx(-math.log(losses.EPSILON))


def test_get_resolves_names_functions_and_objects():
    assert isinstance(losses.get("sparse_categorical_crossentropy"),
                      losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get(losses.categorical_crossentropy),
                      losses.CategoricalCrossentropy)
    obj = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        losses.get("mse")


def test_from_config_is_strict():
    loss = losses.from_config({"name": "categorical_crossentropy", "from_logits": True})
    assert loss.from_logits is True
    with pytest.raises(ValueError, match="unknown loss"):
        losses.from_config({"name": "os.system", "from_logits": False})
    with pytest.raises(ValueError, match="expected keys"):
        losses.from_config({"name": "categorical_crossentropy"})
    with pytest.raises(TypeError, match="from_logits must be a bool"):
        losses.SparseCategoricalCrossentropy(from_logits="yes")
