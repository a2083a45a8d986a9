"""Keras-compatible namespace, so Keras tutorials run with their imports changed.

``import softmaxreg as tf`` then ``tf.keras.models.Sequential``,
``tf.keras.layers.Dense``, ``tf.keras.datasets.mnist.load_data()``,
``tf.keras.optimizers.Adam()``... resolve to this library's own objects.
Only what the library implements is here: other Keras names raise
AttributeError. ``models.load_model`` and ``Sequential.save`` read and write
this library's safetensors model files (not Keras's .keras files).

``History.history`` holds one key Keras does not, "epoch_seconds": the wall
time of each epoch, validation included.
"""

import importlib as _importlib

from softmaxreg import activations, callbacks, layers, losses, models, optimizers
from softmaxreg.models import Sequential

# "datasets" is also public, resolved on first use by __getattr__ below
__all__ = ["activations", "callbacks", "layers", "losses", "models", "optimizers",
           "Sequential"]


def __getattr__(name):
    # The datasets package is imported on first use: it is not needed to train
    # on arrays the caller already has.
    if name == "datasets":
        module = _importlib.import_module("softmaxreg.datasets")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'softmaxreg.keras' has no attribute {name!r}")


def __dir__():
    return sorted(__all__ + ["datasets"])
