"""MNIST handwritten digits, with a Keras-compatible ``load_data``."""

from .formats import load_npz


def load_data(path=None, data_dir=None, download=True):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)`` uint8 arrays.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).

    Parameters
    ----------
    path : path-like, optional
        A Keras ``mnist.npz`` to read instead of the IDX files (read without
        pickle).
    data_dir : path-like, optional
        Folder searched first for the IDX files; see
        :func:`softmaxreg.datasets.load`.
    download : bool
        Download into the user cache when no local copy is found.

    Notes
    -----
    Keras reads ``path`` relative to ``~/.keras/datasets`` and downloads it
    when absent; here ``path`` is an existing file, used as given, and
    downloads fetch the IDX files instead.
    """
    if path is not None:
        return load_npz(path)
    from .loader import load

    return load("mnist", data_dir=data_dir, download=download)
