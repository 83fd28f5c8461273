"""The machine's float32 matrix-product rate, in a fresh process with a chosen BLAS setting.

    python -m benchmarks.blas ROWS HIDDEN    prints {"gflops": ...} for (ROWS, 784) @ (784, HIDDEN)

OpenBLAS picks its kernels (AVX2, AVX-512, ...) once, when NumPy loads it, from the CPU or from
OPENBLAS_CORETYPE; so comparing settings needs one process each. `gflops_in_fresh_process`
runs this module with changes to the environment.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fashionnet.fashion_mnist import NUM_PIXELS

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(rows: int, hidden: int, repeats: int = 5) -> float:
    """Median rate of one float32 product (rows, 784) @ (784, hidden), in GFLOP/s."""
    rng = np.random.default_rng(0)
    x = rng.random((rows, NUM_PIXELS), dtype=np.float32)
    w = rng.random((NUM_PIXELS, hidden), dtype=np.float32)
    x @ w  # warm-up: BLAS threads and buffers
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        x @ w
        seconds.append(time.perf_counter() - start)
    return 2 * rows * NUM_PIXELS * hidden / statistics.median(seconds) / 1e9


def gflops_in_fresh_process(rows: int, hidden: int, env: dict[str, str | None]) -> float:
    """`matmul_gflops` in a new Python process whose environment has `env` applied
    (a value of None removes the variable)."""
    environment = {**os.environ}
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.blas", str(rows), str(hidden)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["gflops"]


if __name__ == "__main__":
    print(json.dumps({"gflops": matmul_gflops(int(sys.argv[1]), int(sys.argv[2]))}))
