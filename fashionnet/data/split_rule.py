"""The split rule: which training images are held out as the validation set.

The validation set is fixed by (size, seed) and stratified: each class gives a share of `size`
proportional to its count (largest-remainder rounding, so the shares sum exactly to `size`),
drawn by a seeded permutation of that class's rows. Fashion-MNIST's 60,000 training images,
6,000 per class, give 1,000 per class for the default 10,000. Training never reads these rows;
the options that decide on a recipe look at them instead of the test set.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from fashionnet.core.errors import FashionnetError

DIGEST_CHARS = 16


@dataclass(frozen=True)
class SplitRule:
    """How the raw training images are divided into the train and validation splits."""

    validation_size: int
    validation_seed: int

    def describe(self, rows: np.ndarray) -> dict[str, int | str]:
        """The rule as files record it, with the digest of the held-out rows it chose."""
        return {
            "validation_size": self.validation_size,
            "validation_seed": self.validation_seed,
            "validation_rows_sha256": rows_digest(rows),
        }


def class_shares(counts: np.ndarray, size: int) -> np.ndarray:
    """How many rows of each class (counts[c] rows) go to a stratified sample of `size` rows:
    proportional shares rounded down, then one more for the largest remainders (ties: the
    lower class first), so they sum to `size`."""
    total = int(counts.sum())
    exact = counts.astype(np.int64) * size
    shares = exact // total
    remainders = exact - shares * total
    missing = size - int(shares.sum())
    shares[np.argsort(-remainders, kind="stable")[:missing]] += 1
    return shares


def validation_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The sorted row numbers (int64) of the validation set among the training images."""
    labels = np.asarray(labels)
    if not 0 < size < len(labels):
        raise FashionnetError(
            f"invalid option validation_size={size}: the training split has {len(labels)} "
            f"images; give a validation_size between 1 and {len(labels) - 1}"
        )
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:share]
        for label, share in zip(classes, class_shares(counts, size), strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def training_rows(num_rows: int, held_out: np.ndarray) -> np.ndarray:
    """The sorted row numbers that stay for training: all but `held_out`."""
    keep = np.ones(num_rows, dtype=bool)
    keep[held_out] = False
    return np.flatnonzero(keep).astype(np.int64)


def rows_digest(rows: np.ndarray) -> str:
    """16 hex digits of sha256 over the rows as little-endian int64: names a held-out set."""
    data = np.ascontiguousarray(rows, dtype="<i8").tobytes()
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]
