"""This project: ``softmaxreg.SoftmaxRegression`` with the exact or a fast solver.

``--solver lbfgs`` fits with ``C=1`` on the same [0, 1]-scaled pixels as
scikit-learn's LogisticRegression and reports the objective it reached,
``sum_i cross-entropy_i + ||W||^2 / (2 C)``, computed by the same function
for both. ``--solver adam`` / ``sgd`` is the fast mode: the estimator's own
defaults (epochs, batch size, learning rate) on float32 pixels, as a user after
speed would write it; ``--epochs N`` overrides the epochs when given.
"""

import time

import numpy as np

from common import (
    accuracy,
    blas_info,
    emit,
    latency_us,
    load_dataset,
    log_loss,
    softmax_objective,
    standard_parser,
    throughput,
    unavailable,
)
from project_data import load_project_data


def build(sr, args):
    """The estimator for ``args.solver``, at its defaults unless told otherwise."""
    if args.solver == "lbfgs":
        return sr.SoftmaxRegression(C=1.0, solver="lbfgs")
    return sr.SoftmaxRegression(C=1.0, solver=args.solver, max_iter=args.epochs,
                                random_state=args.seed)


def scaled(images, solver):
    """(n_samples, 28, 28) uint8 -> (n_samples, 784) in [0, 1].

    float64 for lbfgs (the same input as scikit-learn), float32 for the fast mode.
    """
    flat = images.reshape(len(images), -1)
    if solver == "lbfgs":
        return flat / 255.0
    return flat / np.float32(255.0)


def trajectory(model, fit_seconds, n_samples):
    """``[seconds since fit began, objective]`` after each iteration or epoch.

    The estimator's history times the iterations only; the setup before the
    first one (validation, centring) is charged to the first point, so the
    last point's time is the whole fit. The history's loss is the objective
    divided by the total sample weight (here ``n_samples``).
    """
    history = getattr(model, "history_", None) or {}
    # lbfgs records per-iteration values; the mini-batch solvers per-epoch ones
    losses = history.get("iteration_loss") or history.get("loss", [])
    seconds = history.get("iteration_seconds") or history.get("epoch_seconds", [])
    if not losses or len(losses) != len(seconds):
        return []
    elapsed = fit_seconds - sum(seconds)
    points = []
    for loss, step in zip(losses, seconds):
        elapsed += step
        points.append([elapsed, loss * n_samples])
    return points


def main():
    parser = standard_parser(__doc__)
    parser.add_argument("--solver", default="lbfgs")
    parser.set_defaults(epochs=None)  # the estimator's own default
    args = parser.parse_args()
    name = f"softmaxreg-{args.solver}"
    try:
        import softmaxreg as sr

        sr.SoftmaxRegression
    except (ImportError, AttributeError) as error:
        unavailable(name, f"softmaxreg.SoftmaxRegression not available: {error}")

    (x_train, y_train), (x_test, y_test), loader = load_project_data(
        sr, args, load_dataset)
    x, xt = scaled(x_train, args.solver), scaled(x_test, args.solver)

    model = build(sr, args)
    start = time.perf_counter()
    model.fit(x, y_train)
    fit_seconds = time.perf_counter() - start

    probabilities = model.predict_proba(xt)
    emit({
        "trajectory": trajectory(model, fit_seconds, len(x)),
        "name": name,
        "fit_seconds": fit_seconds,
        "n_iter": int(np.max(getattr(model, "n_iter_", -1))),
        "stop_reason": str(getattr(model, "stop_reason_", "")),
        "input_dtype": x.dtype.name,
        "objective": softmax_objective(model.coef_, model.intercept_, x, y_train,
                                       C=1.0),
        "test_accuracy": accuracy(probabilities, y_test),
        "test_log_loss": log_loss(probabilities, y_test),
        "throughput": throughput(model.predict_proba, xt),
        "latency": latency_us(model.predict_proba, xt[:1]),
        "data_loader": loader,
        "versions": {"softmaxreg": sr.__version__, "numpy": np.__version__},
        "blas": blas_info(),
    })


if __name__ == "__main__":
    main()
