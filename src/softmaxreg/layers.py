"""Layers of a :class:`~softmaxreg.models.Sequential` model.

A layer maps a batch of shape (n_samples, *input_shape) to (n_samples,
*output_shape). Learned arrays are *views* into the model's flat parameter
buffer, and their gradients views into its flat gradient buffer, so an
optimizer updates every parameter in one vectorised pass. Work arrays are
kept per batch size and reused, so a training step allocates almost nothing.
"""

import math

import numpy as np

from softmaxreg import activations as _activations
from softmaxreg import kernels as _kernels

__all__ = ["Layer", "Flatten", "Dense", "Rescaling", "Dropout", "get", "names"]


def _check_shape_arg(name, value):
    if value is None:
        return None
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    whole = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                for d in shape or ())
    if not shape or not whole or any(d <= 0 for d in shape):
        raise ValueError(
            f"{name}: expected a tuple of positive ints such as (28, 28); "
            f"got {value!r}"
        )
    return tuple(int(d) for d in shape)


class Layer:
    """Base class of every layer.

    Parameters
    ----------
    input_shape : tuple of int, optional
        Shape of one sample, for the first layer of a model (as in Keras).
    name : str, optional
        A label shown by ``summary()``.
    """

    # The factor the incoming gradients carry (the model may fold the optimizer's
    # gradient scale into the loss gradient); penalty gradients get it too.
    grad_scale = 1.0
    _owner = None  # a weak reference to the model holding the layer

    def __init__(self, *, input_shape=None, name=None):
        self.input_shape = _check_shape_arg("input_shape", input_shape)
        self.declared_input_shape = self.input_shape
        self.output_shape = None
        self.name = name
        self._buffers = {}

    # -- structure ---------------------------------------------------------------
    def build(self, input_shape, dtype):
        """Fix the per-sample input shape and dtype; return the output shape."""
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self._buffers = {}
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def param_shapes(self):
        """``[(name, shape), ...]`` of the learned arrays (after ``build``)."""
        return []

    def initialize(self, params, rng):
        """Fill freshly allocated parameter views ``params`` (dict) using ``rng``."""

    def bind(self, params, grads):
        """Point the layer at parameter and gradient views (dicts by name)."""

    def regularization_loss(self):
        return 0.0

    # -- computation -------------------------------------------------------------
    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad_y, need_input_grad=True):
        raise NotImplementedError

    def _buffer(self, key, shape):
        """A reusable work array of ``shape`` in the layer's dtype."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=self.dtype)
            self._buffers[key] = buf
        return buf

    def release_buffers(self):
        self._buffers = {}

    # -- serialisation -----------------------------------------------------------
    def get_config(self):
        config = {}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def count_params(self):
        return sum(math.prod(shape) for _, shape in self.param_shapes())

    def __repr__(self):
        return f"{type(self).__name__}()"


class Flatten(Layer):
    """Reshape each sample to a vector: (n_samples, 28, 28) -> (n_samples, 784)."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y, need_input_grad=True):
        if not need_input_grad:
            return None
        return grad_y.reshape((grad_y.shape[0],) + self.input_shape)


