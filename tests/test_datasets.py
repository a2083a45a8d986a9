"""Dataset loading: registry, search order, cache hygiene, other formats, real data."""

import gzip
import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmaxreg import datasets
from softmaxreg.datasets import locate, registry
from softmaxreg.errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    SoftmaxregError,
)

ROLES = ("x_train", "y_train", "x_test", "y_test")
FILE_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
HTML = b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n"


def idx_bytes(array):
    """Encode a uint8 array as IDX (independent of the library's writer)."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@dataclass
class Tiny:
    """A small generated dataset registered under a test-only name."""

    spec: registry.DatasetSpec
    arrays: dict
    encoded: dict

    def write_to(self, folder, compress=False, roles=ROLES):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for role in roles:
            name = FILE_NAMES[role] + (".gz" if compress else "")
            data = self.encoded[role]
            (folder / name).write_bytes(gzip.compress(data) if compress else data)
        return folder

    def path(self, folder, role, compress=False):
        return Path(folder) / (FILE_NAMES[role] + (".gz" if compress else ""))


def make_tiny(name, arrays, n_classes=3):
    encoded = {role: idx_bytes(arrays[role]) for role in ROLES}
    files = tuple(
        registry.FileSpec(
            FILE_NAMES[role],
            hashlib.sha256(encoded[role]).hexdigest(),
            len(encoded[role]),
            role,
        )
        for role in ROLES
    )
    spec = registry.DatasetSpec(
        name=name,
        class_names=[f"class{i}" for i in range(n_classes)],
        files=files,
        licence="test only",
        mirrors=(),
        aliases=(name.replace("-", "_"),),
    )
    return Tiny(spec, arrays, encoded)


def tiny_arrays(seed=7, n_train=12, n_test=5, n_classes=3):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "y_train": rng.integers(0, n_classes, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "y_test": rng.integers(0, n_classes, n_test).astype(np.uint8),
    }


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No SOFTMAXREG_DATA, a private cache and system folder; returns tmp_path."""
    monkeypatch.delenv("SOFTMAXREG_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", [tmp_path / "system"])
    return tmp_path


@pytest.fixture
def tiny(isolated):
    dataset = make_tiny("tiny-test", tiny_arrays())
    registry.register(dataset.spec)
    yield dataset
    registry.unregister(dataset.spec.name)


def cache_folder(tmp_path, name="tiny-test"):
    return tmp_path / "xdg" / "softmaxreg" / name


