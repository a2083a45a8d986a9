"""The ``softmaxreg`` command line: train, evaluate, predict, report, datasets.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, no
traceback); 130 interrupted by Ctrl-C (what was trained is saved first); 1 any
other failure (one line, plus a hint to set ``SOFTMAXREG_DEBUG=1`` for the
traceback).

With ``--json`` a command prints exactly one JSON object on stdout; progress and
notes always go to stderr.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmaxreg import __version__
from softmaxreg.errors import DataError, ModelFileError, SoftmaxregError

PROG = "softmaxreg"
INPUT_SCALE = 1.0 / 255.0
IMAGE_SHAPE = (28, 28)
NPY_SUFFIXES = (".npy",)


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return _exit_code(exit_)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (SoftmaxregError, ValueError, FileNotFoundError) as error:
        return _fail(error, 2)
    except Exception as error:  # last resort: one line, never a bare traceback
        return _fail(error, 1, hint=True)


# ---------------------------------------------------------------------------
# Argument parsing


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message):
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        print(
            f"{PROG}: error: {where}{message} (see: {self.prog} --help)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def build_parser():
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Softmax regression and small softmax-headed networks on NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_report(commands)
    _add_datasets(commands)
    return parser


def _add_data_options(parser, default_dataset="mnist"):
    parser.add_argument(
        "--dataset",
        default=default_dataset,
        metavar="NAME|FILE.npz",
        help="dataset name (mnist, fashion-mnist) or a .npz file holding x_train, "
        "y_train, x_test, y_test as uint8 images and integer labels "
        f"(default: {default_dataset or 'the one the model was trained on'})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder holding <dataset>/ with the four IDX files (.gz or raw); "
        "default: $SOFTMAXREG_DATA, then the cache, then a download",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never download missing data"
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="use only the first N samples of each split (quick checks)",
    )


def _add_train(commands):
    parser = commands.add_parser(
        "train",
        help="train a model and save it",
        description="Train a model (default: the tutorial's MNIST MLP with 128 "
        "hidden units, Adam, batch 32, 5 epochs), report test loss and accuracy, "
        "and save it.",
    )
    _add_data_options(parser)
    parser.add_argument(
        "--model",
        choices=("mlp", "softmax"),
        default="mlp",
        help="mlp: hidden ReLU layers and a softmax output; softmax: plain softmax "
        "regression, no hidden layer (default: mlp)",
    )
    parser.add_argument(
        "--hidden",
        type=_positive_int,
        action="append",
        metavar="N",
        help="units of a hidden layer; repeat for more layers (default: 128)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=5,
        metavar="N",
        help="passes over the training set (default: 5); softmax with lbfgs "
        "ignores it and runs up to 100 iterations",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="samples per step (default: 32)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "sgd", "adamw", "lbfgs"),
        help="mlp: adam, sgd or adamw (default: adam); "
        "softmax: lbfgs, sgd or adam (default: lbfgs)",
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        metavar="RATE",
        help="step size (default: 0.001 for mlp; for softmax the solver's own: "
        "0.1 for sgd, 0.003 for adam)",
    )
    parser.add_argument(
        "--validation-split",
        type=_fraction,
        metavar="FRACTION",
        default=0.0,
        help="fraction of the training set held out for validation (default: 0)",
    )
    parser.add_argument(
        "--C",
        dest="C",
        metavar="C",
        type=_positive_float,
        default=1.0,
        help="softmax only: inverse L2 strength, as scikit-learn (default: 1.0)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds initialisation, shuffling and the validation split; the same "
        "seed gives the same model (default: 0)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="model file to write (default: models/<dataset>-<model>.safetensors)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="write DIR/checkpoint.safetensors at the end of each epoch (mlp only)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint DIR, with that run's "
        "options (the training options given now are ignored)",
    )
    _add_json(parser)
    parser.set_defaults(run=_run_train)


def _add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate",
        help="loss, accuracy, confusion matrix and per-class scores on a test set",
    )
    parser.add_argument("model_path", metavar="MODEL", type=Path)
    _add_data_options(parser, default_dataset=None)
    _add_json(parser)
    parser.set_defaults(run=_run_evaluate)


def _add_predict(commands):
    parser = commands.add_parser(
        "predict",
        help="predict the class of images (PNG, JPEG, ...) or .npy arrays",
        description="Print each input's predicted class and top probabilities. "
        ".npy arrays may hold one image (28, 28) or (784,), or many (n, 28, 28) or "
        "(n, 784): uint8 is read as raw pixels, floats as already scaled to [0, 1].",
    )
    parser.add_argument("model_path", metavar="MODEL", type=Path)
    parser.add_argument("inputs", metavar="FILE", type=Path, nargs="+")
    parser.add_argument(
        "--top", type=_positive_int, default=3, help="probabilities shown (default: 3)"
    )
    _add_json(parser)
    parser.set_defaults(run=_run_predict)


def _add_report(commands):
    parser = commands.add_parser(
        "report", help="write a visual report (figures and metrics) of a model"
    )
    parser.add_argument("model_path", metavar="MODEL", type=Path)
    _add_data_options(parser, default_dataset=None)
    parser.add_argument(
        "--out",
        type=Path,
        help="folder to write into (default: reports/<model file name>)",
    )
    _add_json(parser)
    parser.set_defaults(run=_run_report)


def _add_datasets(commands):
    parser = commands.add_parser(
        "datasets", help="where each known dataset is found and whether it checks out"
    )
    parser.add_argument("--data-dir", type=Path, help="also look in this folder")
    _add_json(parser)
    parser.set_defaults(run=_run_datasets)


def _add_json(parser):
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (progress stays on stderr)",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


# ---------------------------------------------------------------------------
# Data


@dataclass
class Data:
    """A dataset as uint8 images and integer labels, with where it came from."""

    name: str
    fingerprint: str
    class_names: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(dataset, data_dir=None, *, download=True, limit=None):
    """Load a registered dataset by name, or a ``.npz`` file by path."""
    if str(dataset).endswith(".npz"):
        data = _load_npz(Path(dataset))
    else:
        data = _load_registered(dataset, data_dir, download)
    if limit is not None:
        data.x_train, data.y_train = data.x_train[:limit], data.y_train[:limit]
        data.x_test, data.y_test = data.x_test[:limit], data.y_test[:limit]
    return data


def _load_registered(name, data_dir, download):
    from softmaxreg import datasets

    spec = datasets.get_spec(name)
    (x_train, y_train), (x_test, y_test) = datasets.load(
        spec.name, data_dir=data_dir, download=download
    )
    return Data(
        spec.name,
        datasets.fingerprint(spec.name),
        list(spec.class_names),
        x_train,
        y_train,
        x_test,
        y_test,
    )


def _load_npz(path):
    from softmaxreg import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load_npz(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    n_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return Data(
        path.stem,
        f"{path.name}:sha256:{digest[:16]}",
        [str(label) for label in range(n_classes)],
        x_train,
        y_train,
        x_test,
        y_test,
    )


def _scale(images, dtype=np.float32):
    return images.astype(dtype) * dtype(INPUT_SCALE)


# ---------------------------------------------------------------------------
# train


def _run_train(args):
    options = _train_options(args)
    resumed = None
    if args.checkpoint is not None:
        resumed = _open_checkpoint(args.checkpoint, args.resume)
        if resumed is not None:
            options = _resumed_options(resumed, set(options), args.checkpoint)
    elif args.resume:
        raise ValueError("--resume: needs --checkpoint DIR naming the run to continue")

    output = _output_path(args.output, options)
    data_dir = args.data_dir or options["data_dir"]
    data = load_data(
        options["dataset"],
        data_dir,
        download=not args.no_download,
        limit=options["limit"],
    )
    _say(f"training {_describe_run(options, data)}")
    with contextlib.redirect_stdout(sys.stderr):  # progress never mixes with results
        outcome = _train(options, data, args.checkpoint, resumed, output)
    _report_training(args, options, data, outcome, output)
    return 130 if outcome.interrupted else 0


def _resumed_options(resumed, expected_keys, directory):
    options = dict(resumed.options)
    if set(options) != expected_keys:
        raise ModelFileError(
            f"{directory}: the checkpoint's options do not match this version's "
            f"(differing: {sorted(set(options) ^ expected_keys)}); start a new run"
        )
    return options


def _train_options(args):
    optimizer = args.optimizer or ("adam" if args.model == "mlp" else "lbfgs")
    allowed = (
        ("adam", "sgd", "adamw") if args.model == "mlp" else ("lbfgs", "sgd", "adam")
    )
    if optimizer not in allowed:
        raise ValueError(
            f"--optimizer: {optimizer!r} is not available for --model {args.model}; "
            f"choose one of {', '.join(allowed)}"
        )
    if args.model == "softmax" and args.hidden:
        raise ValueError("--hidden: --model softmax has no hidden layer; drop --hidden")
    if args.model == "softmax" and args.checkpoint is not None:
        raise ValueError("--checkpoint: works with --model mlp only")
    return {
        "dataset": _dataset_option(args.dataset),
        "data_dir": None if args.data_dir is None else str(args.data_dir.resolve()),
        "limit": args.limit,
        "model": args.model,
        "hidden": list(args.hidden or [128]) if args.model == "mlp" else [],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": optimizer,
        "learning_rate": _learning_rate(args),
        "validation_split": args.validation_split,
        "C": args.C,
        "seed": args.seed,
    }


def _dataset_option(dataset):
    # a file is recorded by absolute path, so that --resume works from anywhere
    return str(Path(dataset).resolve()) if dataset.endswith(".npz") else dataset


def _learning_rate(args):
    if args.learning_rate is not None:
        return args.learning_rate
    return 1e-3 if args.model == "mlp" else None


def _output_path(output, options):
    if output is None:
        stem = Path(options["dataset"]).name.removesuffix(".npz")
        output = Path("models") / f"{stem}-{options['model']}.safetensors"
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def _open_checkpoint(directory, resume):
    from softmaxreg import checkpoint

    found = checkpoint.load_checkpoint(directory) if resume else None
    if resume and found is None:
        _say(f"no checkpoint in {directory}; starting from the first epoch")
    if not resume and checkpoint.checkpoint_path(directory).exists():
        raise ValueError(
            f"--checkpoint: {directory} already holds a checkpoint; pass --resume "
            "to continue that run, or choose another folder"
        )
    return found


@dataclass
class _Outcome:
    model: object
    history: dict
    epochs_done: int
    train_seconds: float
    interrupted: bool
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")


def _train(options, data, checkpoint_dir, resumed, output):
    x_train = _scale(data.x_train)
    started = time.perf_counter()
    if options["model"] == "softmax":
        outcome = _train_softmax(options, data, x_train)
    else:
        outcome = _train_mlp(options, data, x_train, checkpoint_dir, resumed)
    outcome.train_seconds = time.perf_counter() - started
    if not outcome.interrupted:
        proba = _predict_proba(outcome.model, _scale(data.x_test))
        outcome.test_loss, outcome.test_accuracy = _loss_accuracy(data.y_test, proba)
    _save_trained(outcome, options, data, output)
    return outcome


def _train_softmax(options, data, x_train):
    from softmaxreg.estimator import SoftmaxRegression

    minibatch = options["optimizer"] != "lbfgs"
    model = SoftmaxRegression(
        C=options["C"],
        solver=options["optimizer"],
        max_iter=options["epochs"] if minibatch else None,
        random_state=options["seed"],
        verbose=1,
        batch_size=options["batch_size"],
        learning_rate=options["learning_rate"],
    )
    _check_every_class_present(data)
    # NOTE: a Ctrl-C here ends the run with nothing saved: the estimator keeps
    # no partial solution.
    model.fit(x_train.reshape(len(x_train), -1), data.y_train)
    history = {key: list(values) for key, values in model.history_.items()}
    return _Outcome(model, history, int(model.n_iter_), 0.0, interrupted=False)


def _check_every_class_present(data):
    # softmax regression learns a column per class it sees; a class missing from
    # the training labels would shift every later column
    missing = sorted(set(range(len(data.class_names))) - set(np.unique(data.y_train)))
    if missing:
        raise DataError(
            f"training labels lack classes {missing}; softmax regression needs "
            "every class in the training set (use a larger --limit)"
        )


def _build_mlp(options, data):
    from softmaxreg import layers
    from softmaxreg.models import Sequential

    n_classes = len(data.class_names)
    stack = [layers.Flatten(input_shape=tuple(data.x_train.shape[1:]))]
    stack += [layers.Dense(units, activation="relu") for units in options["hidden"]]
    stack.append(layers.Dense(n_classes, activation="softmax"))
    model = Sequential(stack)
    _compile(model, options)
    return model


def _compile(model, options):
    from softmaxreg import optimizers

    classes = {
        "adam": optimizers.Adam,
        "sgd": optimizers.SGD,
        "adamw": optimizers.AdamW,
    }
    optimizer = classes[options["optimizer"]](learning_rate=options["learning_rate"])
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _train_mlp(options, data, x_train, checkpoint_dir, resumed):
    if resumed is None:
        model, initial_epoch, history = _build_mlp(options, data), 0, {}
    else:
        model, initial_epoch = resumed.model, resumed.epoch
        history = {key: list(values) for key, values in resumed.history.items()}
        _compile(model, options)
        # fit keeps an optimizer already built for this many parameters
        model.optimizer.build(model.count_params(), model.dtype)
        model.optimizer.set_state(resumed.optimizer_state)
    recorder = _EpochRecorder(options, checkpoint_dir, history)
    if initial_epoch >= options["epochs"]:
        return _Outcome(model, history, initial_epoch, 0.0, interrupted=False)
    try:
        model.fit(
            x_train,
            data.y_train,
            epochs=options["epochs"],
            initial_epoch=initial_epoch,
            batch_size=options["batch_size"],
            validation_split=options["validation_split"],
            shuffle=True,
            seed=options["seed"],
            verbose=1,
            callbacks=[recorder.callback(model)],
            stream=sys.stderr,
        )
    except KeyboardInterrupt:
        return _Outcome(
            model, history, recorder.epochs_done or initial_epoch, 0.0, True
        )
    return _Outcome(model, history, options["epochs"], 0.0, interrupted=False)


class _EpochRecorder:
    """Keeps the run's history and writes a checkpoint after each epoch."""

    def __init__(self, options, checkpoint_dir, history):
        self.options = options
        self.checkpoint_dir = checkpoint_dir
        self.history = history
        self.epochs_done = None

    def callback(self, model):
        from softmaxreg.callbacks import LambdaCallback

        def on_epoch_end(epoch, logs):
            self.record(model, epoch, logs or {})

        return LambdaCallback(on_epoch_end=on_epoch_end)

    def record(self, model, epoch, logs):
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1
        if self.checkpoint_dir is None:
            return
        from softmaxreg import checkpoint

        state = checkpoint.Checkpoint(
            model,
            model.optimizer.get_state(),
            epoch=epoch + 1,
            seed=self.options["seed"],
            options=self.options,
            history=self.history,
        )
        checkpoint.save_checkpoint(self.checkpoint_dir, state)


