"""SoftmaxRegression: objective, gradient, solvers, validation and model files."""

import json
import warnings

import numpy as np
import pytest

from softmaxreg import estimator as estimator_module
from softmaxreg import solvers
from softmaxreg.errors import DataError, NotFittedError
from softmaxreg.estimator import ConvergenceWarning, SoftmaxRegression

linear_model = pytest.importorskip("sklearn.linear_model")

DTYPES = [np.float32, np.float64]
# float32 data: L-BFGS stops at float32 rounding noise, so the solution is
# correct to about 1e-4 rather than 1e-10.
PROBA_TOL = {np.float32: 5e-4, np.float64: 1e-4}


def make_data(n_samples=120, n_features=5, n_classes=3, seed=0, spread=2.0):
    """Blobs with overlap, so that the optimum is finite and not trivial."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    x = centres[y] + rng.normal(size=(n_samples, n_features))  # (n_samples, n_features)
    return x, y


def tight(**params):
    return SoftmaxRegression(tol=1e-10, max_iter=2000, **params)


def sklearn_objective(model, x, y, sample_weight=None, class_weight=None):
    """scikit-learn's multinomial objective at a fitted model's coefficients."""
    log_proba = model.predict_log_proba(x)
    index = np.searchsorted(model.classes_, y)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
    losses = -log_proba[np.arange(len(y)), index]  # (n_samples,)
    return float(weights @ losses + np.sum(model.coef_**2) / (2 * model.C))


# ------------------------------------------------------------ against sklearn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_probabilities_match_sklearn(dtype, fit_intercept):
    x, y = make_data()
    weights = np.random.default_rng(1).uniform(0.2, 3.0, size=len(y))
    ours = tight(C=0.3, fit_intercept=fit_intercept).fit(x.astype(dtype), y, weights)
    ref = linear_model.LogisticRegression(
        C=0.3, fit_intercept=fit_intercept, tol=1e-10, max_iter=2000
    ).fit(x, y, sample_weight=weights)

    proba = ours.predict_proba(x.astype(dtype))
    assert proba.dtype == dtype
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba, ref.predict_proba(x), atol=PROBA_TOL[dtype])
    np.testing.assert_array_equal(ours.predict(x.astype(dtype)), ref.predict(x))


def test_objective_value_matches_sklearn():
    x, y = make_data(seed=3)
    ours = tight(C=2.0).fit(x, y)
    ref = linear_model.LogisticRegression(C=2.0, tol=1e-10, max_iter=2000).fit(x, y)
    ref_value = sklearn_objective(ref, x, y)
    assert ours.objective_ == pytest.approx(ref_value, rel=1e-8)
    assert ours.objective_ == pytest.approx(sklearn_objective(ours, x, y), rel=1e-10)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 2: 0.5}])
def test_class_weight_matches_sklearn(class_weight):
    x, y = make_data(seed=4)
    y[:80] = 1  # unbalanced
    ours = tight(class_weight=class_weight).fit(x, y)
    ref = linear_model.LogisticRegression(
        class_weight=class_weight, tol=1e-10, max_iter=2000
    ).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-4)


def test_binary_equals_sklearn_with_doubled_C():
    x, y = make_data(n_classes=2, seed=5)
    ours = tight(C=0.5).fit(x, y)
    ref = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=2000).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-4)
    np.testing.assert_allclose(
        ours.decision_function(x), ref.decision_function(x), rtol=1e-4, atol=1e-4
    )
    assert ours.coef_.shape == (2, x.shape[1])
    np.testing.assert_allclose(ours.coef_[0], -ours.coef_[1], atol=1e-6)


def test_integer_sample_weight_equals_repetition():
    x, y = make_data(n_samples=40, seed=6)
    counts = np.random.default_rng(0).integers(0, 4, size=len(y))
    weighted = tight().fit(x, y, sample_weight=counts)
    repeated = tight().fit(np.repeat(x, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x),
                               atol=1e-6)


# ------------------------------------------------------------------ gradient


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_gradient_matches_central_differences(fit_intercept, weighted):
    x, y = make_data(n_samples=15, n_features=4, n_classes=3, seed=7)
    weights = np.random.default_rng(2).uniform(0.5, 2, 15) if weighted else None
    objective = solvers.SoftmaxObjective(x, y, 3, weights, 0.7, fit_intercept)
    params = np.random.default_rng(3).normal(size=objective.n_params)

    _, grad = objective.loss_and_grad(params)
    step = 1e-6
    numeric = np.empty_like(params)
    for k in range(len(params)):
        shift = np.zeros_like(params)
        shift[k] = step
        plus = objective.loss_and_grad(params + shift)[0]
        minus = objective.loss_and_grad(params - shift)[0]
        numeric[k] = (plus - minus) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("weighted", [True, False])
def test_blocked_threaded_evaluation_equals_one_block(monkeypatch, weighted):
    x, y = make_data(n_samples=100, seed=19)
    weights = np.random.default_rng(5).uniform(0.5, 2, 100) if weighted else None
    whole = solvers.SoftmaxObjective(x, y, 3, weights, 0.5, True)
    monkeypatch.setattr(solvers, "BLOCK_ROWS", 16)
    monkeypatch.setattr(solvers, "_usable_cpus", lambda: 2)
    blocked = solvers.SoftmaxObjective(x, y, 3, weights, 0.5, True)
    params = np.random.default_rng(6).normal(size=whole.n_params)

    with blocked.parallel():
        assert blocked._executor is not None or not solvers._has_threadpoolctl()
        loss, grad = blocked.loss_and_grad(params)
    expected_loss, expected_grad = whole.loss_and_grad(params)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_centred_coordinates_leave_the_model_unchanged():
    x, y = make_data(n_samples=20, seed=8)
    objective = solvers.SoftmaxObjective(x, y, 3, None, 1.0, True)
    rng = np.random.default_rng(4)
    coef, intercept = rng.normal(size=(3, 5)), rng.normal(size=3)
    back_coef, back_intercept = objective.unpack(objective.pack(coef, intercept))
    np.testing.assert_allclose(back_coef, coef)
    np.testing.assert_allclose(back_intercept, intercept)


def correlated_data(n_samples=300, seed=21):
    """Strongly correlated, uncentred features: hard for plain L-BFGS."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n_samples)
    base = rng.normal(size=(n_samples, 2)) + y[:, None]
    mix = np.array([[1.0, 0.98, 0.95, 1.0, 0.9], [0.0, 0.2, 0.3, 0.05, 0.4]])
    x = 5.0 + base @ mix + 0.01 * rng.normal(size=(n_samples, 5))
    return x, y


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_preconditioning_changes_the_path_not_the_optimum(fit_intercept):
    x, y = correlated_data()
    results = {}
    for precondition in (False, True):
        objective = solvers.SoftmaxObjective(x, y, 3, None, 10.0, fit_intercept,
                                             precondition=precondition)
        params0 = objective.pack(np.zeros((3, 5)), np.zeros(3))
        params, info = solvers.fit_lbfgs(objective, params0, 5000, 1e-8)
        assert info["converged"] or not precondition
        results[precondition] = (objective.unpack(params), info["n_iter"])
    (plain_coef, plain_intercept), plain_iter = results[False]
    (coef, intercept), n_iter = results[True]
    np.testing.assert_allclose(coef, plain_coef, rtol=1e-5, atol=1e-6)
    if fit_intercept:
        np.testing.assert_allclose(intercept, plain_intercept, rtol=1e-5, atol=1e-6)
    assert n_iter < plain_iter / 3


