"""SoftmaxRegression: multinomial logistic regression with the scikit-learn contract.

The model has no hidden layer: ``p = softmax(X @ coef_.T + intercept_)``. It
minimises scikit-learn's multinomial ``LogisticRegression`` objective, so
results compare one to one, and follows the estimator contract (``__init__``
only stores, ``fit`` returns ``self``, learned attributes end in ``_``) without
depending on scikit-learn at run time.
"""

import inspect
import numbers
import warnings

import numpy as np
import scipy.sparse

from softmaxreg import solvers
from softmaxreg.errors import DataError, NotFittedError, TrainingError
from softmaxreg.ops import log_softmax, softmax

_SOLVERS = ("lbfgs", "sgd", "adam")
_DEFAULT_MAX_ITER = {"lbfgs": 100, "sgd": 5, "adam": 5}
_DEFAULT_LEARNING_RATE = {"sgd": 0.1, "adam": 0.003}
_CONFIG_KEYS = {"class_name", "params", "classes", "n_features_in", "dtype", "loss",
                "metrics"}
_LOSS_NAME = "multinomial_log_loss"


class ConvergenceWarning(UserWarning):
    """The solver stopped at its iteration cap before meeting its tolerance."""


class DataConversionWarning(UserWarning):
    """The input had to be reshaped or converted to a form the model expects."""


