"""The ``softmaxreg`` command line: train, evaluate, predict, report, datasets.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, no
traceback); 130 interrupted by Ctrl-C (an MLP saves the weights trained so far;
softmax regression keeps no partial solution and saves nothing); 141 stdout was
closed early (``| head``), quietly; 1 any other failure (one line, plus a hint
to set ``SOFTMAXREG_DEBUG=1`` for the traceback).

With ``--json`` a command prints exactly one JSON object on stdout; progress,
notes and warnings always go to stderr, each warning as one line
``softmaxreg: warning: ...``.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmaxreg import __version__, kernels
from softmaxreg.errors import DataError, ModelFileError, SoftmaxregError, TrainingError

PROG = "softmaxreg"
INPUT_SCALE = 1.0 / 255.0
IMAGE_SHAPE = (28, 28)
NPY_SUFFIXES = (".npy",)
LBFGS_MAX_ITER = 100
MAX_HIDDEN_UNITS = 65536
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a process killed by it

# Training options a user may give; None in the parsed arguments means "not given".
TRAIN_DEFAULTS = {
    "dataset": "mnist",
    "epochs": 5,
    "batch_size": 32,
    "validation_split": 0.0,
    "C": 1.0,
    "seed": 0,
}
TRAINING_KEYS = (
    "dataset",
    "limit",
    "model",
    "hidden",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "validation_split",
    "C",
    "seed",
)


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Python warnings raised while a command runs are shown as one line each on
    stderr; the previous warning filters and display are restored afterwards.

    Returns
    -------
    int
        The exit code.
    """
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            sys.stdout.flush()  # --help into a closed pipe fails here
            return _exit_code(exit_)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        return _run_command(args)


def _run_command(args):
    try:
        code = args.run(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except MemoryError:
        return _fail(
            "out of memory; use a smaller model (--hidden), a smaller "
            "--batch-size or fewer samples (--limit)",
            2,
        )
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


def _add_data_options(parser, default_help):
    parser.add_argument(
        "--dataset",
        metavar="NAME|FILE.npz",
        help="dataset name (mnist, fashion-mnist) or a .npz file holding x_train, "
        "y_train, x_test, y_test as uint8 images and integer labels "
        f"(default: {default_help})",
    )
    parser.add_argument(
        "--data-dir",
        type=_existing_folder,
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


def _add_model_argument(parser):
    parser.add_argument(
        "model_path",
        metavar="MODEL",
        type=_path,
        help="model file (.safetensors) written by 'softmaxreg train' or save_model",
    )


def _add_train(commands):
    parser = commands.add_parser(
        "train",
        help="train a model and save it",
        description="Train a model (default: the tutorial's MNIST MLP with 128 "
        "hidden units, Adam, batch 32, 5 epochs), report test loss and accuracy, "
        "and save it. The output and checkpoint folders are checked for "
        "writing before any training starts.",
    )
    _add_data_options(parser, "mnist")
    parser.add_argument(
        "--model",
        choices=("mlp", "softmax"),
        help="mlp: hidden ReLU layers and a softmax output; softmax: plain softmax "
        "regression, no hidden layer (default: mlp)",
    )
    parser.add_argument(
        "--hidden",
        type=_hidden_units,
        action="append",
        metavar="N",
        help=f"units of a hidden layer, at most {MAX_HIDDEN_UNITS}; repeat for more "
        "layers (default: 128)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help="passes over the training set (default: 5); softmax with lbfgs "
        "ignores it and stops at its tolerance, after at most "
        f"{LBFGS_MAX_ITER} iterations; with --resume, a larger N extends the run "
        "to N epochs in all",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="samples per step; lbfgs uses the whole set (default: 32)",
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
        "0.1 for sgd, 0.003 for adam; lbfgs has none)",
    )
    parser.add_argument(
        "--validation-split",
        type=_fraction,
        metavar="FRACTION",
        help="mlp only: fraction of the training set held out for validation "
        "(default: 0)",
    )
    parser.add_argument(
        "--C",
        dest="C",
        metavar="C",
        type=_positive_float,
        help="softmax only: inverse L2 strength, as scikit-learn (default: 1.0)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        help="seeds initialisation, shuffling and the validation split; the same "
        "seed gives the same model (default: 0)",
    )
    parser.add_argument(
        "--output",
        type=_path,
        metavar="PATH",
        help="model file to write (default: models/<dataset>-<model>.safetensors)",
    )
    parser.add_argument(
        "--checkpoint",
        type=_path,
        metavar="DIR",
        help="write DIR/checkpoint.safetensors at the end of each epoch (mlp only)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint DIR with that run's options; "
        "--epochs may extend it, any other training option given must match",
    )
    _add_json(parser)
    parser.set_defaults(run=_run_train)


def _add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate",
        help="loss, accuracy, confusion matrix and per-class scores on a test set",
        description="Score a model on the test split of a dataset: loss, accuracy, "
        "per-class precision, recall and F1, and the confusion matrix. Pixels are "
        "scaled as the model file records.",
    )
    _add_model_argument(parser)
    _add_data_options(parser, "the one the model was trained on")
    _add_json(parser)
    parser.set_defaults(run=_run_evaluate)


def _add_predict(commands):
    parser = commands.add_parser(
        "predict",
        help="predict the class of images (PNG, JPEG, ...) or .npy arrays",
        description="Print each input's predicted class and top probabilities. "
        "Images are prepared the way the model's training set was (digits: "
        "cropped and centred by mass; objects: scaled to fit). "
        ".npy arrays may hold one image (28, 28) or (784,), or many (n, 28, 28) or "
        "(n, 784): uint8 is read as raw pixels, floats as already scaled to [0, 1]. "
        "A bad input is reported on stderr and the others still run (exit 2).",
    )
    _add_model_argument(parser)
    parser.add_argument(
        "inputs",
        metavar="FILE",
        type=_path,
        nargs="+",
        help="image files (PNG, JPEG, ...) or .npy arrays",
    )
    parser.add_argument(
        "--top", type=_positive_int, default=3, help="probabilities shown (default: 3)"
    )
    parser.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="image files only: invert dark-on-light images; auto decides from "
        "the border (default: auto)",
    )
    _add_json(parser)
    parser.set_defaults(run=_run_predict)


