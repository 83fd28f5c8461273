"""The BLAS thread policy, in one place: training uses half the cores (at least one), whatever
the load; prediction chunks running side by side in this process share the cores.

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


# Chunks to predict at the same time on one machine (the width of the thread pool that maps
# them): one per CPU lets a chunk's Parquet decoding overlap another's matrix products, and
# memory stays at a few chunks however many rows the split has.
CONCURRENT_CHUNKS = os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads_for_chunks(in_this_process: bool) -> Iterator[None]:
    """While CONCURRENT_CHUNKS chunks predict at once in this process, give each its share of
    the cores for BLAS (at least one thread); chunks on other processes (Dask workers) are
    left alone.

    Otherwise every chunk's matrix product starts a BLAS thread per core while the other chunks
    decode Parquet on the same cores: oversubscribed, two chunks at a time took 0.45 s for
    70,000 rows on 2 cores, against 0.30 s with one BLAS thread each. The limit holds for the
    whole process until the block ends.
    """
    if not in_this_process:
        yield
        return
    per_chunk = max(1, (os.cpu_count() or 1) // CONCURRENT_CHUNKS)
    with threadpool_limits(limits=per_chunk, user_api="blas"):
        yield