def assert_equal_to(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, role in zip((x_train, y_train, x_test, y_test), ROLES, strict=True):
        assert got.dtype == np.uint8
        assert got.shape == arrays[role].shape
        np.testing.assert_array_equal(got, arrays[role])


def overwrite(path, data):
    """Replace a file by a new one (new inode, so no cached verification applies)."""
    path = Path(path)
    path.unlink()
    path.write_bytes(data)


# --- registry ----------------------------------------------------------------


def test_registry_entries():
    mnist = datasets.get_spec("mnist")
    assert mnist.class_names == [str(i) for i in range(10)]
    assert len(mnist.mirrors) >= 2
    assert all(url.startswith("https://") for url in mnist.mirrors)
    assert [f.size for f in mnist.files] == [47040016, 60008, 7840016, 10008]
    fashion = datasets.get_spec("fashion_mnist")
    assert fashion.name == "fashion-mnist"
    assert fashion.class_names[9] == "Ankle boot"
    assert "MIT" in fashion.licence and "CC BY-SA" in mnist.licence
    assert datasets.get_spec("Fashion-MNIST") is fashion


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(
        DataError, match=r"unknown dataset 'cifar'.*mnist, fashion-mnist"
    ):
        datasets.get_spec("cifar")
    with pytest.raises(TypeError, match="name: expected a dataset name"):
        datasets.get_spec(3)


def test_fingerprint_is_short_stable_and_distinct():
    first = datasets.fingerprint("mnist")
    assert first == datasets.fingerprint("MNIST")
    assert first.startswith("mnist:sha256:") and len(first) == len("mnist:sha256:") + 16
    assert first != datasets.fingerprint("fashion-mnist")


def test_register_requires_the_four_roles():
    spec = replace(datasets.get_spec("mnist"), name="broken", files=())
    with pytest.raises(DataError, match="files must have the roles"):
        registry.register(spec)


# --- search order ------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_load_from_data_dir_parent_or_dataset_folder(tiny, isolated, compress):
    tiny.write_to(isolated / "parent" / "tiny-test", compress=compress)
    assert_equal_to(
        datasets.load("tiny-test", data_dir=isolated / "parent"), tiny.arrays
    )
    assert_equal_to(
        datasets.load("tiny_test", data_dir=str(isolated / "parent" / "tiny-test")),
        tiny.arrays,
    )


def test_search_order(tiny, isolated, monkeypatch):
    given = tiny.write_to(isolated / "given" / "tiny-test")
    env = tiny.write_to(isolated / "env" / "tiny-test")
    cache = tiny.write_to(cache_folder(isolated))
    system = tiny.write_to(isolated / "system" / "tiny-test")
    monkeypatch.setenv("SOFTMAXREG_DATA", str(isolated / "env"))

    def found(data_dir=None):
        records = {r.name: r for r in datasets.status(data_dir, verify=False)}
        return records["tiny-test"].location

    assert found(isolated / "given") == given
    assert found() == env
    monkeypatch.delenv("SOFTMAXREG_DATA")
    assert found() == cache
    for path in cache.iterdir():
        path.unlink()
    assert found() == system


def test_folder_with_some_files_is_skipped(tiny, isolated):
    tiny.write_to(isolated / "given" / "tiny-test", roles=ROLES[:3])
    system = tiny.write_to(isolated / "system" / "tiny-test")
    assert_equal_to(
        datasets.load("tiny-test", data_dir=isolated / "given"), tiny.arrays
    )
    records = {r.name: r for r in datasets.status(isolated / "given", verify=False)}
    assert records["tiny-test"].location == system


def test_nothing_found_lists_every_place_and_the_fix(tiny, isolated, monkeypatch):
    monkeypatch.setenv("SOFTMAXREG_DATA", str(isolated / "env"))
    tiny.write_to(isolated / "env" / "tiny-test", roles=ROLES[:3])
    (isolated / "given").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        datasets.load("tiny-test", data_dir=isolated / "given", download=False)
    message = str(caught.value)
    for folder in (
        isolated / "given" / "tiny-test",
        isolated / "env" / "tiny-test",
        cache_folder(isolated),
        isolated / "system" / "tiny-test",
    ):
        assert str(folder) in message
    assert "[3 of 4 files]" in message
    assert "\n" not in message  # the CLI prints it as one line
    assert "downloading was turned off" in message
    assert "SOFTMAXREG_DATA" in message and "--data-dir" in message


@pytest.mark.parametrize("split", ["train", "test"])
def test_split_reads_only_its_own_files(tiny, isolated, split):
    # only this split's two files exist: loading it must not need the others
    roles = (f"x_{split}", f"y_{split}")
    tiny.write_to(isolated / "given" / "tiny-test", roles=roles)
    x, y = datasets.load("tiny-test", data_dir=isolated / "given", download=False,
                         split=split)
    np.testing.assert_array_equal(x, tiny.arrays[roles[0]])
    np.testing.assert_array_equal(y, tiny.arrays[roles[1]])
    with pytest.raises(DatasetNotFoundError, match=r"\[2 of 4 files\]"):
        datasets.load("tiny-test", data_dir=isolated / "given", download=False)


def test_split_none_returns_both(tiny, isolated):
    tiny.write_to(isolated / "given")
    result = datasets.load("tiny-test", data_dir=isolated / "given", split=None)
    assert_equal_to(result, tiny.arrays)


@pytest.mark.parametrize("split", ["training", "TRAIN", "", 0])
def test_bad_split_names_the_allowed(tiny, isolated, split):
    with pytest.raises(ValueError, match=r"split: expected None, 'train' or 'test'"):
        datasets.load("tiny-test", split=split)


def test_split_counts_are_checked_alone(isolated):
    arrays = tiny_arrays()
    arrays["y_test"] = arrays["y_test"][:-1]
    dataset = make_tiny("tiny-short", arrays)
    registry.register(dataset.spec)
    try:
        dataset.write_to(isolated / "given", roles=("x_train", "y_train"))
        x, _ = datasets.load("tiny-short", data_dir=isolated / "given", split="train")
        assert x.shape == (12, 4, 4)
        dataset.write_to(isolated / "given", roles=("x_test", "y_test"))
        with pytest.raises(DataError, match="holds 5 images but .* 4 labels"):
            datasets.load("tiny-short", data_dir=isolated / "given", split="test")
    finally:
        registry.unregister("tiny-short")


def test_missing_data_dir_is_an_error_without_fallback(tiny, isolated, monkeypatch):
    # the data is there through the environment and the cache, yet an explicit
    # folder that does not exist must not silently fall back to them
    tiny.write_to(isolated / "env" / "tiny-test")
    tiny.write_to(cache_folder(isolated))
    monkeypatch.setenv("SOFTMAXREG_DATA", str(isolated / "env"))
    missing = isolated / "typo"
    with pytest.raises(DatasetNotFoundError,
                       match=f"^data_dir {re.escape(str(missing))}: no such folder"):
        datasets.load("tiny-test", data_dir=missing)
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        datasets.status(data_dir=missing)
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        datasets.load("tiny-test", data_dir=missing, split="test")


def test_data_dir_that_is_a_file_is_an_error(tiny, isolated):
    a_file = isolated / "a-file"
    a_file.write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="a-file: not a folder; pass"):
        datasets.load("tiny-test", data_dir=a_file)