def _save_trained(outcome, options, data, output):
    from softmaxreg.saving import save_model

    provenance = {
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        # the local data folder is left out: the file may be shared
        "options": {k: v for k, v in options.items() if k != "data_dir"},
        "seed": options["seed"],
        "epochs": outcome.epochs_done,
        "interrupted": outcome.interrupted,
        "history": outcome.history,
        "test_loss": _finite_or_none(outcome.test_loss),
        "test_accuracy": _finite_or_none(outcome.test_accuracy),
        "train_seconds": outcome.train_seconds,
    }
    save_model(
        outcome.model,
        output,
        preprocessing={
            "input_scale": INPUT_SCALE,
            "input_shape": list(data.x_train.shape[1:]),
            "input_dtype": "uint8",
        },
        provenance=provenance,
        class_names=data.class_names,
    )


def _report_training(args, options, data, outcome, output):
    if outcome.interrupted:
        _say(
            f"interrupted after {outcome.epochs_done} epoch(s); saved what was trained"
        )
    summary = {
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "model": _describe_model(options),
        "options": options,
        "history": outcome.history,
        "epochs_done": outcome.epochs_done,
        "interrupted": outcome.interrupted,
        "test_loss": _finite_or_none(outcome.test_loss),
        "test_accuracy": _finite_or_none(outcome.test_accuracy),
        "train_seconds": outcome.train_seconds,
        "model_path": str(output),
    }
    if args.json:
        _print_json(summary)
        return
    if not outcome.interrupted:
        print(
            f"test loss {outcome.test_loss:.4f}  "
            f"test accuracy {outcome.test_accuracy:.4f}"
        )
    print(f"model saved to {output}")


