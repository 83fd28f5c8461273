"""How many BLAS threads training uses: half the cores (at least one), whatever the load.

OpenBLAS splits each matrix product among its threads and waits for the slowest: when another
process keeps a core busy, the thread that shares that core is descheduled and every product
waits for it. On this project's 2-core machine, with a busy loop on each core, training with
NumPy's default of one BLAS thread per core ran about 3 times slower than quiet, where one thread
slowed by about 1.2x, and quiet it cost only 15-20% against two (`make bench`, contention).

A thread count that followed the measured load would do as well, but the count changes the
products' last bits, and so the trained weights: training would then be reproducible only under
the same load. A count fixed by the machine keeps the same seed giving the same weights, and
leaves the other half of the cores to everything else (the Prefect server, the predict stage's
chunks, other jobs).
"""

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_limits


def training_threads(cpus: int | None = None) -> int:
    """Half of `cpus` (default: this machine's), at least one."""
    return max(1, (cpus or os.cpu_count() or 1) // 2)


@contextlib.contextmanager
def blas_threads_for_training(cpus: int | None = None) -> Iterator[int]:
    """Limit this process's BLAS threads to `training_threads` until the block ends; yields the
    number. Also a decorator (`train` wears it)."""
    threads = training_threads(cpus)
    with threadpool_limits(limits=threads, user_api="blas"):
        yield threads