def test_missing_environment_folder_falls_through_and_is_mentioned(
    tiny, isolated, monkeypatch
):
    monkeypatch.setenv("SOFTMAXREG_DATA", str(isolated / "gone"))
    tiny.write_to(cache_folder(isolated))
    assert_equal_to(datasets.load("tiny-test", download=False), tiny.arrays)
    cache_folder(isolated).joinpath(FILE_NAMES["y_test"]).unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        datasets.load("tiny-test", download=False)
    message = str(caught.value)
    assert f"SOFTMAXREG_DATA={isolated / 'gone'} is not an existing folder" in message
    assert "\n" not in message


def test_image_mode_of_the_registered_datasets(tiny):
    assert datasets.get_spec("mnist").image_mode == "digit"
    assert datasets.get_spec("fashion-mnist").image_mode == "object"
    assert datasets.get_spec("tiny-test").image_mode == "digit"  # the default
    with pytest.raises(DataError, match="image_mode must be one of"):
        registry.register(replace(tiny.spec, name="tiny-bad", image_mode="photo"))
    assert "tiny-bad" not in datasets.names()


def test_empty_mirror_list_still_gives_the_not_found_error(tiny):
    with pytest.raises(DatasetNotFoundError, match="no mirror is registered"):
        datasets.load("tiny-test")


# --- bad files, and the cache ------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "corruption", ["html", "flip", "truncate"], ids=["html", "flip", "truncate"]
)
def test_bad_cached_file_is_reported_and_removed(tiny, isolated, compress, corruption):
    cache = tiny.write_to(cache_folder(isolated), compress=compress)
    bad = tiny.path(cache, "x_train", compress)
    data = bad.read_bytes()
    if corruption == "html":
        data = HTML
    elif corruption == "flip":
        data = data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]
    else:
        data = data[:-1]
    overwrite(bad, data)
    with pytest.raises(
        DataError, match=rf"{bad.name}: .*; removed this bad copy from the cache"
    ):
        datasets.load("tiny-test", download=False)
    assert not bad.exists()
    assert tiny.path(cache, "y_train", compress).exists()