def _describe_run(options, data):
    n_train, n_classes = len(data.x_train), len(data.class_names)
    if options["model"] == "softmax":
        model = f"softmax regression ({options['optimizer']}, C={options['C']:g})"
    else:
        sizes = [int(np.prod(data.x_train.shape[1:])), *options["hidden"], n_classes]
        model = (
            f"MLP {'-'.join(map(str, sizes))} ({options['optimizer']}, "
            f"learning rate {options['learning_rate']:g}, "
            f"batch {options['batch_size']})"
        )
    return (
        f"{model} on {data.name} ({n_train} training samples), "
        f"{options['epochs']} epochs, seed {options['seed']}"
    )


def _describe_model(options):
    if options["model"] == "softmax":
        return {"kind": "softmax", "solver": options["optimizer"], "C": options["C"]}
    return {
        "kind": "mlp",
        "hidden": options["hidden"],
        "optimizer": options["optimizer"],
    }


# ---------------------------------------------------------------------------
# evaluate, report


def _run_evaluate(args):
    from softmaxreg.metrics import classification_metrics

    model, data = _model_and_test_data(args)
    proba = _predict_proba(model, _scale(data.x_test))
    metrics = classification_metrics(
        data.y_test, proba, class_names=_class_names(model, data)
    )
    metrics = {"model_path": str(args.model_path), "dataset": data.name, **metrics}
    if args.json:
        _print_json(metrics)
    else:
        print(_format_metrics(metrics))
    return 0