class SoftmaxRegression:
    """Softmax (multinomial logistic) regression.

    Minimises, over ``coef_`` of shape (n_classes, n_features) and
    ``intercept_`` of shape (n_classes,)::

        sum_i s_i * (-log p_i[y_i]) + ||coef_||^2 / (2 C)

    where ``p_i = softmax(coef_ @ x_i + intercept_)`` and ``s_i`` is the weight
    of sample ``i``: the product of ``sample_weight[i]`` (default 1) and the
    class weight of ``y_i``. A sample weight of 2 counts exactly like the
    sample repeated twice; a weight of 0 like the sample left out. The
    intercept is not penalised.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength (> 0); smaller means more shrinkage.
    fit_intercept : bool, default=True
    solver : {"lbfgs", "sgd", "adam"}, default="lbfgs"
        "lbfgs" solves the exact objective on the full batch. "sgd" and "adam"
        take shuffled mini-batches for ``max_iter`` epochs: a fast, approximate
        fit.
    max_iter : int or None, default=None
        Iterations for "lbfgs" (None: 100); epochs for "sgd" and "adam"
        (None: 5).
    tol : float, default=1e-4
        "lbfgs" stops when no gradient entry of the objective divided by the
        total sample weight exceeds ``tol`` (gradient with respect to ``coef_``
        and the intercept of the centred features). Mini-batch solvers ignore
        it and always run ``max_iter`` epochs.
    class_weight : dict, "balanced" or None, default=None
        Weight of each class label, multiplied into the sample weights.
        "balanced" gives class ``k`` the weight
        ``total weight / (n_classes * total weight of class k)``.
    warm_start : bool, default=False
        Start from the previous fit's coefficients when their shape fits.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the shuffling of the mini-batch solvers ("lbfgs" is deterministic).
    verbose : int, default=0
        1 or more prints one line per iteration or epoch.
    batch_size : int, default=256
        Rows per mini-batch ("sgd" and "adam").
    learning_rate : float or None, default=None
        Step size of "sgd" (None: 0.1) and "adam" (None: 0.003).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted distinct labels seen in ``fit`` (integers, integral floats or
        strings).
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
        Zero when ``fit_intercept=False``; centred to sum to zero otherwise.
    n_iter_ : int
        Iterations (lbfgs) or epochs (sgd, adam) run.
    n_features_in_ : int
    objective_ : float
        The objective above at the solution (scikit-learn's scale).
    stop_reason_ : str
        Why the solver stopped.
    history_ : dict of lists
        "lbfgs": "iteration_loss" (the objective divided by the total sample
        weight after each L-BFGS iteration) and "iteration_seconds". An
        iteration is not an epoch, hence no "loss" key. "sgd" and "adam": per
        epoch "loss" (same scale), "accuracy" and "epoch_seconds".

    Notes
    -----
    ``coef_`` and probabilities come back in the dtype of ``X``: float32 for
    float32 input, float64 otherwise. float32 halves the memory traffic that
    bounds the speed; L-BFGS on float32 input stops at float32 rounding noise,
    probabilities agreeing with float64 to about 1e-4.

    "lbfgs" on float64 input of a million values or more first solves a
    float32 copy of ``X`` (three times faster per iteration; the copy takes
    half the memory of ``X`` while the fit runs), then, only if float32
    rounding stopped that run before ``tol`` was met, goes on in float64 from
    where it stopped, within the same ``max_iter``. At the default ``tol`` on
    MNIST the float32 run is all that is needed.

    "lbfgs" evaluates the objective on blocks of rows, one worker thread per
    usable CPU with a one-thread BLAS (when threadpoolctl is installed), and
    walks in centred and preconditioned coordinates (see
    :class:`softmaxreg.solvers.SoftmaxObjective`); the minimised objective is
    unchanged.

    With two classes the model still keeps one coefficient row per class.
    The penalty on both rows makes them opposite, so it equals scikit-learn's
    binary ``LogisticRegression`` with ``C`` doubled; ``decision_function``
    then returns the logit of the second class against the first, of shape
    (n_samples,), as scikit-learn does.
    """

    def __init__(self, C=1.0, fit_intercept=True, solver="lbfgs", max_iter=None,
                 tol=1e-4, class_weight=None, warm_start=False, random_state=None,
                 verbose=0, batch_size=256, learning_rate=None):
        self.C = C
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.batch_size = batch_size
        self.learning_rate = learning_rate

    # ------------------------------------------------------------------ params

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep=True):
        """Hyper-parameters by name, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyper-parameters by name; validated at the next ``fit``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}; "
                    f"valid parameters are: {valid}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = inspect.signature(type(self).__init__).parameters
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name].default
            if not (value is default or _safe_equal(value, default)):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Called only by scikit-learn's own tools, so it is importable here.
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(),
        )

    # --------------------------------------------------------------------- fit

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` of shape (n_samples, n_features) and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels: integers, integral floats or strings.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; see the class docstring for their meaning.

        Returns
        -------
        self
        """
        settings = self._validated_settings()
        x = _check_features(X, "X", min_samples=1)
        x = np.ascontiguousarray(x)
        labels = _check_labels(y, x.shape[0])
        classes, y_index = np.unique(labels, return_inverse=True)
        weights = _check_sample_weight(sample_weight, x.shape[0], x.dtype)
        weights = self._apply_class_weight(weights, classes, y_index, x.dtype)
        _check_class_count(classes, y_index, weights)

        problem = (y_index, len(classes), weights, float(self.C),
                   bool(self.fit_intercept))
        coef, intercept = self._initial_params(len(classes), x.shape[1], x.dtype)
        if settings["solver"] == "lbfgs":
            coef, intercept, info = self._run_lbfgs(x, problem, coef, intercept,
                                                    settings)
            objective = solvers.SoftmaxObjective(x, *problem, precondition=False)
        else:
            objective = solvers.SoftmaxObjective(x, *problem, precondition=False)
            coef, intercept, info = self._run_minibatch(objective, coef, intercept,
                                                        settings)

        if self.fit_intercept:
            # Adding one constant to every class's intercept leaves every
            # probability unchanged; centring picks the smallest-norm answer.
            intercept -= intercept.mean()
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_features_in_ = x.shape[1]
        self.n_iter_ = info["n_iter"]
        self.stop_reason_ = info["message"]
        self.history_ = info["history"]
        self.objective_ = objective.total(objective.pack(coef, intercept))
        return self

    def _validated_settings(self):
        """Check the hyper-parameters; return the resolved solver settings."""
        solver = self.solver
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {list(_SOLVERS)}; got {solver!r}.")
        _check_positive_number(self.C, "C")
        _check_non_negative_number(self.tol, "tol")
        max_iter = _DEFAULT_MAX_ITER[solver] if self.max_iter is None else self.max_iter
        _check_positive_int(max_iter, "max_iter")
        _check_positive_int(self.batch_size, "batch_size")
        learning_rate = self.learning_rate
        if learning_rate is None:
            learning_rate = _DEFAULT_LEARNING_RATE.get(solver)
        elif solver != "lbfgs":
            _check_positive_number(learning_rate, "learning_rate")
        for name in ("fit_intercept", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got "
                                f"{getattr(self, name)!r}.")
        return {"solver": solver, "max_iter": int(max_iter),
                "learning_rate": learning_rate}

    def _apply_class_weight(self, weights, classes, y_index, dtype):
        """Multiply the class weights into the sample weights (a new array)."""
        if self.class_weight is None:
            return weights
        base = np.ones(len(y_index), dtype=dtype) if weights is None else weights
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            per_class = np.bincount(y_index, weights=base, minlength=len(classes))
            table = np.zeros(len(classes))  # a class without weight stays at 0
            present = per_class > 0
            table[present] = base.sum() / (len(classes) * per_class[present])
        elif isinstance(self.class_weight, dict):
            table = _class_weight_table(self.class_weight, classes)
        else:
            raise ValueError("class_weight must be None, 'balanced' or a dict "
                             f"{{label: weight}}; got {self.class_weight!r}.")
        return base * table[y_index].astype(dtype)

    def _initial_params(self, n_classes, n_features, dtype):
        shape = (n_classes, n_features)
        if self.warm_start and getattr(self, "coef_", np.empty(0)).shape == shape:
            return self.coef_.astype(dtype), self.intercept_.astype(dtype)
        return np.zeros(shape, dtype=dtype), np.zeros(n_classes, dtype=dtype)

    def _run_lbfgs(self, x, problem, coef, intercept, settings):
        """L-BFGS in float32 first, then in float64 if ``x`` is float64 and
        float32 rounding stopped the first run short of ``tol``."""
        max_iter, tol = settings["max_iter"], float(self.tol)
        history = {"iteration_loss": [], "iteration_seconds": []}
        n_iter, info = 0, None
        for data in _lbfgs_phases(x):
            objective = solvers.SoftmaxObjective(data, *problem)
            params, info = solvers.fit_lbfgs(
                objective, objective.pack(coef, intercept), max_iter - n_iter, tol,
                self.verbose, first_iteration=n_iter,
            )
            coef, intercept = objective.unpack(params)
            n_iter += info["n_iter"]
            for key in history:
                history[key] += info["history"][key]
            del objective, data  # free the float32 copy before the next phase
            if info["converged"] or n_iter >= max_iter:
                break
        if n_iter >= max_iter and not info["converged"]:
            warnings.warn(self._convergence_message(x, n_iter, max_iter),
                          ConvergenceWarning, stacklevel=3)
        dtype = x.dtype
        if intercept is None:
            intercept = np.zeros(problem[1])
        info = {"n_iter": n_iter, "history": history, "message": info["message"]}
        return coef.astype(dtype), intercept.astype(dtype), info

    def _convergence_message(self, x, n_iter, max_iter):
        """The ConvergenceWarning's text, with a hint that fits the data."""
        largest = _largest_magnitude(x)
        if largest > 1:
            hint = (f"The largest |value| in X is {largest:.3g}. Scale the inputs "
                    "(for example divide pixel values by 255, or standardise each "
                    "feature), or raise max_iter.")
        else:
            hint = (f"X is already within [-1, 1]; raise max_iter (for example "
                    f"max_iter={2 * max_iter}) or loosen tol.")
        return (f"SoftmaxRegression(solver='lbfgs') stopped after {n_iter} "
                f"iterations (max_iter={max_iter}) before its gradient fell below "
                f"tol={self.tol}. {hint}")

    def _run_minibatch(self, objective, coef, intercept, settings):
        rng = np.random.default_rng(_seed_for(self.random_state))
        history = solvers.fit_minibatch(
            objective, coef, intercept if self.fit_intercept else None,
            solver=settings["solver"], learning_rate=settings["learning_rate"],
            batch_size=int(self.batch_size), n_epochs=settings["max_iter"],
            rng=rng, verbose=self.verbose,
        )
        if not np.all(np.isfinite(coef)):
            raise TrainingError(
                f"solver={settings['solver']!r} diverged (non-finite weights) with "
                f"learning_rate={settings['learning_rate']}; lower learning_rate or "
                "scale the inputs."
            )
        info = {"n_iter": settings["max_iter"], "history": history,
                "message": f"ran max_iter={settings['max_iter']} epochs"}
        return coef, intercept, info

    # ----------------------------------------------------------------- predict

    def decision_function(self, X):
        """Logits of shape (n_samples, n_classes); (n_samples,) with two classes.

        With two classes the single column is the second class's logit minus
        the first's: positive means ``classes_[1]``.
        """
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities of shape (n_samples, n_classes), rows summing to one."""
        return softmax(self._logits(X))

    def predict_log_proba(self, X):
        """Log-probabilities of shape (n_samples, n_classes), computed stably."""
        return log_softmax(self._logits(X))

    def predict(self, X):
        """Most probable label of each row, shape (n_samples,)."""
        best = self._logits(X).argmax(axis=1)  # (n_samples,)
        return self.classes_[best]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y``, weighted if given."""
        x = self._checked_input(X)
        labels = _check_labels(y, x.shape[0])
        predicted = self.predict(x)
        weights = _check_sample_weight(sample_weight, x.shape[0], np.float64)
        return float(np.average(predicted == labels, weights=weights))

    def _checked_input(self, X):
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call "
                "fit(X, y) first."
            )
        x = _check_features(X, "X", min_samples=1)
        if x.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        return x

    def _logits(self, X):
        x = self._checked_input(X)
        logits = x @ self.coef_.T  # (n_samples, n_classes)
        logits += self.intercept_
        return logits

    # -------------------------------------------------------------- model file

    def get_config(self):
        """JSON-serialisable description that, with the weights, rebuilds the model."""
        params = {}
        for name, value in self.get_params().items():
            if name == "random_state" and not _is_json_seed(value):
                value = None
            params[name] = value
        config = {"class_name": type(self).__name__, "params": params,
                  "loss": _LOSS_NAME, "metrics": ["accuracy"]}
        if hasattr(self, "coef_"):
            config["classes"] = self.classes_.tolist()
            config["n_features_in"] = int(self.n_features_in_)
            config["dtype"] = self.coef_.dtype.name
        return config

    def get_weights_dict(self):
        """Every learned array by name: "coef" and "intercept"."""
        self._checked_fitted_for("get_weights_dict")
        return {"coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_config(cls, config):
        """Build an unweighted model from ``get_config()``'s output, checked strictly.

        Raises
        ------
        ValueError
            Naming the offending field, for unknown keys, wrong types or values.
        """
        _check_config_shape(config, cls.__name__)
        model = cls(**_config_params(config["params"], cls._param_names()))
        if "classes" in config:
            model._config_classes = _config_classes(config["classes"])
            model._config_n_features = _config_int(config["n_features_in"],
                                                   "n_features_in")
            if config["dtype"] not in ("float32", "float64"):
                raise ValueError("config field 'dtype' must be 'float32' or 'float64'; "
                                 f"got {config['dtype']!r}.")
            model._config_dtype = np.dtype(config["dtype"])
        return model

    def set_weights_dict(self, weights):
        """Install "coef" and "intercept", checked against the config's shapes."""
        if not hasattr(self, "_config_classes"):
            raise ValueError("set_weights_dict needs a model built by from_config from "
                             "a fitted model's config (with 'classes').")
        n_classes = len(self._config_classes)
        expected = {"coef": (n_classes, self._config_n_features),
                    "intercept": (n_classes,)}
        _check_weight_names(weights, expected)
        for name, shape in expected.items():
            array = np.asarray(weights[name])
            if array.shape != shape:
                raise ValueError(f"weight {name!r} must have shape {shape}; "
                                 f"found {array.shape}.")
            if array.dtype != self._config_dtype:
                raise ValueError(f"weight {name!r} must be {self._config_dtype.name}; "
                                 f"found {array.dtype.name}.")
        self.coef_ = np.array(weights["coef"])
        self.intercept_ = np.array(weights["intercept"])
        self.classes_ = self._config_classes
        self.n_features_in_ = self._config_n_features
        return self

    def _checked_fitted_for(self, method):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"{method} needs a fitted {type(self).__name__}; "
                                 "call fit(X, y) first.")