def test_html_in_cache_says_so(tiny, isolated):
    cache = tiny.write_to(cache_folder(isolated), compress=True)
    overwrite(tiny.path(cache, "y_test", True), HTML)
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte\.gz: .*HTML.*; removed"
    ):
        datasets.load("tiny-test")


@pytest.mark.parametrize("origin", ["data_dir", "env", "system"])
def test_bad_file_outside_the_cache_is_never_removed(
    tiny, isolated, monkeypatch, origin
):
    folder = tiny.write_to(isolated / origin / "tiny-test")
    monkeypatch.setenv("SOFTMAXREG_DATA", str(isolated / "env"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", [isolated / "system"])
    bad = tiny.path(folder, "x_test")
    overwrite(bad, HTML)
    data_dir = isolated / "data_dir" if origin == "data_dir" else None
    if origin == "system":
        monkeypatch.delenv("SOFTMAXREG_DATA")
    with pytest.raises(DataError, match=re.escape(f"{bad}: ")) as caught:
        datasets.load("tiny-test", data_dir=data_dir)
    assert "removed" not in str(caught.value)
    assert bad.read_bytes() == HTML


def test_checksum_mismatch_is_a_checksum_error(tiny, isolated):
    folder = tiny.write_to(isolated / "given")
    path = tiny.path(folder, "y_train")
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 3  # still a valid label, different content
    overwrite(path, bytes(data))
    with pytest.raises(ChecksumError, match=r"train-labels-idx1-ubyte: SHA-256"):
        datasets.load("tiny-test", data_dir=folder)


def test_image_and_label_counts_must_match(isolated):
    arrays = {
        "x_train": np.zeros((60000, 1, 1), np.uint8),
        "y_train": np.zeros(59999, np.uint8),
        "x_test": np.zeros((3, 1, 1), np.uint8),
        "y_test": np.zeros(3, np.uint8),
    }
    dataset = make_tiny("tiny-mismatch", arrays)
    registry.register(dataset.spec)
    try:
        folder = dataset.write_to(isolated / "given", compress=True)
        with pytest.raises(
            DataError,
            match=r"train-images-idx3-ubyte\.gz holds 60000 images but .*59999 labels",
        ):
            datasets.load("tiny-mismatch", data_dir=folder)
    finally:
        registry.unregister("tiny-mismatch")


def test_labels_beyond_the_class_count_are_refused(isolated):
    arrays = tiny_arrays()
    arrays["y_test"][2] = 7
    dataset = make_tiny("tiny-labels", arrays)
    registry.register(dataset.spec)
    try:
        folder = dataset.write_to(isolated / "given")
        with pytest.raises(DataError, match=r"label 7 is outside 0\.\.2"):
            datasets.load("tiny-labels", data_dir=folder)
    finally:
        registry.unregister("tiny-labels")


def test_every_dataset_error_is_a_softmaxreg_error(tiny, isolated):
    with pytest.raises(SoftmaxregError):
        datasets.load("tiny-test", download=False)


# --- status ------------------------------------------------------------------


def test_status_reports_verified_corrupt_and_missing(tiny, isolated):
    folder = tiny.write_to(isolated / "given" / "tiny-test")
    records = {r.name: r for r in datasets.status(isolated / "given")}
    assert records["tiny-test"].verified is True
    assert records["tiny-test"].location == folder
    overwrite(tiny.path(folder, "x_train"), HTML)
    records = {r.name: r for r in datasets.status(isolated / "given")}
    assert records["tiny-test"].verified is False
    assert "HTML" in records["tiny-test"].problem
    assert tiny.path(folder, "x_train").exists()
    table = datasets.format_status(list(records.values()))
    assert "tiny-test" in table and "CORRUPT" in table
    for path in folder.iterdir():
        path.unlink()
    records = datasets.status(isolated / "given")
    table = datasets.format_status(records)
    record = {r.name: r for r in records}["tiny-test"]
    assert record.location is None and record.verified is None
    assert str(cache_folder(isolated)) in " ".join(record.places)
    assert "missing" in table and "tiny-test looked in:" in table


# --- Keras npz and CSV -------------------------------------------------------


def test_load_npz_round_trip(tiny, isolated):
    path = isolated / "mnist.npz"
    np.savez_compressed(path, **tiny.arrays)
    assert_equal_to(datasets.load_npz(path), tiny.arrays)
    assert_equal_to(datasets.mnist.load_data(path=path), tiny.arrays)


def test_load_npz_accepts_integer_valued_other_dtypes(tiny, isolated):
    path = isolated / "ints.npz"
    np.savez(path, **{k: v.astype(np.int64) for k, v in tiny.arrays.items()})
    assert_equal_to(datasets.load_npz(path), tiny.arrays)


def test_load_npz_never_unpickles(tiny, isolated):
    path = isolated / "pickled.npz"
    arrays = dict(tiny.arrays, y_test=np.array([object()], dtype=object))
    np.savez(path, **arrays)
    with pytest.raises(
        DataError, match=r"pickled\.npz: y_test\.npy holds Python objects"
    ):
        datasets.load_npz(path)


def test_npz_member_declaring_a_huge_shape_is_refused_before_allocating(isolated):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    path = isolated / "huge.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", header.getvalue() + bytes(100))
    with pytest.raises(
        DataError, match=r"x_train\.npy declares shape \(1000000, 1000000\)"
    ):
        datasets.load_npz(path)


def test_single_npy_is_not_an_npz(isolated):
    path = isolated / "one.npz"
    with open(path, "wb") as file:
        np.save(file, np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"one\.npz: not a readable \.npz"):
        datasets.load_npz(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"x_train": np.zeros((2, 2, 2))}, r"missing arrays \['y_train'"),
        ("not a zip", r"not a readable \.npz"),
        (
            {
                "x_train": np.full((1, 2, 2), 300),
                "y_train": [0],
                "x_test": np.zeros((1, 2, 2)),
                "y_test": [0],
            },
            r"x_train holds values",
        ),
        (
            {
                "x_train": np.zeros((2, 4)),
                "y_train": [0, 1],
                "x_test": np.zeros((1, 2, 2)),
                "y_test": [0],
            },
            r"x_train has shape \(2, 4\)",
        ),
        (
            {
                "x_train": np.zeros((2, 2, 2)),
                "y_train": [0],
                "x_test": np.zeros((1, 2, 2)),
                "y_test": [0],
            },
            r"2 images but 1 labels",
        ),
    ],
)
def test_load_npz_rejects_bad_archives(isolated, content, message):
    path = isolated / "bad.npz"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.savez(path, **content)
    with pytest.raises(DataError, match=message):
        datasets.load_npz(path)