def _model_and_test_data(args):
    from softmaxreg.saving import load_model

    model = load_model(args.model_path)
    dataset = args.dataset or _training_dataset(model)
    data = load_data(
        dataset, args.data_dir, download=not args.no_download, limit=args.limit
    )
    return model, data


def _training_dataset(model):
    """The registered dataset the model was trained on (default: mnist)."""
    from softmaxreg import datasets

    provenance = model.metadata_.get("provenance")
    name = provenance.get("dataset") if isinstance(provenance, dict) else None
    if not isinstance(name, str):
        return "mnist"
    if name not in datasets.names():
        raise ValueError(
            f"--dataset: the model was trained on {name!r}, which is not a "
            "registered dataset; pass --dataset NAME or --dataset FILE.npz"
        )
    return name


def _class_names(model, data):
    names = model.metadata_.get("class_names")
    return names if isinstance(names, list) else data.class_names


def _format_metrics(metrics):
    lines = [
        f"dataset {metrics['dataset']}: {metrics['n_samples']} test samples",
        f"loss      {metrics['loss']:.4f}",
        f"accuracy  {metrics['accuracy']:.4f}",
        "",
        f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for row in metrics["per_class"]:
        lines.append(
            f"{str(row['class']):>14} {row['precision']:9.4f} {row['recall']:7.4f} "
            f"{row['f1']:7.4f} {row['support']:8d}"
        )
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    width = max(len(str(v)) for row in metrics["confusion_matrix"] for v in row) + 1
    for row in metrics["confusion_matrix"]:
        lines.append("".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def _run_report(args):
    from softmaxreg.report import write_report

    model, data = _model_and_test_data(args)
    out_dir = args.out or Path("reports") / args.model_path.stem
    history = model.metadata_.get("provenance", {}).get("history") or None
    result = write_report(
        model,
        _scale(data.x_test),
        data.y_test,
        out_dir,
        history=history,
        class_names=_class_names(model, data),
    )
    if args.json:
        _print_json({"out_dir": str(out_dir), **(result or {})})
    else:
        print(f"report written to {out_dir}")
    return 0


# ---------------------------------------------------------------------------
# predict


def _run_predict(args):
    from softmaxreg.saving import load_model

    model = load_model(args.model_path)
    names = model.metadata_.get("class_names")
    results = []
    for path in args.inputs:
        labels, images = _read_inputs(path, model)
        proba = _predict_proba(model, images)  # (n_images, n_classes)
        results += [_top_classes(l, p, names, args.top) for l, p in zip(labels, proba)]
    if args.json:
        _print_json({"model_path": str(args.model_path), "predictions": results})
        return 0
    for result in results:
        shown = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in result["top"])
        print(f"{result['input']}: {result['predicted']}  ({shown})")
    return 0


def _read_inputs(path, model):
    """A label per image and the images, of shape (n_images, height, width)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    if path.suffix.lower() in NPY_SUFFIXES:
        images = _read_npy(path, model)
        if len(images) == 1:
            return [str(path)], images
        return [f"{path}[{index}]" for index in range(len(images))], images
    from softmaxreg.preprocessing import prepare_digit

    return [str(path)], prepare_digit(path)[None]  # (1, 28, 28)


def _read_npy(path, model):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: not a readable .npy array ({_one_line(error)})"
        ) from None
    shape = _input_shape(model)
    size = int(np.prod(shape))
    if array.shape in (shape, (size,)):
        array = array.reshape((1, *shape))
    elif array.ndim >= 2 and array.shape[1:] in (shape, (size,)):
        array = array.reshape((len(array), *shape))
    else:
        raise DataError(
            f"{path}: expected an array of shape {shape}, ({size},), "
            f"(n, {', '.join(map(str, shape))}) or (n, {size}); got {array.shape}"
        )
    return _npy_pixels(array, path, model)


def _npy_pixels(array, path, model):
    if array.dtype == np.uint8:
        scale = model.metadata_.get("preprocessing", {}).get("input_scale", INPUT_SCALE)
        return array.astype(np.float32) * np.float32(scale)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: holds NaN or infinite values")
        low, high = (float(array.min()), float(array.max())) if array.size else (0, 0)
        if low < 0 or high > 1:
            raise DataError(
                f"{path}: float pixels must lie in [0, 1], found {low:g}..{high:g}; "
                "divide by 255 first, or store raw pixels as uint8"
            )
        return array.astype(np.float32)
    raise DataError(
        f"{path}: expected uint8 raw pixels or floats in [0, 1], "
        f"got dtype {array.dtype}"
    )


def _top_classes(label, proba, names, top):
    order = np.argsort(-proba, kind="stable")[:top]
    name = (
        (lambda i: names[i])
        if isinstance(names, list) and len(names) == len(proba)
        else str
    )
    return {
        "input": label,
        "predicted": name(int(order[0])),
        "predicted_index": int(order[0]),
        "top": [
            {"class": name(int(i)), "index": int(i), "probability": float(proba[i])}
            for i in order
        ],
    }


# ---------------------------------------------------------------------------
# datasets


def _run_datasets(args):
    from softmaxreg import datasets

    status = datasets.status(data_dir=args.data_dir)
    if args.json:
        _print_json([dataclasses.asdict(record) for record in status])
    else:
        print(datasets.format_status(status))
    return 0


# ---------------------------------------------------------------------------
# Model helpers shared by the commands


def _input_shape(model):
    shape = model.metadata_.get("preprocessing", {}).get("input_shape", IMAGE_SHAPE)
    return tuple(int(n) for n in shape)


def _predict_proba(model, x):
    """Probabilities (n_samples, n_classes) for images (n_samples, height, width)."""
    if type(model).__name__ == "SoftmaxRegression":
        x = x.reshape(len(x), -1)  # (n_samples, n_features)
    return np.asarray(model.predict_proba(x))  # (n_samples, n_classes)


def _loss_accuracy(labels, proba):
    picked = proba[np.arange(len(labels)), labels.astype(np.intp)]  # (n_samples,)
    floor = np.finfo(proba.dtype).tiny
    loss = float(-np.mean(np.log(np.maximum(picked, floor))))
    accuracy = float(np.mean(proba.argmax(axis=1) == labels))
    return loss, accuracy


# ---------------------------------------------------------------------------
# Output and errors


def _print_json(obj):
    print(json.dumps(obj, default=_json_default, allow_nan=False))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _finite_or_none(value):
    return value if np.isfinite(value) else None


def _say(message):
    print(f"{PROG}: {message}", file=sys.stderr)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _fail(error, code, hint=False):
    message = _one_line(error)
    if isinstance(error, FileNotFoundError) and error.filename and error.strerror:
        message = f"{error.strerror}: {error.filename}"
    if hint:
        message = f"{type(error).__name__}: {message}"
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if os.environ.get("SOFTMAXREG_DEBUG"):
        traceback.print_exception(error, file=sys.stderr)
    elif hint:
        print(
            f"{PROG}: rerun with SOFTMAXREG_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
    return code


def _exit_code(exit_):
    code = exit_.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 2


if __name__ == "__main__":
    sys.exit(main())
