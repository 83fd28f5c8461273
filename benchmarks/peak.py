"""Training's arithmetic against the hardware: the floating-point operations of `train()`'s
matrix products, and the rate BLAS reaches on the same products bare, in the same run.

Operations are counted as 2 m n k per product of an (m, k) and a (k, n) matrix, for every
product `train()` computes: per training row, the forward pass's x @ W1 and hidden @ W2 and the
backward pass's dscores @ W2.T, x.T @ dhidden and hidden.T @ dscores (the first layer's input
gradient is never needed); per validation row each epoch, the forward pass's two products.
Element-wise work (ReLU, softmax, the optimizer) is not counted: it is time spent, not
arithmetic of the products.
"""

import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from fashionnet.core.threads import Workers, blas_threads_for_training
from fashionnet.data.catalog import NUM_CLASSES, NUM_PIXELS
from fashionnet.model.train import TrainConfig
from fashionnet.model.two_layer_net import HIDDEN_BLOCK

PEAK_REPEATS = 30  # timings of each way to compute the products; the median counts


def training_gflop(config: TrainConfig, train_rows: int, validation_rows: int) -> float:
    """Operations of the matrix products `train(config)` computes on these splits, in GFLOP."""
    hidden = config.hidden_size
    per_train_row = 2 * hidden * (2 * NUM_PIXELS + 3 * NUM_CLASSES)
    per_validation_row = 2 * hidden * (NUM_PIXELS + NUM_CLASSES)
    per_epoch = train_rows * per_train_row + validation_rows * per_validation_row
    return config.epochs * per_epoch / 1e9


def step_products_gflop(batch: int, hidden: int) -> float:
    """Operations of a training step's two large products, x @ W1 and x.T @ dhidden."""
    return 2 * (2 * batch * NUM_PIXELS * hidden) / 1e9


def sgemm_peak(batch: int, hidden: int, threads: int, repeats: int = PEAK_REPEATS) -> float:
    """GFLOP/s of a training step's two large products (x @ W1 and x.T @ dhidden, float32, at
    `batch` rows and `hidden` units) computed bare on `threads` threads, the best of the ways
    to use them: BLAS's own threads on each whole product, and `threads` threads with one BLAS
    thread each on an equal share of the columns, or on training's blocks of HIDDEN_BLOCK
    columns. Each way's time is the median of `repeats`."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, NUM_PIXELS), dtype=np.float32)
    w1 = rng.standard_normal((NUM_PIXELS, hidden), dtype=np.float32)
    dhidden = rng.standard_normal((batch, hidden), dtype=np.float32)
    hidden_out = np.empty((batch, hidden), np.float32)
    w1_grad = np.empty_like(w1)

    def products(columns: slice) -> None:
        np.matmul(x, w1[:, columns], out=hidden_out[:, columns])
        np.matmul(x.T, dhidden[:, columns], out=w1_grad[:, columns])

    def median_seconds(step: Callable[[], None]) -> float:
        step()  # warm-up: threads started, memory touched
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = [median_seconds(lambda: products(slice(None)))]
    if threads > 1:
        share = -(-hidden // threads)
        for width in (share, HIDDEN_BLOCK):
            jobs = [
                partial(products, slice(start, start + width)) for start in range(0, hidden, width)
            ]
            with blas_threads_for_training(), Workers(threads) as workers:
                seconds.append(median_seconds(lambda jobs=jobs: workers.run(jobs)))
    return step_products_gflop(batch, hidden) / min(seconds)
