"""One step of each optimizer against the formula by hand; each learns a toy problem."""

import math

import numpy as np
import pytest

from softmaxreg import optimizers


def _one_step(opt, params, grads):
    opt.build(params.size, params.dtype)
    out = params.copy()
    opt.step(out, grads)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_first_and_second_step_match_hand_formula(dtype):
    p0 = np.array([0.5, -1.0, 2.0], dtype=dtype)
    g1 = np.array([0.1, -0.2, 0.3], dtype=dtype)
    g2 = np.array([-0.3, 0.1, 0.05], dtype=dtype)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    opt = optimizers.Adam(lr, b1, b2, eps)
    opt.build(3, dtype)
    p = p0.copy()
    opt.step(p, g1)
    opt.step(p, g2)

    # by hand, Keras's convention: eps added to the uncorrected sqrt(v)
    p_ref, m, v = p0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate((g1, g2), 1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p_ref = p_ref - lr_t * m / (np.sqrt(v) + eps)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, p_ref, rtol=rtol)
    assert opt.iterations == 2


def test_adamw_step_decays_then_adam():
    p0 = np.array([1.0, -2.0])
    g = np.array([0.5, 0.5])
    opt = optimizers.AdamW(learning_rate=0.1, weight_decay=0.01)
    got = _one_step(opt, p0, g)
    m, v = 0.1 * g, 0.001 * g * g
    lr_t = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    expected = p0 * (1 - 0.1 * 0.01) - lr_t * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_sgd_plain_step():
    got = _one_step(optimizers.SGD(0.1), np.array([1.0, 2.0]), np.array([0.5, -1.0]))
    np.testing.assert_allclose(got, [0.95, 2.1])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_two_steps(nesterov):
    lr, mu = 0.1, 0.9
    opt = optimizers.SGD(lr, momentum=mu, nesterov=nesterov)
    p = np.array([1.0, -1.0])
    opt.build(2, p.dtype)
    grads = [np.array([0.5, 0.2]), np.array([-0.1, 0.4])]
    ref, vel = p.copy(), np.zeros(2)
    for g in grads:
        opt.step(p, g)
        vel = mu * vel - lr * g
        ref = ref + (mu * vel - lr * g if nesterov else vel)
    np.testing.assert_allclose(p, ref, rtol=1e-12)


def test_step_into_second_buffer_leaves_input_untouched():
    opt = optimizers.Adam()
    p = np.ones(4)
    out = np.empty(4)
    opt.build(4, p.dtype)
    opt.step(p, np.full(4, 0.5), out=out)
    np.testing.assert_array_equal(p, 1.0)
    assert (out < 1.0).all()


@pytest.mark.parametrize("opt", [
    optimizers.SGD(0.1), optimizers.SGD(0.05, momentum=0.9),
    optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    optimizers.Adam(0.1), optimizers.AdamW(0.1, weight_decay=0.001),
], ids=repr)
def test_each_optimizer_minimises_a_quadratic(opt):
    # f(p) = 0.5 * sum(scale * (p - target)^2), an ill-conditioned bowl
    target = np.array([1.0, -2.0, 3.0])
    scale = np.array([1.0, 3.0, 0.5])
    p = np.zeros(3)
    opt.build(3, p.dtype)
    for _ in range(500):
        opt.step(p, scale * (p - target))
    np.testing.assert_allclose(p, target, atol=0.05)


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 5))
    a, b = optimizers.Adam(), optimizers.Adam()
    pa = np.zeros(5)
    a.build(5, pa.dtype)
    for g in grads[:3]:
        a.step(pa, g)
    b.build(5, pa.dtype)
    b.set_state(a.get_state())
    pb = pa.copy()
    for g in grads[3:]:
        a.step(pa, g)
        b.step(pb, g)
    np.testing.assert_array_equal(pa, pb)
    assert b.iterations == 6


def test_set_state_rejects_wrong_names_and_shapes():
    opt = optimizers.Adam()
    opt.build(3, np.float32)
    state = opt.get_state()
    with pytest.raises(ValueError, match="expected arrays"):
        opt.set_state({"m": state["m"]})
    state["v"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"'v': expected shape \(3,\); found \(4,\)"):
        opt.set_state(state)


def test_bad_hyper_parameters_and_names():
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        optimizers.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizers.get("rmsprop")
    with pytest.raises(ValueError, match="unknown optimizer 'builtins.eval'"):
        optimizers.from_config({"class_name": "builtins.eval"})


def test_config_round_trip():
    opt = optimizers.SGD(0.2, momentum=0.5, nesterov=True)
    again = optimizers.from_config(opt.get_config())
    assert again.get_config() == opt.get_config()


@pytest.mark.parametrize("opt", [optimizers.Adam(), optimizers.SGD(0.1, momentum=0.9)],
                         ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decaying_state_never_becomes_subnormal(opt, dtype):
    # a gradient seen once then zero for ever: the state decays geometrically
    p = np.zeros(3, dtype)
    opt.build(3, dtype)
    opt.step(p, np.array([1.0, 1e-3, 0.0], dtype))
    tiny = np.finfo(dtype).tiny
    zero = np.zeros(3, dtype)
    for _ in range(8000 if dtype == np.float64 else 1200):
        opt.step(p, zero)
        for array in opt._state.values():
            assert not ((array != 0) & (np.abs(array) < tiny)).any()
    assert np.isfinite(p).all()