# ------------------------------------------------------------------ lbfgs helpers


# float64 inputs with at least this many values are solved in float32 first.
# Smaller ones fit in the CPU caches, where float32 buys little, and keep
# exact float64 paths (equal objectives give equal fits to the last digits).
FLOAT32_FIRST_MIN_VALUES = 1_000_000


def _lbfgs_phases(x):
    """The data of each L-BFGS run: ``x`` itself, or a float32 copy of a
    large float64 ``x`` first and ``x`` after it.

    NOTE: large float64 input is solved in float32 first. Each evaluation
    reads all of ``x``, and memory traffic bounds its speed: float32 halves
    it and runs about three times faster (MNIST: 45 ms against 155 ms per
    evaluation on two cores). Rounding noise stops that run at a gradient of
    roughly 1e-6 to 1e-5, well below the default tol; a tighter tol carries on
    in float64 from there. The copy costs 4 bytes per value while it lives.
    """
    if x.dtype == np.float32 or x.size < FLOAT32_FIRST_MIN_VALUES:
        yield x
        return
    yield x.astype(np.float32)
    yield x


_SCAN_ROWS = 4096  # rows per block when scanning X, so no full-size temporary


def _largest_magnitude(x):
    """max |x| over all entries, scanned in row blocks."""
    return max(float(np.abs(x[start:start + _SCAN_ROWS]).max())
               for start in range(0, x.shape[0], _SCAN_ROWS))