@pytest.mark.parametrize("header", [True, False])
def test_load_csv(tiny, isolated, header):
    x, y = tiny.arrays["x_train"], tiny.arrays["y_train"]
    rows = np.column_stack([y, x.reshape(len(x), -1)])
    lines = [",".join(str(v) for v in row) for row in rows]
    if header:
        lines.insert(0, "label," + ",".join(f"pixel{i}" for i in range(16)))
    path = isolated / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    images, labels = datasets.load_csv(path)
    assert images.shape == (12, 4, 4) and labels.shape == (12,)
    assert images.dtype == labels.dtype == np.uint8
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3\n", r"2 pixel columns, not a square"),
        ("1,2,3,4,999\n", r"values outside 0\.\.255"),
        ("1,2,x,4,5\n", r"not a numeric CSV"),
        ("label,p0,p1,p2,p3\n", r"no data rows"),
        ("", r"no data rows"),
    ],
)
def test_load_csv_rejects_bad_files(isolated, text, message):
    path = isolated / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        datasets.load_csv(path)


def test_missing_npz_and_csv(isolated):
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        datasets.load_npz(isolated / "absent.npz")
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        datasets.load_csv(isolated / "absent.csv")


# --- the real files ----------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def check_mnist(result):
    (x_train, y_train), (x_test, y_test) = result
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert abs(x_train.mean() - 33.318) <= 0.001
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS


