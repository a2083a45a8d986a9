"""Peers from scikit-learn: LogisticRegression (lbfgs) and MLPClassifier.

``--model logreg``: ``LogisticRegression(C=1, solver="lbfgs", max_iter=100)``
on [0, 1]-scaled pixels; also reports the objective it reached,
``sum_i cross-entropy_i + ||W||^2 / (2 C)`` (scikit-learn minimises C times it).

``--model mlp``: ``MLPClassifier((128,), solver="adam", batch_size=32,
max_iter=epochs, learning_rate_init=1e-3)``; its fit time is split evenly over
the epochs since scikit-learn does not time them one by one.
"""

import time
import warnings

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


def flat_scaled(images):
    """(n_samples, 28, 28) uint8 -> (n_samples, 784) float64 in [0, 1]."""
    return images.reshape(len(images), -1) / 255.0


def run_logreg(args, x, y, xt, yt):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=100)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected
        model.fit(x, y)
    fit_seconds = time.perf_counter() - start
    probabilities = model.predict_proba(xt)
    return {
        "name": "sklearn-logreg",
        "fit_seconds": fit_seconds,
        "n_iter": int(np.max(model.n_iter_)),
        "objective": softmax_objective(model.coef_, model.intercept_, x, y, C=1.0),
        "test_accuracy": accuracy(probabilities, yt),
        "test_log_loss": log_loss(probabilities, yt),
        "throughput": throughput(model.predict_proba, xt),
        "latency": latency_us(model.predict_proba, xt[:1]),
    }


def run_mlp(args, x, y, xt, yt):
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(128,), solver="adam",
                          batch_size=args.batch_size, max_iter=args.epochs,
                          learning_rate_init=1e-3, random_state=args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected
        model.fit(x, y)
    fit_seconds = time.perf_counter() - start
    probabilities = model.predict_proba(xt)
    return {
        "name": "sklearn-mlp",
        "fit_seconds": fit_seconds,
        "epoch_seconds": [fit_seconds / model.n_iter_] * model.n_iter_,
        "epoch_seconds_estimated": True,
        "test_accuracy": accuracy(probabilities, yt),
        "test_log_loss": log_loss(probabilities, yt),
        "throughput": throughput(model.predict_proba, xt),
        "latency": latency_us(model.predict_proba, xt[:1]),
    }


def main():
    parser = standard_parser(__doc__)
    parser.add_argument("--model", choices=["logreg", "mlp"], required=True)
    args = parser.parse_args()
    name = f"sklearn-{args.model}"
    try:
        import sklearn
    except ImportError as error:
        unavailable(name, f"cannot import scikit-learn: {error}")

    (x_train, y_train), (x_test, y_test) = load_dataset(args.data_dir, args.dataset)
    x, xt = flat_scaled(x_train), flat_scaled(x_test)
    runner = run_logreg if args.model == "logreg" else run_mlp
    result = runner(args, x, y_train, xt, y_test)
    result["versions"] = {"scikit-learn": sklearn.__version__, "numpy": np.__version__}
    result["blas"] = blas_info()
    emit(result)


if __name__ == "__main__":
    main()