def _first_non_finite(x):
    """(row, column) of the first NaN or infinite entry of ``x``, or None."""
    for start in range(0, x.shape[0], _SCAN_ROWS):
        block = x[start:start + _SCAN_ROWS]
        if not np.isfinite(block).all():
            row, col = np.argwhere(~np.isfinite(block))[0]
            return start + row, col
    return None


# ------------------------------------------------------------- validation helpers


def _check_features(X, name, min_samples):
    """Return ``X`` as a finite 2-D float32 or float64 array, or raise."""
    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} is a sparse matrix, but sparse input is not "
                        f"supported; pass {name}.toarray() instead.")
    x = np.asarray(X)
    if np.iscomplexobj(x):
        raise DataError(f"Complex data not supported in {name} (dtype {x.dtype}); "
                        "pass real values.")
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    if x.ndim != 2:
        raise DataError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got "
            f"{x.ndim}-D with shape {x.shape}. {_reshape_hint(x, name)}"
        )
    if x.shape[0] < min_samples:
        raise DataError(f"Found array with {x.shape[0]} sample(s) (shape={x.shape}) "
                        f"while a minimum of {min_samples} is required.")
    if x.shape[1] < 1:
        raise DataError(f"Found array with 0 feature(s) (shape={x.shape}) while a "
                        "minimum of 1 is required.")
    bad = _first_non_finite(x)
    if bad is not None:
        row, col = bad
        raise DataError(
            f"{name} contains NaN or infinite values (first at row {row}, column "
            f"{col}: {x[row, col]}); remove or impute them before fitting."
        )
    return x