def test_tolerance_bounds_the_gradient_in_model_coordinates():
    x, y = correlated_data(seed=22)
    model = SoftmaxRegression(tol=1e-3, C=10.0).fit(x, y)
    assert "CONVERGENCE" in model.stop_reason_
    plain = solvers.SoftmaxObjective(x, y, 3, None, 10.0, True, precondition=False)
    plain.loss_and_grad(plain.pack(model.coef_, model.intercept_))
    assert plain.last_gradient_max <= 1e-3 * 1.01


def test_float64_input_is_solved_in_float32_then_finished_in_float64(monkeypatch):
    x, y = make_data(seed=23)
    assert [p.dtype for p in estimator_module._lbfgs_phases(x)] == [np.float64]
    monkeypatch.setattr(estimator_module, "FLOAT32_FIRST_MIN_VALUES", x.size)
    phases = list(estimator_module._lbfgs_phases(x))
    assert [phase.dtype for phase in phases] == [np.float32, np.float64]
    assert phases[1] is x
    assert [p.dtype for p in estimator_module._lbfgs_phases(x.astype(np.float32))
            ] == [np.float32]
    # A tolerance float32 cannot meet (its rounding stops a float32-only fit
    # of this data at a gradient of about 6e-6): the float64 run goes on.
    model = tight(C=0.5).fit(x, y)
    assert model.coef_.dtype == np.float64
    assert "CONVERGENCE" in model.stop_reason_
    plain = solvers.SoftmaxObjective(x, y, 3, None, 0.5, True, precondition=False)
    plain.loss_and_grad(plain.pack(model.coef_, model.intercept_))
    assert plain.last_gradient_max <= 1e-7


