"""Numerically stable softmax primitives shared by the layers, losses and estimator.

All functions work row-wise on a 2-D array of logits of shape
(n_samples, n_classes), in the array's own floating dtype.
"""

import numpy as np


def log_softmax(logits, out=None):
    """Row-wise log-softmax, stable for any finite logits.

    Subtracting the row maximum first leaves the result unchanged (softmax is
    invariant to adding a constant per row) and keeps ``exp`` from overflowing:
    every shifted logit is <= 0, so every ``exp`` lies in (0, 1].
    """
    shifted = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    # log sum_j exp(z_j - max) lies in [0, log(n_classes)]: no overflow, no log(0)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (n_samples, 1)
    shifted -= log_norm
    return shifted


def softmax(logits, out=None):
    """Row-wise softmax; the probabilities of each row sum to one."""
    probs = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=1, keepdims=True)  # (n_samples, n_classes)
    return probs