def _reshape_hint(x, name):
    """How to turn an array of the wrong rank into (n_samples, n_features)."""
    if x.ndim > 2:
        n_features = int(np.prod(x.shape[1:]))
        return (f"Flatten each sample into one row: {name}.reshape(len({name}), -1) "
                f"gives shape ({x.shape[0]}, {n_features}).")
    return (f"Reshape your data: {name}.reshape(-1, 1) for a single feature or "
            f"{name}.reshape(1, -1) for a single sample.")


def _check_labels(y, n_samples):
    """Return ``y`` as a 1-D array of discrete labels of length ``n_samples``."""
    if y is None:
        raise DataError("SoftmaxRegression requires y to be passed, but the target "
                        "y is None.")
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; "
                      "reshaped with y.ravel().", DataConversionWarning, stacklevel=3)
        labels = labels.ravel()
    if labels.ndim != 1:
        raise DataError(f"y must be 1-D of shape (n_samples,); got shape "
                        f"{labels.shape}.")
    if labels.shape[0] != n_samples:
        raise DataError(f"X has {n_samples} samples but y has {labels.shape[0]}; "
                        "they must match.")
    if labels.dtype.kind == "O":
        return _object_labels(labels)
    if labels.dtype.kind == "f":
        _check_float_labels(labels)
    elif labels.dtype.kind not in "iubUS":
        raise DataError(f"Unknown label type: y has dtype {labels.dtype}; use "
                        "integers, integral floats or strings.")
    return labels