# ------------------------------------------------------------ mini-batch solvers


@pytest.mark.parametrize("solver, learning_rate", [("sgd", None), ("adam", 0.02)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_minibatch_solvers_learn_and_are_seeded(solver, learning_rate, dtype):
    x, y = make_data(n_samples=400, seed=9, spread=0.7)
    x = x.astype(dtype)
    params = dict(solver=solver, learning_rate=learning_rate, max_iter=20,
                  batch_size=32, random_state=0)
    first = SoftmaxRegression(**params).fit(x, y)
    second = SoftmaxRegression(**params).fit(x, y)
    exact = tight().fit(x, y)

    assert first.coef_.dtype == dtype
    np.testing.assert_array_equal(first.coef_, second.coef_)
    assert first.score(x, y) >= exact.score(x, y) - 0.03
    assert first.objective_ <= 1.05 * exact.objective_
    assert len(first.history_["loss"]) == 20
    assert first.history_["loss"][-1] < first.history_["loss"][0]
    assert set(first.history_) == {"loss", "accuracy", "epoch_seconds"}


def test_minibatch_seed_changes_the_result():
    x, y = make_data(n_samples=200, seed=10)
    a = SoftmaxRegression(solver="sgd", max_iter=2, random_state=0, batch_size=16)
    b = SoftmaxRegression(solver="sgd", max_iter=2, random_state=1, batch_size=16)
    assert not np.allclose(a.fit(x, y).coef_, b.fit(x, y).coef_)


def test_adam_step_matches_the_formula():
    param = np.array([1.0, -2.0])
    grad = np.array([0.5, 0.25])
    state = solvers.AdamState([param], learning_rate=0.1, eps=1e-7)
    state.update([param], [grad])
    # step 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    expected = np.array([1.0, -2.0]) - 0.1 * grad / (np.abs(grad) + 1e-7)
    np.testing.assert_allclose(param, expected, rtol=1e-12)

    state.update([param], [grad])
    m = 0.9 * 0.1 * grad + 0.1 * grad
    v = 0.999 * 0.001 * grad**2 + 0.001 * grad**2
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    expected = expected - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-7)
    np.testing.assert_allclose(param, expected, rtol=1e-12)


def test_sgd_step_matches_the_formula():
    param = np.array([1.0, 2.0])
    state = solvers.SGDState([param], learning_rate=0.5)
    state.update([param], [np.array([2.0, -4.0])])
    np.testing.assert_array_equal(param, [0.0, 4.0])


# ----------------------------------------------------------- lbfgs behaviour


def test_convergence_warning_names_solver_iterations_and_hint():
    x, y = make_data(seed=11)
    with pytest.warns(ConvergenceWarning, match=r"solver='lbfgs'.*after 2 iterations"
                      r" \(max_iter=2\).*Scale the inputs.*raise max_iter"):
        model = SoftmaxRegression(max_iter=2).fit(x, y)
    assert model.n_iter_ == 2
    assert "ITERATIONS" in model.stop_reason_


def test_convergence_hint_for_inputs_already_in_unit_range():
    x, y = make_data(seed=11)
    x = (x - x.min()) / (x.max() - x.min())  # all within [0, 1]
    with pytest.warns(ConvergenceWarning, match=r"after 2 iterations.*already "
                      r"within \[-1, 1\]; raise max_iter \(for example max_iter=4\)"
                      ) as record:
        SoftmaxRegression(max_iter=2).fit(x, y)
    assert "255" not in str(record[0].message)


def test_convergence_hint_names_the_largest_value_of_unscaled_inputs():
    x, y = make_data(seed=11)
    x = x * 100.0
    with pytest.warns(ConvergenceWarning, match=r"largest \|value\| in X is "
                      r"617\. Scale the inputs \(for example divide "
                      r"pixel values by 255"):
        SoftmaxRegression(max_iter=2).fit(x, y)


def test_lbfgs_history_and_stop_reason():
    x, y = make_data(seed=12)
    model = SoftmaxRegression().fit(x, y)
    # Iterations are not epochs: the per-iteration objective has its own key,
    # so that no reader plots it as a per-epoch loss.
    assert set(model.history_) == {"iteration_loss", "iteration_seconds"}
    losses = model.history_["iteration_loss"]
    assert model.n_iter_ == len(losses) == len(model.history_["iteration_seconds"])
    assert np.all(np.diff(losses) <= 1e-12)
    assert "CONVERGENCE" in model.stop_reason_
    assert losses[-1] * len(y) == pytest.approx(model.objective_, rel=1e-6)


def test_warm_start_continues_from_previous_fit():
    x, y = make_data(seed=13)
    with pytest.warns(ConvergenceWarning):
        model = SoftmaxRegression(max_iter=3, warm_start=True).fit(x, y)
    first = model.objective_
    with pytest.warns(ConvergenceWarning):
        model.fit(x, y)
    with pytest.warns(ConvergenceWarning):
        cold = SoftmaxRegression(max_iter=3).fit(x, y)
    assert model.objective_ < first
    assert model.objective_ < cold.objective_


# --------------------------------------------------------------------- labels


@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "emu"]),
    np.array([3.0, 7.0, -1.0]),
    np.array([10, 20, 30]),
])
def test_any_discrete_labels(labels):
    x, y = make_data(seed=14)
    model = SoftmaxRegression().fit(x, labels[y])
    np.testing.assert_array_equal(model.classes_, np.sort(labels))
    assert set(model.predict(x)) <= set(labels.tolist())
    assert model.score(x, labels[y]) > 0.8


