"""The arrays every training comparison shares: the training, validation and test splits.

They come from the prepared Parquet of the benchmark's project folder (the prepare stage holds
the validation split out of the raw training images), read into memory once, so every trainer
starts from the same arrays; the pipeline's own streaming from Parquet is timed by whole runs
(benchmarks/scale.py). Nothing is chosen on the test split: it is scored once per model.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fashionnet.data.parquet import SplitFile, read_split
from fashionnet.model.shuffle_buffer import ArrayRowGroups
from fashionnet.model.standardize import Standardization
from fashionnet.model.two_layer_net import Params, predict
from fashionnet.options import RunOptions


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32 (n, 784), pixels / 255 as the pipeline reads them
    label: np.ndarray  # uint8 (n,)

    def head(self, rows: int) -> "Split":
        return Split(self.x[:rows], self.label[:rows])

    def row_groups(self) -> ArrayRowGroups:
        """The split as `train()` reads it, from memory in row groups as large as the prepared
        files' (so the default shuffle buffer covers the same rows as in a run)."""
        return ArrayRowGroups.of(self.x, self.label, RunOptions().row_group_size)

    def standardization(self) -> Standardization:
        """The per-pixel standardization `train()` fits on this split, computed as it does."""
        groups = self.row_groups()
        return Standardization.fit_stream(
            groups.read([group])[0] for group in range(len(groups.row_group_rows))
        )


@dataclass(frozen=True)
class Splits:
    train: Split
    validation: Split
    test: Split

    def head(self, rows: int) -> "Splits":
        """The first `rows` rows of each split (quick mode)."""
        return Splits(self.train.head(rows), self.validation.head(rows), self.test.head(rows))


def load_splits(prepared: Mapping[str, SplitFile]) -> Splits:
    """The prepared train, validation and test splits as arrays."""
    batches = {name: read_split(prepared[name].path) for name in ("train", "validation", "test")}
    return Splits(*(Split(batch.x, batch.label) for batch in batches.values()))


def accuracy(params: Params, split: Split) -> float:
    """Share of `split` the network with `params` classifies correctly."""
    return float(np.mean(predict(params, split.x).argmax(axis=1) == split.label))


@dataclass(frozen=True)
class Fit:
    """One trained model's training wall time, and its accuracy on each held-out split."""

    seconds: float
    validation_accuracy: float
    test_accuracy: float
