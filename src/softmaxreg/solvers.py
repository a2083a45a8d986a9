"""Solvers for the softmax regression objective.

The objective, for weights ``coef`` of shape (n_classes, n_features), an
intercept of shape (n_classes,), sample weights ``s_i`` and labels ``y_i``::

    J(coef, intercept) = sum_i s_i * (-log p_i[y_i]) + ||coef||^2 / (2 C)

with ``p_i = softmax(coef @ x_i + intercept)``; the intercept is not penalised.
It is scikit-learn's multinomial ``LogisticRegression`` objective, term for term.

Two families minimise it:

- :func:`fit_lbfgs`: full batch, SciPy's L-BFGS-B driven by our fused
  loss-and-gradient (:class:`SoftmaxObjective`).
- :func:`fit_minibatch`: shuffled mini-batches with an explicit optimizer state
  (:class:`SGDState` or :class:`AdamState`).

Both work in one floating dtype (float32 or float64), the dtype of ``X``. Inputs
are trusted: the estimator validates them once, before calling in here.
"""

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.optimize

from softmaxreg.ops import log_softmax

# Rows per block of the full-batch evaluation. Each block's forward and
# backward products run back to back, so the backward one finds the block
# (2048 x 784 float32 pixels: 6.4 MB) still in cache instead of reading X
# from memory twice (MNIST, one thread, busy machine: median 70 ms per
# evaluation against 117 ms for the whole array at once).
BLOCK_ROWS = 2048

# The L-BFGS preconditioner (see SoftmaxObjective) models the data term's
# curvature as CURVATURE times the feature covariance: a typical p (1 - p) of
# a fit under way. MNIST needs about as many iterations anywhere from 0.003 to
# 0.1. It is estimated on at most PRECONDITION_ROWS evenly spaced rows (10 000
# on MNIST: 18 to 25 iterations instead of 13 to 14), and skipped above
# PRECONDITION_MAX_FEATURES features.
# NOTE: that bound is a guess, not measured: the eigendecomposition costs
# n_features^3 (about 0.1 s at 784 features) and must stay below the
# iterations it saves.
CURVATURE = 0.03
PRECONDITION_ROWS = 20_000
PRECONDITION_MAX_FEATURES = 2048

# Correction pairs L-BFGS keeps: SciPy's default. Once preconditioned, MNIST
# needs the same iterations with 5, 10, 20 or 30 (14 to reach scikit-learn's
# 100-iteration objective, 46 to 51 to meet tol=1e-4).
LBFGS_MEMORY = 10


def data_term(x, flat_targets, sample_weight, coef, intercept, logits):
    """Weighted cross-entropy of one block of rows and its gradient.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    flat_targets : ndarray of shape (n_samples,)
        ``row * n_classes + label``: the position of each true class in the
        flattened (n_samples, n_classes) logits.
    sample_weight : ndarray of shape (n_samples,) or None
        None means every weight is one (and skips a multiplication).
    coef : ndarray of shape (n_classes, n_features)
    intercept : ndarray of shape (n_classes,) or None
    logits : ndarray of shape (n_samples, n_classes)
        Work buffer, overwritten.

    Returns
    -------
    loss : float
        ``sum_i s_i * -log p_i[y_i]``, accumulated in float64.
    grad_coef : ndarray of shape (n_classes, n_features)
    grad_intercept : ndarray of shape (n_classes,)
    n_correct : float
        Weighted count of rows whose largest logit is the true class.
    """
    np.matmul(x, coef.T, out=logits)  # (n_samples, n_classes)
    if intercept is not None:
        logits += intercept
    n_correct = _weighted_hits(logits, flat_targets, sample_weight)

    # Stable: log_softmax subtracts each row's maximum before exponentiating.
    log_proba = log_softmax(logits, out=logits)
    picked = log_proba.ravel()[flat_targets].astype(np.float64)  # (n_samples,)
    if sample_weight is None:
        loss = -picked.sum()
    else:
        loss = -np.dot(sample_weight.astype(np.float64), picked)

    # d(-log p[y]) / d logit_k = p_k - [k == y]: the softmax Jacobian times
    # -1/p[y] collapses to "probabilities minus one-hot"; each row is then
    # scaled by its sample weight, and the chain rule through logits = x coef^T
    # gives residual^T x for coef and the column sums for the intercept.
    residual = np.exp(log_proba, out=log_proba)
    residual.ravel()[flat_targets] -= 1.0
    if sample_weight is not None:
        residual *= sample_weight[:, None]
    grad_coef = residual.T @ x  # (n_classes, n_features)
    grad_intercept = residual.sum(axis=0)  # (n_classes,)
    return float(loss), grad_coef, grad_intercept, n_correct


