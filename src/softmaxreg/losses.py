"""Cross-entropy losses, sparse (integer labels) and one-hot.

Every loss is computed from log-softmax of the logits, which is finite for any
finite logits (a logit of 1e4 gives a finite loss and gradient). When the model
ends in softmax, the model hands the loss its *logits* and the two are fused:
the gradient with respect to the logits is then simply probabilities minus
one-hot, divided by the batch size.

Targets given to these functions are trusted: the model validates labels once,
when ``fit`` or ``evaluate`` receives them.
"""

import numpy as np

from softmaxreg import ops

__all__ = [
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
    "sparse_categorical_crossentropy", "categorical_crossentropy", "get", "names",
]

# Probabilities (not logits) are clipped to [EPSILON, 1] before the log, as
# Keras does, so that a zero probability costs -log(1e-7) ~ 16.1 and not inf.
EPSILON = 1e-7


class Loss:
    """Base class of the cross-entropy losses.

    Parameters
    ----------
    from_logits : bool
        True when the model's outputs are logits (last activation linear).
    """

    name = None
    sparse = True

    def __init__(self, from_logits=False):
        if not isinstance(from_logits, bool):
            raise TypeError(f"{type(self).__name__}: from_logits must be a bool; "
                            f"got {from_logits!r}")
        self.from_logits = from_logits

    # -- per-sample values ---------------------------------------------------------
    def _pick(self, log_probs, target):
        """-log p of the true class for each row (n_samples,)."""
        raise NotImplementedError

    def _subtract_target(self, grad, target):
        """grad -= one-hot(target), in place."""
        raise NotImplementedError

    def per_sample(self, target, outputs):
        """Per-sample losses (n_samples,) given outputs (n_samples, n_classes)."""
        outputs = np.asarray(outputs)
        if self.from_logits:
            log_probs = ops.log_softmax(outputs)
        else:
            log_probs = np.log(np.clip(outputs, EPSILON, 1.0))
        return self._pick(log_probs, target)

    def __call__(self, y_true, y_pred):
        """Mean loss over the batch."""
        return float(np.mean(self.per_sample(y_true, y_pred)))

    # -- training --------------------------------------------------------------------
    def logits_value_and_grad(self, logits, target, grad_out, scale=1.0):
        """Fused softmax + cross-entropy on logits (n_samples, n_classes).

        Writes ``scale`` times dL/dlogits of the *mean* loss into ``grad_out``
        and returns the *sum* of the per-sample losses (a Python float). The
        optimizer may ask for a ``scale`` (see ``Optimizer.gradient_scale``).
        """
        n_samples = logits.shape[0]
        log_probs = ops.log_softmax(logits, out=grad_out)
        loss_sum = float(self._pick_sum(log_probs, target))

        # L = -log softmax(z)_y, so dL/dz_j = softmax(z)_j - [j == y]
        probs = np.exp(log_probs, out=grad_out)
        self._subtract_target(probs, target)
        probs *= scale / n_samples
        return loss_sum

    def outputs_value_and_grad(self, outputs, target, grad_out, scale=1.0):
        """Cross-entropy on probabilities, for a model not ending in softmax.

        Writes ``scale`` times dL/doutputs of the mean loss into ``grad_out``;
        returns the sum.
        """
        n_samples = outputs.shape[0]
        clipped = np.clip(outputs, EPSILON, 1.0)
        loss_sum = float(self._pick_sum(np.log(clipped), target))

        # L = -sum_j t_j log p_j, so dL/dp_j = -t_j / p_j (zero where clipped)
        grad_out[...] = 0
        self._subtract_target(grad_out, target)
        grad_out /= clipped
        grad_out[(outputs < EPSILON) | (outputs > 1.0)] = 0
        grad_out *= scale / n_samples
        return loss_sum

    def value_and_gradient(self, y_true, y_pred):
        """Mean loss and its gradient with respect to ``y_pred``, for tests.

        ``y_pred`` are logits when ``from_logits`` is True, else probabilities.
        """
        y_pred = np.asarray(y_pred)
        grad = np.empty_like(y_pred)
        target = np.asarray(y_true)
        if self.from_logits:
            total = self.logits_value_and_grad(y_pred.copy(), target, grad)
        else:
            total = self.outputs_value_and_grad(y_pred, target, grad)
        return total / y_pred.shape[0], grad

    def _pick_sum(self, log_probs, target):
        return np.sum(self._pick(log_probs, target), dtype=np.float64)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer labels of shape (n_samples,)."""

    name = "sparse_categorical_crossentropy"
    sparse = True

    def _pick(self, log_probs, target):
        return -log_probs[np.arange(log_probs.shape[0]), target]  # (n_samples,)

    def _pick_sum(self, log_probs, target):
        rows = np.arange(log_probs.shape[0])
        return -np.sum(log_probs[rows, target], dtype=np.float64)

    def _subtract_target(self, grad, target):
        grad[np.arange(grad.shape[0]), target] -= 1


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) targets of shape (n_samples, n_classes)."""

    name = "categorical_crossentropy"
    sparse = False

    def _pick(self, log_probs, target):
        return -np.sum(target * log_probs, axis=1)  # (n_samples,)

    def _pick_sum(self, log_probs, target):
        flat_t, flat_l = target.reshape(-1), log_probs.reshape(-1)
        return -np.dot(flat_t.astype(np.float64), flat_l.astype(np.float64))

    def _subtract_target(self, grad, target):
        grad -= target


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample sparse cross-entropy (n_samples,), Keras-style functional form."""
    return SparseCategoricalCrossentropy(from_logits).per_sample(
        np.asarray(y_true).astype(np.intp), y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample one-hot cross-entropy (n_samples,)."""
    return CategoricalCrossentropy(from_logits).per_sample(np.asarray(y_true), y_pred)


_REGISTRY = {cls.name: cls for cls in (SparseCategoricalCrossentropy,
                                       CategoricalCrossentropy)}
_FUNCTIONS = {sparse_categorical_crossentropy: "sparse_categorical_crossentropy",
              categorical_crossentropy: "categorical_crossentropy"}


def names():
    return sorted(_REGISTRY)


def get(identifier):
    """Resolve a loss name, a loss function of this module, or a Loss object."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _REGISTRY[_FUNCTIONS[identifier]]()
    raise ValueError(
        f"loss: unknown loss {identifier!r}; expected one of {', '.join(names())} "
        "or a softmaxreg.losses.Loss object"
    )


def from_config(config):
    """Rebuild a loss from ``{"name": ..., "from_logits": ...}``, strictly."""
    if not isinstance(config, dict) or set(config) != {"name", "from_logits"}:
        raise ValueError(f"loss: expected keys name and from_logits; got {config!r}")
    if config["name"] not in _REGISTRY:
        raise ValueError(f"loss name: unknown loss {config['name']!r}; expected one "
                         f"of {', '.join(names())}")
    return _REGISTRY[config["name"]](from_logits=config["from_logits"])
