"""First-order optimizers over one flat parameter vector.

The model keeps every learned array as a view into one contiguous vector, so an
optimizer sees a single ``params`` array (n_params,) and its gradient ``grads``
(n_params,), and updates all of them with a handful of vectorised passes. State
(moments, velocity, step count) is held in flat arrays too, exposed through
``get_state()``/``set_state()`` for checkpoints.

``step(params, grads, out)`` writes the new parameters into ``out``, which may
be ``params`` itself (in place) or a second buffer: the model uses a second
buffer so that the previous weights survive a step that diverges.

Two savings for the training loop, neither changing what is computed:

- ``gradient_scale()`` is a constant each optimizer would multiply the
  gradient by first (the learning rate for SGD, 1 - beta_1 for Adam); the
  model folds it into the loss gradient, which it scales anyway, and calls
  ``step(..., prescaled=True)``, saving one or two passes per step;
- ``step(..., threads=2)`` splits the vector in two halves updated by two
  threads at once: every pass is element-wise and NumPy releases the GIL in
  its loops, so the result is bit-identical to one thread.
"""

import math
import threading

import numpy as np

from softmaxreg import kernels as _kernels

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get", "names", "from_config"]

# Below this many parameters a split update costs more in hand-offs than it saves.
_SPLIT_MIN = 32768


