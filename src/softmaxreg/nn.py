"""TensorFlow-style ``nn`` namespace: ``tf.nn.relu``, ``tf.nn.softmax``...

These are the plain functions of :mod:`softmaxreg.activations`; passed as
``Dense(activation=...)`` they are recognised by identity as the registered
activation of the same name, so a model using them can be saved.
"""

from softmaxreg.activations import linear, relu, sigmoid, softmax, tanh
from softmaxreg.ops import log_softmax

__all__ = ["relu", "sigmoid", "tanh", "softmax", "linear", "log_softmax"]
