"""Helpers shared by every benchmark script, peers and project alike.

Only NumPy and the standard library are used here, so a peer's virtual
environment needs nothing from the project: each script runs as its own
process, loads the same IDX files, measures itself and prints one JSON line.
"""

import argparse
import gzip
import json
import math
import resource
import struct
import sys
import time
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type byte -> NumPy dtype (the benchmark only meets unsigned bytes)
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path):
    """Read one IDX file, gzip-compressed or not, into a NumPy array.

    The header is two zero bytes, a type byte, a rank byte, then one big-endian
    uint32 per dimension; the data follows in C order.
    """
    path = Path(path)
    candidates = [path, path.with_name(path.name + ".gz")]
    found = next((p for p in candidates if p.exists()), None)
    if found is None:
        tried = [str(p) for p in candidates]
        raise FileNotFoundError(f"IDX file not found: tried {tried}")
    opener = gzip.open if found.suffix == ".gz" else open
    with opener(found, "rb") as stream:
        raw = stream.read()
    zero, type_code, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_DTYPES:
        raise ValueError(f"{found}: not an unsigned-byte IDX file (header {raw[:4]!r})")
    shape = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[type_code], offset=4 + 4 * rank)
    return data.reshape(shape)


def load_dataset(data_dir, dataset):
    """Return ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays.

    Images have shape (n_samples, 28, 28), labels shape (n_samples,).
    """
    folder = Path(data_dir) / dataset
    splits = []
    for split in ("train", "test"):
        images_name, labels_name = IDX_FILES[split]
        images = read_idx(folder / images_name)
        labels = read_idx(folder / labels_name)
        splits.append((images, labels))
    return tuple(splits)


def log_loss(probabilities, labels):
    """Mean cross-entropy of the true class, in float64.

    Probabilities are clipped at 1e-15 so that one confident mistake gives a
    large finite loss instead of infinity (the convention scikit-learn used).
    """
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def accuracy(probabilities, labels):
    """Fraction of rows whose largest probability is at the true label."""
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def peak_rss_mib():
    """Peak resident memory of this whole process so far, in MiB.

    Linux reports ``ru_maxrss`` in KiB (macOS in bytes).
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1.0 / (1024 * 1024) if sys.platform == "darwin" else 1.0 / 1024
    return peak * scale


def blas_info():
    """Thread pools (BLAS / OpenMP) loaded in this process, via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def latency_us(predict_one, sample, repeats=300, warmup=20):
    """Median and 90th percentile wall time of ``predict_one(sample)``, in us."""
    for _ in range(warmup):
        predict_one(sample)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        predict_one(sample)
        times[i] = time.perf_counter() - start
    return {
        "median_us": float(np.median(times) * 1e6),
        "p90_us": float(np.percentile(times, 90) * 1e6),
        "calls": repeats,
    }


def throughput(predict_batch, images, repeats=3):
    """Best-of-``repeats`` images per second for predicting all ``images``."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        predict_batch(images)
        best = min(best, time.perf_counter() - start)
    return {"images_per_s": len(images) / best, "seconds": best, "images": len(images)}


def softmax_objective(coef, intercept, x, y, C):
    """scikit-learn's multinomial objective, divided by C, in float64.

    ``sum_i -log p(y_i | x_i) + ||coef||^2 / (2 C)`` with the intercept not
    penalised; coef has shape (n_classes, n_features), x (n_samples, n_features).
    """
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    data_term = 0.0
    for start in range(0, len(x), 4096):  # blocks: no float64 copy of the whole x
        rows = slice(start, start + 4096)
        logits = x[rows].astype(np.float64) @ coef.T + intercept  # (block, n_classes)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))  # (block,)
        picked = logits[np.arange(len(logits)), y[rows]]
        data_term += float(np.sum(log_norm - picked))
    return float(data_term + np.sum(coef * coef) / (2.0 * C))


def standard_parser(description):
    """Arguments every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", required=True, help="folder holding mnist/ etc.")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def emit(result):
    """Print the single JSON line the driver reads (last line of stdout)."""
    result.setdefault("status", "ok")
    result["peak_rss_mib"] = peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def unavailable(name, reason):
    """Report that an implementation cannot run here, then exit cleanly."""
    line = {"name": name, "status": "unavailable", "reason": reason}
    print(json.dumps(line), flush=True)
    sys.exit(0)


class EpochClock:
    """Collect wall-clock seconds per epoch: call ``start()`` then ``stop()``."""

    def __init__(self):
        self.seconds = []
        self._started = None

    def start(self):
        self._started = time.perf_counter()

    def stop(self):
        self.seconds.append(time.perf_counter() - self._started)
