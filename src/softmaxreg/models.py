"""The Keras-style :class:`Sequential` model and its training loop.

Design of the loop (the speed of the library lives here):

- every learned array is a view into one flat parameter vector, so the
  optimizer makes one vectorised update per step; there are two such vectors
  and each step writes the new weights into the other one, so the previous
  weights survive a step that diverges, at no extra cost;
- the optimizer's constant gradient factor (its learning rate for SGD,
  1 - beta_1 for Adam) is folded into the loss gradient, saving it a pass;
  its update may be split across two threads (``TRAIN_THREADS``);
- a batch whose loss is non-finite or 1000 times that of the first batch (or
  of a uniform guess) stops training as diverged: the stable loss stays
  finite while the weights blow up, so NaN alone would miss it;
- batches are gathered by index and converted to the model's dtype (float32 by
  default) one batch at a time: the training set is never copied whole;
- work arrays are kept per batch size, so a step allocates almost nothing;
- a final softmax and the cross-entropy are fused: the gradient of the logits
  is probabilities minus one-hot, divided by the batch size;
- each epoch's shuffle and dropout draw from a generator seeded by
  (seed, epoch), so a run resumed at ``initial_epoch`` is bit-identical.
"""

import contextlib
import math
import os
import signal
import threading
import time
import warnings
import weakref

import numpy as np

try:  # installed with scikit-learn and scipy stacks; optional here
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - exercised only without threadpoolctl
    threadpool_limits = None

from softmaxreg import activations as _activations
from softmaxreg import kernels as _kernels
from softmaxreg import layers as _layers
from softmaxreg import losses as _losses
from softmaxreg import ops
from softmaxreg import optimizers as _optimizers
from softmaxreg.callbacks import Callback, History
from softmaxreg.errors import DataError, NotFittedError, TrainingError
from softmaxreg.progress import EpochProgress, format_logs

__all__ = ["Sequential", "History", "DataRangeWarning", "NotLearningWarning",
           "load_model", "save_model"]

# Random streams: np.random.default_rng([seed, key, ...]) with these keys
_INIT, _SHUFFLE, _DROPOUT, _SPLIT = 0, 1, 2, 3
_ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy",
                   "categorical_accuracy")
_PREDICT_BATCH = 1024
# NOTE: for this library's small matrices (32 x 784 @ 784 x 128) one BLAS thread
# is about as fast as two, and on a busy machine a spinning BLAS thread can
# slow a step a hundredfold; SOFTMAXREG_BLAS_THREADS overrides it.
BLAS_THREADS = 1
# Threads of a training step, 1 or 2 (SOFTMAXREG_TRAIN_THREADS overrides it).
# With 2 and the compiled kernels, a helper thread gathers the next batch and
# runs half of each Adam update (kernels.Worker); without the kernels it splits
# the NumPy update, which pays only for very large models. The default, None,
# means 2 where the compiled helper exists and two CPUs are free, else 1.
TRAIN_THREADS = None
# Training stops as diverged when a batch's mean loss exceeds this many times
# the larger of ln(n_classes) (a uniform guess) and the first batch's loss.
DIVERGENCE_FACTOR = 1e3
# Predictions on fewer samples than this skip the BLAS thread limit, whose
# set-up (~100 us) costs more than their product: OpenBLAS runs products of
# 1 or 2 rows (under ~2.6e5 multiply-adds) on one thread anyway.
_SMALL_PREDICT = 3
_CONFIG_KEYS = {"class_name", "name", "dtype", "input_shape", "layers", "loss",
                "metrics", "optimizer", "n_classes", "input_range"}


class DataRangeWarning(UserWarning):
    """Inputs lie far outside the range the model was trained on."""


class NotLearningWarning(UserWarning):
    """The training loss stays at the value of a uniform guess."""


# -- input validation (once, at the boundary) ----------------------------------------

def _first_bad_row(x):
    """Index of the first sample holding NaN or an infinity."""
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad))


def _as_inputs(x, arg="x"):
    """x as a numeric ndarray with at least one sample axis, finite.

    Also returns its value range (low, high), or None when x is empty.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise DataError(f"{arg}: expected a numeric array; got dtype {x.dtype}")
    if x.ndim == 0:
        raise DataError(f"{arg}: expected an array of samples; got a scalar")
    if not x.size:
        return x, None
    lo, hi = float(x.min()), float(x.max())  # NaN propagates; infinities at ends
    if not (math.isfinite(lo) and math.isfinite(hi)):
        row = _first_bad_row(x)
        raise DataError(
            f"{arg}: sample {row} holds NaN or infinity (first bad row); "
            "remove or impute such rows"
        )
    return x, (lo, hi)


def _float_labels_to_int(y, arg):
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(
            f"{arg}: labels must be whole class numbers; label {index} is "
            f"{float(y[index])} ({int(bad.sum())} such labels)"
        )
    return y.astype(np.intp)


def _sparse_labels(y, n_samples, n_classes, arg="y"):
    """Integer labels (n_samples,) in [0, n_classes), validated."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise DataError(
            f"{arg}: sparse_categorical_crossentropy expects integer labels of shape "
            f"(n_samples,); got shape {y.shape}, which looks one-hot: pass "
            f"{arg}.argmax(axis=1), or compile with loss='categorical_crossentropy'"
        )
    if y.ndim != 1:
        raise DataError(f"{arg}: expected labels of shape (n_samples,); "
                        f"got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise DataError(f"x has {n_samples} samples but {arg} has {y.shape[0]} "
                        "labels; they must match")
    if y.dtype.kind == "f":
        y = _float_labels_to_int(y, arg)
    elif y.dtype.kind in "ui":
        y = y.astype(np.intp, copy=False)
    else:
        raise DataError(f"{arg}: expected integer class labels; got dtype {y.dtype}")

    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        values = np.unique(y[bad])
        shown = ", ".join(str(v) for v in values[:5])
        if values.size > 5:
            shown += ", ..."
        hint = " (labels 1..n? subtract 1)" if values.max() == n_classes else ""
        raise DataError(
            f"{arg}: labels must lie in 0..{n_classes - 1} for a {n_classes}-class "
            f"model; got {shown}: {int(bad.sum())} of {n_samples} labels are out "
            f"of range{hint}"
        )
    return y


