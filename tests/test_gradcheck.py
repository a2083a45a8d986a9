"""Central finite-difference checks, in float64, of every backward pass."""

import numpy as np
import pytest

from softmaxreg import activations, layers, losses
from softmaxreg.models import Sequential

STEP = 1e-6


def numeric_grad(f, x):
    """Central differences of the scalar function f at x (perturbed in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + STEP
        up = f()
        x[i] = saved - STEP
        down = f()
        x[i] = saved
        grad[i] = (up - down) / (2 * STEP)
    return grad


@pytest.mark.parametrize("name", activations.names())
def test_activation_backward_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    act = activations.get(name)
    z = rng.normal(size=(4, 5))
    weights = rng.normal(size=(4, 5))  # scalar loss sum(weights * a)

    def loss():
        return float(np.sum(weights * act.forward(z.copy())))

    a = act.forward(z.copy())
    analytic = act.backward(weights.copy(), z, a)
    np.testing.assert_allclose(analytic, numeric_grad(loss, z), rtol=1e-6, atol=1e-8)


def _layer_check(layer, x, training=False, reset=None):
    """Check a built layer's input and parameter gradients."""
    rng = np.random.default_rng(1)
    flat = np.zeros(layer.count_params())
    grads = np.zeros_like(flat)
    views, gviews, offset = {}, {}, 0
    for pname, shape in layer.param_shapes():
        size = int(np.prod(shape))
        views[pname] = flat[offset:offset + size].reshape(shape)
        gviews[pname] = grads[offset:offset + size].reshape(shape)
        offset += size
    layer.initialize(views, rng)
    if "bias" in views:
        views["bias"][...] = rng.normal(size=views["bias"].shape)
    layer.bind(views, gviews)
    out_shape = (x.shape[0],) + layer.output_shape
    weights = rng.normal(size=out_shape)

    def loss():
        if reset:
            reset()
        return float(np.sum(weights * layer.forward(x, training=training))) + \
            layer.regularization_loss()

    loss()
    grad_x = layer.backward(weights.copy(), need_input_grad=True)
    np.testing.assert_allclose(grad_x, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for pname, view in views.items():
        loss()
        layer.backward(weights.copy(), need_input_grad=False)
        np.testing.assert_allclose(gviews[pname], numeric_grad(loss, view),
                                   rtol=1e-6, atol=1e-8, err_msg=pname)


@pytest.mark.parametrize("activation", activations.names())
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_dense_gradients(activation, l2):
    layer = layers.Dense(3, activation=activation, l2=l2)
    layer.build((5,), np.float64)
    x = np.random.default_rng(2).normal(size=(4, 5))
    _layer_check(layer, x)


def test_flatten_and_rescaling_gradients():
    x = np.random.default_rng(3).normal(size=(2, 3, 4))
    flatten = layers.Flatten()
    flatten.build((3, 4), np.float64)
    _layer_check(flatten, x)
    rescale = layers.Rescaling(0.5, offset=-1.0)
    rescale.build((3, 4), np.float64)
    _layer_check(rescale, x)


def test_dropout_gradient_with_fixed_mask():
    layer = layers.Dropout(0.4)
    layer.build((6,), np.float64)

    def reset():
        layer.rng = np.random.default_rng(7)

    reset()
    x = np.random.default_rng(4).normal(size=(5, 6))
    _layer_check(layer, x, training=True, reset=reset)


@pytest.mark.parametrize("loss_cls", [losses.SparseCategoricalCrossentropy,
                                      losses.CategoricalCrossentropy])
@pytest.mark.parametrize("from_logits", [True, False])
def test_loss_gradients(loss_cls, from_logits):
    rng = np.random.default_rng(5)
    labels = np.array([0, 2, 1, 2])
    target = labels if loss_cls.sparse else np.eye(3)[labels]
    if from_logits:
        y_pred = rng.normal(size=(4, 3)) * 3
    else:
        y_pred = rng.uniform(0.05, 0.95, size=(4, 3))
    loss = loss_cls(from_logits=from_logits)
    _, analytic = loss.value_and_gradient(target, y_pred)
    numeric = numeric_grad(lambda: loss(target, y_pred), y_pred)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("head,loss", [
    ("softmax", "sparse_categorical_crossentropy"),
    ("softmax", "categorical_crossentropy"),
    ("linear", losses.SparseCategoricalCrossentropy(from_logits=True)),
    ("sigmoid", "sparse_categorical_crossentropy"),
])
@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid"])
def test_whole_model_gradients(head, loss, hidden):
    rng = np.random.default_rng(6)
    model = Sequential([layers.Rescaling(0.5), layers.Flatten(),
                        layers.Dense(4, activation=hidden, l2=0.01),
                        layers.Dense(3, activation=head)], dtype="float64")
    model.compile(optimizer="sgd", loss=loss)
    model.build((2, 3), seed=0)
    x = rng.normal(size=(5, 2, 3))
    labels = np.array([0, 1, 2, 1, 0])
    y = np.eye(3)[labels] if model.loss.name == "categorical_crossentropy" else labels
    _, analytic = model.loss_and_gradients(x, y)
    live = {f"layers.{i}.{p}": v for i, views in model._views[model._cur].items()
            for p, v in views.items()}
    for name, view in live.items():
        numeric = numeric_grad(lambda: model.loss_and_gradients(x, y)[0], view)
        np.testing.assert_allclose(analytic[name], numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=name)
