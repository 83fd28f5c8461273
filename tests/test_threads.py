"""The BLAS threads of training: half the cores, at least one, for the block only."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fashionnet.core.threads import blas_threads_for_training, training_threads


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_training_uses_half_the_cores_at_least_one(cpus, threads):
    assert training_threads(cpus) == threads


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_the_limit_holds_for_the_block_only():
    before = blas_threads()
    with blas_threads_for_training(cpus=2) as threads:
        assert threads == 1
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
    assert seen == [[training_threads()] * len(blas_threads())]