def _onehot_targets(y, n_samples, n_classes, dtype, arg="y"):
    """Float targets (n_samples, n_classes), validated."""
    y = np.asarray(y)
    if y.ndim == 1:
        raise DataError(
            f"{arg}: categorical_crossentropy expects one-hot targets of shape "
            f"(n_samples, {n_classes}); got shape {y.shape}: compile with "
            "loss='sparse_categorical_crossentropy' for integer labels"
        )
    if y.ndim != 2 or y.shape[1] != n_classes:
        raise DataError(f"{arg}: expected targets of shape (n_samples, {n_classes}); "
                        f"got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise DataError(f"x has {n_samples} samples but {arg} has {y.shape[0]} "
                        "rows; they must match")
    if y.dtype.kind not in "uifb":
        raise DataError(f"{arg}: expected numeric targets; got dtype {y.dtype}")
    y = y.astype(dtype, copy=False)
    if not np.isfinite(y).all() or (y < 0).any():
        row = int(np.argmax(~np.isfinite(y).all(axis=1) | (y < 0).any(axis=1)))
        raise DataError(f"{arg}: targets must be finite and >= 0; row {row} is "
                        f"{y[row]!r}")
    return y


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise ValueError(f"{name}: expected an int >= {low}; got {value!r}")
    return int(value)


