"""Datasets: MNIST and Fashion-MNIST from IDX files, verified, cached, usable offline.

::

    from softmaxreg import datasets
    (x_train, y_train), (x_test, y_test) = datasets.load("mnist")
    x_train.shape, x_train.dtype          # (60000, 28, 28) uint8
    x_test, y_test = datasets.load("mnist", split="test")  # reads 2 files of 4

Files are looked for in an explicit ``data_dir``, then ``$SOFTMAXREG_DATA``,
then the user cache, then system folders, and last downloaded from the
registered mirrors into the cache (see :mod:`softmaxreg.datasets.locate`).
An explicit ``data_dir`` that is no folder is an error at once.
Images stay uint8; scale them when a batch uses them.
"""

from . import fashion_mnist, mnist
from .formats import load_csv, load_npz
from .idx import read_idx, write_idx
from .loader import DatasetStatus, format_status, load, status
from .registry import (
    DatasetSpec,
    FileSpec,
    fingerprint,
    get_spec,
    names,
    register,
    unregister,
)

__all__ = [
    "DatasetSpec",
    "DatasetStatus",
    "FileSpec",
    "fashion_mnist",
    "fingerprint",
    "format_status",
    "get_spec",
    "load",
    "load_csv",
    "load_npz",
    "mnist",
    "names",
    "read_idx",
    "register",
    "status",
    "unregister",
    "write_idx",
]
