"""Activation functions: forward pass, backward pass and a registry of names.

Each activation is an :class:`Activation` with ``forward(z, out)`` and
``backward(grad_a, z, a)``, working on arrays of shape (n_samples, n_units).
The plain functions :func:`relu`, :func:`sigmoid`, :func:`tanh`, :func:`softmax`
and :func:`linear` are what ``softmaxreg.nn`` exposes (``tf.nn.relu``); passing
one of them as ``activation=`` is the same as passing its name.
"""

import numpy as np

from softmaxreg import ops

__all__ = [
    "Activation", "ReLU", "Sigmoid", "Tanh", "Softmax", "Linear",
    "relu", "sigmoid", "tanh", "softmax", "linear", "get", "serialize", "names",
]


class Activation:
    """Base class: an element-wise (or row-wise) function and its derivative.

    Subclasses may be passed to ``Dense(activation=...)`` and train normally;
    only the registered ones can be written to a model file.
    """

    name = None

    def forward(self, z, out=None):
        """Return the activation of ``z`` (n_samples, n_units), into ``out``."""
        raise NotImplementedError

    def backward(self, grad_a, z, a):
        """Gradient with respect to ``z`` given the gradient ``grad_a`` wrt ``a``.

        May overwrite and return ``grad_a``.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Activation):
    """Identity: a = z."""

    name = "linear"

    def forward(self, z, out=None):
        if out is None or out is z:
            return z
        np.copyto(out, z)
        return out

    def backward(self, grad_a, z, a):
        return grad_a


class ReLU(Activation):
    """a = max(z, 0); da/dz is 1 where z > 0, else 0."""

    name = "relu"

    def forward(self, z, out=None):
        return np.maximum(z, 0, out=out)

    def backward(self, grad_a, z, a):
        np.multiply(grad_a, z > 0, out=grad_a)
        return grad_a


class Sigmoid(Activation):
    """a = 1 / (1 + exp(-z)); da/dz = a (1 - a)."""

    name = "sigmoid"

    def forward(self, z, out=None):
        # 1/(1+exp(-z)) = (1 + tanh(z/2)) / 2 never overflows, for any sign of z
        a = np.multiply(z, 0.5, out=out)
        np.tanh(a, out=a)
        a += 1
        a *= 0.5
        return a

    def backward(self, grad_a, z, a):
        grad_a *= a
        grad_a *= 1 - a
        return grad_a


class Tanh(Activation):
    """a = tanh(z); da/dz = 1 - a^2."""

    name = "tanh"

    def forward(self, z, out=None):
        return np.tanh(z, out=out)

    def backward(self, grad_a, z, a):
        grad_a *= 1 - a * a
        return grad_a


class Softmax(Activation):
    """Row-wise softmax, computed after subtracting the row maximum."""

    name = "softmax"

    def forward(self, z, out=None):
        return ops.softmax(z, out=out)

    def backward(self, grad_a, z, a):
        # Jacobian da_i/dz_j = a_i (delta_ij - a_j), so
        # grad_z = a * (grad_a - sum_j grad_a_j a_j) row by row.
        inner = np.sum(grad_a * a, axis=1, keepdims=True)  # (n_samples, 1)
        grad_a -= inner
        grad_a *= a
        return grad_a


_REGISTRY = {cls.name: cls() for cls in (Linear, ReLU, Sigmoid, Tanh, Softmax)}


def relu(x):
    """Rectified linear unit, max(x, 0), element-wise."""
    return np.maximum(x, 0)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), element-wise, overflow-free."""
    return _REGISTRY["sigmoid"].forward(np.asarray(x, dtype=np.result_type(x, 1.0)))


def tanh(x):
    """Hyperbolic tangent, element-wise."""
    return np.tanh(x)


def softmax(x, axis=-1):
    """Softmax along ``axis`` (the last one by default), max-subtracted."""
    x = np.asarray(x, dtype=np.result_type(x, 1.0))
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def linear(x):
    """Identity."""
    return x


_FUNCTION_NAMES = {relu: "relu", sigmoid: "sigmoid", tanh: "tanh",
                   softmax: "softmax", linear: "linear"}


def names():
    """The registered activation names, sorted."""
    return sorted(_REGISTRY)


def get(identifier):
    """Resolve ``None``, a name, a registered function or an Activation.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For a callable that is not a registered activation: its derivative is
        unknown, so it cannot be trained.
    """
    if identifier is None:
        return _REGISTRY["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _REGISTRY:
            raise ValueError(
                f"activation: unknown name {identifier!r}; expected one of "
                f"{', '.join(names())}"
            )
        return _REGISTRY[key]
    if callable(identifier):
        try:
            return _REGISTRY[_FUNCTION_NAMES[identifier]]
        except (KeyError, TypeError):
            pass
        raise TypeError(
            f"activation: got the callable {identifier!r}, whose derivative is "
            f"unknown; pass one of {', '.join(names())} (by name or as "
            "softmaxreg.nn.<name>), or a subclass of activations.Activation"
        )
    raise TypeError(
        f"activation: expected a name, a function from softmaxreg.nn or an "
        f"Activation; got {type(identifier).__name__}"
    )


def serialize(activation):
    """The registered name of ``activation``, for a model file.

    Raises
    ------
    ValueError
        When the activation is a user-defined class: a model file stores
        names only, never code.
    """
    name = getattr(activation, "name", None)
    if name in _REGISTRY and type(activation) is type(_REGISTRY[name]):
        return name
    raise ValueError(
        f"activation {activation!r} is not a registered activation, so the model "
        f"cannot be saved; use one of {', '.join(names())}"
    )