# ------------------------------------------------------------ degenerate input


def test_single_class_is_refused_with_the_class():
    x, _ = make_data(n_samples=10)
    with pytest.raises(DataError, match=r"at least 2 classes.*got 1 class \(\[4\]\)"):
        SoftmaxRegression().fit(x, np.full(10, 4))


def test_weights_leaving_one_class_are_refused():
    x, y = make_data(n_samples=30, n_classes=2)
    with pytest.raises(DataError, match=r"got 1 class"):
        SoftmaxRegression().fit(x, y, sample_weight=(y == 1).astype(float))


def test_non_integral_float_labels_are_refused():
    x, _ = make_data(n_samples=4)
    with pytest.raises(DataError, match=r"non-integral float labels \(first at index"
                                        r" 2: 0\.5\)"):
        SoftmaxRegression().fit(x, [0.0, 1.0, 0.5, 1.0])


def test_nan_labels_are_refused():
    x, _ = make_data(n_samples=4)
    with pytest.raises(DataError, match=r"NaN or infinite labels \(first at index 1: "
                                        r"nan\)"):
        SoftmaxRegression().fit(x, [0.0, np.nan, 1.0, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_with_position(bad):
    x, y = make_data(n_samples=10)
    x[3, 2] = bad
    with pytest.raises(DataError, match=rf"NaN or infinite values \(first at row 3, "
                                        rf"column 2: {bad}\)"):
        SoftmaxRegression().fit(x, y)


def test_wrong_feature_count_at_predict():
    x, y = make_data(n_features=5)
    model = SoftmaxRegression().fit(x, y)
    for method in (model.predict, model.predict_proba, model.decision_function):
        with pytest.raises(DataError, match=r"X has 4 features, but SoftmaxRegression "
                                            r"is expecting 5 features"):
            method(x[:, :4])


def test_one_dimensional_x_gets_a_reshape_hint():
    with pytest.raises(DataError, match=r"2-D array.*got 1-D.*reshape\(-1, 1\)"):
        SoftmaxRegression().fit(np.arange(4.0), [0, 1, 0, 1])


def test_image_stack_gets_a_flattening_hint():
    images = np.zeros((6, 28, 28))
    with pytest.raises(DataError, match=r"got 3-D with shape \(6, 28, 28\).*"
                       r"X\.reshape\(len\(X\), -1\) gives shape \(6, 784\)"):
        SoftmaxRegression().fit(images, [0, 1, 0, 1, 0, 1])


def test_non_finite_feature_found_beyond_the_first_scanned_block():
    x = np.ones((5000, 2))
    x[4500, 1] = np.nan
    with pytest.raises(DataError, match=r"first at row 4500, column 1"):
        SoftmaxRegression().fit(x, np.arange(5000) % 2)


def test_unfitted_model_raises_not_fitted():
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit"):
        SoftmaxRegression().predict(np.ones((2, 3)))


@pytest.mark.parametrize("params, match", [
    ({"C": 0}, r"C must be a finite number > 0; got 0"),
    ({"solver": "newton"}, r"solver must be one of .*got 'newton'"),
    ({"max_iter": 0}, r"max_iter must be an integer >= 1; got 0"),
    ({"solver": "adam", "learning_rate": -1.0}, r"learning_rate must be .* got -1.0"),
    ({"class_weight": "uniform"}, r"class_weight must be None, 'balanced' or a dict"),
    ({"class_weight": {9: 1.0}}, r"class_weight names labels \[9\] that are not in y"),
])
def test_bad_hyper_parameters_are_refused_at_fit(params, match):
    x, y = make_data(n_samples=20)
    model = SoftmaxRegression(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        model.fit(x, y)


def test_bad_sample_weights_are_refused():
    x, y = make_data(n_samples=6)
    with pytest.raises(DataError, match=r"non-negative; got -1.0 at index 2"):
        SoftmaxRegression().fit(x, y, sample_weight=[1, 1, -1, 1, 1, 1])
    with pytest.raises(DataError, match=r"sample_weight must have shape \(6,\)"):
        SoftmaxRegression().fit(x, y, sample_weight=np.ones(5))


# -------------------------------------------------------- params and repr


def test_get_set_params_and_repr():
    model = SoftmaxRegression(C=0.5, solver="adam")
    assert model.get_params()["C"] == 0.5
    assert repr(model) == "SoftmaxRegression(C=0.5, solver='adam')"
    assert model.set_params(max_iter=7) is model and model.max_iter == 7
    with pytest.raises(ValueError, match=r"Invalid parameter 'alpha'"):
        model.set_params(alpha=1)


# ----------------------------------------------------------------- model file


@pytest.mark.parametrize("dtype", DTYPES)
def test_config_and_weights_rebuild_the_model(dtype):
    x, y = make_data(seed=15)
    labels = np.array(["a", "b", "c"])[y]
    model = SoftmaxRegression(C=0.8, random_state=3).fit(x.astype(dtype), labels)
    config = json.loads(json.dumps(model.get_config()))
    weights = {k: v.copy() for k, v in model.get_weights_dict().items()}

    rebuilt = SoftmaxRegression.from_config(config)
    rebuilt.set_weights_dict(weights)
    assert rebuilt.get_params() == model.get_params()
    np.testing.assert_array_equal(rebuilt.predict_proba(x.astype(dtype)),
                                  model.predict_proba(x.astype(dtype)))
    np.testing.assert_array_equal(rebuilt.predict(x), model.predict(x))


def test_saved_file_round_trip(tmp_path):
    saving = pytest.importorskip("softmaxreg.saving")
    x, y = make_data(seed=16)
    model = SoftmaxRegression().fit(x.astype(np.float32), y)
    path = saving.save_model(model, tmp_path / "model.safetensors")
    loaded = saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(x.astype(np.float32)),
                                  model.predict_proba(x.astype(np.float32)))
    assert loaded.metadata_["config"]["classes"] == [0, 1, 2]


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(extra=1), r"unknown field\(s\) \['extra'\]"),
    (lambda c: c.update(class_name="Sequential"), r"'class_name' must be"),
    (lambda c: c["params"].update(C="1"), r"'params.C' has type str"),
    (lambda c: c["params"].update(fit_intercept=1), r"'params.fit_intercept' has type"),
    (lambda c: c["params"].update(kernel="rbf"), r"unknown hyper-parameter\(s\)"),
    (lambda c: c["params"].update(solver="os.system"), r"'params.solver' must be one"),
    (lambda c: c.update(classes=[0]), r"'classes' must be a list of at least 2"),
    (lambda c: c.update(dtype="float16"), r"'dtype' must be 'float32' or 'float64'"),
    (lambda c: c.pop("dtype"), r"go together"),
])
def test_from_config_is_strict(edit, match):
    x, y = make_data(seed=17)
    config = SoftmaxRegression().fit(x, y).get_config()
    edit(config)
    with pytest.raises(ValueError, match=match):
        SoftmaxRegression.from_config(config)