def _object_labels(labels):
    """Labels of an object array: all strings, or all real numbers."""
    if all(isinstance(value, str) for value in labels):
        return labels
    if all(isinstance(value, numbers.Real) and not isinstance(value, bool)
           for value in labels):
        numeric = labels.astype(np.float64)
        _check_float_labels(numeric)
        return numeric
    kinds = sorted({type(value).__name__ for value in labels})
    raise DataError(f"Unknown label type: y mixes {kinds}; use only integers, "
                    "integral floats or only strings.")


def _check_float_labels(labels):
    """Reject NaN, infinite and non-integral float labels, naming one."""
    bad = ~np.isfinite(labels)
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(f"y contains NaN or infinite labels (first at index {index}: "
                        f"{labels[index]}); every sample needs a class label.")
    fractional = labels != np.round(labels)
    if fractional.any():
        index = int(np.argmax(fractional))
        raise DataError(
            f"Unknown label type: y holds non-integral float labels (first at index "
            f"{index}: {labels[index]}); classification needs discrete labels. For "
            "regression targets use a regression model."
        )


def _check_sample_weight(sample_weight, n_samples, dtype):
    """Return validated non-negative weights of shape (n_samples,), or None."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim == 0:
        weights = np.full(n_samples, float(weights))
    if weights.shape != (n_samples,):
        raise DataError(f"sample_weight must have shape ({n_samples},); got "
                        f"{weights.shape}.")
    if not np.isfinite(weights).all() or (weights < 0).any():
        index = int(np.argmax(~np.isfinite(weights) | (weights < 0)))
        raise DataError(f"sample_weight must be finite and non-negative; got "
                        f"{weights[index]} at index {index}.")
    if weights.sum() <= 0:
        raise DataError("sample_weight sums to zero: at least one sample needs a "
                        "positive weight.")
    return weights.astype(dtype)


def _check_class_count(classes, y_index, weights):
    """Require at least two classes carrying positive weight."""
    if weights is None:
        present = classes
    else:
        mass = np.bincount(y_index, weights=weights, minlength=len(classes))
        present = classes[mass > 0]
    if len(present) < 2:
        raise DataError(
            f"SoftmaxRegression needs samples of at least 2 classes with positive "
            f"weight; got {len(present)} class ({present.tolist()}). Check y and "
            "sample_weight."
        )


def _class_weight_table(class_weight, classes):
    """Per-class weights, in ``classes`` order, from a {label: weight} dict."""
    known = set(classes.tolist())
    unknown = [label for label in class_weight if label not in known]
    if unknown:
        raise DataError(f"class_weight names labels {unknown} that are not in y; "
                        f"the classes are {classes.tolist()}.")
    return np.array([float(class_weight.get(label, 1.0)) for label in classes.tolist()])


def _check_positive_number(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")


def _check_non_negative_number(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")


def _check_positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")


def _seed_for(random_state):
    """A seed or Generator for ``numpy.random.default_rng``."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    if _is_json_seed(random_state):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(2**31)
    raise ValueError("random_state must be None, an int or a numpy.random.Generator; "
                     f"got {random_state!r}.")


