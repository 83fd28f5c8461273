"""The threads of training: one per core, one BLAS thread each, sharing jobs; the limit holds
for the block only. And the .npy reads that chunk threads make, one at a time."""

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fashionnet.core.threads import (
    NPY_HEADERS,
    Workers,
    blas_threads_for_training,
    run_in_order,
    training_threads,
    training_workers,
)
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import load_metadata, load_params, save_params
from fashionnet.score.inputs import Input, read_rows, row_count


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 2), (3, 3), (16, 16)])
def test_training_uses_a_thread_per_core(cpus, threads):
    assert training_threads(cpus) == threads


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_the_limit_holds_for_the_block_only():
    before = blas_threads()
    with blas_threads_for_training():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_training_workers_have_one_blas_thread_each_for_the_block_only():
    before = blas_threads()
    with training_workers(cpus=3) as workers:
        assert workers.count == 3
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_training_runs_under_the_limit():
    from fashionnet.model import train as train_module
    from fashionnet.model.shuffle_buffer import ArrayRowGroups

    seen = []
    x = np.zeros((20, 784), np.float32)
    groups = ArrayRowGroups.of(x, np.arange(20) % 10, 10)
    config = train_module.TrainConfig(hidden_size=4, epochs=1, batch_size=10)
    train_module.train(config, groups, on_epoch=lambda record: seen.append(blas_threads()))
    assert seen == [[1] * len(blas_threads())]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_workers_run_every_job_once(count):
    done = []
    with Workers(count) as workers:
        for jobs in (0, 1, 2, 17):  # fewer jobs than threads, and more
            done.clear()
            workers.run([lambda number=number: done.append(number) for number in range(jobs)])
            assert sorted(done) == list(range(jobs))


def test_a_thread_held_up_leaves_the_other_jobs_to_the_rest():
    """The first job holds its thread until every other job has run: only a thread that takes
    the next job when free, whichever it is, finishes them meanwhile."""
    others, others_done = [], threading.Event()

    def job(number: int) -> None:
        if number == 0:
            assert others_done.wait(timeout=30), "the other jobs waited for the held thread"
            return
        others.append(number)
        if len(others) == 19:
            others_done.set()

    with Workers(2) as workers:
        workers.run([lambda number=number: job(number) for number in range(20)])
    assert sorted(others) == list(range(1, 20))


def test_a_failing_job_raises_once_every_job_ended():
    done = []

    def fail() -> None:
        raise ValueError("job failed")

    with Workers(2) as workers, pytest.raises(ValueError, match="job failed"):
        workers.run([fail, *(lambda number=number: done.append(number) for number in range(9))])
    assert sorted(done) == list(range(9))


def test_run_in_order_runs_the_jobs_in_order_here():
    done = []
    run_in_order([lambda number=number: done.append(number) for number in range(5)])
    assert done == list(range(5))


def _weights(folder: Path) -> Callable[[], object]:
    path = folder / "weights.npz"
    save_params(path, TwoLayerNet(784, 8, 10, seed=0).params, {"note": "test"})
    return lambda: (load_params(path), load_metadata(path))


def _npy_input(folder: Path) -> Callable[[], object]:
    item = Input(folder / "images.npy", "npy")
    np.save(item.path, np.zeros((3, 28, 28), np.uint8))
    return lambda: (row_count(item), read_rows(item, range(3)))


@pytest.mark.parametrize("reader", [_weights, _npy_input], ids=["weights", "npy input"])
def test_npy_reads_of_chunk_threads_wait_for_one_another(tmp_path, reader):
    """NumPy's header parsing is not thread-safe on CPython 3.11 (NPY_HEADERS): a read in one
    thread waits while another thread reads (here: holds the lock)."""
    read, done = reader(tmp_path), threading.Event()
    thread = threading.Thread(target=lambda: (read(), done.set()))
    with NPY_HEADERS:
        thread.start()
        assert not done.wait(0.5), "read while another thread held the lock"
    assert done.wait(30)
    thread.join()