class Rescaling(Layer):
    """y = x * scale + offset, for example ``Rescaling(1 / 255)`` on raw pixels."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("scale", scale), ("offset", offset)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Rescaling: {arg} must be a finite number; "
                                 f"got {value!r}")
        self.scale = float(scale)
        self.offset = float(offset)

    def forward(self, x, training=False):
        y = np.multiply(x, self.scale, out=self._buffer(x.shape[0], x.shape))
        if self.offset:
            y += self.offset
        return y

    def backward(self, grad_y, need_input_grad=True):
        if not need_input_grad:
            return None
        return grad_y * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Dropout(Layer):
    """Zero each input with probability ``rate`` while training (inverted dropout).

    Kept inputs are scaled by 1 / (1 - rate), so inference is the identity. The
    model gives the layer a fresh ``numpy.random.Generator`` at each epoch.
    """

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1); got {rate!r}")
        self.rate = float(rate)
        self.rng = None
        self._mask = None

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        if self.rng is None:
            raise RuntimeError("Dropout: no random generator set; train through fit()")
        keep = self.rng.random(x.shape, dtype=self.dtype) >= self.rate
        self._mask = keep * self.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, grad_y, need_input_grad=True):
        if not need_input_grad:
            return None
        if self._mask is None:
            return grad_y
        grad_y *= self._mask
        return grad_y

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Dense(Layer):
    """Fully connected layer: a = activation(x @ kernel + bias).

    Parameters
    ----------
    units : int
        Number of outputs, n_units.
    activation : str, callable from ``softmaxreg.nn``, Activation or None
        None means linear.
    l2 : float
        L2 penalty ``l2 * sum(kernel**2)`` added to the loss (the bias is not
        penalised).

    Notes
    -----
    The kernel of shape (n_features, n_units) starts Glorot-uniform, in
    [-limit, limit] with limit = sqrt(6 / (n_features + n_units)), and the
    bias at zero, as in Keras.
    """

    def __init__(self, units, activation=None, *, l2=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) \
                or units < 1:
            raise ValueError(f"Dense: units must be a positive int; got {units!r}")
        if not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"Dense: l2 must be a finite number >= 0; got {l2!r}")
        if use_bias is not True:
            raise ValueError("Dense: use_bias=False is not supported; got "
                             f"{use_bias!r}")
        self.units = int(units)
        self.activation = _activations.get(activation)
        self.l2 = float(l2)
        # Set by the model when this layer's training inputs are mostly zeros and
        # the compiled kernels can skip them (see kernels.py).
        self.sparse_input = False
        self._sparse = None
        self._relu_fused = False

    def _sparse_scratch(self, n_samples):
        key = ("sparse", n_samples)
        scratch = self._buffers.get(key)
        if scratch is None:
            scratch = self._buffers[key] = _kernels.SparseScratch(
                n_samples, self.input_shape[0])
        return scratch

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense expects inputs of shape (n_samples, n_features); got "
                f"samples of shape {tuple(input_shape)}: put a Flatten() layer first"
            )
        return (self.units,)

    def param_shapes(self):
        return [("kernel", (self.input_shape[0], self.units)), ("bias", (self.units,))]

    def initialize(self, params, rng):
        fan_in, fan_out = params["kernel"].shape
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        params["kernel"][...] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params["bias"][...] = 0

    def bind(self, params, grads):
        self.kernel, self.bias = params["kernel"], params["bias"]
        self.grad_kernel, self.grad_bias = grads["kernel"], grads["bias"]

    def regularization_loss(self):
        if not self.l2:
            return 0.0
        flat = self.kernel.reshape(-1)
        return self.l2 * float(np.dot(flat, flat))

    def forward(self, x, training=False, logits_only=False):
        """x (n_samples, n_features) -> a (n_samples, n_units).

        With ``logits_only`` the activation is skipped (the loss then fuses
        it), and ``backward`` expects the gradient with respect to the logits.
        """
        n_samples = x.shape[0]
        z = self._buffer(("z", n_samples), (n_samples, self.units))
        self._x, self._z, self._logits_only = x, z, logits_only
        linear = logits_only or isinstance(self.activation, _activations.Linear)
        self._sparse = None
        if training and self.sparse_input and x.flags.c_contiguous:
            # compiled: skip the zeros of x; ReLU applied in the same call
            self._sparse = self._sparse_scratch(n_samples)
            self._relu_fused = not linear and isinstance(self.activation,
                                                         _activations.ReLU)
            a = self._buffer(("a", n_samples), z.shape) if self._relu_fused else None
            self._sparse.matmul(x, self.kernel, self.bias, z, relu=a)
            if self._relu_fused:
                self._a = a
                return a
        else:
            np.matmul(x, self.kernel, out=z)  # (n_samples, n_units)
            z += self.bias
        if linear:
            self._a = z
            return z
        a = self._buffer(("a", n_samples), (n_samples, self.units))
        self._a = self.activation.forward(z, out=a)
        return self._a

    def softmax_head(self, x, labels, grad_z, scale, need_input_grad):
        """Forward and backward of this layer as the model's last, fused with
        softmax and sparse cross-entropy, in one compiled call.

        Writes ``scale`` times the gradients of the summed loss; returns
        ``(loss_sum, n_correct, grad wrt x or None)``.
        """
        n_samples = x.shape[0]
        z = self._buffer(("z", n_samples), (n_samples, self.units))
        dh = None
        if need_input_grad:
            dh = self._buffer(("dx", n_samples), (n_samples, self.input_shape[0]))
        scratch = self._buffer("head", (2, self.units, self.input_shape[0]))
        loss_sum, correct = _kernels.softmax_head(
            x, self.kernel, self.bias, labels, z, grad_z, self.grad_kernel,
            self.grad_bias, dh, scratch, scale)
        if self.l2:
            self.grad_kernel += (2.0 * self.l2 * self.grad_scale) * self.kernel
        return loss_sum, correct, dh

    def backward(self, grad_a, need_input_grad=True):
        """Write the parameter gradients; return the gradient wrt the input."""
        if self._sparse is not None and self._relu_fused:
            # compiled: grad_a *= (z > 0) in place, then the bias and kernel gradients
            grad_z = grad_a
            self._sparse.matmul_tn(grad_z, self.grad_kernel, self.grad_bias,
                                   relu_z=self._z)
        else:
            if self._logits_only:
                grad_z = grad_a
            else:
                grad_z = self.activation.backward(grad_a, self._z, self._a)
            # z = x W + b: dL/dW = x^T dL/dz, dL/db = column sums of dL/dz
            if self._sparse is not None:
                self._sparse.matmul_tn(grad_z, self.grad_kernel, self.grad_bias)
            else:
                # (n_features, n_units)
                np.matmul(self._x.T, grad_z, out=self.grad_kernel)
                np.add.reduce(grad_z, axis=0, out=self.grad_bias)  # (n_units,)
        if self.l2:
            self.grad_kernel += (2.0 * self.l2 * self.grad_scale) * self.kernel
        if not need_input_grad:
            return None

        n_samples = grad_z.shape[0]
        grad_x = self._buffer(("dx", n_samples), (n_samples, self.input_shape[0]))
        return np.matmul(grad_z, self.kernel.T, out=grad_x)  # (n_samples, n_features)

    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  "activation": _activations.serialize(self.activation)}
        if self.l2:
            config["l2"] = self.l2
        return config

    def __repr__(self):
        return f"Dense({self.units}, activation={self.activation.name!r})"


_REGISTRY = {cls.__name__: cls for cls in (Flatten, Dense, Rescaling, Dropout)}


def names():
    """The layer class names a model file may contain, sorted."""
    return sorted(_REGISTRY)


def get(class_name):
    """The registered layer class called ``class_name`` (never imported by path)."""
    try:
        return _REGISTRY[class_name]
    except (KeyError, TypeError):
        raise ValueError(
            f"layer class_name: unknown layer {class_name!r}; expected one of "
            f"{', '.join(names())}"
        ) from None
