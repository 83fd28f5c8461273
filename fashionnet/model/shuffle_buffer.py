"""Minibatches streamed from row groups through a shuffle buffer, in bounded memory.

Training reads its split a few row groups at a time instead of whole: each epoch permutes the
order of the row groups, takes them `buffer_row_groups` at a time, permutes the rows of those
groups together and cuts them into minibatches. Rows left over at the end of a buffer (fewer than
a minibatch) open the next buffer's first minibatch, so every minibatch but the epoch's last is
full. Memory is one buffer (buffer_row_groups x rows per group) and one minibatch, whatever the
size of the split.

When the buffer holds every row group, the buffer is the whole split in file order and its
permutation is the one in-memory training draws (`rng.permutation(n)`): the same seed gives the
same minibatches as shuffling the whole array.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import NUM_CLASSES
from fashionnet.model.two_layer_net import class_indices


class RowGroups(Protocol):
    """A split readable by row groups: a prepared Parquet (`dataset.SplitFile`) or arrays."""

    @property
    def row_group_rows(self) -> tuple[int, ...]: ...

    @property
    def num_features(self) -> int: ...

    def read(self, row_groups: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Pixels float32 (n, features) and labels (n,) of these row groups, in that order."""
        ...


@dataclass(frozen=True)
class ArrayRowGroups:
    """Arrays in memory seen as row groups of `rows_per_group` rows (tests, small data)."""

    x: np.ndarray  # float32 (n, features), C-contiguous
    labels: np.ndarray  # class indices (n,)
    rows_per_group: int

    @classmethod
    def of(cls, x: np.ndarray, t: np.ndarray, rows_per_group: int = 10_000) -> "ArrayRowGroups":
        """x (n, features) and labels as class indices or one-hot rows, checked."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        labels = class_indices(t)
        if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
            raise FashionnetError(
                f"need images (n, features) and n labels, got {x.shape} and {labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise FashionnetError(f"labels must lie in 0..{NUM_CLASSES - 1}")
        return cls(x, labels, rows_per_group)

    @property
    def num_features(self) -> int:
        return self.x.shape[1]

    @property
    def row_group_rows(self) -> tuple[int, ...]:
        n, size = len(self.labels), self.rows_per_group
        return tuple(min(size, n - start) for start in range(0, n, size))

    def read(self, row_groups: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        starts = [group * self.rows_per_group for group in row_groups]
        rows = np.concatenate(
            [
                np.arange(start, min(start + self.rows_per_group, len(self.labels)))
                for start in starts
            ]
            or [np.empty(0, np.int64)]
        )
        return self.x[rows], self.labels[rows]


class HeldSplit:
    """A split read once, whole, and kept in memory, read by row groups like the split itself.

    When the shuffle buffer holds every row group (the default for Fashion-MNIST), each epoch
    reads the same rows: holding them saves reading and decoding the split again every epoch
    (0.3 s of Parquet an epoch for Fashion-MNIST's training split), at no cost in memory, since
    an epoch holds the whole buffer anyway. A read of consecutive row groups is a view, not a
    copy: the shuffle buffer only gathers rows from it.
    """

    def __init__(self, split: RowGroups) -> None:
        self.row_group_rows = split.row_group_rows
        self.num_features = split.num_features
        self.x, self.labels = split.read(range(len(self.row_group_rows)))
        self._starts = np.concatenate([[0], np.cumsum(self.row_group_rows)])

    def read(self, row_groups: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        groups = list(row_groups)
        if groups and groups == list(range(groups[0], groups[-1] + 1)):
            rows = slice(self._starts[groups[0]], self._starts[groups[-1] + 1])
            return self.x[rows], self.labels[rows]
        rows = np.concatenate(
            [np.arange(self._starts[g], self._starts[g + 1]) for g in groups]
            or [np.empty(0, np.int64)]
        )
        return self.x[rows], self.labels[rows]


def buffers(
    num_row_groups: int, buffer_row_groups: int, rng: np.random.Generator
) -> list[list[int]]:
    """An epoch's row groups, in a random order, `buffer_row_groups` at a time; each buffer's
    groups in file order (the rows are permuted anyway)."""
    order = rng.permutation(num_row_groups)
    return [
        sorted(order[start : start + buffer_row_groups].tolist())
        for start in range(0, num_row_groups, buffer_row_groups)
    ]


def shuffled_minibatches(
    split: RowGroups,
    buffer_row_groups: int,
    batch_size: int,
    group_rng: np.random.Generator,
    row_rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of minibatches (pixels, labels) of `split`, through the shuffle buffer:
    `group_rng` orders the row groups, `row_rng` permutes each buffer's rows."""
    leftover: tuple[np.ndarray, np.ndarray] | None = None
    for groups in buffers(len(split.row_group_rows), buffer_row_groups, group_rng):
        x, labels = split.read(groups)
        order = row_rng.permutation(len(labels))
        if leftover is not None:
            needed = batch_size - len(leftover[1])
            taken, order = order[:needed], order[needed:]
            batch = (
                np.concatenate([leftover[0], x[taken]]),
                np.concatenate([leftover[1], labels[taken]]),
            )
            if len(batch[1]) < batch_size:  # this buffer did not even fill the leftover
                leftover = batch
                continue
            leftover = None
            yield batch
        whole = len(order) - len(order) % batch_size
        for start in range(0, whole, batch_size):
            rows = order[start : start + batch_size]
            yield x[rows], labels[rows]
        if whole < len(order):
            rows = order[whole:]
            leftover = (x[rows], labels[rows])
        # Let this buffer go before the next is read, or two buffers would be held at once.
        del x, labels
    if leftover is not None:
        yield leftover
