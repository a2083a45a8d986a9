"""This project: the tutorial's MLP job through ``softmaxreg.Sequential``.

The same code as the Keras peer, line for line, with ``softmaxreg`` in place
of ``keras``; then inference throughput on the test images and the latency
of predicting one image.
"""

import time

from common import (
    accuracy,
    blas_info,
    emit,
    latency_us,
    load_dataset,
    log_loss,
    standard_parser,
    throughput,
    unavailable,
)
from project_data import load_project_data

NAME = "softmaxreg-mlp"


def main():
    args = standard_parser(__doc__).parse_args()
    try:
        import softmaxreg as sr

        Sequential, layers = sr.Sequential, sr.layers
    except (ImportError, AttributeError) as error:
        unavailable(NAME, f"softmaxreg.Sequential not available: {error}")

    (x_train, y_train), (x_test, y_test), loader = load_project_data(
        sr, args, load_dataset)

    x_train, x_test = x_train / 255.0, x_test / 255.0
    model = Sequential([
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs,
                        batch_size=args.batch_size, verbose=0, seed=args.seed)
    fit_seconds = time.perf_counter() - start

    probabilities = model.predict(x_test)
    emit({
        "name": NAME,
        "fit_seconds": fit_seconds,
        "epoch_seconds": list(history.history.get("epoch_seconds", [])),
        "test_accuracy": accuracy(probabilities, y_test),
        "test_log_loss": log_loss(probabilities, y_test),
        "throughput": throughput(model.predict, x_test),
        "latency": latency_us(model.predict, x_test[:1]),
        "data_loader": loader,
        "versions": {"softmaxreg": sr.__version__,
                     "numpy": __import__("numpy").__version__},
        "blas": blas_info(),
    })


if __name__ == "__main__":
    main()
