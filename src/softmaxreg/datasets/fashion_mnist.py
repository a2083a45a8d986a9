"""Fashion-MNIST (Zalando), with a Keras-compatible ``load_data``."""


def load_data(data_dir=None, download=True):
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)`` uint8 arrays.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,); the class
    names are in ``softmaxreg.datasets.get_spec("fashion-mnist").class_names``.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder searched first; see :func:`softmaxreg.datasets.load`.
    download : bool
        Download into the user cache when no local copy is found.
    """
    from .loader import load

    return load("fashion-mnist", data_dir=data_dir, download=download)
