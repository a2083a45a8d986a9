"""The command line: each command, --json output, exit codes, bad model files."""

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from softmaxreg import cli, saving

N_CLASSES = 10


def make_digits(n_samples, seed):
    """uint8 28x28 images whose class is a bright 6x6 block at a class-set place."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples) % N_CLASSES
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n_samples, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, 4 + 12 * row : 10 + 12 * row, 2 + 5 * col : 8 + 5 * col] = 220
    return images, labels.astype(np.uint8)


def write_npz(path, n_train=300, n_test=100, seed=0):
    x_train, y_train = make_digits(n_train, seed)
    x_test, y_test = make_digits(n_test, seed + 1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def npz(tmp_path):
    return write_npz(tmp_path / "blocks.npz")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOFTMAXREG_DEBUG", raising=False)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, pattern):
    lines = err.strip().splitlines()
    assert lines[-1].startswith("softmaxreg: error: "), err
    assert "Traceback" not in err
    assert __import__("re").search(pattern, lines[-1]), lines[-1]


@pytest.fixture
def softmax_model(tmp_path, npz, capsys):
    path = tmp_path / "softmax.safetensors"
    code, _, err = run(
        capsys, "train", "--dataset", npz, "--model", "softmax", "--output", path
    )
    assert code == 0, err
    return path


# --- train ------------------------------------------------------------------------


def test_train_softmax_json(tmp_path, npz, capsys):
    code, out, err = run(
        capsys, "train", "--dataset", npz, "--model", "softmax", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)  # exactly one JSON object on stdout
    assert summary["dataset"] == "blocks"
    assert summary["model"]["kind"] == "softmax"
    assert summary["test_accuracy"] > 0.9
    assert 0 <= summary["test_loss"] < 1.0
    assert summary["train_seconds"] > 0
    assert summary["model_path"] == os.path.join("models", "blocks-softmax.safetensors")
    loaded = saving.load_model(tmp_path / summary["model_path"])
    provenance = loaded.metadata_["provenance"]
    assert provenance["dataset_fingerprint"].startswith("blocks.npz:sha256:")
    assert loaded.metadata_["preprocessing"]["input_shape"] == [28, 28]
    # L-BFGS counts iterations, not epochs, and the record says so
    assert "epochs" not in provenance
    iterations = len(provenance["history"]["iteration_loss"])
    assert provenance["iterations"] == summary["iterations"] == iterations > 0


def test_train_text_output_names_the_saved_file(npz, capsys):
    code, out, _ = run(
        capsys,
        "train",
        "--dataset",
        npz,
        "--model",
        "softmax",
        "--output",
        "out/m.safetensors",
    )
    assert code == 0
    assert "test accuracy" in out
    assert out.strip().splitlines()[-1] == "model saved to out/m.safetensors"


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
        (["--model", "cnn"], "invalid choice: 'cnn'"),
        (["--validation-split", "1.5"], r"expected a number in \[0, 1\)"),
        (["--model", "softmax", "--hidden", "64"], "--model softmax has no hidden"),
        (["--model", "softmax", "--optimizer", "adamw"], "not available for --model"),
        (["--resume"], "--resume: needs --checkpoint"),
    ],
)
def test_train_bad_usage_exits_2(npz, capsys, argv, pattern):
    code, out, err = run(capsys, "train", "--dataset", npz, *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, pattern)


def test_train_missing_dataset_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--dataset", tmp_path / "none.npz")
    assert code == 2
    assert_one_line_error(err, "none.npz: no such file")


def test_corrupt_cached_dataset_is_reported_and_removed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SOFTMAXREG_DATA", raising=False)
    folder = tmp_path / "cache" / "softmaxreg" / "mnist"
    folder.mkdir(parents=True)
    html = b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>"
    names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    for name in names:
        (folder / (name + ".gz")).write_bytes(gzip.compress(html))
    code, _, err = run(capsys, "train", "--no-download", "--limit", "10")
    assert code == 2
    assert_one_line_error(err, "(?i)html")
    assert not (folder / "train-images-idx3-ubyte.gz").exists()


# --- evaluate ----------------------------------------------------------------------


def test_evaluate_text(softmax_model, npz, capsys):
    code, out, err = run(capsys, "evaluate", softmax_model, "--dataset", npz)
    assert code == 0, err
    assert "accuracy" in out and "precision" in out and "confusion matrix" in out


def test_evaluate_json_matches_metrics(softmax_model, npz, capsys):
    code, out, _ = run(capsys, "evaluate", softmax_model, "--dataset", npz, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n_samples"] == 100
    assert np.array(result["confusion_matrix"]).sum() == 100
    assert len(result["per_class"]) == N_CLASSES
    assert {"precision", "recall", "f1"} <= set(result["per_class"][0])
    # the same numbers as the model's own predictions
    model = saving.load_model(softmax_model)
    (_, _), (x_test, y_test) = __import__("softmaxreg").datasets.load_npz(npz)
    proba = model.predict_proba(x_test.reshape(100, -1).astype(np.float32) / 255)
    expected = np.mean(model.classes_[proba.argmax(axis=1)] == y_test)
    assert result["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_evaluate_uses_the_recorded_npz_by_default(softmax_model, npz, capsys):
    code, out, err = run(capsys, "evaluate", softmax_model, "--json")
    assert code == 0, err
    assert json.loads(out)["n_samples"] == 100
    assert "warning" not in err
    npz.unlink()
    code, _, err = run(capsys, "evaluate", softmax_model)
    assert code == 2
    assert_one_line_error(err, r"trained on .*blocks.npz, which no longer exists")


# --- predict -----------------------------------------------------------------------


def _save_png(path, image):
    from PIL import Image

    Image.fromarray(image).save(path)
    return path


def test_predict_png_and_npy(tmp_path, softmax_model, capsys):
    images, labels = make_digits(4, seed=5)
    png = _save_png(tmp_path / "digit.png", images[0])
    one = tmp_path / "one.npy"
    np.save(one, images[1])  # (28, 28) uint8: one raw image
    flat = tmp_path / "flat.npy"
    np.save(flat, (images[2] / 255).reshape(784))  # (784,) float in [0, 1]
    many = tmp_path / "many.npy"
    np.save(many, images)  # (4, 28, 28): four images
    code, out, err = run(
        capsys, "predict", softmax_model, png, one, flat, many, "--json"
    )
    assert code == 0, err
    predictions = json.loads(out)["predictions"]
    assert [p["input"] for p in predictions] == [
        str(png),
        str(one),
        str(flat),
        *(f"{many}[{i}]" for i in range(4)),
    ]
    assert [p["predicted"] for p in predictions[1:3]] == [
        str(labels[1]),
        str(labels[2]),
    ]
    assert [p["predicted"] for p in predictions[3:]] == [str(v) for v in labels]
    for prediction in predictions:
        probs = [c["probability"] for c in prediction["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)


def test_predict_text(tmp_path, softmax_model, capsys):
    images, labels = make_digits(1, seed=6)
    np.save(tmp_path / "x.npy", images[0])
    code, out, _ = run(capsys, "predict", softmax_model, tmp_path / "x.npy")
    assert code == 0
    assert out.startswith(f"{tmp_path / 'x.npy'}: {labels[0]}  (")


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.zeros((27, 28), np.uint8), r"expected an array of shape \(28, 28\)"),
        (np.full((28, 28), 255.0), r"float pixels must lie in \[0, 1\], found 255"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.zeros((28, 28), np.complex64), "expected uint8 raw pixels"),
    ],
)
def test_predict_bad_npy_exits_2(tmp_path, softmax_model, capsys, array, pattern):
    np.save(tmp_path / "bad.npy", array)
    code, _, err = run(capsys, "predict", softmax_model, tmp_path / "bad.npy")
    assert code == 2
    assert_one_line_error(err, pattern)


def test_predict_missing_input_exits_2(tmp_path, softmax_model, capsys):
    code, _, err = run(capsys, "predict", softmax_model, tmp_path / "nope.png")
    assert code == 2
    assert_one_line_error(err, "no such input file")


def test_predict_undecodable_image_exits_2(tmp_path, softmax_model, capsys):
    (tmp_path / "fake.png").write_bytes(b"<html>not an image</html>")
    code, _, err = run(capsys, "predict", softmax_model, tmp_path / "fake.png")
    assert code == 2
    assert_one_line_error(err, "fake.png")


# --- bad model files: exit 2, one line, nothing run ---------------------------------


def _body(path):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _write(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def _tamper_description(path, edit):
    header, body = _body(path)
    description = json.loads(header["__metadata__"]["softmaxreg"])
    edit(description)
    header["__metadata__"]["softmaxreg"] = json.dumps(description)
    _write(path, header, body)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _future(path):
    _tamper_description(path, lambda d: d.update(format_version=7))


def _object_path(path):
    def edit(description):
        description["model_class"] = "subprocess:Popen"
        description["config"]["class_name"] = "subprocess:Popen"

    _tamper_description(path, edit)


def _resize(path, name, shape):
    """Give array ``name`` a new shape, cutting or padding its float32 bytes."""
    header, body = _body(path)
    begin, end = header[name]["data_offsets"]
    new_end = begin + 4 * int(np.prod(shape))
    data = body[begin:end][: new_end - begin].ljust(new_end - begin, b"\0")
    body = body[:begin] + data + body[end:]
    for entry_name, entry in header.items():
        if entry_name != "__metadata__" and entry["data_offsets"][0] >= end:
            entry["data_offsets"] = [o + new_end - end for o in entry["data_offsets"]]
    header[name].update(shape=list(shape), data_offsets=[begin, new_end])
    _write(path, header, body)


def _wrong_shape(path):
    _resize(path, "coef", (9, 784))  # a 9-class head for a 10-class model


def _no_version(path):
    _tamper_description(path, lambda d: d.pop("format_version"))


def _flip_weight_bit(path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10
    path.write_bytes(bytes(data))


def _pickled(path):
    import pickle

    path.write_bytes(pickle.dumps({"coef": np.zeros(3)}))


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (_truncate, "truncated"),
        (_flip_weight_bit, "arrays do not match the SHA-256 digest"),
        (_future, "format version 7 by a newer softmaxreg"),
        (_no_version, "no 'format_version'"),
        (_object_path, "unknown model class 'subprocess:Popen'"),
        (_wrong_shape, r"'coef' must have shape \(10, 784\); found \(9, 784\)"),
        (_pickled, "looks like a pickle"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_bad_model_file_exits_2(
    tmp_path, softmax_model, npz, capsys, damage, pattern, command
):
    damage(softmax_model)
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.uint8))
    extra = ["--dataset", npz] if command == "evaluate" else [tmp_path / "x.npy"]
    code, out, err = run(capsys, command, softmax_model, *extra)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, pattern)


def test_missing_model_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "predict", tmp_path / "none.safetensors", "x.png")
    assert code == 2
    assert_one_line_error(err, "model file not found")


# --- datasets, help, unexpected failures --------------------------------------------


def test_datasets_json(real_data_dir, capsys):
    code, out, _ = run(capsys, "datasets", "--data-dir", real_data_dir, "--json")
    assert code == 0
    result = json.loads(out)
    records = {r["name"]: r for r in result["datasets"]}
    assert records["mnist"]["verified"] is True
    assert result["ok"] is True


def test_datasets_text_lists_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SOFTMAXREG_DATA", raising=False)
    monkeypatch.setattr("softmaxreg.datasets.locate.SYSTEM_DIRS", [])
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    assert "mnist" in out and "missing" in out


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "predict", "report", "datasets"]
)
def test_every_command_has_help(command, capsys):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith("usage: softmaxreg " + command)


def test_train_help_states_the_defaults(capsys):
    _, out, _ = run(capsys, "train", "--help")
    text = " ".join(out.split())
    for default in (
        "(default: mnist)",
        "(default: mlp)",
        "(default: 128)",
        "(default: 5)",
        "(default: 32)",
        "(default: adam)",
        "0.001",
        "(default: 0)",
        "models/<dataset>-<model>.safetensors",
    ):
        assert default in text


def test_no_command_is_usage_error(capsys):
    code, _, err = run(capsys)
    assert code == 2
    assert "softmaxreg: error:" in err


def test_unexpected_error_exits_1_with_hint(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_run_datasets", broken)
    code, _, err = run(capsys, "datasets")
    assert code == 1
    assert "softmaxreg: error: RuntimeError: disk on fire" in err
    assert "SOFTMAXREG_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("SOFTMAXREG_DEBUG", "1")
    code, _, err = run(capsys, "datasets")
    assert code == 1 and "Traceback" in err


def test_console_script_runs_as_a_process(tmp_path, softmax_model):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "softmaxreg.cli",
            "predict",
            str(softmax_model),
            str(tmp_path / "missing.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"softmaxreg: error: no such input file: {tmp_path / 'missing.png'}"
    ]


# --- the MLP path, report ---------------------------------------------------------


@pytest.fixture
def mlp_model(tmp_path, npz, capsys):
    path = tmp_path / "mlp.safetensors"
    code, out, err = run(
        capsys,
        "train",
        "--dataset",
        npz,
        "--epochs",
        "3",
        "--learning-rate",
        "0.005",
        "--hidden",
        "32",
        "--hidden",
        "16",
        "--validation-split",
        "0.2",
        "--output",
        path,
        "--json",
    )
    assert code == 0, err
    return path, json.loads(out)


def test_train_mlp_json(mlp_model):
    path, summary = mlp_model
    assert summary["model"] == {"kind": "mlp", "hidden": [32, 16], "optimizer": "adam"}
    history = summary["history"]
    assert set(history) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "epoch_seconds",
    }
    assert all(len(values) == 3 for values in history.values())
    assert summary["test_accuracy"] > 0.9
    loaded = saving.load_model(path)
    assert [
        layer["config"].get("units") for layer in loaded.metadata_["config"]["layers"]
    ] == [None, 32, 16, N_CLASSES]
    assert loaded.metadata_["provenance"]["history"] == history


def test_train_same_seed_same_model(tmp_path, npz, capsys):
    outputs = []
    for name in ("a", "b"):
        code, _, _ = run(
            capsys,
            "train",
            "--dataset",
            npz,
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--seed",
            "3",
            "--output",
            f"{name}.st",
        )
        assert code == 0
        outputs.append(saving.load_model(tmp_path / f"{name}.st").get_weights_dict())
    for name, array in outputs[0].items():
        np.testing.assert_array_equal(outputs[1][name], array)


def test_mlp_evaluate_and_predict(tmp_path, mlp_model, npz, capsys):
    path, summary = mlp_model
    code, out, _ = run(capsys, "evaluate", path, "--dataset", npz, "--json")
    assert code == 0
    assert json.loads(out)["accuracy"] == pytest.approx(summary["test_accuracy"])
    images, labels = make_digits(3, seed=9)
    np.save(tmp_path / "three.npy", images)
    code, out, _ = run(
        capsys, "predict", path, tmp_path / "three.npy", "--top", "2", "--json"
    )
    assert code == 0
    predictions = json.loads(out)["predictions"]
    assert [p["predicted"] for p in predictions] == [str(v) for v in labels]
    assert all(len(p["top"]) == 2 for p in predictions)


def test_report_writes_files(tmp_path, mlp_model, npz, capsys):
    pytest.importorskip("matplotlib")  # the optional "report" extra
    path, _ = mlp_model
    code, out, err = run(
        capsys, "report", path, "--dataset", npz, "--out", "rep", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["out_dir"] == "rep"
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert str(path) in page  # the "Model and data" section names the file


def test_softmax_needs_every_class(tmp_path, capsys):
    path = write_npz(tmp_path / "few.npz", n_train=300)
    code, _, err = run(
        capsys, "train", "--dataset", path, "--model", "softmax", "--limit", "5"
    )
    assert code == 2
    assert_one_line_error(err, r"training labels lack classes \[")


@pytest.mark.slow
@pytest.mark.realdata
def test_default_job_on_real_mnist(real_data_dir, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--data-dir", real_data_dir, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["test_accuracy"] >= 0.975
    assert summary["model_path"] == os.path.join("models", "mnist-mlp.safetensors")
    model_path = tmp_path / summary["model_path"]
    code, out, _ = run(
        capsys, "evaluate", model_path, "--data-dir", real_data_dir, "--json"
    )
    assert code == 0
    assert json.loads(out)["accuracy"] == pytest.approx(summary["test_accuracy"])
    from softmaxreg import datasets

    (_, _), (x_test, y_test) = datasets.load("mnist", data_dir=real_data_dir)
    np.save(tmp_path / "first.npy", x_test[:20])
    code, out, _ = run(capsys, "predict", model_path, tmp_path / "first.npy", "--json")
    predicted = [int(p["predicted"]) for p in json.loads(out)["predictions"]]
    assert np.mean(np.array(predicted) == y_test[:20]) >= 0.9


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (
            lambda path: _resize(path, "layers.3.kernel", (16, 9)),
            r"layers.3.kernel: .* implies shape \(16, 10\), the file holds \(16, 9\)",
        ),
        (
            lambda path: _tamper_description(
                path,
                lambda d: d["config"]["layers"][1].update(class_name="os.system"),
            ),
            "unknown layer|os.system",
        ),
    ],
)
def test_bad_mlp_file_exits_2(tmp_path, mlp_model, capsys, damage, pattern):
    path, _ = mlp_model
    damage(path)
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.uint8))
    code, out, err = run(capsys, "predict", path, tmp_path / "x.npy")
    assert code == 2
    assert out == ""
    assert_one_line_error(err, pattern)


# --- outputs are checked before any work ------------------------------------------


def _no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the output was checked")

    monkeypatch.setattr(cli, "load_data", refuse)


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--output", ""], "--output: expected a path, got an empty string"),
        (["--output", "."], r"--output: \. is a folder; give a file path"),
        (["--output", "afile/m.safetensors"], "--output: afile is a file"),
        (["--checkpoint", "afile"], "--checkpoint: afile is a file; give a folder"),
        (["--checkpoint", ""], "--checkpoint: expected a path"),
    ],
)
def test_train_output_checked_before_training(npz, capsys, monkeypatch, extra, pattern):
    open("afile", "w").close()
    _no_loading(monkeypatch)
    code, out, err = run(capsys, "train", "--dataset", npz, *extra)
    assert code == 2 and out == ""
    assert_one_line_error(err, pattern)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_train_read_only_output_folder(tmp_path, npz, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    _no_loading(monkeypatch)
    code, _, err = run(capsys, "train", "--dataset", npz, "--output", locked / "m.st")
    assert code == 2
    assert_one_line_error(err, "--output: cannot write in .*locked")


def test_report_out_checked_before_work(softmax_model, npz, capsys, monkeypatch):
    open("afile", "w").close()
    _no_loading(monkeypatch)
    code, _, err = run(capsys, "report", softmax_model, "--out", "afile")
    assert code == 2
    assert_one_line_error(err, "--out: afile is a file; give a folder")
    code, _, err = run(capsys, "report", softmax_model, "--out", "afile/sub")
    assert code == 2
    assert_one_line_error(err, "--out: afile/sub is a file .*not a folder")


# --- .npz labels and splits ---------------------------------------------------------


def _npz_with(path, **changes):
    x_train, y_train = make_digits(100, 0)
    x_test, y_test = make_digits(50, 1)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def test_npz_classes_come_from_training_labels(tmp_path, capsys):
    _, y_test = make_digits(50, 1)
    y_test[7] = 50
    path = _npz_with(tmp_path / "odd.npz", y_test=y_test)
    code, _, err = run(capsys, "train", "--dataset", path, "--model", "softmax")
    assert code == 2
    assert_one_line_error(err, r"y_test holds labels \[50\] outside .* 0\.\.9")
    assert not list(tmp_path.glob("models/*"))


def test_npz_training_labels_must_cover_every_class(tmp_path, capsys):
    _, y_train = make_digits(100, 0)
    y_train[y_train == 3] = 4
    path = _npz_with(tmp_path / "gap.npz", y_train=y_train)
    code, _, err = run(capsys, "train", "--dataset", path, "--model", "softmax")
    assert code == 2
    assert_one_line_error(err, r"classes \[3\] have no training sample")


@pytest.mark.parametrize("split", ["train", "test"])
def test_npz_empty_split_is_refused(tmp_path, capsys, split):
    empty = {f"x_{split}": np.zeros((0, 28, 28), np.uint8),
             f"y_{split}": np.zeros((0,), np.uint8)}
    path = _npz_with(tmp_path / "empty.npz", **empty)
    code, _, err = run(capsys, "train", "--dataset", path, "--model", "softmax")
    assert code == 2
    assert_one_line_error(err, "split is empty")
    assert "RuntimeWarning" not in err and not list(tmp_path.glob("models/*"))


def test_npz_suffix_in_any_case(tmp_path, npz, capsys):
    upper = tmp_path / "OK.NPZ"
    upper.write_bytes(npz.read_bytes())
    code, out, err = run(
        capsys, "train", "--dataset", upper, "--model", "softmax", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["dataset"] == "OK"


# --- image mode and inversion --------------------------------------------------------


def _spy_prepare_image(monkeypatch):
    from softmaxreg import preprocessing

    calls = []
    real = preprocessing.prepare_image

    def spy(source, **kwargs):
        calls.append(kwargs)
        return real(source, **kwargs)

    monkeypatch.setattr(preprocessing, "prepare_image", spy)
    return calls


def test_predict_uses_the_recorded_image_mode(tmp_path, softmax_model, capsys,
                                              monkeypatch):
    model = saving.load_model(softmax_model)
    assert model.metadata_["preprocessing"]["image_mode"] == "object"
    images, _ = make_digits(1, seed=5)
    png = _save_png(tmp_path / "x.png", images[0])
    calls = _spy_prepare_image(monkeypatch)
    code, out, err = run(capsys, "predict", softmax_model, png, "--json")
    assert code == 0, err
    assert calls[-1] == {"mode": "object", "invert": "auto", "return_info": True}
    # a file saved without an image mode is taken as an MNIST-style digit
    plain = tmp_path / "plain.safetensors"
    saving.save_model(model, plain, preprocessing={"input_scale": 1 / 255,
                                                   "input_shape": [28, 28]})
    assert run(capsys, "predict", plain, png)[0] == 0
    assert calls[-1]["mode"] == "digit"


@pytest.mark.parametrize("flag, inverted", [("yes", True), ("no", False)])
def test_predict_invert_option(tmp_path, softmax_model, capsys, flag, inverted):
    images, _ = make_digits(1, seed=5)
    drawn = 255 - images[0] if inverted else images[0]  # dark ink on light for "yes"
    png = _save_png(tmp_path / "x.png", drawn)
    np.save(tmp_path / "x.npy", images[0])
    code, out, err = run(
        capsys, "predict", softmax_model, png, tmp_path / "x.npy",
        "--invert", flag, "--json",
    )
    assert code == 0, err
    predictions = json.loads(out)["predictions"]
    assert [p["inverted"] for p in predictions] == [inverted, None]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, mode", [("mnist", "digit"), ("fashion-mnist", "object")]
)
def test_training_records_the_datasets_image_mode(real_data_dir, capsys, name, mode):
    code, out, err = run(
        capsys, "train", "--dataset", name, "--data-dir", real_data_dir,
        "--limit", "200", "--model", "softmax", "--optimizer", "sgd",
        "--epochs", "1", "--json",
    )
    assert code == 0, err
    model = saving.load_model(json.loads(out)["model_path"])
    assert model.metadata_["preprocessing"]["image_mode"] == mode


# --- predict: one bad input among several --------------------------------------------


def test_predict_reports_each_bad_input_and_runs_the_rest(tmp_path, softmax_model,
                                                         capsys):
    images, labels = make_digits(2, seed=8)
    good = tmp_path / "good.npy"
    np.save(good, images)
    blank = _save_png(tmp_path / "blank.png", np.full((28, 28), 255, np.uint8))
    fake = tmp_path / "fake.npy"
    _save_png(tmp_path / "real.png", images[0])
    fake.write_bytes((tmp_path / "real.png").read_bytes())
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 28, 28), np.uint8))
    folder = tmp_path / "folder"
    folder.mkdir()
    code, out, err = run(
        capsys, "predict", softmax_model, blank, good, fake, empty, folder
    )
    assert code == 2
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"{good}[0]", f"{good}[1]"
    ]
    errors = err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("softmaxreg: error: ") for e in errors)
    assert "blank.png" in errors[0]
    assert f"{fake} is not a .npy array (it looks like a PNG image: rename" in errors[1]
    assert f"no images in {empty}" in errors[2]
    assert f"{folder} is a folder" in errors[3]
    assert "pickle" not in err


def test_predict_json_lists_errors(tmp_path, softmax_model, capsys):
    np.save(tmp_path / "ok.npy", np.zeros((28, 28), np.uint8))
    code, out, _ = run(
        capsys, "predict", softmax_model, tmp_path / "ok.npy", tmp_path / "no.npy",
        "--json",
    )
    assert code == 2
    result = json.loads(out)
    assert len(result["predictions"]) == 1
    assert result["errors"] == [
        {"input": str(tmp_path / "no.npy"),
         "error": f"no such input file: {tmp_path / 'no.npy'}"}
    ]


def test_predict_into_a_closed_pipe_is_quiet(tmp_path, softmax_model):
    images, _ = make_digits(3000, seed=2)  # far more output than a pipe buffer
    np.save(tmp_path / "many.npy", images)
    process = subprocess.Popen(
        [sys.executable, "-m", "softmaxreg.cli", "predict", str(softmax_model),
         str(tmp_path / "many.npy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # as `| head -1` does once it has its line
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_BROKEN_PIPE
    assert err == b""


# --- usage errors name the option -----------------------------------------------------


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["train", "--seed", "-5"], "--seed: expected an integer >= 0, got '-5'"),
        (["train", "--dataset", "foo"],
         "--dataset: unknown dataset 'foo'; choose one of mnist, fashion-mnist, or "
         "give a FILE.npz path"),
        (["train", "--hidden", "100000"], "--hidden: expected at most 65536 units"),
        (["train", "--data-dir", "/nonexistent"],
         "argument --data-dir: no such folder: /nonexistent"),
        (["datasets", "--data-dir", "/nonexistent"],
         "argument --data-dir: no such folder: /nonexistent"),
        (["evaluate", "m", "--data-dir", "afile"], "--data-dir: not a folder: afile"),
    ],
)
def test_usage_errors_name_the_option(capsys, monkeypatch, argv, pattern):
    open("afile", "w").close()
    _no_loading(monkeypatch)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, pattern)


def test_out_of_memory_is_one_line(npz, capsys, monkeypatch):
    def exhausted(*args):
        raise MemoryError

    monkeypatch.setattr(cli, "_train", exhausted)
    code, _, err = run(capsys, "train", "--dataset", npz, "--hidden", "60000")
    assert code == 2
    assert_one_line_error(err, "out of memory; use a smaller model")


# --- ignored options, divergence and warnings ----------------------------------------


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("softmaxreg: warning")]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "softmax", "--validation-split", "0.2"],
         ["--validation-split is ignored: --model softmax holds out no samples"]),
        (["--model", "softmax", "--learning-rate", "0.5", "--epochs", "3"],
         ["--learning-rate is ignored: the lbfgs solver chooses its own steps",
          "--epochs is ignored: the lbfgs solver runs up to 100 iterations"]),
        (["--hidden", "8", "--epochs", "1", "--C", "3"],
         ["--C is ignored: applies to --model softmax only"]),
        (["--model", "softmax", "--optimizer", "sgd", "--epochs", "1"], []),
    ],
)
def test_ignored_options_are_warned(npz, capsys, argv, expected):
    code, _, err = run(capsys, "train", "--dataset", npz, *argv)
    assert code == 0, err
    assert _warnings(err) == [f"softmaxreg: warning: {w}" for w in expected]


def test_lbfgs_log_states_iterations(npz, capsys):
    code, _, err = run(capsys, "train", "--dataset", npz, "--model", "softmax")
    assert code == 0
    assert "up to 100 iterations" in err and "5 epochs" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--hidden", "8", "--epochs", "1", "--learning-rate", "1e300"],
        ["--hidden", "8", "--epochs", "2", "--learning-rate", "1000"],
        ["--model", "softmax", "--optimizer", "sgd", "--learning-rate", "1e300"],
    ],
)
def test_divergence_exits_2_and_saves_nothing(tmp_path, npz, capsys, argv):
    code, out, err = run(capsys, "train", "--dataset", npz, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, "(?i)diverg")
    assert "Warning" not in err and ".py" not in err
    assert not list(tmp_path.glob("models/*"))


def test_python_warnings_become_one_line(capsys, monkeypatch):
    import warnings

    def warns(args):
        warnings.warn("first line\n  second line", UserWarning)
        return 0

    monkeypatch.setattr(cli, "_run_datasets", warns)
    before = warnings.showwarning
    code, _, err = run(capsys, "datasets")
    assert code == 0
    assert err == "softmaxreg: warning: first line second line\n"
    assert warnings.showwarning is before


def test_ctrl_c_in_softmax_training_saves_nothing(tmp_path, npz, capsys, monkeypatch):
    from softmaxreg.estimator import SoftmaxRegression

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SoftmaxRegression, "fit", interrupted)
    code, out, err = run(capsys, "train", "--dataset", npz, "--model", "softmax")
    assert code == 130 and out == ""
    assert "nothing saved" in err.splitlines()[-1]
    assert not list(tmp_path.glob("models/*"))


# --- evaluate/report: which dataset, which scale --------------------------------------


def test_evaluate_warns_on_another_dataset(tmp_path, softmax_model, capsys):
    other = write_npz(tmp_path / "other.npz", seed=4)
    code, _, err = run(capsys, "evaluate", softmax_model, "--dataset", other)
    assert code == 0
    assert _warnings(err) == [
        f"softmaxreg: warning: {softmax_model} was trained on 'blocks'; "
        "scoring it on 'other'"
    ]


def test_evaluate_applies_the_stored_input_scale(tmp_path, softmax_model, npz, capsys,
                                                 monkeypatch):
    model = saving.load_model(softmax_model)
    raw = tmp_path / "raw.safetensors"
    saving.save_model(model, raw, preprocessing={"input_scale": 1.0,
                                                 "input_shape": [28, 28]})
    seen = []
    real = cli._predict_proba
    monkeypatch.setattr(cli, "_predict_proba",
                        lambda m, x: seen.append(float(x.max())) or real(m, x))
    for path in (softmax_model, raw):
        assert run(capsys, "evaluate", path, "--dataset", npz)[0] == 0
    assert seen == [pytest.approx(220 / 255), 220.0]


@pytest.mark.realdata
def test_evaluate_api_model_assumes_mnist_reading_only_test(tmp_path, real_data_dir,
                                                            capsys, monkeypatch):
    from softmaxreg import datasets
    from softmaxreg.estimator import SoftmaxRegression

    rng = np.random.default_rng(0)
    x, y = rng.random((50, 784)), np.arange(50) % 10
    model = SoftmaxRegression(solver="sgd", max_iter=1).fit(x, y)
    path = tmp_path / "api.safetensors"
    saving.save_model(model, path)
    splits = []
    real = datasets.load

    def spy(*args, **kwargs):
        splits.append(kwargs.get("split"))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load", spy)
    code, out, err = run(
        capsys, "evaluate", path, "--data-dir", real_data_dir, "--limit", "50", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["n_samples"] == 50
    assert _warnings(err) == [
        f"softmaxreg: warning: {path} records no training dataset; assuming mnist "
        "(pass --dataset to choose)"
    ]
    assert splits == ["test"]


# --- datasets and help ---------------------------------------------------------------


def test_datasets_corrupt_exits_2(tmp_path, capsys):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / (name + ".gz")).write_bytes(gzip.compress(b"not idx"))
    code, out, err = run(capsys, "datasets", "--data-dir", tmp_path / "data", "--json")
    assert code == 2
    result = json.loads(out)
    assert result["ok"] is False
    verified = {r["name"]: r["verified"] for r in result["datasets"]}
    assert verified["mnist"] is False
    assert_one_line_error(err, "mnist in .* fails verification")


@pytest.mark.parametrize(
    "command, phrases",
    [
        ("predict", ["MODEL model file", "FILE image files", "--invert"]),
        ("evaluate", ["MODEL model file", "Score a model on the test split"]),
        ("report", ["MODEL model file", "Write figures and metrics"]),
    ],
)
def test_help_describes_arguments(capsys, command, phrases):
    _, out, _ = run(capsys, command, "--help")
    text = " ".join(out.split())
    for phrase in phrases:
        assert phrase in text
