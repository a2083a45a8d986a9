"""Callbacks: code run by ``fit`` at the start and end of training and of each epoch.

A callback may stop training by setting ``self.model.stop_training = True``;
the current epoch still finishes.
"""

import math

__all__ = ["Callback", "LambdaCallback", "EarlyStopping", "History"]


class Callback:
    """Base class; every hook does nothing by default."""

    def __init__(self):
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class LambdaCallback(Callback):
    """Run the given functions at the matching hooks.

    ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_train_begin(logs)`` and ``on_train_end(logs)``, each optional.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None):
        super().__init__()
        for name, fn in (("on_epoch_begin", on_epoch_begin),
                         ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable; "
                                f"got {type(fn).__name__}")
            if fn is not None:
                setattr(self, name, fn)


class History(Callback):
    """Records the per-epoch logs: ``history`` maps each key to a list.

    The keys are Keras's ("loss", the metric names, "val_loss", "val_" + the
    metric names) plus one of this library's own, "epoch_seconds": the wall
    time of each epoch, validation included. Code written for Keras that
    iterates over every key should skip it.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self.params = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, such as "val_loss" or "val_accuracy".
    min_delta : float
        The smallest change counted as an improvement.
    patience : int
        Epochs without improvement before stopping.
    mode : {"auto", "min", "max"}
        "auto" maximises keys containing "acc", minimises the others.
    restore_best_weights : bool
        At the end, put back the weights of the best epoch.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max'; "
                             f"got {mode!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0; "
                             f"got {patience!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not in the epoch logs "
                f"(found {', '.join(sorted(logs))}); pass validation data for "
                "'val_*' keys or choose another monitor"
            )
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights_dict()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights_dict(self.best_weights)