def check_fashion(result):
    (x_train, y_train), (x_test, y_test) = result
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10


@pytest.mark.realdata
def test_real_mnist_through_the_environment(real_data_dir, isolated, monkeypatch):
    monkeypatch.setenv("SOFTMAXREG_DATA", str(real_data_dir))
    check_mnist(datasets.load("mnist", download=False))
    check_mnist(datasets.mnist.load_data(download=False))


@pytest.mark.realdata
def test_real_mnist_through_data_dir(real_data_dir, isolated):
    check_mnist(datasets.load("mnist", data_dir=real_data_dir, download=False))
    check_mnist(
        datasets.load("mnist", data_dir=real_data_dir / "mnist", download=False)
    )


@pytest.mark.realdata
def test_real_fashion_mnist(real_data_dir, isolated, monkeypatch):
    check_fashion(
        datasets.load("fashion-mnist", data_dir=real_data_dir, download=False)
    )
    monkeypatch.setenv("SOFTMAXREG_DATA", str(real_data_dir))
    check_fashion(datasets.fashion_mnist.load_data(download=False))


@pytest.mark.realdata
def test_real_status_verifies_both(real_data_dir, isolated):
    records = {r.name: r for r in datasets.status(real_data_dir)}
    assert records["mnist"].verified is True
    assert records["fashion-mnist"].verified is True


@pytest.mark.realdata
def test_real_splits(real_data_dir, isolated):
    x_test, y_test = datasets.load("mnist", data_dir=real_data_dir, split="test")
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    x_train, y_train = datasets.load("fashion-mnist", data_dir=real_data_dir,
                                     split="train")
    assert x_train.shape == (60000, 28, 28)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10


RAW_MNIST_BYTES = 47040016 + 60008 + 7840016 + 10008

_PEAK_SCRIPT = """
import resource, sys, tracemalloc
import numpy as np
from softmaxreg import datasets
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tracemalloc.start()
datasets.load("mnist", data_dir=sys.argv[1], download=False)
traced = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(traced, after - before)
"""


@pytest.mark.realdata
def test_real_mnist_load_peak_memory(real_data_dir):
    env = dict(os.environ, PYTHONHASHSEED="0")
    output = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(real_data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    traced, rss_growth = (int(v) for v in output.split())
    assert traced <= 1.1 * RAW_MNIST_BYTES
    assert rss_growth <= 3 * RAW_MNIST_BYTES


# --- hostile npz / CSV files -------------------------------------------------


def _small_npz_bytes(compressed):
    arrays = {
        "x_train": np.arange(8, dtype=np.uint8).reshape(2, 2, 2),
        "y_train": np.array([0, 1], np.uint8),
        "x_test": np.ones((1, 2, 2), np.uint8),
        "y_test": np.array([1], np.uint8),
    }
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


_NPZ = {flag: _small_npz_bytes(flag) for flag in (False, True)}


@settings(
    max_examples=200,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    compressed=st.booleans(),
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3
    ),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_npz_only_raises_data_error(tmp_path, compressed, edits, cut):
    data = bytearray(_NPZ[compressed])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut % len(data) :]
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(data))
    try:
        (x_train, y_train), _ = datasets.load_npz(path)
    except DataError:
        return
    assert x_train.dtype == y_train.dtype == np.uint8


@settings(max_examples=200, deadline=2000)
@given(text=st.text(alphabet="0123456789,-.x \n", max_size=200))
def test_random_csv_only_raises_data_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("csv") / "random.csv"
    path.write_text(text)
    try:
        images, labels = datasets.load_csv(path)
    except DataError:
        return
    assert images.dtype == labels.dtype == np.uint8
    assert images.shape[0] == labels.shape[0]
