"""Peer: the Keras tutorial's MNIST job, as written, on TensorFlow (CPU).

Only the data source differs from the tutorial: the same IDX files as every
other script instead of ``keras.datasets.mnist.load_data()`` (no download).
``verbose=0`` so that progress printing is not timed.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import (  # noqa: E402
    EpochClock,
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

NAME = "keras"


def main():
    args = standard_parser(__doc__).parse_args()
    try:
        import keras
        import tensorflow as tf
    except ImportError as error:
        unavailable(NAME, f"cannot import tensorflow/keras: {error}")

    (x_train, y_train), (x_test, y_test) = load_dataset(args.data_dir, args.dataset)
    keras.utils.set_random_seed(args.seed)

    # --- the tutorial, as written (Input instead of Flatten(input_shape=...),
    # which Keras 3 deprecates) ---
    x_train, x_test = x_train / 255.0, x_test / 255.0
    model = keras.models.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    clock = EpochClock()
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: clock.start(),
        on_epoch_end=lambda epoch, logs: clock.stop(),
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              verbose=0, callbacks=[timer])
    fit_seconds = time.perf_counter() - start

    probabilities = model.predict(x_test, batch_size=1024, verbose=0)
    single = x_test[:1]
    emit({
        "name": NAME,
        "fit_seconds": fit_seconds,
        "epoch_seconds": clock.seconds,
        "test_accuracy": accuracy(probabilities, y_test),
        "test_log_loss": log_loss(probabilities, y_test),
        "throughput": throughput(
            lambda x: model.predict(x, batch_size=1024, verbose=0), x_test),
        # model(x) is Keras's documented fast path for a few samples
        "latency": latency_us(lambda x: model(x, training=False), single, repeats=200),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": __import__("numpy").__version__},
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "blas": blas_info(),
    })


if __name__ == "__main__":
    main()
