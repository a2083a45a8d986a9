"""Training progress output: one printing path for ``fit``.

verbose=0 prints nothing; verbose=2 prints one line per epoch; verbose=1 draws a
live tqdm bar per epoch when the stream is a terminal, and otherwise falls back
to the one-line-per-epoch output (a log file gets no carriage returns).
"""

import sys
import time

from tqdm import tqdm

__all__ = ["EpochProgress", "format_logs"]

# Running loss and accuracy are formatted at most this often (in steps): a
# string per step would cost more than the step itself.
_POSTFIX_EVERY = 50


def format_logs(logs):
    """``"loss: 0.2563 - accuracy: 0.9265"`` from a logs dict (seconds left out)."""
    return " - ".join(f"{key}: {value:.4f}" for key, value in logs.items()
                      if key != "epoch_seconds")


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class EpochProgress:
    """Reports the progress of ``fit`` to ``stream`` (standard output by default)."""

    def __init__(self, verbose, epochs, steps_per_epoch, stream=None):
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")
        self.stream = sys.stdout if stream is None else stream
        self.live = verbose == 1 and _is_terminal(self.stream)
        self.verbose = verbose
        self.epochs = epochs
        self.steps = steps_per_epoch
        self._bar = None

    def epoch_begin(self, epoch):
        if self.verbose == 0:
            return
        self._start = time.perf_counter()
        if self.live:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.stream)
            self._bar = tqdm(total=self.steps, file=self.stream, leave=True,
                             bar_format="{n_fmt}/{total_fmt} |{bar:30}| "
                                        "{elapsed} - {desc}",
                             mininterval=0.1, disable=None)

    def step(self, steps_done, loss, accuracy):
        """Called after each step with the running means so far."""
        if self._bar is None:
            return
        self._bar.update(1)
        if steps_done % _POSTFIX_EVERY == 0 or steps_done == self.steps:
            per_step = (time.perf_counter() - self._start) / steps_done
            text = f"{per_step * 1e6:.0f}us/step - loss: {loss:.4f}"
            if accuracy is not None:
                text += f" - accuracy: {accuracy:.4f}"
            self._bar.set_description_str(text, refresh=False)

    def epoch_end(self, epoch, logs):
        if self.verbose == 0:
            return
        seconds = logs.get("epoch_seconds", time.perf_counter() - self._start)
        per_step = seconds / max(self.steps, 1)
        summary = f"{per_step * 1e6:.0f}us/step - {format_logs(logs)}"
        if self._bar is not None:  # the finished bar is the epoch's line
            self._bar.set_description_str(summary, refresh=False)
            self._bar.close()
            self._bar = None
            return
        print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {summary}",
              file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
