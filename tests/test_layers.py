"""Layer behaviour: shapes, initialisation, dropout, argument checks."""

import math

import numpy as np
import pytest

from softmaxreg import layers


def bind_fresh(layer, input_shape, dtype, seed=0):
    layer.build(input_shape, dtype)
    params, grads = {}, {}
    for name, shape in layer.param_shapes():
        params[name] = np.zeros(shape, dtype)
        grads[name] = np.zeros(shape, dtype)
    layer.initialize(params, np.random.default_rng(seed))
    layer.bind(params, grads)
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_glorot_uniform_and_zero_bias(dtype):
    layer = layers.Dense(128)
    params = bind_fresh(layer, (784,), dtype)
    limit = math.sqrt(6 / (784 + 128))
    kernel = params["kernel"]
    assert kernel.dtype == dtype and kernel.shape == (784, 128)
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.95 * limit  # spans the range, not a narrower one
    assert kernel.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    np.testing.assert_array_equal(params["bias"], 0)
    assert layer.count_params() == 784 * 128 + 128


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_forward_matches_formula(dtype):
    layer = layers.Dense(3, activation="relu")
    params = bind_fresh(layer, (4,), dtype)
    params["bias"][...] = [0.5, -0.5, 0.0]
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(dtype)
    out = layer.forward(x)
    expected = np.maximum(x @ params["kernel"] + params["bias"], 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == dtype


def test_flatten_shapes():
    layer = layers.Flatten()
    assert layer.build((28, 28), np.float32) == (784,)
    assert layer.forward(np.zeros((3, 28, 28), np.float32)).shape == (3, 784)


def test_rescaling_forward():
    layer = layers.Rescaling(1 / 255)
    layer.build((2,), np.float32)
    out = layer.forward(np.array([[0, 255]], np.float32))
    np.testing.assert_allclose(out, [[0, 1]], rtol=1e-6)


def test_dropout_training_and_inference():
    layer = layers.Dropout(0.25)
    layer.build((1000,), np.float64)
    layer.rng = np.random.default_rng(0)
    x = np.ones((20, 1000))
    out = layer.forward(x, training=True)
    kept = out != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert layer.forward(x, training=False) is x


@pytest.mark.parametrize("make,message", [
    (lambda: layers.Dense(0), "units must be a positive int; got 0"),
    (lambda: layers.Dense(3.5), "units must be a positive int"),
    (lambda: layers.Dense(3, l2=-1), "l2 must be a finite number >= 0"),
    (lambda: layers.Dense(3, activation="swish"), "unknown name 'swish'"),
    (lambda: layers.Dropout(1.0), r"rate must be a number in \[0, 1\)"),
    (lambda: layers.Rescaling(float("nan")), "scale must be a finite number"),
    (lambda: layers.Flatten(input_shape=(0, 3)), "input_shape"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_dense_needs_flat_input():
    with pytest.raises(ValueError, match="put a Flatten"):
        layers.Dense(3).build((28, 28), np.float32)


def test_registry_refuses_unknown_names():
    assert layers.get("Dense") is layers.Dense
    with pytest.raises(ValueError, match="unknown layer 'subprocess.Popen'"):
        layers.get("subprocess.Popen")


@pytest.mark.parametrize("bad", [(28.0, 28), (float("inf"),), (28, True), (), "28"])
def test_input_shape_must_be_whole_positive_ints(bad):
    with pytest.raises(ValueError, match="input_shape: expected a tuple of positive ints"):
        layers.Flatten(input_shape=bad)