def _safe_equal(value, default):
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def _is_json_seed(value):
    return value is None or (isinstance(value, numbers.Integral)
                             and not isinstance(value, bool))


# ----------------------------------------------------------- config validation


def _check_config_shape(config, class_name):
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict; got {type(config).__name__}.")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"config has unknown field(s) {unknown}; expected only "
                         f"{sorted(_CONFIG_KEYS)}.")
    if config.get("class_name") != class_name:
        raise ValueError(f"config field 'class_name' must be {class_name!r}; got "
                         f"{config.get('class_name')!r}.")
    if config.get("loss", _LOSS_NAME) != _LOSS_NAME:
        raise ValueError(f"config field 'loss' must be {_LOSS_NAME!r}; got "
                         f"{config['loss']!r}.")
    if config.get("metrics", ["accuracy"]) != ["accuracy"]:
        raise ValueError("config field 'metrics' must be ['accuracy']; got "
                         f"{config['metrics']!r}.")
    if not isinstance(config.get("params"), dict):
        raise ValueError("config field 'params' must be a dict of hyper-parameters.")
    fitted_keys = {"classes", "n_features_in", "dtype"}
    present = fitted_keys & set(config)
    if present and present != fitted_keys:
        raise ValueError(f"config fields {sorted(fitted_keys)} go together; got only "
                         f"{sorted(present)}.")


_PARAM_TYPES = {
    "C": (int, float), "fit_intercept": (bool,), "solver": (str,),
    "max_iter": (int, type(None)), "tol": (int, float),
    "class_weight": (str, dict, type(None)), "warm_start": (bool,),
    "random_state": (int, type(None)), "verbose": (int,), "batch_size": (int,),
    "learning_rate": (int, float, type(None)),
}


def _config_params(params, names):
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"config field 'params' has unknown hyper-parameter(s) "
                         f"{unknown}; expected a subset of {names}.")
    for name, value in params.items():
        allowed = _PARAM_TYPES[name]
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            raise ValueError(f"config field 'params.{name}' has type "
                             f"{type(value).__name__}; expected "
                             f"{' or '.join(t.__name__ for t in allowed)}.")
    if params.get("solver", "lbfgs") not in _SOLVERS:
        raise ValueError(f"config field 'params.solver' must be one of "
                         f"{list(_SOLVERS)}; got {params['solver']!r}.")
    return params


def _config_classes(classes):
    if not isinstance(classes, list) or len(classes) < 2:
        raise ValueError("config field 'classes' must be a list of at least 2 labels.")
    kinds = {type(label) for label in classes}
    if not (kinds <= {int} or kinds <= {int, float} or kinds <= {str}):
        raise ValueError("config field 'classes' must hold only numbers or only "
                         f"strings; got types {sorted(k.__name__ for k in kinds)}.")
    return np.asarray(classes)


def _config_int(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config field {name!r} must be an integer >= 1; got "
                         f"{value!r}.")
    return value


def _check_weight_names(weights, expected):
    if not isinstance(weights, dict):
        raise ValueError(f"weights must be a dict of arrays; got "
                         f"{type(weights).__name__}.")
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ValueError(f"weights must be exactly {sorted(expected)}; missing "
                         f"{missing}, unexpected {extra}.")


__all__ = ["SoftmaxRegression", "ConvergenceWarning", "DataConversionWarning"]
