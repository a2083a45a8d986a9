"""Readers for the other shapes MNIST arrives in: Keras's ``mnist.npz`` and CSV."""

from __future__ import annotations

import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, DatasetNotFoundError
from .idx import MAX_DEFLATE_RATIO

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# What a damaged archive can raise from numpy's and zipfile's readers.
_NPZ_FAILURES = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    NotImplementedError,  # a zip compression method flipped to an unknown one
)


def load_npz(path):
    """Read a Keras-style ``mnist.npz`` (never unpickling anything).

    Parameters
    ----------
    path : path-like
        An ``.npz`` archive holding ``x_train``, ``y_train``, ``x_test``,
        ``y_test``.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        uint8 arrays; images of shape (n_samples, height, width), labels of
        shape (n_samples,), as :func:`softmaxreg.datasets.load`.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb") as file:
            _check_members(file, path)
            file.seek(0)
            arrays = _read_archive(file, path)
    except _NPZ_FAILURES as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _as_uint8(arrays[f"x_{split}"], path, f"x_{split}", 3)
        arrays[f"y_{split}"] = _as_uint8(arrays[f"y_{split}"], path, f"y_{split}", 1)
        _check_counts(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_members(file, path):
    """Refuse members declaring more than the archive holds, before numpy allocates.

    NumPy allocates what a member's ``.npy`` header declares, so a few bytes
    could claim terabytes; each header is read and checked against the sizes
    in the zip directory, themselves bounded by the deflate ratio.
    """
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
            if info.file_size > limit:
                raise DataError(
                    f"{path}: member {info.filename} claims {info.file_size} bytes, "
                    f"more than its {info.compress_size} compressed bytes can hold"
                )
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    _check_npy_header(member, info, path)


def _check_npy_header(member, info, path):
    """Read one ``.npy`` header; refuse objects and sizes past the member's."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise DataError(f"{path}: {info.filename} uses .npy version {version}")
    if dtype.hasobject:
        raise DataError(
            f"{path}: {info.filename} holds Python objects, which would need "
            "unpickling; refused"
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise DataError(
            f"{path}: {info.filename} declares shape {shape} ({declared} bytes) "
            f"but holds only {info.file_size} bytes"
        )


def _read_archive(file, path):
    """The four arrays of an already checked archive, read without pickle."""
    # The file is a zip (checked above), so numpy returns an NpzFile.
    with np.load(file, allow_pickle=False) as archive:
        missing = [key for key in _NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing arrays {missing}; expected {list(_NPZ_KEYS)}, "
                f"found {archive.files}"
            )
        return {key: archive[key] for key in _NPZ_KEYS}


def _as_uint8(array, path, key, n_dims):
    """Check an array's rank and values, and return it as uint8."""
    if array.ndim != n_dims:
        raise DataError(
            f"{path}: {key} has shape {array.shape}, expected {n_dims} dimensions"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: {key} has dtype {array.dtype}, expected uint8")
    if array.size and (
        not np.all(np.isfinite(array))
        or array.min() < 0
        or array.max() > 255
        or np.any(array != np.round(array))
    ):
        raise DataError(f"{path}: {key} holds values that are not integers 0..255")
    return array.astype(np.uint8)


def _check_counts(path, split, images, labels):
    if len(images) != len(labels):
        raise DataError(
            f"{path}: {split} split has {len(images)} images but {len(labels)} labels"
        )


def load_csv(path):
    """Read one split in the common CSV layout ``label,pixel0,...,pixel783``.

    A first line that is not numeric is taken as a header and skipped. Train
    and test splits come in separate files, so call this once per file.

    Parameters
    ----------
    path : path-like
        The CSV file; the number of pixel columns must be a perfect square.

    Returns
    -------
    (x, y)
        uint8 arrays: images of shape (n_samples, side, side) (side 28 for
        MNIST), labels of shape (n_samples,).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    table = _read_table(path)
    if table.shape[1] < 2:
        raise DataError(
            f"{path}: {table.shape[1]} column(s), expected label,pixel0,..."
        )
    side = math.isqrt(table.shape[1] - 1)
    if side * side != table.shape[1] - 1:
        raise DataError(
            f"{path}: {table.shape[1] - 1} pixel columns, not a square image "
            "(expected label followed by side*side pixels, 784 for MNIST)"
        )
    if table.size and (table.min() < 0 or table.max() > 255):
        raise DataError(f"{path}: values outside 0..255")
    labels = table[:, 0].astype(np.uint8)
    images = table[:, 1:].astype(np.uint8).reshape(-1, side, side)
    return images, labels


def _read_table(path):
    """The CSV's numbers as an int16 table (n_samples, 1 + n_pixels)."""
    with open(path, "rb") as file:
        first = file.readline().strip()
    has_header = bool(first) and not first[:1].isdigit()
    try:
        with warnings.catch_warnings():
            # An empty table is reported below as an error, not as a warning.
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(
                path, delimiter=",", dtype=np.int16, skiprows=int(has_header), ndmin=2
            )
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{path}: not a numeric CSV of label,pixels ({exc})") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    return table