def _check_number(owner, name, value, low=0.0, high=math.inf, low_open=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and low <= value < high
    ok = ok and not (low_open and value == low)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high != math.inf:
            bound += f" and < {high}"
        raise ValueError(f"{owner}: {name} must be a finite number {bound}; "
                         f"got {value!r}")
    return float(value)


class Optimizer:
    """Base class; subclasses define ``_state_names``, ``_update``, ``_decay``.

    Notes
    -----
    State entries that decay geometrically (momentum, Adam's first moment of a
    weight whose gradient stays zero, such as a border pixel's) would reach
    the subnormal range, where each pass over the state runs about 8x slower
    on x86. So every few steps, entries below ``finfo(dtype).tiny * 1e8``
    (1.2e-30 in float32) are set to zero, often enough that none can decay
    into the subnormal range in between; this changes no weight by more than
    about ``learning_rate * 1e-23``.
    """

    _hyper = ("learning_rate",)

    def __init__(self, learning_rate=0.001):
        self.learning_rate = _check_number(type(self).__name__, "learning_rate",
                                           learning_rate)
        self.iterations = 0
        self._state = None
        self._scratch = None
        self._scaled = None
        self._helper = None
        self._compiled = False
        self._worker = None  # a kernels.Worker lent by the model during fit
        self._in_fit = False  # set by Sequential.fit while it trains with this

    def build(self, n_params, dtype):
        """Allocate zeroed state for ``n_params`` parameters of ``dtype``."""
        self.iterations = 0
        self._state = {name: np.zeros(n_params, dtype=dtype)
                       for name in self._state_names()}
        self._scratch = np.empty(n_params, dtype=dtype)
        self._scaled = None
        self._flush_below = np.finfo(dtype).tiny * 1e8
        # the compiled one-pass update, where there is one (float32 only)
        self._compiled = _kernels.ENABLED and np.dtype(dtype) == np.float32
        decay = self._decay()
        self._flush_every = None
        if 0.0 < decay < 1.0 and self._state:
            # an entry kept >= tiny*1e8 cannot fall below tiny in this many steps
            self._flush_every = max(1, int(math.log(1e-8) / math.log(decay)) // 2)

    def _decay(self):
        """The fastest per-step decay factor of the state (0 when none)."""
        return 0.0

    def _flush_tiny(self):
        for array in self._state.values():
            small = np.abs(array, out=self._scratch) < self._flush_below
            np.copyto(array, 0, where=small)

    @property
    def built(self):
        return self._state is not None

    def gradient_scale(self):
        """The constant a caller may fold into the gradients it passes with
        ``prescaled=True`` (1.0 when the optimizer gains nothing from it)."""
        return 1.0

    def step(self, params, grads, out=None, *, prescaled=False, threads=1):
        """One update: ``out = params - update(grads)``; returns ``out``.

        Parameters
        ----------
        params, grads : arrays (n_params,)
        out : array (n_params,), optional
            Where the new parameters go; ``params`` itself by default.
        prescaled : bool
            True when ``grads`` already holds ``gradient_scale() * gradient``.
        threads : {1, 2}
            2 splits the update between the calling thread and a helper
            thread started by ``parallel()``; without one it runs in one.
        """
        if out is None:
            out = params
        scale = self.gradient_scale()
        if not prescaled and scale != 1.0:
            if self._scaled is None or self._scaled.shape != grads.shape:
                self._scaled = np.empty_like(self._scratch)
            grads = np.multiply(grads, scale, out=self._scaled)
        self.iterations += 1
        coefficients = self._coefficients()
        helper = self._helper if threads == 2 else None
        if helper is None or params.size < _SPLIT_MIN:
            self._update(params, grads, out, self._state, self._scratch, coefficients)
        else:
            half = params.size // 2
            helper.start(self._update_part, half, None, params, grads, out,
                         coefficients)
            try:
                self._update_part(0, half, params, grads, out, coefficients)
            finally:
                helper.wait()
        if self._flush_every and self.iterations % self._flush_every == 0:
            self._flush_tiny()
        return out

    def _update_part(self, start, stop, params, grads, out, coefficients):
        part = slice(start, stop)
        state = {name: array[part] for name, array in self._state.items()}
        self._update(params[part], grads[part], out[part], state,
                     self._scratch[part], coefficients)

    def parallel(self):
        """Context manager running a helper thread for ``step(..., threads=2)``."""
        return _HelperThread(self)

    def _coefficients(self):
        """Per-step scalars shared by both halves of a split update."""
        return None

    def _state_names(self):
        return ()

    def _update(self, params, grads, out, state, work, coefficients):
        """Write the new ``params`` into ``out``; ``grads`` is prescaled.

        ``state`` holds this part's state arrays and ``work`` a scratch array
        of the same length.
        """
        raise NotImplementedError

    # -- checkpoints -----------------------------------------------------------------
    def get_state(self):
        """Copies of the state arrays, plus ``"iterations"`` (int64 scalar array)."""
        if not self.built:
            raise ValueError(f"{type(self).__name__}.get_state: the optimizer has no "
                             "state yet; train the model first")
        state = {name: array.copy() for name, array in self._state.items()}
        state["iterations"] = np.array(self.iterations, dtype=np.int64)
        return state

    def set_state(self, state):
        """Restore a state from ``get_state()``; names and shapes must match."""
        if not self.built:
            raise ValueError(f"{type(self).__name__}.set_state: the optimizer has no "
                             "state arrays yet; compile and build the model first "
                             "(Sequential.from_config does both)")
        expected = set(self._state) | {"iterations"}
        if set(state) != expected:
            raise ValueError(f"{type(self).__name__}.set_state: expected arrays "
                             f"{sorted(expected)}; got {sorted(state)}")
        for name, array in self._state.items():
            given = np.asarray(state[name])
            if given.shape != array.shape:
                raise ValueError(f"optimizer state {name!r}: expected shape "
                                 f"{array.shape}; found {given.shape}")
            array[...] = given
        self.iterations = int(np.asarray(state["iterations"]))

    def get_config(self):
        config = {"class_name": type(self).__name__}
        config.update({name: getattr(self, name) for name in self._hyper})
        return config

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({args})"


class _HelperThread:
    """A second thread running one half of each split update, for one ``fit``.

    Two locks pass the turn: the caller releases ``_go`` when a job is ready,
    the helper releases ``_done`` when it has finished it. Blocking locks, not
    spinning: an idle helper costs no CPU on a shared machine.
    """

    def __init__(self, optimizer):
        self._optimizer = optimizer
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._job = self._error = self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="softmaxreg-optimizer")
        self._thread.start()
        self._optimizer._helper = self
        return self

    def __exit__(self, *exc):
        self._optimizer._helper = None
        self._job = None
        self._go.release()
        self._thread.join()
        return False

    def _loop(self):
        while True:
            self._go.acquire()
            job = self._job
            if job is None:
                return
            try:
                job[0](*job[1:])
            except BaseException as exc:  # handed to the caller by wait()
                self._error = exc
            self._done.release()

    def start(self, function, *args):
        self._job = (function,) + args
        self._go.release()

    def wait(self):
        self._done.acquire()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    With momentum mu, as Keras: ``velocity = mu * velocity - lr * g``, then
    ``p += velocity`` or, with Nesterov, ``p += mu * velocity - lr * g``.
    """

    _hyper = ("learning_rate", "momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _check_number("SGD", "momentum", momentum, high=1.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"SGD: nesterov must be a bool; got {nesterov!r}")
        self.nesterov = nesterov

    def _state_names(self):
        return ("velocity",) if self.momentum else ()

    def _decay(self):
        return self.momentum

    def gradient_scale(self):
        return self.learning_rate

    def _update(self, params, grads, out, state, work, coefficients):
        # grads holds lr * g
        if not self.momentum:
            np.subtract(params, grads, out=out)
            return
        velocity = state["velocity"]
        velocity *= self.momentum
        velocity -= grads  # velocity = mu velocity - lr g
        if self.nesterov:
            np.subtract(params, grads, out=out)
            np.multiply(velocity, self.momentum, out=work)
            out += work
        else:
            np.add(params, velocity, out=out)


class Adam(Optimizer):
    """Adam (Kingma and Ba), with Keras's defaults and epsilon convention.

    ``m += (1 - b1)(g - m)``; ``v += (1 - b2)(g^2 - v)``;
    ``p -= lr_t * m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``.

    Notes
    -----
    The bias corrections are folded into the step size and epsilon is added to
    the *uncorrected* sqrt(v), as Keras and TensorFlow do (the paper's
    "efficient version"), rather than to sqrt(v_hat) as PyTorch does. We follow
    Keras so that its hyper-parameters (eps = 1e-7) carry over with the same
    trajectories, and because it saves a pass over the parameters per step.

    NOTE: a step is 11 vectorised passes over the parameters when the model
    hands over gradients prescaled by 1 - beta_1 (12 otherwise), the fewest we
    found with NumPy ufuncs while keeping m and v exactly as defined above (so
    checkpoints hold the true moments); for the tutorial's model it is still
    the largest part of a training step.
    """

    _hyper = ("learning_rate", "beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        name = type(self).__name__
        self.beta_1 = _check_number(name, "beta_1", beta_1, high=1.0)
        self.beta_2 = _check_number(name, "beta_2", beta_2, high=1.0)
        self.epsilon = _check_number(name, "epsilon", epsilon, low_open=True)

    def _state_names(self):
        return ("m", "v")

    def _decay(self):
        return min(self.beta_1, self.beta_2) if self.beta_1 else self.beta_2

    def gradient_scale(self):
        return 1.0 - self.beta_1

    def _coefficients(self):
        t = self.iterations
        step = (self.learning_rate * math.sqrt(1.0 - self.beta_2 ** t)
                / (1.0 - self.beta_1 ** t))
        return step, (1.0 - self.beta_2) / (1.0 - self.beta_1) ** 2

    def _adam_direction(self, grads, state, work, coefficients):
        """Update moments; return lr_t m / (sqrt(v) + eps) in ``work``.

        ``grads`` holds g' = (1 - b1) g.
        """
        m, v = state["m"], state["v"]
        step, v_factor = coefficients

        m *= self.beta_1
        m += grads  # m = b1 m + (1 - b1) g

        np.multiply(grads, grads, out=work)
        work *= v_factor  # (1 - b2) g^2 = (1 - b2) / (1 - b1)^2 g'^2
        v *= self.beta_2
        v += work  # v = b2 v + (1 - b2) g^2

        # lr_t m / (sqrt(v) + eps) = m / (sqrt(v)/lr_t + eps/lr_t): saves a pass
        np.sqrt(v, out=work)
        work *= 1.0 / step
        work += self.epsilon / step
        np.divide(m, work, out=work)
        return work

    def _update(self, params, grads, out, state, work, coefficients):
        if self._compiled:
            self._compiled_update(params, grads, out, state, coefficients, 1.0)
            return
        direction = self._adam_direction(grads, state, work, coefficients)
        np.subtract(params, direction, out=out)

    def _compiled_update(self, params, grads, out, state, coefficients, decay):
        """The same update in one compiled pass, bit-identical to the NumPy one:
        ``out = decay * params - direction``."""
        step, v_factor = coefficients
        update = _kernels.adam_update if self._worker is None \
            else self._worker.adam_update
        update(params, grads, out, state["m"], state["v"], self.beta_1, self.beta_2,
               v_factor, 1.0 / step, self.epsilon / step, decay)


class AdamW(Adam):
    """Adam with decoupled weight decay, as Keras's AdamW.

    Each step first shrinks every parameter, ``p -= lr * weight_decay * p``
    (biases included, as Keras by default), then applies the Adam update.
    """

    _hyper = ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = _check_number("AdamW", "weight_decay", weight_decay)

    def _update(self, params, grads, out, state, work, coefficients):
        decay = 1.0 - self.learning_rate * self.weight_decay
        if self._compiled:
            self._compiled_update(params, grads, out, state, coefficients, decay)
            return
        direction = self._adam_direction(grads, state, work, coefficients)
        np.multiply(params, decay, out=out)
        out -= direction


_REGISTRY = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def names():
    return sorted(_REGISTRY)


def get(identifier):
    """Resolve a name ("adam", "sgd", "adamw") or an Optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(f"optimizer: unknown optimizer {identifier!r}; expected one of "
                     f"{', '.join(names())} or a softmaxreg.optimizers object")


def from_config(config):
    """Rebuild an optimizer from ``get_config()`` output, strictly."""
    if not isinstance(config, dict):
        raise ValueError(f"optimizer: expected a dict; got {type(config).__name__}")
    classes = {cls.__name__: cls for cls in _REGISTRY.values()}
    name = config.get("class_name")
    if name not in classes:
        raise ValueError(f"optimizer class_name: unknown optimizer {name!r}; "
                         f"expected one of {', '.join(sorted(classes))}")
    cls = classes[name]
    kwargs = {k: v for k, v in config.items() if k != "class_name"}
    unknown = set(kwargs) - set(cls._hyper)
    if unknown:
        raise ValueError(f"optimizer {name}: unknown keys {sorted(unknown)}")
    return cls(**kwargs)
