"""Readers for the other shapes MNIST arrives in: Keras's ``mnist.npz`` and CSV."""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError, DatasetNotFoundError

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(
                    f"{path}: a single .npy array, expected an .npz archive"
                )
            missing = [key for key in _NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing}; expected {list(_NPZ_KEYS)}, "
                    f"found {archive.files}"
                )
            arrays = {key: archive[key] for key in _NPZ_KEYS}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _as_uint8(arrays[f"x_{split}"], path, f"x_{split}", 3)
        arrays[f"y_{split}"] = _as_uint8(arrays[f"y_{split}"], path, f"y_{split}", 1)
        _check_counts(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


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
