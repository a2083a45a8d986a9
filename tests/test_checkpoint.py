"""Checkpoints: exact round trips, resume after SIGKILL, clean stop on Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from softmaxreg import checkpoint, saving
from softmaxreg.errors import ModelFileError

sys.path.insert(0, os.path.dirname(__file__))
from test_cli import run, write_npz  # noqa: E402

# 4000 samples in batches of 2: about half a second per epoch, long enough to
# land a signal in the middle of one.
SLOW_RUN = ["--hidden", "16", "--batch-size", "2", "--epochs", "4", "--seed", "7"]


@pytest.fixture(scope="module")
def slow_npz(tmp_path_factory):
    return write_npz(
        tmp_path_factory.mktemp("data") / "blocks.npz", n_train=4000, n_test=100, seed=3
    )


def _trained_mlp(dtype="float32"):
    import softmaxreg as sr
    from softmaxreg import layers

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 5)).astype(dtype), np.arange(64) % 3
    model = sr.Sequential(
        [
            layers.Dense(6, activation="relu", input_shape=(5,)),
            layers.Dense(3, activation="softmax"),
        ],
        dtype=dtype,
    )
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=2, batch_size=8, seed=1, verbose=0)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_round_trip_is_exact(tmp_path, dtype):
    model = _trained_mlp(dtype)
    state = model.optimizer.get_state()
    saved = checkpoint.Checkpoint(
        model,
        state,
        epoch=2,
        seed=1,
        options={"epochs": 5},
        history={"loss": [1.0, 0.5]},
    )
    checkpoint.save_checkpoint(tmp_path / "ck", saved)
    loaded = checkpoint.load_checkpoint(tmp_path / "ck")
    assert (loaded.epoch, loaded.seed) == (2, 1)
    assert loaded.options == {"epochs": 5} and loaded.history == {"loss": [1.0, 0.5]}
    assert set(loaded.optimizer_state) == set(state)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded.optimizer_state[name], array)
        assert loaded.optimizer_state[name].shape == array.shape
        assert loaded.optimizer_state[name].dtype == array.dtype
    for name, array in model.get_weights_dict().items():
        np.testing.assert_array_equal(loaded.model.get_weights_dict()[name], array)


def test_no_checkpoint_gives_none(tmp_path):
    assert checkpoint.load_checkpoint(tmp_path) is None


def test_damaged_checkpoint_is_a_model_file_error(tmp_path):
    model = _trained_mlp()
    saved = checkpoint.Checkpoint(model, model.optimizer.get_state(), 1, 0)
    path = checkpoint.save_checkpoint(tmp_path, saved)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="truncated"):
        checkpoint.load_checkpoint(tmp_path)


def test_model_file_is_not_a_checkpoint(tmp_path):
    path = saving.save_model(_trained_mlp(), tmp_path / checkpoint.FILE_NAME)
    with pytest.raises(ModelFileError, match="expected format 'softmaxreg-checkpoint'"):
        checkpoint.load_checkpoint(path.parent)


def test_existing_checkpoint_needs_resume(tmp_path, slow_npz, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", slow_npz, "--epochs", "1", "--checkpoint", "ck"]
    assert run(capsys, *argv)[0] == 0
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "already holds a checkpoint; pass --resume" in err


def test_checkpoint_with_softmax_model_is_refused(slow_npz, capsys):
    code, _, err = run(
        capsys,
        "train",
        "--dataset",
        slow_npz,
        "--model",
        "softmax",
        "--checkpoint",
        "ck",
    )
    assert code == 2
    assert "--checkpoint: works with --model mlp only" in err


# --- real processes -----------------------------------------------------------------


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "softmaxreg.cli", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a process started from a non-interactive shell may inherit an ignored
        # SIGINT; give it the default so Ctrl-C behaves as at a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_checkpoint(process, folder, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.checkpoint_path(folder).exists():
            return checkpoint.load_checkpoint(folder)
        if process.poll() is not None:
            break
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"no checkpoint appeared; stderr: {process.communicate()[1]}")


def _weights(path):
    return saving.load_model(path).get_weights_dict()


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path, slow_npz):
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "softmaxreg.cli",
            "train",
            "--dataset",
            str(slow_npz),
            *SLOW_RUN,
            "--output",
            "reference.safetensors",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reference.returncode == 0, reference.stderr

    process = _start(
        [
            "train",
            "--dataset",
            slow_npz,
            *SLOW_RUN,
            "--checkpoint",
            "ck",
            "--output",
            "resumed.safetensors",
        ],
        tmp_path,
    )
    first = _wait_for_checkpoint(process, tmp_path / "ck")
    time.sleep(first.history["epoch_seconds"][0] / 2)  # into the next epoch
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = checkpoint.load_checkpoint(tmp_path / "ck").epoch
    assert 1 <= killed_at < 4
    assert not (tmp_path / "resumed.safetensors").exists()

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "softmaxreg.cli",
            "train",
            "--checkpoint",
            "ck",
            "--resume",
            "--output",
            "resumed.safetensors",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["epochs_done"] == 4
    assert len(summary["history"]["loss"]) == 4
    expected = _weights(tmp_path / "reference.safetensors")
    found = _weights(tmp_path / "resumed.safetensors")
    assert set(found) == set(expected)
    for name in expected:
        assert np.array_equal(found[name], expected[name]), name  # bit for bit


@pytest.mark.slow
def test_ctrl_c_saves_what_was_trained_and_exits_130(tmp_path, slow_npz):
    process = _start(
        [
            "train",
            "--dataset",
            slow_npz,
            *SLOW_RUN,
            "--checkpoint",
            "ck",
            "--output",
            "partial.safetensors",
            "--json",
        ],
        tmp_path,
    )
    _wait_for_checkpoint(process, tmp_path / "ck")
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    model = saving.load_model(tmp_path / "partial.safetensors")
    provenance = model.metadata_["provenance"]
    assert provenance["interrupted"] is True
    assert 1 <= provenance["epochs"] < 4
    assert provenance["epochs"] == checkpoint.load_checkpoint(tmp_path / "ck").epoch
    # the signal lands mid-epoch or, rarely, between two epochs
    at = provenance.get("interrupted_at")
    if at is None:
        assert f"interrupted after {provenance['epochs']} complete epoch" in err
    else:
        assert at["epoch"] == provenance["epochs"] + 1
        assert f"interrupted during epoch {at['epoch']} after step {at['step']}" in err
    assert summary["interrupted_at"] == at


# --- resuming with options, interrupting in-process ---------------------------------

SMALL_RUN = ["--hidden", "8", "--seed", "2"]


def test_resume_extends_the_run_exactly(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_npz(tmp_path / "blocks.npz", n_train=200, n_test=50)
    base = ["train", "--dataset", data, *SMALL_RUN]
    assert run(capsys, *base, "--epochs", "3", "--output", "ref.st")[0] == 0
    argv = [*base, "--epochs", "2", "--checkpoint", "ck", "--output", "two.st"]
    assert run(capsys, *argv)[0] == 0
    # same options repeated are accepted; --epochs 3 extends the two-epoch run
    code, out, err = run(
        capsys, "train", "--checkpoint", "ck", "--resume", "--hidden", "8",
        "--epochs", "3", "--output", "three.st", "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["epochs_done"] == 3 and len(summary["history"]["loss"]) == 3
    expected, found = _weights(tmp_path / "ref.st"), _weights(tmp_path / "three.st")
    for name in expected:
        assert np.array_equal(found[name], expected[name]), name  # bit for bit
    assert checkpoint.load_checkpoint(tmp_path / "ck").epoch == 3


def test_checkpoint_engine_must_be_known(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_npz(tmp_path / "blocks.npz", n_train=100, n_test=20)
    argv = ["train", "--dataset", data, *SMALL_RUN, "--epochs", "1"]
    assert run(capsys, *argv, "--checkpoint", "ck")[0] == 0
    saved = checkpoint.load_checkpoint(tmp_path / "ck")
    saved.engine = "gpu"  # written with a valid digest, as an editor could
    checkpoint.save_checkpoint(tmp_path / "ck", saved)
    with pytest.raises(ModelFileError, match="'engine' must be \"compiled\" or"):
        checkpoint.load_checkpoint(tmp_path / "ck")


def test_resume_on_other_kernels_warns(tmp_path, capsys, monkeypatch):
    from softmaxreg import kernels

    monkeypatch.chdir(tmp_path)
    data = write_npz(tmp_path / "blocks.npz", n_train=100, n_test=20)
    argv = ["train", "--dataset", data, *SMALL_RUN, "--epochs", "1"]
    assert run(capsys, *argv, "--checkpoint", "ck")[0] == 0
    saved = checkpoint.load_checkpoint(tmp_path / "ck").engine
    assert saved == kernels.engine("float32")
    other = "numpy" if saved == "compiled" else "compiled"
    monkeypatch.setattr(kernels, "engine", lambda dtype: other)
    code, _, err = run(capsys, "train", "--checkpoint", "ck", "--resume",
                       "--epochs", "2")
    assert code == 0, err
    assert f"warning: the checkpoint's epochs ran on the {saved} kernels and this " \
           f"run uses the {other} ones" in err
    assert checkpoint.load_checkpoint(tmp_path / "ck").engine == other


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--batch-size", "16"], "--batch-size: 16 differs from the checkpoint's 32"),
        (["--seed", "5"], "--seed: 5 differs from the checkpoint's 2"),
        (["--hidden", "9"], r"--hidden: \[9\] differs from the checkpoint's \[8\]"),
        (["--epochs", "1"], "--epochs: the checkpoint in ck has already done 2"),
    ],
)
def test_resume_refuses_other_options(tmp_path, capsys, monkeypatch, extra, pattern):
    monkeypatch.chdir(tmp_path)
    data = write_npz(tmp_path / "blocks.npz", n_train=100, n_test=20)
    argv = ["train", "--dataset", data, *SMALL_RUN, "--epochs", "2"]
    assert run(capsys, *argv, "--checkpoint", "ck")[0] == 0
    code, out, err = run(capsys, "train", "--checkpoint", "ck", "--resume", *extra)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("softmaxreg: error: ")
    assert re.search(pattern, err), err


def test_ctrl_c_mid_epoch_records_where(tmp_path, capsys, monkeypatch):
    from softmaxreg.models import Sequential

    monkeypatch.chdir(tmp_path)
    data = write_npz(tmp_path / "blocks.npz", n_train=100, n_test=20)
    real_step, calls = Sequential._train_step, []

    def step_then_ctrl_c(self, *args):
        calls.append(1)
        if len(calls) == 6:  # 4 steps per epoch of 32: epoch 2, step 2
            signal.raise_signal(signal.SIGINT)
        return real_step(self, *args)

    monkeypatch.setattr(Sequential, "_train_step", step_then_ctrl_c)
    code, out, err = run(
        capsys, "train", "--dataset", data, *SMALL_RUN, "--epochs", "3",
        "--output", "part.st", "--json",
    )
    assert code == 130, err
    assert "interrupted during epoch 2 after step 2; saved the weights" in err
    assert json.loads(out)["interrupted_at"] == {"epoch": 2, "step": 2}
    provenance = saving.load_model(tmp_path / "part.st").metadata_["provenance"]
    assert provenance["epochs"] == 1
    assert provenance["interrupted_at"] == {"epoch": 2, "step": 2}
    assert len(provenance["history"]["loss"]) == 1
