"""The thread policy, in one place: training shares its work among one thread per core, each
with one BLAS thread; prediction chunks running side by side in this process share the cores.

Training cuts each step into jobs of a fixed size (`two_layer_net.BlockedBackprop`: blocks of
hidden units), and its threads (`Workers`) take the jobs one at a time, whichever thread is
free. Each job's arithmetic is single-threaded BLAS calls and element-wise NumPy, so its bits
depend only on the job, never on which thread ran it or how
many threads there were: the same seed gives the same weights whatever the load and the number
of cores (on the same BLAS kernel).

Why not let BLAS split the products itself: OpenBLAS divides each product among its threads and
waits for the slowest, many times per product, spinning meanwhile. When another process keeps a
core busy, the thread that shares that core is descheduled and every product waits for it: on
this project's 2-core machine, with a busy loop on each core, training with a BLAS thread per
core ran 6.7 times slower than quiet. And the thread count changes the products' last bits, so
training would be reproducible only at one thread count. Here a descheduled thread holds up at
most the one job it is running: the others take the rest.
"""

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits

Job = Callable[[], object]
Run = Callable[
    [Sequence[Job]], None
]  # runs every job of a list once: `run_in_order`, `Workers.run`


def run_in_order(jobs: Sequence[Job]) -> None:
    """Every job in this thread, one after the other."""
    for job in jobs:
        job()


def training_threads(cpus: int | None = None) -> int:
    """One per core of `cpus` (default: this machine's)."""
    return max(1, cpus or os.cpu_count() or 1)


@contextlib.contextmanager
def blas_threads_for_training() -> Iterator[None]:
    """One BLAS thread per calling thread until the block ends: a fixed count, so the products'
    bits do not depend on the load or on the machine's cores. Also a decorator."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class Workers:
    """`count` threads that run lists of jobs: the calling thread and `count - 1` helpers."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._helpers = (
            ThreadPoolExecutor(count - 1, thread_name_prefix="fashionnet-train")
            if count > 1
            else None
        )

    def run(self, jobs: Sequence[Job]) -> None:
        """Run every job once and return when all are done. Each thread takes the next job when
        it finishes one, so a thread that another process holds up delays only the job it is
        running; and the calling thread waits for the jobs, not for the helpers: a helper that
        was not scheduled before the jobs ran out costs nothing. The first error of a job is
        raised once every job has ended."""
        if not jobs:
            return
        batch = _Batch(jobs)
        if self._helpers is not None:
            for _ in range(min(self.count, len(jobs)) - 1):
                self._helpers.submit(batch.take_jobs)
        batch.take_jobs()
        batch.finished.wait()
        if batch.errors:
            raise batch.errors[0]

    def close(self) -> None:
        if self._helpers is not None:
            self._helpers.shutdown()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Batch:
    """One `Workers.run`: its jobs still to take, how many have not ended, their errors."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.pending: queue.SimpleQueue[Job] = queue.SimpleQueue()
        for job in jobs:
            self.pending.put(job)
        self.unfinished = len(jobs)
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.errors: list[BaseException] = []

    def take_jobs(self) -> None:
        while True:
            try:
                job = self.pending.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except BaseException as error:  # raised by `run`, in the calling thread
                self.errors.append(error)
            finally:
                with self.lock:
                    self.unfinished -= 1
                    if self.unfinished == 0:
                        self.finished.set()


@contextlib.contextmanager
def training_workers(cpus: int | None = None) -> Iterator[Workers]:
    """`training_threads(cpus)` workers, each with one BLAS thread, until the block ends."""
    with blas_threads_for_training(), Workers(training_threads(cpus)) as workers:
        yield workers


# NumPy parses every .npy header (also each array of an .npz) with ast.literal_eval, and the
# AST constructor of CPython 3.11 keeps its recursion depth per interpreter, not per thread
# (python/cpython#106905): two chunk threads reading headers at once can fail with "SystemError:
# AST constructor recursion depth mismatch" (seen once in CI, two prediction chunks loading the
# weights). Every .npy or .npz read that a chunk's thread can make holds this lock; the headers
# are a few hundred bytes, so it costs nothing measurable.
NPY_HEADERS = threading.RLock()


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