@pytest.mark.parametrize("edit, match", [
    (lambda w: w.pop("intercept"), r"missing \['intercept'\]"),
    (lambda w: w.update(bias=np.zeros(3)), r"unexpected \['bias'\]"),
    (lambda w: w.update(coef=np.zeros((3, 4))),
     r"'coef' must have shape \(3, 5\); found \(3, 4\)"),
    (lambda w: w.update(intercept=np.zeros(3, np.float32)), r"'intercept' must be "
                                                            r"float64; found float32"),
])
def test_set_weights_dict_is_strict(edit, match):
    x, y = make_data(seed=18)
    model = SoftmaxRegression().fit(x, y)
    weights = dict(model.get_weights_dict())
    edit(weights)
    rebuilt = SoftmaxRegression.from_config(model.get_config())
    with pytest.raises(ValueError, match=match):
        rebuilt.set_weights_dict(weights)


@pytest.mark.parametrize("solver, word", [("lbfgs", "iteration"), ("adam", "epoch")])
def test_verbose_prints_one_line_per_step_and_quiet_by_default(capsys, solver, word):
    x, y = make_data(seed=20)
    params = dict(solver=solver, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SoftmaxRegression(verbose=0, **params).fit(x, y)
        assert capsys.readouterr().out == ""
        model = SoftmaxRegression(verbose=1, **params).fit(x, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == model.n_iter_
    assert all(line.startswith(word) and "loss" in line for line in lines)