def _split_indices(n_samples, validation_split, seed):
    """Shuffled (with the seed) train and validation indices, each sorted."""
    order = np.random.default_rng([seed, _SPLIT]).permutation(n_samples)
    n_val = n_samples - int(n_samples * (1.0 - validation_split))
    if n_val < 1 or n_val >= n_samples:
        raise DataError(f"validation_split={validation_split} leaves {n_val} of "
                        f"{n_samples} samples for validation; need at least one "
                        "on each side")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class _InterruptFlag:
    """Turn Ctrl-C into a flag checked between steps, in the main thread only.

    A second Ctrl-C interrupts at once, as usual.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _blas_threads():
    """Limit BLAS to ``BLAS_THREADS`` threads; a no-op without threadpoolctl."""
    limit = _kernels.env_threads("SOFTMAXREG_BLAS_THREADS", BLAS_THREADS)
    if threadpool_limits is None or limit is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


class _LearningMonitor:
    """Warn once when two epochs in a row show the model is not learning.

    Either the loss sits at ln(n_classes), the loss of a uniform guess, or it
    stays far above it without improving (a learning rate too large, but not
    large enough to cross the divergence limit, which stops training).
    """

    def __init__(self, n_classes, learning_rate):
        self.n_classes = n_classes
        self.uniform = math.log(n_classes)
        self.learning_rate = learning_rate
        self.previous = None
        self.warned = False

    def epoch_end(self, loss):
        previous, self.previous = self.previous, loss
        if self.warned or previous is None:
            return
        stuck = max(abs(loss - self.uniform), abs(previous - self.uniform)) < 0.01
        stalled_high = loss > 2 * self.uniform and loss > 0.97 * previous
        if not (stuck or stalled_high):
            return
        self.warned = True
        if stuck:
            what = (f"has stayed at {loss:.4f} ~ ln({self.n_classes}) for 2 epochs, "
                    "the loss of a uniform guess")
            causes = ("constant or all-zero inputs; labels not matching the "
                      "inputs (shuffled separately); a learning rate far too small "
                      "or too large; all ReLU units dead")
        else:
            what = (f"stays far above ln({self.n_classes}) = {self.uniform:.4f}, the "
                    f"loss of a uniform guess, without improving ({previous:.4g} "
                    f"then {loss:.4g})")
            causes = (f"a learning rate too large (now {self.learning_rate:g}); "
                      "inputs not scaled (divide raw pixels by 255)")
        warnings.warn(f"the model is not learning: the training loss {what}. "
                      f"Likely causes: {causes}", NotLearningWarning, stacklevel=4)


class _Diverged(Exception):
    pass


# Held while fit checks that neither the model nor its optimizer is training.
_FIT_GUARD = threading.Lock()


class _Helper:
    """The compiled helper thread of one ``fit`` (kernels.Worker), lent to the
    model and its optimizer while it pays.

    A second thread pays only when it gets a CPU promptly: on a busy machine
    every step waits for it (measured: 6-8x slower steps with another process
    running). So an epoch times a few steps without the helper (which also
    absorbs the warm-up), then as many with it, and keeps it for the rest of
    the epoch unless it was more than ``KEEP_MARGIN`` slower per step. A trial
    is lost as soon as the steps with the helper have taken longer than all
    those without; an epoch ending mid-trial decides on the steps it had. A
    kept helper is stopped if steps wait for it more than ``MAX_WAIT``
    seconds each on average. After a lost trial the next 1, 2, 4, ... 16
    epochs (doubling while it keeps losing) run without it and without a
    trial. Epochs of under ``MIN_STEPS`` steps run without it. The weights are
    the same either way.
    """

    TRIAL = 32  # steps timed each way, fewer in short epochs
    MIN_STEPS = 16
    KEEP_MARGIN = 1.1  # noise in a 32-step timing is easily 10-20%
    MAX_WAIT = 300e-6  # an idle machine: a few to a few tens of microseconds
    MAX_SKIP = 16
    clock = staticmethod(time.perf_counter)

    def __init__(self, model, optimizer):
        self._model, self._optimizer = model, optimizer
        self.worker = None
        self._phase = None
        self._trial = self.TRIAL
        self._mark = self._without = self._waited = 0.0
        self._skip = self._backoff = 0

    def start(self):
        if self.worker is None:
            self.worker = _kernels.Worker().__enter__()
            self._waited = 0.0
            self._model._worker = self._optimizer._worker = self.worker

    def stop(self):
        if self.worker is not None:
            worker, self.worker = self.worker, None
            self._model._worker = self._optimizer._worker = None
            worker.__exit__(None, None, None)

    def epoch_begin(self, n_steps):
        """Start the trial of an epoch of ``n_steps`` steps; return the worker
        for its first step (None: trials start without it)."""
        self.stop()
        self._phase = "decided"
        if self._skip:
            self._skip -= 1
        elif n_steps >= self.MIN_STEPS:
            self._trial = max(4, min(self.TRIAL, n_steps // 4))
            self._phase, self._mark = "without", self.clock()
        return self.worker

    def after_step(self, step):
        """Advance the trial after ``step`` (from 1); return the worker to use
        for the next step, or None."""
        if self._phase == "with" and step % self._trial:
            # lost already (its steps have used up the time the steps without
            # it took, and more): stop now rather than at the end of the trial
            if self.clock() - self._mark > self.KEEP_MARGIN * self._without:
                self._decide(math.inf)
            return self.worker
        if step % self._trial:
            return self.worker
        now = self.clock()
        if self._phase == "without":
            self._without, self._mark, self._phase = now - self._mark, now, "with"
            self.start()
        elif self._phase == "with":
            self._decide((now - self._mark) / self._trial)
        elif self.worker is not None:
            waited = self.worker.waited
            if waited - self._waited > self._trial * self.MAX_WAIT:
                self.stop()
            self._waited = waited
        return self.worker

    def epoch_end(self, step):
        """Decide a trial that the epoch's last ``step`` cut short."""
        if self._phase == "with" and step % self._trial:
            self._decide((self.clock() - self._mark) / (step % self._trial))
        self.stop()

    def _decide(self, with_per_step):
        self._phase = "decided"
        if with_per_step <= self.KEEP_MARGIN * self._without / self._trial:
            self._backoff = 0
            return
        self.stop()
        self._backoff = min(2 * self._backoff, self.MAX_SKIP) if self._backoff else 1
        self._skip = self._backoff

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Sequential:
    """A linear stack of layers with Keras's compile / fit / evaluate / predict.

    Parameters
    ----------
    layers : list of Layer, optional
    name : str, optional
    dtype : {"float32", "float64"}
        Dtype of weights and computation; float64 is for gradient checks.

    Notes
    -----
    ``fit(validation_split=...)`` shuffles the samples (with the seed) before
    holding out the validation part; Keras holds out the *last* samples,
    unshuffled.
    """

    def __init__(self, layers=None, name=None, dtype="float32"):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected 'float32' or 'float64'; got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.name = name or "sequential"
        self.layers = []
        self.optimizer = self.loss = None
        self.metrics = []
        self.history = None
        self.stop_training = False
        self.input_range_ = None
        self.input_shape = None
        self.metadata_ = {}
        self._params = None
        self._batch_buffers = {}  # work arrays by batch size, reused across steps
        self._grad_scale = self._grad_scale_fit = 1.0  # the optimizer's, in fit
        self._loss_limit = None  # the divergence limit of the current fit
        self._head_kernel = False  # the compiled last layer + loss, chosen in fit
        self._worker = None  # the helper thread during fit (kernels.Worker)
        self._helper = None  # its manager during fit (_Helper)
        self._fitting = False
        self._fit_thread = None
        for layer in layers or ():
            self.add(layer)

    # -- structure ---------------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, _layers.Layer):
            raise TypeError(f"Sequential.add: expected a softmaxreg layer; got "
                            f"{type(layer).__name__}")
        if self.built:
            raise ValueError("Sequential.add: the model is already built; add "
                             "layers before training")
        owner = layer._owner() if layer._owner is not None else None
        if owner is not None and owner is not self:
            raise ValueError(f"Sequential.add: this {type(layer).__name__} layer "
                             "already belongs to another model (a layer's weights "
                             "live in its model); create a new layer")
        layer._owner = weakref.ref(self)
        self.layers.append(layer)

    @property
    def built(self):
        return self._params is not None

    @property
    def n_classes(self):
        """Number of outputs of the last Dense layer."""
        for layer in reversed(self.layers):
            if isinstance(layer, _layers.Dense):
                return layer.units
        raise ValueError("the model has no Dense layer, hence no class scores: end "
                         "it with Dense(n_classes, activation='softmax')")

    def build(self, input_shape, seed=None):
        """Create the weights for samples of ``input_shape`` (e.g. (28, 28)).

        Kernels are Glorot-uniform from ``np.random.default_rng([seed, 0])``.
        """
        if not self.layers:
            raise ValueError("the model has no layers; pass a list to Sequential()")
        shape = _layers._check_shape_arg("input_shape", input_shape)
        self.input_shape = shape
        specs = []  # (layer index, name, shape, offset)
        n_params = 0
        for index, layer in enumerate(self.layers):
            shape = layer.build(shape, self.dtype)
            for pname, pshape in layer.param_shapes():
                specs.append((index, pname, pshape, n_params))
                n_params += math.prod(pshape)
        self.output_shape = shape
        self._specs = specs
        self._params = [np.zeros(n_params, self.dtype), np.zeros(n_params, self.dtype)]
        self._grads = np.zeros(n_params, self.dtype)
        self._views = [self._layer_views(buf) for buf in self._params]
        self._grad_views = self._layer_views(self._grads)
        self._use(0)
        self._previous_valid = False
        if self.optimizer is not None:
            self.optimizer.build(n_params, self.dtype)
        if seed is not None:
            self._initialize(seed)
        return self

    def _layer_views(self, flat):
        views = {}
        for index, pname, pshape, offset in self._specs:
            size = math.prod(pshape)
            views.setdefault(index, {})[pname] = flat[offset:offset + size].reshape(
                pshape)
        return views

    def _use(self, which):
        """Make parameter buffer ``which`` (0 or 1) the live weights."""
        self._cur = which
        for index, views in self._views[which].items():
            self.layers[index].bind(views, self._grad_views[index])

    def _initialize(self, seed):
        rng = np.random.default_rng([seed, _INIT])
        for index, views in self._views[self._cur].items():
            self.layers[index].initialize(views, rng)

    @property
    def _param_layer_indices(self):
        return sorted(self._views[0]) if self.built else []

    def count_params(self):
        return 0 if not self.built else self._params[0].size

    # -- compile -----------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy",
                metrics=None):
        """Choose the optimizer, the loss and the metrics.

        The one metric is accuracy, under any of its Keras names ("accuracy",
        "acc", "sparse_categorical_accuracy", "categorical_accuracy"); the
        epoch logs and the history use the name given, as Keras does.
        """
        if self._fitting:
            raise RuntimeError("compile: the model is training; compile it before "
                               "fit or after fit returns")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self.metrics = []
        for metric in metrics or []:
            if not isinstance(metric, str) or metric not in _ACCURACY_NAMES:
                raise ValueError(f"metrics: unknown metric {metric!r}; the supported "
                                 f"metric is accuracy, named one of "
                                 f"{', '.join(_ACCURACY_NAMES)}")
            if metric not in self.metrics:
                self.metrics.append(metric)
        self._check_head()
        if self.built:
            self.optimizer.build(self._grads.size, self.dtype)
        return self

    def _check_head(self):
        last = self.layers[-1] if self.layers else None
        activation = getattr(last, "activation", None)
        if isinstance(activation, _activations.Softmax) and self.loss.from_logits:
            raise ValueError("loss: from_logits=True, but the last layer applies "
                             "softmax; use from_logits=False")
        if isinstance(activation, _activations.Linear) and not self.loss.from_logits:
            raise ValueError("loss: the last layer outputs logits (linear activation);"
                             " pass from_logits=True or use activation='softmax'")

    @property
    def _fused(self):
        """True when the last layer's activation folds into the loss."""
        last = self.layers[-1]
        return isinstance(last, _layers.Dense) and isinstance(
            last.activation, (_activations.Softmax, _activations.Linear))

    def _require_compiled(self, what):
        if self.loss is None:
            raise NotFittedError(f"{what}: the model is not compiled; call "
                                 "model.compile(optimizer=..., loss=...) first")

    # -- data preparation --------------------------------------------------------------
    def _samples(self, x, arg="x", single_ok=False):
        """Validate x and reshape it to (n_samples, *input_shape) when known."""
        return self._samples_and_range(x, arg, single_ok)[0]

    def _samples_and_range(self, x, arg="x", single_ok=False):
        """``_samples`` and the value range of x: ``(x, (low, high) or None)``."""
        x, value_range = _as_inputs(x, arg)
        return self._shaped(x, arg, single_ok), value_range

    def _shaped(self, x, arg, single_ok):
        shape = self.input_shape
        if shape is None:
            if x.ndim < 2:
                raise DataError(f"{arg}: expected (n_samples, ...) with at least 2 "
                                f"axes; got shape {x.shape}")
            return x
        one_flat = x.ndim == 1 and x.size == math.prod(shape)
        if single_ok and (x.shape == shape or one_flat):
            return x.reshape((1,) + shape)
        if x.shape[1:] == shape:
            return x
        if x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(shape):
            return x.reshape((x.shape[0],) + shape)
        raise DataError(f"{arg}: the model expects samples of shape {shape}; got an "
                        f"array of shape {x.shape}: reshape it to (n_samples, "
                        f"{', '.join(map(str, shape))})")

    def _targets(self, y, n_samples, arg="y"):
        n_classes = self.n_classes
        if self.loss.sparse:
            labels = _sparse_labels(y, n_samples, n_classes, arg)
            return labels, labels
        targets = _onehot_targets(y, n_samples, n_classes, self.dtype, arg)
        return targets, targets.argmax(axis=1)

    def _check_range(self, value_range, arg):
        """Warn when inputs ranging over ``value_range`` lie far outside the
        training inputs' range."""
        if self.input_range_ is None or value_range is None:
            return
        lo, hi = self.input_range_
        seen_lo, seen_hi = value_range
        span = max(hi - lo, 1e-12)
        if seen_hi > hi + 2 * span or seen_lo < lo - 2 * span:
            hint = " (divide by 255?)" if seen_hi > 2 and hi <= 1.5 else ""
            warnings.warn(
                f"{arg}: inputs range over [{seen_lo:g}, {seen_hi:g}], but the model "
                f"was trained on inputs in [{lo:g}, {hi:g}]{hint}; apply the same "
                "preprocessing as in training", DataRangeWarning, stacklevel=3)

    # -- training ----------------------------------------------------------------------
    def fit(self, x, y, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True,
            initial_epoch=0, seed=None, stream=None):
        """Train for ``epochs - initial_epoch`` epochs; return the History.

        Parameters
        ----------
        x : array (n_samples, *input_shape)
            uint8 or float; converted to the model's dtype one batch at a time.
        y : array (n_samples,) of class labels, or (n_samples, n_classes) one-hot
            for ``categorical_crossentropy``. Whole-valued floats are accepted.
        seed : int, optional
            Seeds weight initialisation, shuffling, dropout and the validation
            split; the same seed gives bit-identical weights and metrics.
        initial_epoch : int
            Epoch to resume at (weights and optimizer state restored by caller).
        verbose : {"auto", 0, 1, 2}
            0 silent; 1 ("auto") a live bar per epoch on a terminal, else one
            line per epoch; 2 one line per epoch.
        stream : file, optional
            Where progress goes (standard output by default).

        Warns
        -----
        NotLearningWarning
            When, over two epochs, the loss sits at ln(n_classes) or stays far
            above it without improving.

        Raises
        ------
        TrainingError
            When training diverges: a batch's loss is NaN or infinite, or
            exceeds ``DIVERGENCE_FACTOR`` (1000) times the larger of
            ln(n_classes) and the first batch's loss. The model keeps the
            weights from before the step that led there.
        KeyboardInterrupt
            On Ctrl-C, after the step in progress; ``model.history`` holds the
            finished epochs.

        Notes
        -----
        Threads: where the compiled kernels are built and two CPUs are free,
        a helper thread gathers the next batch and runs half of each Adam
        update (same results, bit for bit); SOFTMAXREG_TRAIN_THREADS=1 turns
        it off. SOFTMAXREG_BLAS_THREADS=2 lets BLAS use two threads (default
        1, faster for this library's small products).
        """
        self._require_compiled("fit")
        optimizer = self.optimizer
        with _FIT_GUARD:
            if self._fitting or optimizer._in_fit:
                raise RuntimeError(
                    "fit: this model, or its optimizer, is already training (in "
                    "another thread, or fit was called from a callback); train one "
                    "model per optimizer at a time")
            self._fitting = optimizer._in_fit = True
            self._fit_thread = threading.get_ident()
        try:
            return self._fit(x, y, batch_size, epochs, verbose, callbacks,
                             validation_split, validation_data, shuffle,
                             initial_epoch, seed, stream)
        finally:
            self._fitting = optimizer._in_fit = False
            self._helper = None

    def _fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
             validation_data, shuffle, initial_epoch, seed, stream):
        plan = self._prepare_fit(x, y, batch_size, epochs, verbose, callbacks,
                                 validation_split, validation_data, initial_epoch,
                                 seed)
        progress = EpochProgress(plan["verbose"], epochs, plan["steps"], stream)
        history = History()
        history.params = {"epochs": epochs, "steps": plan["steps"],
                          "batch_size": plan["batch_size"], "seed": plan["seed"]}
        self.history = history
        callbacks = [history] + list(callbacks or [])
        for callback in callbacks:
            callback.set_model(self)
        self.stop_training = False
        for callback in callbacks:
            callback.on_train_begin()
        try:
            # overflow is detected through the loss (see _stop_diverged), not warned
            with _InterruptFlag() as interrupt, _blas_threads(), \
                    self._helper_thread(plan), np.errstate(all="ignore"):
                self._run_epochs(plan, shuffle, callbacks, progress, interrupt)
        finally:
            progress.close()
            self._release_buffers()
            self._grad_scale_fit = 1.0
            self._set_grad_scale(1.0)
        for callback in callbacks:
            callback.on_train_end()
        return history

    def _prepare_fit(self, x, y, batch_size, epochs, verbose, callbacks,
                     validation_split, validation_data, initial_epoch, seed):
        """Validate every argument of ``fit``, build the model; return a plan."""
        batch_size = _check_int("batch_size", 32 if batch_size is None else batch_size,
                                1)
        epochs = _check_int("epochs", epochs, 0)
        initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
        if not isinstance(validation_split, (int, float)) or \
                not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split: expected a number in [0, 1); got "
                             f"{validation_split!r}")
        for callback in callbacks or []:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks: expected Callback objects; got "
                                f"{type(callback).__name__}")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        seed = _check_int("seed", seed, 0)
        _kernels.check_environment()
        threads = _kernels.env_threads("SOFTMAXREG_TRAIN_THREADS", TRAIN_THREADS)
        if threads is None:
            threads = _kernels.default_train_threads(self.dtype)

        x, targets, labels, value_range = self._training_arrays(x, y)
        train_idx, val = np.arange(x.shape[0]), None
        if validation_data is not None:
            val = self._validation_arrays(validation_data)
        elif validation_split:
            train_idx, val_idx = _split_indices(x.shape[0], validation_split, seed)
            val = (x, targets, labels, val_idx)

        if not self.built:
            self.build(x.shape[1:], seed=seed)
        optimizer = self.optimizer
        if not optimizer.built or optimizer._scratch.size != self._grads.size \
                or optimizer._scratch.dtype != self.dtype:
            optimizer.build(self._grads.size, self.dtype)
        self._record_input_range(value_range)
        self._choose_kernels(x, labels)
        self._grad_scale_fit = optimizer.gradient_scale()
        self._set_grad_scale(self._grad_scale_fit)
        self._loss_limit = None
        return {"threads": threads, "x": x, "targets": targets, "labels": labels,
                "train_idx": train_idx,
                "val": val, "batch_size": batch_size, "epochs": epochs,
                "initial_epoch": initial_epoch, "seed": seed,
                "verbose": 1 if verbose == "auto" else verbose,
                "steps": -(-train_idx.size // batch_size)}

    def _choose_kernels(self, x, labels):
        """Decide, from the training data alone, which compiled kernels to use.

        The first Dense layer skips zero inputs when it sees the raw samples
        (through Flatten, Rescaling without offset or Dropout, which keep
        zeros) and they are mostly zero; a last Dense layer with softmax and
        integer labels runs with the loss in one kernel. Deciding from the
        data, not from a batch, makes a resumed run choose as the run it
        continues.
        """
        compiled = _kernels.ENABLED and self.dtype == np.float32
        first = self.layers[self._param_layer_indices[0]]
        keeps_zeros = all(
            isinstance(layer, (_layers.Flatten, _layers.Dropout))
            or (isinstance(layer, _layers.Rescaling) and layer.offset == 0.0)
            for layer in self.layers[:self._param_layer_indices[0]])
        for layer in self.layers:
            if isinstance(layer, _layers.Dense):
                layer.sparse_input = False
        sparse = _kernels.input_density(x) < _kernels.SPARSE_DENSITY
        first.sparse_input = bool(compiled and keeps_zeros and sparse
                                  and isinstance(first, _layers.Dense))
        self._head_kernel = bool(compiled and self.loss.sparse and self._fused
                                 and labels.dtype == np.int64)

    def _set_grad_scale(self, scale):
        """Fold the optimizer's gradient scale into the loss gradient."""
        self._grad_scale = scale
        for layer in self.layers:
            layer.grad_scale = scale

    def _helper_thread(self, plan):
        """The second thread of a fit with ``threads == 2``: the compiled
        helper (see _Helper) where it applies, else the NumPy optimizer's."""
        if plan["threads"] != 2:
            return contextlib.nullcontext()
        if _kernels.WORKER and self.dtype == np.float32:
            self._helper = _Helper(self, self.optimizer)
            return self._helper
        return self.optimizer.parallel()

    def _training_arrays(self, x, y):
        """Validated samples, targets and integer labels; at least 2 classes."""
        if not self.built and self.layers and self.layers[0].declared_input_shape:
            self.input_shape = self.layers[0].declared_input_shape
        x, value_range = self._samples_and_range(x)
        if x.shape[0] == 0:
            raise DataError(f"x: no training samples (x has shape {x.shape})")
        targets, labels = self._targets(y, x.shape[0])
        present = np.flatnonzero(np.bincount(labels, minlength=self.n_classes))
        if present.size < 2:
            raise DataError(f"y: at least 2 classes are needed; got only class "
                            f"{int(present[0])}")
        return x, targets, labels, value_range

    def _record_input_range(self, value_range):
        """Remember the range of the training inputs, to warn on unscaled input."""
        low, high = value_range
        if self.input_range_ is not None:
            low, high = min(low, self.input_range_[0]), max(high, self.input_range_[1])
        self.input_range_ = (low, high)

    def _validation_arrays(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data: expected a tuple (x_val, y_val)")
        x_val = self._samples(validation_data[0], "validation_data x")
        if x_val.shape[0] == 0:
            raise DataError("validation_data: no validation samples")
        targets, labels = self._targets(validation_data[1], x_val.shape[0],
                                        "validation_data y")
        return (x_val, targets, labels, np.arange(x_val.shape[0]))

    def _run_epochs(self, plan, shuffle, callbacks, progress, interrupt):
        monitor = _LearningMonitor(self.n_classes, self.optimizer.learning_rate)
        for epoch in range(plan["initial_epoch"], plan["epochs"]):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            progress.epoch_begin(epoch)
            start = time.perf_counter()
            logs = self._train_epoch(plan, epoch, shuffle, progress, interrupt)
            if plan["val"] is not None:
                val_loss, val_acc = self._evaluate_arrays(*plan["val"],
                                                          plan["batch_size"])
                logs["val_loss"] = val_loss
                for name in self.metrics:
                    logs["val_" + name] = val_acc
            logs["epoch_seconds"] = time.perf_counter() - start
            progress.epoch_end(epoch, logs)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)

            monitor.epoch_end(logs["loss"])
            if self.stop_training:
                break

    def _train_epoch(self, plan, epoch, shuffle, progress, interrupt):
        x, targets, labels = plan["x"], plan["targets"], plan["labels"]
        order = plan["train_idx"]
        if shuffle:
            order = np.random.default_rng([plan["seed"], _SHUFFLE, epoch]).permutation(
                order)
        dropout_rng = np.random.default_rng([plan["seed"], _DROPOUT, epoch])
        for layer in self.layers:
            if isinstance(layer, _layers.Dropout):
                layer.rng = dropout_rng

        batch_size = plan["batch_size"]
        total_loss, total_correct, seen = 0.0, 0, 0
        track_accuracy = bool(self.metrics)
        report = progress.step if progress.live else None
        same = targets is labels  # sparse labels: gather once
        order = order.astype(np.int64, copy=False)
        epoch_labels = labels[order]  # in batch order: each batch's labels a slice
        gather = _kernels.gather_kind(x, self.dtype)
        helper = self._helper
        worker = helper.epoch_begin(plan["steps"]) if helper is not None else None
        pending = None  # (worker, buffer, slot): the next batch, being gathered
        step_fn, threads = self._train_step, plan["threads"]
        self._fused_now = self._fused
        self._first_param_layer = self._param_layer_indices[0]
        for step, start in enumerate(range(0, order.size, batch_size), 1):
            idx = order[start:start + batch_size]
            if pending is not None:
                pending[0].wait()  # returns at once if that helper has stopped
                _, xb, slot = pending
                pending = None
            else:
                xb, slot = self._batch(x, idx, gather), 0
            ahead = order[start + batch_size:start + 2 * batch_size]
            if worker is not None and gather is not None and ahead.size:
                # the helper gathers the next batch while this step runs
                buffer = self._batch_buffer(ahead.size, 1 - slot)
                worker.gather(x, ahead, buffer, gather)
                pending = (worker, buffer, 1 - slot)
            batch_labels = epoch_labels[start:start + batch_size]
            batch_targets = batch_labels if same else targets[idx]
            try:
                loss_sum, correct = step_fn(xb, batch_targets, batch_labels,
                                            track_accuracy, threads)
            except _Diverged as exc:
                self._stop_diverged(epoch, step, *exc.args)
            total_loss += loss_sum
            total_correct += correct
            seen += idx.size
            if helper is not None:
                worker = helper.after_step(step)
            if report is not None:
                report(step, total_loss / seen,
                       total_correct / seen if track_accuracy else None)
            if interrupt.raised:
                raise KeyboardInterrupt(
                    f"training interrupted during epoch {epoch + 1}, after step "
                    f"{step}; the weights are those after that step")

        if helper is not None:
            helper.epoch_end(step)
        logs = {"loss": total_loss / seen + self._penalty()}
        for name in self.metrics:
            logs[name] = total_correct / seen
        return logs

    def _batch(self, x, idx, gather=None):
        """Gather samples ``idx`` and convert them into a reusable buffer.

        ``gather`` is ``kernels.gather_kind(x, self.dtype)``, for a compiled
        gather (idx int64).
        """
        buf = self._batch_buffer(idx.size)
        if gather is not None:
            _kernels.gather_rows(x, idx, buf, gather)  # one pass, converting
        elif x.dtype == self.dtype:
            np.take(x, idx, axis=0, out=buf, mode="clip")  # idx is valid: no check
        else:
            np.copyto(buf, x[idx], casting="unsafe")
        return buf

    def _batch_buffer(self, size, slot=0):
        """Batch buffer ``slot`` (0 or 1: two while the helper gathers ahead)."""
        buf = self._batch_buffers.get((size, slot))
        if buf is None:
            buf = self._batch_buffers[(size, slot)] = np.empty(
                (size,) + self.input_shape, self.dtype)
        return buf

    def _release_buffers(self):
        self._batch_buffers = {}
        for layer in self.layers:
            layer.release_buffers()

    def _forward(self, xb, training, logits_only):
        out = xb
        for layer in self.layers[:-1]:
            out = layer.forward(out, training=training)
        last = self.layers[-1]
        if logits_only:
            return last.forward(out, training=training, logits_only=True)
        return last.forward(out, training=training)

    def _train_step(self, xb, target, labels, track_accuracy, threads=1):
        """Forward, loss, backward and one optimizer step on one batch."""
        loss_sum, correct = self._gradients(xb, target, labels, track_accuracy, True,
                                            self._grad_scale)
        self._check_divergence(loss_sum, labels.shape[0])
        cur = self._cur
        self.optimizer.step(self._params[cur], self._grads, out=self._params[1 - cur],
                            prescaled=True, threads=threads)
        self._use(1 - cur)
        self._previous_valid = True
        return loss_sum, correct

    def _check_divergence(self, loss_sum, n_samples):
        """Raise _Diverged when the batch's loss is non-finite or far too high.

        The fused loss stays finite as weights blow up (a logit gap of 1e8
        costs 1e8), so NaN alone misses most divergence; a loss a thousand
        times that of a uniform guess, or of the untrained model, is taken as
        divergence instead: no sound training run climbs that far.
        """
        mean = loss_sum / n_samples
        limit = self._loss_limit
        if limit is None and math.isfinite(mean):
            limit = self._loss_limit = DIVERGENCE_FACTOR * max(
                math.log(self.n_classes), mean)
        if limit is None or not mean <= limit:  # also true for NaN
            raise _Diverged(mean, limit)

    def _gradients(self, xb, target, labels, track_accuracy, training, scale=1.0):
        """Fill the flat gradient buffer with ``scale`` times the gradient.

        Returns (sum of losses, n correct).
        """
        if training and self._head_kernel:
            return self._head_gradients(xb, target, scale)
        fused = self._fused_now if training else self._fused
        outputs = self._forward(xb, training, fused)  # (n_samples, n_classes)
        grad = self._grad_buffer(outputs.shape)
        correct = 0
        if track_accuracy:
            correct = int(np.count_nonzero(outputs.argmax(axis=1) == labels))
        if fused:
            loss_sum = self.loss.logits_value_and_grad(outputs, target, grad, scale)
        else:
            loss_sum = self.loss.outputs_value_and_grad(outputs, target, grad, scale)
        return self._backward(grad, loss_sum, correct, training)

    def _head_gradients(self, xb, labels, scale):
        """``_gradients`` in training, with the last layer and the loss in one
        compiled call (see kernels.softmax_head)."""
        out = xb
        layers = self.layers
        last = len(layers) - 1
        for layer in layers[:last]:
            out = layer.forward(out, training=True)
        n_samples = out.shape[0]
        grad_z = self._grad_buffer((n_samples, layers[last].units))
        loss_sum, correct, grad = layers[last].softmax_head(
            out, labels, grad_z, scale / n_samples,
            need_input_grad=last > self._first_param_layer)
        return self._backward(grad, loss_sum, correct, True, top=last - 1)

    def _backward(self, grad, loss_sum, correct, training, top=None):
        """Back-propagate the loss gradient ``grad`` from layer ``top`` (the
        last by default) down to the first layer with parameters."""
        if not math.isfinite(loss_sum):
            raise _Diverged(loss_sum, None)
        first = self._first_param_layer if training else self._param_layer_indices[0]
        layers = self.layers
        top = len(layers) - 1 if top is None else top
        for index in range(top, first - 1, -1):
            grad = layers[index].backward(grad, need_input_grad=index > first)
        return loss_sum, correct

    def loss_and_gradients(self, x, y):
        """Mean loss (with L2 penalties) and its gradient per weight, for checks.

        Runs in inference mode (no dropout); returns ``(loss, {name: array})``
        with the names of ``get_weights_dict``.
        """
        self._require_compiled("loss_and_gradients")
        self._require_built("loss_and_gradients")
        x = self._samples(x)
        targets, labels = self._targets(y, x.shape[0])
        self._set_grad_scale(1.0)  # true gradients, even from a callback inside fit
        try:
            loss_sum, _ = self._gradients(self._batch(x, np.arange(x.shape[0])),
                                          targets, labels, False, False)
        finally:
            self._set_grad_scale(self._grad_scale_fit)
        grads = {f"layers.{index}.{pname}": array.copy()
                 for index, views in self._grad_views.items()
                 for pname, array in views.items()}
        self._release_buffers()
        return loss_sum / x.shape[0] + self._penalty(), grads

    def _grad_buffer(self, shape):
        key = ("grad", shape[0])
        buf = self._batch_buffers.get(key)
        if buf is None:
            buf = self._batch_buffers[key] = np.empty(shape, self.dtype)
        return buf

    def _stop_diverged(self, epoch, step, value, limit):
        live = self._params[self._cur]
        if self._previous_valid:
            # the live weights gave the bad loss: go back to the step before
            self._use(1 - self._cur)
            self._previous_valid = False
            kept = "those from before the step that diverged"
        elif not np.isfinite(live).all():
            kept = "non-finite (the initial weights were already bad)"
        else:
            kept = "the initial ones"
        if limit is None or not math.isfinite(value):
            what = f"the loss became {value}"
        else:
            what = (f"the batch loss reached {value:.4g}, above the divergence limit "
                    f"{limit:.4g} ({DIVERGENCE_FACTOR:g} x the larger of "
                    f"ln({self.n_classes}) and the first batch's loss)")
        raise TrainingError(
            f"training diverged: {what} at epoch {epoch + 1}, step {step}; "
            f"training stopped and the weights kept are {kept}. Lower the "
            f"learning rate (now {self.optimizer.learning_rate:g}) or scale the "
            "inputs")

    def _penalty(self):
        return sum(layer.regularization_loss() for layer in self.layers)

    # -- inference ---------------------------------------------------------------------
    def _not_training_elsewhere(self, what):
        """Refuse ``what`` from another thread while fit runs: the model's work
        arrays are in use (from a callback, on fit's own thread, it is fine)."""
        if self._fitting and threading.get_ident() != self._fit_thread:
            raise RuntimeError(f"{what}: the model is training in another thread; "
                               "call it from a callback or after fit returns")

    def _require_built(self, what):
        if not self.built:
            raise NotFittedError(f"{what}: the model has no weights yet; call fit() "
                                 "or build(input_shape) first")

    def predict(self, x, batch_size=None, verbose=0):
        """Class probabilities (n_samples, n_classes), as Keras's ``predict``.

        One sample of the model's input shape (e.g. (28, 28) or (784,)) is
        treated as a batch of one: the result has shape (1, n_classes).
        """
        self._require_built("predict")
        self._not_training_elsewhere("predict")
        x, value_range = self._samples_and_range(x, single_ok=True)
        self._check_range(value_range, "x")
        batch_size = _check_int("batch_size", batch_size or _PREDICT_BATCH, 1)
        if x.shape[0] < _SMALL_PREDICT and x.shape[0] <= batch_size:
            probs = self._forward(x.astype(self.dtype, copy=False), False, False)
            probs = probs.copy()
            self._release_buffers()
        else:
            with _blas_threads():
                probs = self._outputs(x, np.arange(x.shape[0]), batch_size)
        head = getattr(self.layers[-1], "activation", None)
        if isinstance(head, _activations.Linear):  # logits to probabilities
            probs = ops.softmax(probs, out=probs)
        return probs

    def predict_proba(self, x, batch_size=None):
        """Probabilities (n_samples, n_classes); same as ``predict``."""
        return self.predict(x, batch_size=batch_size)

    def _outputs(self, x, idx, batch_size):
        """Model outputs for samples ``idx``, without training behaviour."""
        out = np.empty((idx.size,) + self.output_shape, self.dtype)
        for start in range(0, idx.size, batch_size):
            part = idx[start:start + batch_size]
            out[start:start + part.size] = self._forward(self._batch(x, part), False,
                                                         False)
        self._release_buffers()
        return out

    def evaluate(self, x, y, batch_size=32, verbose=0, stream=None):
        """Mean loss and accuracy over all samples: ``[loss, accuracy]``.

        Returns the loss alone when no accuracy metric was compiled. Both
        are exact per-sample means, whatever the batch size.
        """
        self._require_compiled("evaluate")
        self._require_built("evaluate")
        self._not_training_elsewhere("evaluate")
        x, value_range = self._samples_and_range(x, single_ok=True)
        if x.shape[0] == 0:
            raise DataError(f"x: no samples to evaluate (x has shape {x.shape})")
        self._check_range(value_range, "x")
        targets, labels = self._targets(y, x.shape[0])
        batch_size = _check_int("batch_size", batch_size or 32, 1)
        start = time.perf_counter()
        with _blas_threads():
            loss, accuracy = self._evaluate_arrays(x, targets, labels,
                                                   np.arange(x.shape[0]), batch_size)
        if verbose:
            logs = {"loss": loss, **{name: accuracy for name in self.metrics}}
            print(f"{-(-x.shape[0] // batch_size)} steps - "
                  f"{time.perf_counter() - start:.2f}s - {format_logs(logs)}",
                  file=stream)
        return [loss, accuracy] if self.metrics else loss

    def _evaluate_arrays(self, x, targets, labels, idx, batch_size):
        total, correct = 0.0, 0
        fused = self._fused
        # NOTE: at least 256 samples per forward pass, whatever batch_size says:
        # the means are exact per-sample averages either way, and bigger blocks
        # are several times faster; only the last float bits may differ.
        batch_size = max(batch_size, 256)
        for start in range(0, idx.size, batch_size):
            part = idx[start:start + batch_size]
            outputs = self._forward(self._batch(x, part), False, fused)
            if fused:
                log_probs = ops.log_softmax(outputs)
                total += float(np.sum(self.loss._pick(log_probs, targets[part]),
                                      dtype=np.float64))
            else:
                total += float(np.sum(self.loss.per_sample(targets[part], outputs),
                                      dtype=np.float64))
            correct += int(np.count_nonzero(outputs.argmax(axis=1) == labels[part]))
        return total / idx.size + self._penalty(), correct / idx.size

    # -- description -------------------------------------------------------------------
    def summary(self, stream=None):
        """Print a table of layers, output shapes and parameter counts."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for index, layer in enumerate(self.layers):
            shape = layer.output_shape
            shown = "(None, " + ", ".join(map(str, shape)) + ")" if shape else "?"
            count = layer.count_params() if layer.output_shape else "?"
            rows.append((layer.name or f"{type(layer).__name__.lower()}_{index}"
                         f" ({type(layer).__name__})", shown, str(count)))
        widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
        line = "=" * sum(widths)
        print(f'Model: "{self.name}"', file=stream)
        print(line, file=stream)
        for i, row in enumerate(rows):
            print("".join(cell.ljust(w) for cell, w in zip(row, widths)), file=stream)
            print(line if i == 0 else "-" * sum(widths), file=stream)
        total = self.count_params() if self.built else "?"
        print(f"Total params: {total}", file=stream)

    # -- model file contract -----------------------------------------------------------
    def get_config(self):
        """JSON-serialisable description that, with the weights, rebuilds the model."""
        layer_configs = [{"class_name": type(layer).__name__,
                          "config": layer.get_config()} for layer in self.layers]
        return {
            "class_name": "Sequential",
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": layer_configs,
            "loss": self.loss.get_config() if self.loss else None,
            "metrics": list(self.metrics),
            "optimizer": self.optimizer.get_config() if self.optimizer else None,
            "n_classes": self.n_classes,
            "input_range": list(self.input_range_) if self.input_range_ else None,
        }

    @classmethod
    def from_config(cls, config):
        """Build an unweighted model from ``get_config()`` output, strictly.

        Only registered layer, activation, loss and optimizer names are
        accepted; nothing named in the config is imported or called.
        """
        if not isinstance(config, dict):
            raise ValueError(f"config: expected a dict; got {type(config).__name__}")
        keys = set(config)
        if keys != _CONFIG_KEYS:
            raise ValueError(f"config: unknown keys {sorted(keys - _CONFIG_KEYS)}, "
                             f"missing keys {sorted(_CONFIG_KEYS - keys)}")
        if config["class_name"] != "Sequential":
            raise ValueError(f"config class_name: expected 'Sequential'; got "
                             f"{config['class_name']!r}")
        if config["dtype"] not in ("float32", "float64"):
            raise ValueError(f"config dtype: expected 'float32' or 'float64'; got "
                             f"{config['dtype']!r}")
        if not isinstance(config["layers"], list) or not config["layers"]:
            raise ValueError("config layers: expected a non-empty list")
        model = cls([_layer_from_config(i, entry)
                     for i, entry in enumerate(config["layers"])],
                    name=str(config["name"]), dtype=config["dtype"])
        model._restore_training_config(config)
        if config["input_shape"] is not None:
            model.build(config["input_shape"])
        if model.n_classes != config["n_classes"]:
            raise ValueError(f"config n_classes: {config['n_classes']!r} differs from "
                             f"the last Dense layer's {model.n_classes} units")
        return model

    def _restore_training_config(self, config):
        if config["loss"] is not None:
            optimizer = config["optimizer"]
            optimizer = _optimizers.from_config(optimizer) if optimizer else "adam"
            metrics = config["metrics"]
            if not isinstance(metrics, list):
                raise ValueError(f"config metrics: expected a list; got {metrics!r}")
            self.compile(optimizer, _losses.from_config(config["loss"]), metrics)
        input_range = config["input_range"]
        if input_range is not None:
            if not (isinstance(input_range, list) and len(input_range) == 2 and all(
                    isinstance(v, (int, float)) for v in input_range)):
                raise ValueError(f"config input_range: expected [low, high]; got "
                                 f"{input_range!r}")
            self.input_range_ = tuple(float(v) for v in input_range)

    def get_weights_dict(self):
        """Copies of every learned array, by name: ``"layers.1.kernel"``..."""
        self._require_built("get_weights_dict")
        return {f"layers.{index}.{pname}": array.copy()
                for index, views in self._views[self._cur].items()
                for pname, array in views.items()}

    def set_weights_dict(self, weights):
        """Copy ``weights`` (from ``get_weights_dict``) into the model, checked."""
        self._require_built("set_weights_dict")
        live = {f"layers.{index}.{pname}": array
                for index, views in self._views[self._cur].items()
                for pname, array in views.items()}
        missing, extra = set(live) - set(weights), set(weights) - set(live)
        if missing or extra:
            raise ValueError(f"weights: missing arrays {sorted(missing)}, unexpected "
                             f"arrays {sorted(extra)}")
        for name, target in live.items():
            given = np.asarray(weights[name])
            if given.shape != target.shape or given.dtype != target.dtype:
                raise ValueError(f"weight {name}: expected shape {target.shape} "
                                 f"{target.dtype}; found {given.shape} {given.dtype}")
        for name, target in live.items():
            target[...] = weights[name]
        self._previous_valid = False

    def save(self, path, *, preprocessing=None, provenance=None, class_names=None):
        """Write the model to one safetensors file, as ``softmaxreg.save_model``."""
        return save_model(self, path, preprocessing=preprocessing,
                          provenance=provenance, class_names=class_names)

    def get_weights(self):
        """Keras-style list of copies, kernel then bias, layer by layer."""
        return list(self.get_weights_dict().values())

    def set_weights(self, weights):
        names = list(self.get_weights_dict())
        if len(weights) != len(names):
            raise ValueError(f"set_weights: expected {len(names)} arrays; got "
                             f"{len(weights)}")
        self.set_weights_dict(dict(zip(names, weights)))


def _layer_from_config(index, entry):
    where = f"config layers[{index}]"
    if not isinstance(entry, dict) or set(entry) != {"class_name", "config"}:
        raise ValueError(f"{where}: expected keys class_name and config; got {entry!r}")
    cls = _layers.get(entry["class_name"])
    kwargs = entry["config"]
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where} config: expected a dict; got {kwargs!r}")
    if "activation" in kwargs and not isinstance(kwargs["activation"], str):
        raise ValueError(f"{where} activation: expected a name; got "
                         f"{kwargs['activation']!r}")
    try:
        return cls.from_config(kwargs)
    except TypeError as exc:
        raise ValueError(f"{where} ({entry['class_name']}): {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where} ({entry['class_name']}): {exc}") from None


def save_model(model, path, **kwargs):
    """Keras's ``models.save_model``: see :func:`softmaxreg.saving.save_model`."""
    from softmaxreg import saving  # imported here: saving builds on this module

    return saving.save_model(model, path, **kwargs)


def load_model(path):
    """Keras's ``models.load_model``: see :func:`softmaxreg.saving.load_model`."""
    from softmaxreg import saving

    return saving.load_model(path)