def _add_report(commands):
    parser = commands.add_parser(
        "report",
        help="write a visual report (figures and metrics) of a model",
        description="Write figures and metrics of a model on the test split of a "
        "dataset into a folder (report.html and its images).",
    )
    _add_model_argument(parser)
    _add_data_options(parser, "the one the model was trained on")
    parser.add_argument(
        "--out",
        type=_path,
        metavar="DIR",
        help="folder to write into (default: reports/<model file name>)",
    )
    _add_json(parser)
    parser.set_defaults(run=_run_report)


def _add_datasets(commands):
    parser = commands.add_parser(
        "datasets",
        help="where each known dataset is found and whether it checks out",
        description="List where each known dataset is found and verify its files. "
        "Exit 2 when a dataset is found but fails verification (missing is fine).",
    )
    parser.add_argument(
        "--data-dir", type=_existing_folder, metavar="DIR", help="also look here"
    )
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


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _hidden_units(text):
    value = _positive_int(text)
    if value > MAX_HIDDEN_UNITS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_HIDDEN_UNITS} units, got {text!r}"
        )
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


def _path(text):
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def _existing_folder(text):
    path = _path(text)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise argparse.ArgumentTypeError(f"{what}: {text}")
    return path


def _check_writable_folder(folder, option):
    """Create ``folder`` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(
            f"{option}: {folder} is a file (or lies under one), not a folder; "
            "choose a folder path"
        ) from None
    except OSError as error:
        raise DataError(
            f"{option}: cannot create the folder {folder} ({error.strerror}); "
            "choose a writable place"
        ) from None
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".softmaxreg-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise DataError(
            f"{option}: cannot write in {folder} ({error.strerror}); "
            "choose a writable folder"
        ) from None


# ---------------------------------------------------------------------------
# Data


@dataclass
class Data:
    """A dataset as uint8 images and integer labels, with where it came from.

    ``x_train`` and ``y_train`` are None when only the test split was read.
    """

    name: str
    fingerprint: str
    class_names: list
    image_mode: str
    x_train: np.ndarray | None
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray


def is_npz(dataset):
    """Whether the ``--dataset`` value names a ``.npz`` file (any letter case)."""
    return Path(str(dataset)).suffix.lower() == ".npz"


def load_data(dataset, data_dir=None, *, download=True, limit=None, split=None):
    """Load a registered dataset by name, or a ``.npz`` file by path.

    ``split="test"`` reads only the test split of a registered dataset (a
    ``.npz`` file is read whole, its classes coming from its training labels).
    Empty splits are refused.
    """
    if is_npz(dataset):
        data = _load_npz(Path(dataset))
    else:
        data = _load_registered(dataset, data_dir, download, split)
    if split == "test":
        data.x_train = data.y_train = None
    if limit is not None:
        if data.x_train is not None:
            data.x_train, data.y_train = data.x_train[:limit], data.y_train[:limit]
        data.x_test, data.y_test = data.x_test[:limit], data.y_test[:limit]
    return data


def registered_name(name):
    """The canonical name of a registered dataset; ValueError naming --dataset."""
    from softmaxreg import datasets

    try:
        return datasets.get_spec(name).name
    except (DataError, KeyError):
        raise DataError(
            f"--dataset: unknown dataset {name!r}; choose one of "
            f"{', '.join(datasets.names())}, or give a FILE.npz path"
        ) from None


def _load_registered(name, data_dir, download, split):
    from softmaxreg import datasets

    spec = datasets.get_spec(registered_name(name))
    loaded = datasets.load(spec.name, data_dir=data_dir, download=download, split=split)
    if split == "test":
        (x_train, y_train), (x_test, y_test) = (None, None), loaded
    else:
        (x_train, y_train), (x_test, y_test) = loaded
    return Data(
        spec.name,
        datasets.fingerprint(spec.name),
        list(spec.class_names),
        spec.image_mode,
        x_train,
        y_train,
        x_test,
        y_test,
    )


def _load_npz(path):
    from softmaxreg import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load_npz(path)
    for split, labels in (("training", y_train), ("test", y_test)):
        if labels.size == 0:
            raise DataError(
                f"{path}: the {split} split is empty; a run needs samples in both "
                "x_train/y_train and x_test/y_test"
            )
    n_classes = _npz_class_count(path, y_train)
    check_labels(y_test, n_classes, f"{path}: y_test")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Data(
        path.stem,
        f"{path.name}:sha256:{digest[:16]}",
        [str(label) for label in range(n_classes)],
        "object",  # a .npz may hold anything; only MNIST digits get digit framing
        x_train,
        y_train,
        x_test,
        y_test,
    )


def _npz_class_count(path, y_train):
    """K, when the training labels are exactly 0..K-1 with every class present."""
    n_classes = int(y_train.max()) + 1
    missing = sorted(set(range(n_classes)) - set(np.unique(y_train).tolist()))
    if missing:
        raise DataError(
            f"{path}: y_train must hold the labels 0..{n_classes - 1} with every "
            f"class present; classes {_few(missing)} have no training sample "
            "(relabel the classes as consecutive integers from 0)"
        )
    return n_classes


def check_labels(labels, n_classes, where):
    """Refuse labels outside 0..n_classes-1, naming them."""
    bad = sorted(set(np.unique(labels).tolist()) - set(range(n_classes)))
    if bad:
        raise DataError(
            f"{where} holds labels {_few(bad)} outside the model's classes "
            f"0..{n_classes - 1}; fix or drop those samples"
        )


def _few(values, shown=10):
    text = ", ".join(str(v) for v in values[:shown])
    return f"[{text}{', ...' if len(values) > shown else ''}]"


def _scale(images, scale=INPUT_SCALE, dtype=np.float32):
    scaled = images.astype(dtype)  # one copy, scaled in place: no second temporary
    scaled *= dtype(scale)
    return scaled


# ---------------------------------------------------------------------------
# train


def _run_train(args):
    kernels.check_environment()  # a bad SOFTMAXREG_* setting: before any work
    explicit = {key for key in TRAINING_KEYS if getattr(args, key) is not None}
    options = _train_options(args)
    resumed = None
    if args.checkpoint is not None:
        _check_checkpoint_folder(args.checkpoint)
        resumed = _open_checkpoint(args.checkpoint, args.resume)
        if resumed is not None:
            options = _resumed_options(resumed, options, explicit, args.checkpoint)
    elif args.resume:
        raise ValueError("--resume: needs --checkpoint DIR naming the run to continue")
    _warn_ignored_options(options, explicit)
    output = _output_path(args.output, options)

    data = load_data(
        options["dataset"],
        options["data_dir"],
        download=not args.no_download,
        limit=options["limit"],
    )
    _say(f"training {_describe_run(options, data)}")
    try:
        outcome = _train(options, data, args.checkpoint, resumed)
    except KeyboardInterrupt:
        if options["model"] != "softmax":
            raise
        _say("interrupted: softmax regression keeps no partial solution; nothing saved")
        return 130
    _save_trained(outcome, options, data, output)
    _report_training(args, options, data, outcome, output)
    return 130 if outcome.interrupted else 0


def _train_options(args):
    given = {key: getattr(args, key) for key in TRAINING_KEYS}
    model = given["model"] or "mlp"
    optimizer = given["optimizer"] or ("adam" if model == "mlp" else "lbfgs")
    allowed = ("adam", "sgd", "adamw") if model == "mlp" else ("lbfgs", "sgd", "adam")
    if optimizer not in allowed:
        raise ValueError(
            f"--optimizer: {optimizer!r} is not available for --model {model}; "
            f"choose one of {', '.join(allowed)}"
        )
    if model == "softmax" and given["hidden"]:
        raise ValueError("--hidden: --model softmax has no hidden layer; drop --hidden")
    if model == "softmax" and args.checkpoint is not None:
        raise ValueError("--checkpoint: works with --model mlp only")
    options = {k: TRAIN_DEFAULTS.get(k) if v is None else v for k, v in given.items()}
    options.update(
        dataset=_dataset_option(options["dataset"]),
        model=model,
        hidden=list(given["hidden"] or [128]) if model == "mlp" else [],
        optimizer=optimizer,
        learning_rate=_learning_rate(given["learning_rate"], model),
    )
    data_dir = None if args.data_dir is None else str(args.data_dir.resolve())
    return {"data_dir": data_dir, **options}


def _dataset_option(dataset):
    # a file is recorded by absolute path, so that --resume works from anywhere
    if is_npz(dataset):
        return str(Path(dataset).resolve())
    return registered_name(dataset)


def _learning_rate(given, model):
    if given is not None:
        return given
    return 1e-3 if model == "mlp" else None


def _flag(key):
    return "--C" if key == "C" else "--" + key.replace("_", "-")


def _warn_ignored_options(options, explicit):
    """One warning per option given that the chosen model or solver ignores."""
    ignored = []
    if options["model"] == "mlp" and "C" in explicit:
        ignored.append(("C", "applies to --model softmax only"))
    if options["model"] == "softmax" and options["validation_split"] > 0:
        ignored.append(("validation_split", "--model softmax holds out no samples"))
    if options["optimizer"] == "lbfgs":
        solver = "the lbfgs solver"
        if "learning_rate" in explicit:
            ignored.append(("learning_rate", f"{solver} chooses its own steps"))
        if "batch_size" in explicit:
            ignored.append(("batch_size", f"{solver} uses the whole training set"))
        if "epochs" in explicit:
            ignored.append(
                ("epochs", f"{solver} runs up to {LBFGS_MAX_ITER} iterations")
            )
    for key, reason in ignored:
        _warn(f"{_flag(key)} is ignored: {reason}")


def _output_path(output, options):
    """The model file to write, after proving its folder is writable."""
    if output is None:
        stem = Path(options["dataset"]).stem
        output = Path("models") / f"{stem}-{options['model']}.safetensors"
    if output.is_dir():
        raise DataError(
            f"--output: {output} is a folder; give a file path such as "
            f"{output / 'model.safetensors'}"
        )
    _check_writable_folder(output.parent, "--output")
    return output


def _check_checkpoint_folder(directory):
    if directory.exists() and not directory.is_dir():
        raise DataError(
            f"--checkpoint: {directory} is a file; give a folder (it will hold "
            "checkpoint.safetensors)"
        )
    _check_writable_folder(directory, "--checkpoint")


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


def _resumed_options(resumed, options, explicit, directory):
    """The checkpoint's options, with --epochs and --data-dir taken from now.

    Any other training option given now must equal the checkpoint's: a run
    continued with other settings would match neither run.
    """
    saved = dict(resumed.options)
    if set(saved) != set(options):
        raise ModelFileError(
            f"{directory}: the checkpoint's options do not match this version's "
            f"(differing: {sorted(set(saved) ^ set(options))}); start a new run"
        )
    for key in sorted(explicit - {"epochs"}):
        if options[key] != saved[key]:
            raise ValueError(
                f"{_flag(key)}: {options[key]!r} differs from the checkpoint's "
                f"{saved[key]!r}; drop {_flag(key)} to continue that run, or start "
                "a new run with another --checkpoint folder"
            )
    if "epochs" in explicit:
        if options["epochs"] < resumed.epoch:
            raise ValueError(
                f"--epochs: the checkpoint in {directory} has already done "
                f"{resumed.epoch} epochs; ask for at least that many"
            )
        saved["epochs"] = options["epochs"]
    saved["data_dir"] = options["data_dir"] or saved["data_dir"]
    return saved


@dataclass
class _Outcome:
    model: object
    history: dict
    epochs_done: int
    train_seconds: float
    interrupted: bool
    interrupted_at: dict | None = None
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")


def _train(options, data, checkpoint_dir, resumed):
    """Train, check the weights are finite, and score on the test split.

    NumPy's floating-point warnings are silenced here: the engine and the
    finiteness check below detect divergence and raise TrainingError instead.
    """
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), np.errstate(all="ignore"):
        x_train = _scale(data.x_train)
        if options["model"] == "softmax":
            outcome = _train_softmax(options, data, x_train)
        else:
            outcome = _train_mlp(options, data, x_train, checkpoint_dir, resumed)
        del x_train  # free the float copy before the test split is scaled
        outcome.train_seconds = time.perf_counter() - started
        _check_finite(outcome.model, options)
        if not outcome.interrupted:
            proba = _predict_proba(outcome.model, _scale(data.x_test))
            outcome.test_loss, outcome.test_accuracy = _loss_accuracy(
                data.y_test, proba
            )
    return outcome


def _check_finite(model, options):
    bad = [n for n, a in model.get_weights_dict().items() if not np.isfinite(a).all()]
    if bad:
        rate = options["learning_rate"]
        advice = f"lower --learning-rate (now {rate:g})" if rate else "scale the inputs"
        raise TrainingError(
            f"training diverged: {bad[0]} holds NaN or infinite values; nothing "
            f"was saved; {advice}"
        )


def _train_softmax(options, data, x_train):
    from softmaxreg.estimator import SoftmaxRegression

    minibatch = options["optimizer"] != "lbfgs"
    model = SoftmaxRegression(
        C=options["C"],
        solver=options["optimizer"],
        max_iter=options["epochs"] if minibatch else LBFGS_MAX_ITER,
        random_state=options["seed"],
        verbose=1,
        batch_size=options["batch_size"],
        learning_rate=options["learning_rate"] if minibatch else None,
    )
    _check_every_class_present(data)
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
        now = kernels.engine(model.dtype)
        if resumed.engine and resumed.engine != now:
            if resumed.engine == "numpy":
                fix = "set SOFTMAXREG_KERNELS=numpy to match"
            elif kernels.AVAILABLE:
                fix = "unset SOFTMAXREG_KERNELS to match"
            else:
                fix = "reinstall with a C compiler to match"
            _warn(f"the checkpoint's epochs ran on the {resumed.engine} kernels and "
                  f"this run uses the {now} ones: the result will differ from an "
                  f"uninterrupted run by float32 rounding ({fix})")
    recorder = _EpochRecorder(options, checkpoint_dir, history, initial_epoch)
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
    except KeyboardInterrupt as interrupt:
        at = recorder.interrupted_at(interrupt)
        return _Outcome(model, history, recorder.epochs_done, 0.0, True, at)
    return _Outcome(model, history, options["epochs"], 0.0, interrupted=False)


class _EpochRecorder:
    """Keeps the run's history, writes a checkpoint after each epoch, and
    knows where an interruption happened."""

    def __init__(self, options, checkpoint_dir, history, initial_epoch):
        self.options = options
        self.checkpoint_dir = checkpoint_dir
        self.history = history
        self.epochs_done = initial_epoch
        self.epoch_running = None  # 0-based index of the epoch begun, not yet ended

    def callback(self, model):
        from softmaxreg.callbacks import LambdaCallback

        def on_epoch_begin(epoch, logs=None):
            self.epoch_running = epoch

        def on_epoch_end(epoch, logs):
            self.record(model, epoch, logs or {})

        return LambdaCallback(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end)

    def interrupted_at(self, interrupt):
        """{"epoch": e, "step": s} (e counted from 1) for a mid-epoch stop, else None.

        NOTE: the step is read from the engine's KeyboardInterrupt message
        ("... after step N"), the only place it is given; a second Ctrl-C
        carries no message, and the step is then None.
        """
        if self.epoch_running is None:
            return None
        found = re.search(r"after step (\d+)", str(interrupt))
        step = int(found.group(1)) if found else None
        return {"epoch": self.epoch_running + 1, "step": step}

    def record(self, model, epoch, logs):
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1
        self.epoch_running = None
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
            engine=kernels.engine(model.dtype),
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
    if outcome.interrupted_at is not None:
        provenance["interrupted_at"] = outcome.interrupted_at
    if _counts_iterations(options):
        provenance["iterations"] = provenance.pop("epochs")
    save_model(
        outcome.model,
        output,
        preprocessing={
            "input_scale": INPUT_SCALE,
            "input_shape": list(data.x_train.shape[1:]),
            "input_dtype": "uint8",
            "image_mode": data.image_mode,
        },
        provenance=provenance,
        class_names=data.class_names,
    )


def _counts_iterations(options):
    """L-BFGS counts iterations over the whole set, not epochs."""
    return options["model"] == "softmax" and options["optimizer"] == "lbfgs"


def _report_training(args, options, data, outcome, output):
    if outcome.interrupted:
        _say(_interruption_note(outcome, output, args.checkpoint))
    summary = {
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "model": _describe_model(options),
        "options": options,
        "history": outcome.history,
        ("iterations" if _counts_iterations(options) else "epochs_done"):
            outcome.epochs_done,
        "interrupted": outcome.interrupted,
        "interrupted_at": outcome.interrupted_at,
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


def _interruption_note(outcome, output, checkpoint_dir):
    done = f"{outcome.epochs_done} complete epoch(s)"
    at = outcome.interrupted_at
    if at is None:
        note = f"interrupted after {done}; saved those weights to {output}"
    else:
        step = "" if at["step"] is None else f" after step {at['step']}"
        note = (
            f"interrupted during epoch {at['epoch']}{step}; saved the weights of "
            f"that moment ({done} plus part of one) to {output}"
        )
    if checkpoint_dir is not None:
        note += f"; --resume with --checkpoint {checkpoint_dir} continues the run"
    return note


def _describe_run(options, data):
    n_train, n_classes = len(data.x_train), len(data.class_names)
    if options["model"] == "softmax":
        model = f"softmax regression ({options['optimizer']}, C={options['C']:g})"
    else:
        sizes = [int(np.prod(data.x_train.shape[1:])), *options["hidden"], n_classes]
        model = (
            f"MLP {'-'.join(map(str, sizes))} ({options['optimizer']}, "
            f"learning rate {options['learning_rate']:g}, "
            f"batch {options['batch_size']}; {kernels.describe()})"
        )
    if options["optimizer"] == "lbfgs":
        length = f"up to {LBFGS_MAX_ITER} iterations"
    else:
        length = f"{options['epochs']} epochs"
    return (
        f"{model} on {data.name} ({n_train} training samples), "
        f"{length}, seed {options['seed']}"
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

    model, data, proba = _model_and_test_proba(args)
    metrics = classification_metrics(
        data.y_test, proba, class_names=_class_names(model, data)
    )
    metrics = {"model_path": str(args.model_path), "dataset": data.name, **metrics}
    if args.json:
        _print_json(metrics)
    else:
        print(_format_metrics(metrics))
    return 0


def _model_and_test_proba(args, out_dir=None):
    """The model, its test data and its probabilities (n_samples, n_classes)."""
    from softmaxreg.saving import load_model

    model = load_model(args.model_path)
    if out_dir is not None:
        _check_writable_folder(out_dir, "--out")
    dataset = args.dataset or _training_dataset(model, args.model_path)
    data = load_data(
        dataset,
        args.data_dir,
        download=not args.no_download,
        limit=args.limit,
        split="test",
    )
    _warn_if_other_dataset(model, args.model_path, data)
    with np.errstate(all="ignore"):
        x_test = _scale(data.x_test, _input_scale(model))
        proba = _predict_proba(model, x_test)  # (n_samples, n_classes)
    check_labels(data.y_test, proba.shape[1], f"{data.name} test labels")
    return model, data, proba


def _provenance(model):
    provenance = model.metadata_.get("provenance")
    return provenance if isinstance(provenance, dict) else {}


def _training_dataset(model, model_path):
    """The dataset (name, or .npz path) the model was trained on; else mnist."""
    provenance = _provenance(model)
    name = provenance.get("dataset")
    options = provenance.get("options")
    recorded = options.get("dataset") if isinstance(options, dict) else None
    if isinstance(recorded, str) and is_npz(recorded):
        if Path(recorded).is_file():
            return recorded
        raise DataError(
            f"--dataset: {model_path} was trained on {recorded}, which no longer "
            "exists; pass --dataset NAME or --dataset FILE.npz"
        )
    if not isinstance(name, str):
        _warn(
            f"{model_path} records no training dataset; assuming mnist "
            "(pass --dataset to choose)"
        )
        return "mnist"
    from softmaxreg import datasets

    if name not in datasets.names():
        raise DataError(
            f"--dataset: {model_path} was trained on {name!r}, which is not a "
            "registered dataset; pass --dataset NAME or --dataset FILE.npz"
        )
    return name


def _warn_if_other_dataset(model, model_path, data):
    name = _provenance(model).get("dataset")
    if isinstance(name, str) and name != data.name:
        _warn(f"{model_path} was trained on {name!r}; scoring it on {data.name!r}")


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

    out_dir = args.out or Path("reports") / args.model_path.stem
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out: {out_dir} is a file; give a folder for the report")
    model, data, _ = _model_and_test_proba(args, out_dir)
    history = _provenance(model).get("history") or None
    result = write_report(
        model,
        _scale(data.x_test, _input_scale(model)),
        data.y_test,
        out_dir,
        history=history,
        class_names=_class_names(model, data),
        info={
            "model_path": str(args.model_path),
            "dataset": f"{data.name} (test split)",
            "n_samples": len(data.y_test),
            "provenance": _provenance(model) or None,
        },
    )
    if args.json:
        _print_json({"out_dir": str(out_dir), **(result or {})})
    else:
        print(f"report written to {out_dir}")
    return 0


# ---------------------------------------------------------------------------
# predict

_INVERT = {"auto": "auto", "yes": True, "no": False}
# leading bytes of formats that are sometimes saved under a wrong suffix
_SIGNATURES = (
    (b"\x89PNG", "a PNG image: rename it to .png"),
    (b"\xff\xd8\xff", "a JPEG image: rename it to .jpg"),
    (b"GIF8", "a GIF image: rename it to .gif"),
    (b"BM", "a BMP image: rename it to .bmp"),
    (b"II*\x00", "a TIFF image: rename it to .tif"),
    (b"MM\x00*", "a TIFF image: rename it to .tif"),
    (b"PK", "a zip archive (.npz?); pass its arrays as .npy files"),
)


def _run_predict(args):
    from softmaxreg.saving import load_model

    model = load_model(args.model_path)
    names = model.metadata_.get("class_names")
    results, failures = [], []
    for path in args.inputs:
        try:
            labels, images, inverted = _read_inputs(path, model, _INVERT[args.invert])
        except (SoftmaxregError, ValueError, OSError) as error:
            message = _one_line(error)
            if str(path) not in message:
                message = f"{path}: {message}"
            failures.append({"input": str(path), "error": message})
            _say(f"error: {message}")
            continue
        with np.errstate(all="ignore"):
            proba = _predict_proba(model, images)  # (n_images, n_classes)
        for label, row in zip(labels, proba):
            result = _top_classes(label, row, names, args.top)
            results.append({**result, "inverted": inverted})
    _print_predictions(args, results, failures)
    return 2 if failures else 0


def _print_predictions(args, results, failures):
    if args.json:
        _print_json(
            {
                "model_path": str(args.model_path),
                "predictions": results,
                "errors": failures,
            }
        )
        return
    for result in results:
        shown = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in result["top"])
        print(f"{result['input']}: {result['predicted']}  ({shown})")


def _read_inputs(path, model, invert):
    """Labels, images of shape (n_images, height, width), and whether inverted.

    ``inverted`` is None for .npy arrays, which are taken as they are.
    """
    if path.is_dir():
        raise DataError(f"{path} is a folder; give image or .npy files inside it")
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    if path.suffix.lower() in NPY_SUFFIXES:
        images = _read_npy(path, model)
        if len(images) == 1:
            return [str(path)], images, None
        return [f"{path}[{index}]" for index in range(len(images))], images, None
    from softmaxreg.preprocessing import prepare_image

    image, info = prepare_image(
        path, mode=_image_mode(model), invert=invert, return_info=True
    )
    return [str(path)], image[None], bool(info["inverted"])  # (1, 28, 28)


def _read_npy(path, model):
    with open(path, "rb") as file:
        head = file.read(12)
    if not head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path} is not a .npy array (it looks like {_guess(head)})")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(
                f"{path} holds Python objects, which are never loaded; save a "
                "numeric array (uint8 pixels or floats in [0, 1])"
            ) from None
        raise DataError(f"{path}: not a readable .npy array ({_one_line(error)})")
    except OSError as error:
        raise DataError(f"{path}: not a readable .npy array ({_one_line(error)})")
    return _npy_pixels(_npy_images(array, path, model), path, model)


def _guess(head):
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image: rename it to .webp"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return what
    return "no NumPy array: its NumPy header is missing"


def _npy_images(array, path, model):
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
    if len(array) == 0:
        raise DataError(f"no images in {path} (its shape is {array.shape})")
    return array


def _npy_pixels(array, path, model):
    if array.dtype == np.uint8:
        return _scale(array, _input_scale(model))
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
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
    failed = [r for r in status if r.location is not None and r.verified is False]
    if args.json:
        records = [dataclasses.asdict(record) for record in status]
        _print_json({"datasets": records, "ok": not failed})
    else:
        print(datasets.format_status(status))
    for record in failed:
        problem = (record.problem or "verification failed").splitlines()[0]
        _say(f"error: {record.name} in {record.location} fails verification: "
             f"{problem}")
    return 2 if failed else 0


# ---------------------------------------------------------------------------
# Model helpers shared by the commands


def _preprocessing(model):
    preprocessing = model.metadata_.get("preprocessing")
    return preprocessing if isinstance(preprocessing, dict) else {}


def _input_shape(model):
    shape = _preprocessing(model).get("input_shape", IMAGE_SHAPE)
    return tuple(int(n) for n in shape)


def _input_scale(model):
    return float(_preprocessing(model).get("input_scale", INPUT_SCALE))


def _image_mode(model):
    # files written before the image mode was recorded were all MNIST digits
    return _preprocessing(model).get("image_mode", "digit")


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


def _warn(message):
    _say(f"warning: {message}")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Replacement for warnings.showwarning: one line, no source path."""
    _warn(_one_line(message))


def _silence_stdout():
    # further writes (the interpreter's final flush included) go nowhere
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # e.g. no file descriptor
        pass


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _fail(error, code, hint=False):
    message = _one_line(error)
    if isinstance(error, FileNotFoundError) and error.filename and error.strerror:
        message = f"{error.strerror}: {error.filename}"
    if hint:
        message = f"{type(error).__name__}: {message}"
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if os.environ.get("SOFTMAXREG_DEBUG") and isinstance(error, BaseException):
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
