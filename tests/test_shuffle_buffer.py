"""The shuffle buffer: every row once per epoch, full minibatches, bounded reads, seeded."""

import numpy as np
import pytest

from fashionnet.model.shuffle_buffer import (
    ArrayRowGroups,
    HeldSplit,
    buffers,
    shuffled_minibatches,
)


class CountingRowGroups(ArrayRowGroups):
    """Arrays as row groups that remember the largest read."""

    largest_read = 0

    def read(self, row_groups):
        x, labels = super().read(row_groups)
        type(self).largest_read = max(type(self).largest_read, len(labels))
        return x, labels


def split_of(n: int, rows_per_group: int) -> ArrayRowGroups:
    # Each row's single feature is its row number, so a minibatch shows which rows it holds.
    x = np.arange(n, dtype=np.float32)[:, None]
    return CountingRowGroups.of(x, np.arange(n) % 10, rows_per_group)


def epoch(split, buffer_row_groups, batch_size, seed=0):
    rngs = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    return list(shuffled_minibatches(split, buffer_row_groups, batch_size, *rngs))


@pytest.mark.parametrize("buffer_row_groups", [1, 2, 3, 10])
@pytest.mark.parametrize("batch_size", [7, 16, 100])
def test_every_row_once_and_every_minibatch_full_but_the_last(buffer_row_groups, batch_size):
    split = split_of(103, 10)
    batches = epoch(split, buffer_row_groups, batch_size)
    rows = np.concatenate([x[:, 0] for x, _ in batches]).astype(int)
    assert sorted(rows.tolist()) == list(range(103))
    assert [len(t) for _, t in batches[:-1]] == [batch_size] * (len(batches) - 1)
    for x, labels in batches:  # pixels and labels stay together
        assert np.array_equal(x[:, 0].astype(int) % 10, labels)


def test_reads_at_most_one_buffer_of_row_groups():
    split = split_of(1_000, 50)
    CountingRowGroups.largest_read = 0
    epoch(split, 3, 32)
    assert CountingRowGroups.largest_read == 150


def test_same_seed_same_minibatches_another_seed_others():
    split = split_of(200, 20)
    first, second, other = epoch(split, 3, 16), epoch(split, 3, 16), epoch(split, 3, 16, seed=1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_a_small_buffer_mixes_rows_of_several_row_groups():
    split = split_of(200, 20)
    first_batch = epoch(split, 3, 32)[0][0][:, 0].astype(int)
    assert len(set((first_batch // 20).tolist())) > 1


def test_a_whole_split_buffer_is_one_permutation_of_the_rows_in_file_order():
    split = split_of(100, 10)
    batches = epoch(split, 10, 25)
    rows = np.concatenate([x[:, 0] for x, _ in batches]).astype(int)
    assert np.array_equal(rows, np.random.default_rng([0, 1]).permutation(100))


def test_buffers_cover_every_row_group_once_in_a_seeded_order():
    made = buffers(10, 4, np.random.default_rng(0))
    assert [len(groups) for groups in made] == [4, 4, 2]
    assert sorted(g for groups in made for g in groups) == list(range(10))
    assert all(groups == sorted(groups) for groups in made)


def test_a_held_split_reads_as_the_split_does():
    split = split_of(95, 10)
    held = HeldSplit(split)
    assert (held.row_group_rows, held.num_features) == (split.row_group_rows, split.num_features)
    for groups in ([0], [9], [2, 3, 4], list(range(10)), [1, 5, 9], []):
        for got, expected in zip(held.read(groups), split.read(groups), strict=True):
            np.testing.assert_array_equal(got, expected)
    assert np.shares_memory(held.read([2, 3])[0], held.x)  # consecutive groups: a view
