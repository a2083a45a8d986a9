"""The machine's measured arithmetic peak: a large float32 matrix product.

Best of several runs of an ``n x n`` by ``n x n`` product in NumPy (2 n^3
floating-point operations), with the BLAS and thread count that served it.
"""

import argparse
import json
import time

import numpy as np

from common import blas_info


def measure(n, repeats, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=dtype)
    b = rng.standard_normal((n, n), dtype=dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm-up: page in, spin up the threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return {"n": n, "dtype": np.dtype(dtype).name, "best_seconds": best,
            "gflops": 2.0 * n**3 / best / 1e9, "repeats": repeats}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = {
        "name": "peak",
        "float32": measure(args.n, args.repeats, np.float32),
        "float64": measure(args.n, max(3, args.repeats // 2), np.float64),
        "numpy": np.__version__,
        "blas": blas_info(),
        "status": "ok",
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