def _weighted_hits(logits, flat_targets, sample_weight):
    """Weighted number of rows whose arg-max logit is the true class."""
    n_classes = logits.shape[1]
    hits = logits.argmax(axis=1) == flat_targets % n_classes  # (n_samples,)
    if sample_weight is None:
        return float(hits.sum())
    return float(np.dot(hits, sample_weight))


class SoftmaxObjective:
    """The full objective divided by the total sample weight, for L-BFGS.

    Dividing by ``sum_i s_i`` turns the sum into a mean, so the gradient
    tolerance means the same thing for 100 samples and for 60 000; the optimum
    is unchanged. Buffers are allocated once and reused at every evaluation.

    L-BFGS walks in other coordinates than the model's; the objective is the
    same function of the model, only the path to its minimum changes:

    - Centring. With an intercept, the variables are ``coef`` and the
      intercept of the centred features, ``a = intercept + coef @ mean``: the
      logits ``(x - mean) @ coef.T + a`` are the model's own. Pixel data is
      all positive, and centring (implicit: ``x`` is never copied) removes the
      strong coupling between the intercept and every coefficient.
    - Preconditioning. ``coef = u @ T`` with ``T = (k cov + lam I)^(-1/2)``,
      ``cov`` the (centred) feature covariance, ``k`` = CURVATURE and ``lam``
      the penalty's curvature ``1 / (C sum_i s_i)``. The Hessian of the data
      term in ``coef`` is roughly ``k cov`` per class, so in ``u`` it is
      roughly the identity: correlated pixels no longer slow L-BFGS down
      (MNIST: sklearn's 100-iteration objective after 13 iterations instead of
      44). The centred intercept is scaled by ``k^(-1/2)`` likewise.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features), float32 or float64
    y_index : ndarray of shape (n_samples,), int
        Class index of each row, in ``range(n_classes)``.
    n_classes : int
    sample_weight : ndarray of shape (n_samples,) or None
    C : float
        Inverse regularisation strength.
    fit_intercept : bool
    precondition : bool, default=True
        Build the preconditioner (only L-BFGS needs it).

    Attributes
    ----------
    last_gradient_max : float
        Largest absolute entry of the scaled objective's gradient in the
        model's (centred) coordinates, at the last evaluation: the quantity
        the tolerance of :func:`fit_lbfgs` bounds.
    """

    def __init__(self, x, y_index, n_classes, sample_weight, C, fit_intercept,
                 precondition=True):
        n_samples, n_features = x.shape
        self.x = x
        self.n_classes = n_classes
        self.n_features = n_features
        self.y_index = y_index
        self.sample_weight = sample_weight
        self.C = C
        self.fit_intercept = fit_intercept
        self.weight_sum = n_samples if sample_weight is None else sample_weight.sum()
        self.weight_sum = float(self.weight_sum)
        self.last_gradient_max = np.inf
        self.center = None
        if fit_intercept:
            weights = None if sample_weight is None else sample_weight.astype(float)
            self.center = np.average(x, axis=0, weights=weights)  # (n_features,)
        self._transform = self._inverse = None
        self._intercept_scale = 1.0
        if precondition and n_features <= PRECONDITION_MAX_FEATURES:
            self._build_preconditioner()
        blocks = [
            (rows, _flat_targets(y_index[rows], n_classes),
             None if sample_weight is None else sample_weight[rows])
            for rows in _row_blocks(n_samples, BLOCK_ROWS)
        ]
        # One group of blocks per worker thread, each with its own logits buffer.
        n_workers = min(_usable_cpus(), len(blocks)) if _has_threadpoolctl() else 1
        buffer_shape = (min(n_samples, BLOCK_ROWS), n_classes)
        self._groups = [(blocks[k::n_workers], np.empty(buffer_shape, dtype=x.dtype))
                        for k in range(n_workers)]
        self._executor = None

    def _build_preconditioner(self):
        """Set ``T = (k cov + lam I)^(-1/2)``, its inverse and the intercept scale."""
        stride = max(1, self.x.shape[0] // PRECONDITION_ROWS)
        sample = self.x[::stride]  # a view: no copy unless weighted
        if self.sample_weight is None:
            share = np.full(sample.shape[0], 1.0 / sample.shape[0])
            rows = sample
        else:
            share = self.sample_weight[::stride].astype(np.float64)
            if share.sum() <= 0:  # every sampled row weighs zero: skip it
                return
            share /= share.sum()
            rows = sample * np.sqrt(share).astype(sample.dtype)[:, None]
        with _one_blas_thread():
            # Second moment sum_i share_i x_i x_i^T, (n_features, n_features);
            # minus the outer product of the sample mean it is the covariance.
            # NOTE: computed in the dtype of x. float32 features with a large
            # offset and a small spread lose their covariance to cancellation;
            # the preconditioner is then poorer (more iterations), the
            # objective and its minimum unchanged.
            moment = (rows.T @ rows).astype(np.float64)
            if rows is sample:
                moment *= share[0]
            if self.center is not None:
                mean = (share.astype(sample.dtype) @ sample).astype(np.float64)
                moment -= np.outer(mean, mean)
            eigenvalues, eigenvectors = np.linalg.eigh(moment)
        # Symmetric inverse square root through the eigenvectors; the floor
        # keeps T finite when C is huge and a feature is constant.
        curvature = CURVATURE * np.maximum(eigenvalues, 0.0) + 1.0 / (
            self.C * self.weight_sum)
        curvature = np.maximum(curvature, 1e-12 * curvature.max())
        self._transform = (eigenvectors * curvature**-0.5) @ eigenvectors.T
        self._inverse = (eigenvectors * curvature**0.5) @ eigenvectors.T
        self._intercept_scale = CURVATURE**-0.5

    @property
    def n_params(self):
        """Length of the flat parameter vector: coef, then intercept."""
        return self.n_classes * (self.n_features + int(self.fit_intercept))

    def pack(self, coef, intercept):
        """Solver variables (float64, flat) from the model's coef and intercept."""
        coef = np.asarray(coef, dtype=np.float64)
        flat = (coef if self._inverse is None else coef @ self._inverse).ravel()
        if not self.fit_intercept:
            return flat
        centred = intercept + coef @ self.center  # (n_classes,)
        return np.concatenate([flat, centred / self._intercept_scale])

    def unpack(self, params):
        """The model's coef and intercept (float64) from the solver variables."""
        coef, centred = self._model_coords(params)
        if centred is None:
            return coef, None
        return coef, centred - coef @ self.center  # (n_classes,)

    def _model_coords(self, params):
        """``coef`` and the centred intercept (or None) from the solver variables."""
        n_coef = self.n_classes * self.n_features
        coef = params[:n_coef].reshape(self.n_classes, self.n_features)
        if self._transform is not None:
            coef = coef @ self._transform  # (n_classes, n_features)
        if not self.fit_intercept:
            return coef, None
        return coef, params[n_coef:] * self._intercept_scale

    def total(self, params):
        """The unscaled objective J (scikit-learn's value), in float64."""
        with self.parallel():
            return self.loss_and_grad(params)[0] * self.weight_sum

    def loss_and_grad(self, params):
        """Scaled objective and its gradient in the solver's variables."""
        coef64, centred64 = self._model_coords(params)
        dtype = self.x.dtype
        coef = coef64.astype(dtype)
        intercept = None
        if centred64 is not None:
            intercept = (centred64 - coef64 @ self.center).astype(dtype)

        def one_group(group):
            return self._group_terms(group, coef, intercept)

        if self._executor is None:
            parts = [one_group(group) for group in self._groups]
        else:
            parts = list(self._executor.map(one_group, self._groups))
        loss = sum(part[0] for part in parts)
        grad_coef = sum(part[1] for part in parts)  # (n_classes, n_features)
        grad_intercept = sum(part[2] for part in parts)  # (n_classes,)

        # d/dcoef ||coef||^2 / (2C) = coef / C; the intercept is not penalised.
        # Centred variables: d/dcoef of (x - mean) @ coef.T subtracts
        # outer(grad_intercept, mean) from the raw gradient.
        penalty = np.sum(coef64 * coef64) / (2 * self.C)
        grad_coef = (grad_coef + coef64 / self.C) / self.weight_sum
        grad_intercept = grad_intercept / self.weight_sum
        largest = 0.0
        if self.fit_intercept:
            # (n_classes, n_features)
            grad_coef -= np.outer(grad_intercept, self.center)
            largest = float(np.abs(grad_intercept).max())
        self.last_gradient_max = max(largest, float(np.abs(grad_coef).max()))
        loss = (loss + penalty) / self.weight_sum
        return loss, self._solver_gradient(grad_coef, grad_intercept)

    def _solver_gradient(self, grad_coef, grad_intercept):
        """Chain rule from the model's (centred) coordinates to the solver's.

        ``coef = u @ T`` with ``T`` symmetric gives ``dJ/du = dJ/dcoef @ T``;
        the centred intercept is ``b * scale``, so ``dJ/db = dJ/da * scale``.
        """
        if self._transform is not None:
            grad_coef = grad_coef @ self._transform  # (n_classes, n_features)
        if not self.fit_intercept:
            return grad_coef.ravel()
        return np.concatenate([grad_coef.ravel(),
                               grad_intercept * self._intercept_scale])

    def _group_terms(self, group, coef, intercept):
        """Data term of one worker's blocks, summed in float64."""
        blocks, logits = group
        loss = 0.0
        grad_coef = np.zeros(coef.shape)
        grad_intercept = np.zeros(self.n_classes)
        for rows, flat_targets, weights in blocks:
            block = data_term(self.x[rows], flat_targets, weights, coef, intercept,
                              logits[: flat_targets.shape[0]])
            loss += block[0]
            grad_coef += block[1]
            grad_intercept += block[2]
        return loss, grad_coef, grad_intercept

    @contextlib.contextmanager
    def parallel(self):
        """Evaluate the groups on worker threads while the context is open.

        NOTE: NumPy releases the GIL inside BLAS and ufuncs, so one thread per
        core, each on its own row blocks with a one-thread BLAS, uses every
        core. OpenBLAS's own threads spin while they wait for each other and
        slow to a crawl when other processes share the cores (five to ten
        times slower per evaluation on a busy 2-core machine); plain Python
        threads simply sleep.
        """
        if len(self._groups) == 1:
            with _one_blas_thread():
                yield self
            return
        with _one_blas_thread(), ThreadPoolExecutor(len(self._groups)) as executor:
            self._executor = executor
            try:
                yield self
            finally:
                self._executor = None


def _usable_cpus():
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _has_threadpoolctl():
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def _row_blocks(n_samples, block_rows):
    """Consecutive row slices of at most ``block_rows`` rows."""
    return [slice(start, min(start + block_rows, n_samples))
            for start in range(0, n_samples, block_rows)]


def _flat_targets(y_index, n_classes):
    """Positions of the true classes in flattened (n_rows, n_classes) logits."""
    return np.arange(len(y_index)) * n_classes + y_index


def fit_lbfgs(objective, params0, max_iter, tol, verbose=0, first_iteration=0):
    """Minimise ``objective`` with SciPy's L-BFGS-B from ``params0``.

    Stops when no entry of the scaled objective's gradient in the model's
    coordinates (``objective.last_gradient_max``) exceeds ``tol``, when an
    iteration improves the objective by less than a relative ``64 * eps`` of
    float64, when the line search fails (float32 rounding noise), or after
    ``max_iter`` iterations.

    Parameters
    ----------
    objective : SoftmaxObjective
    params0 : ndarray of shape (n_params,)
    max_iter : int
    tol : float
    verbose : int
        1 or more prints one line per iteration.
    first_iteration : int
        Iterations run before this call, for the printed numbering.

    Returns
    -------
    params : ndarray of shape (n_params,)
    info : dict
        ``n_iter``; ``converged`` (the tolerance was met); ``hit_max_iter``;
        ``message`` (why it stopped); ``history`` ("iteration_loss", the
        scaled objective after each iteration, and "iteration_seconds").
    """
    history = {"iteration_loss": [], "iteration_seconds": []}
    clock = [time.perf_counter()]
    met = []  # the gradient at which the tolerance was met

    def record(intermediate_result):
        now = time.perf_counter()
        history["iteration_loss"].append(float(intermediate_result.fun))
        history["iteration_seconds"].append(now - clock[0])
        clock[0] = now
        if verbose:
            print(f"iteration {first_iteration + len(history['iteration_loss'])}: "
                  f"loss {intermediate_result.fun:.6g}")
        # L-BFGS-B evaluates the accepted point last, so the gradient the
        # objective kept is this iterate's.
        if objective.last_gradient_max <= tol:
            met.append(objective.last_gradient_max)
            raise StopIteration

    # NOTE: ftol is float64's even on float32 data. A float32-sized ftol stops
    # far too early (probabilities off by 1e-3); this one lets L-BFGS go on
    # until the gradient tolerance or float32 rounding noise stops it. SciPy's
    # own gradient test is off (gtol=0): it would bound the preconditioned
    # gradient, whose scale differs from the model's by up to 1000 times.
    ftol = 64 * np.finfo(np.float64).eps
    with objective.parallel():
        result = scipy.optimize.minimize(
            objective.loss_and_grad, params0, method="L-BFGS-B", jac=True,
            callback=record,
            options={"maxiter": max_iter, "gtol": 0.0, "ftol": ftol, "maxls": 50,
                     "maxcor": LBFGS_MEMORY},
        )
    message = str(result.message)
    if met:
        message = f"CONVERGENCE: largest gradient entry {met[0]:.3g} <= tol={tol}"
    info = {
        "n_iter": int(result.nit),
        "converged": bool(met),
        "hit_max_iter": int(result.status) == 1,
        "message": message,
        "history": history,
    }
    return result.x, info


class SGDState:
    """Plain stochastic gradient descent: ``param -= learning_rate * grad``."""

    def __init__(self, params, learning_rate):
        self.learning_rate = learning_rate

    def update(self, params, grads):
        """Apply one step in place to each array of ``params``."""
        for param, grad in zip(params, grads):
            param -= self.learning_rate * grad


class AdamState:
    """Adam (Kingma and Ba, 2015) with explicit first and second moments.

    Epsilon is added to the bias-corrected root second moment, as in the
    paper's Algorithm 1: the step is ``lr * m_hat / (sqrt(v_hat) + eps)``, so
    ``eps`` bounds the step where a gradient entry has stayed near zero.
    """

    def __init__(self, params, learning_rate, beta_1=0.9, beta_2=0.999, eps=1e-7):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.eps = eps
        self.step = 0
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        """Apply one step in place to each array of ``params``."""
        self.step += 1
        correction_1 = 1 - self.beta_1**self.step
        correction_2 = 1 - self.beta_2**self.step
        for param, grad, first, second in zip(params, grads, self.first, self.second):
            first *= self.beta_1
            first += (1 - self.beta_1) * grad
            second *= self.beta_2
            second += (1 - self.beta_2) * grad * grad
            denom = np.sqrt(second / correction_2) + self.eps
            param -= (self.learning_rate / correction_1) * first / denom


OPTIMIZERS = {"sgd": SGDState, "adam": AdamState}


def fit_minibatch(objective, coef, intercept, *, solver, learning_rate, batch_size,
                  n_epochs, rng, verbose=0):
    """Minimise ``objective`` by shuffled mini-batches, updating in place.

    Each step follows an unbiased estimate of the scaled objective's gradient:
    the batch's weighted data gradient divided by ``batch rows * mean weight``,
    plus the penalty gradient ``coef / (C * sum of weights)``.

    Parameters
    ----------
    objective : SoftmaxObjective
    coef : ndarray of shape (n_classes, n_features), working dtype
    intercept : ndarray of shape (n_classes,) or None
    solver : {"sgd", "adam"}
    rng : numpy.random.Generator
        Draws the shuffling order of each epoch.

    Returns
    -------
    history : dict
        Per-epoch "loss" (mean objective over the epoch's batches, taken before
        each batch's step), "accuracy" (weighted, on the same batches) and
        "epoch_seconds".
    """
    n_samples = objective.x.shape[0]
    params = [coef] if intercept is None else [coef, intercept]
    optimizer = OPTIMIZERS[solver](params, learning_rate)
    history = {"loss": [], "accuracy": [], "epoch_seconds": []}
    with _one_blas_thread():
        for epoch in range(n_epochs):
            start = time.perf_counter()
            order = rng.permutation(n_samples)
            loss_sum, correct = _run_epoch(objective, params, optimizer, order,
                                           batch_size)
            penalty = float(np.sum(coef.astype(np.float64) ** 2)) / (2 * objective.C)
            history["loss"].append((loss_sum + penalty) / objective.weight_sum)
            history["accuracy"].append(correct / objective.weight_sum)
            history["epoch_seconds"].append(time.perf_counter() - start)
            if verbose:
                print(f"epoch {epoch + 1}/{n_epochs}: loss {history['loss'][-1]:.6g}"
                      f" - accuracy {history['accuracy'][-1]:.4f}")
    return history


def _run_epoch(objective, params, optimizer, order, batch_size):
    """One pass over the rows in ``order``; returns the weighted loss and hits."""
    x, weights, n_classes = objective.x, objective.sample_weight, objective.n_classes
    targets = objective.y_index
    coef = params[0]
    intercept = params[1] if len(params) == 2 else None
    mean_weight = objective.weight_sum / x.shape[0]
    penalty_scale = 1.0 / (objective.C * objective.weight_sum)
    logits = np.empty((batch_size, n_classes), dtype=x.dtype)
    loss_sum = correct = 0.0
    for begin in range(0, len(order), batch_size):
        rows = order[begin:begin + batch_size]
        batch_weight = None if weights is None else weights[rows]
        flat = _flat_targets(targets[rows], n_classes)
        loss, grad_coef, grad_intercept, hits = data_term(
            x[rows], flat, batch_weight, coef, intercept, logits[: len(rows)],
        )
        loss_sum += loss
        correct += hits

        scale = 1.0 / (len(rows) * mean_weight)
        grad_coef *= scale
        grad_coef += penalty_scale * coef  # (n_classes, n_features)
        grads = [grad_coef]
        if intercept is not None:
            grads.append(grad_intercept * scale)
        optimizer.update(params, grads)
    return loss_sum, correct


def _one_blas_thread():
    """Limit BLAS to one thread while the small per-batch products run.

    NOTE: threading a (batch_size, n_features) @ (n_features, n_classes)
    product costs more in synchronisation than it saves, and on a busy machine
    several times more (3 MNIST epochs: 1.2 s on one thread, 8.6 s on two, on a
    shared 2-core machine). The limit needs threadpoolctl; without it the BLAS
    default is kept.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
