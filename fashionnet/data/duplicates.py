"""Duplicates and leakage: the same image twice in a split, or in two splits.

Two kinds, both found from per-image keys that each chunk computes from its own rows:

- exact: the same 784 bytes. Each image's `exact_hash` is a 64-bit hash of its bytes; two
  distinct images share one with probability about n^2 / 2^65 (1e-8 for 600,000 images).
- near: the same picture, moved by at most one pixel each way or changed in a few pixels. After
  aligning the two images by the best shift of at most one pixel in each direction, their 26x26
  centres are cut into four 13x13 quadrants; they are near-duplicates when at least
  NEAR_QUADRANTS of the four are byte for byte the same and at least one of those holds ink (so
  two different garments that merely share blank corners are not). Each image keeps the hashes
  of its centre's quadrants (`reference`) and, for the splits compared against earlier ones, of
  its quadrants at each of the nine alignments (`aligned`).

Why not a perceptual hash with a Hamming distance (an 8x8 average hash, as Deepchecks does)?
Measured on Fashion-MNIST, 66% of the test images have a training image with exactly the same
8x8 average hash (14x14: 5%; the 784-bit thresholded image: 1% within 5 bits), while moving an
image by one pixel changes its 8x8 hash by a median of 4 bits: on these small, centred,
similar garments no distance tells a copy from a sibling. Quadrant equality after alignment
finds copies, one-pixel shifts and local edits, and on the real data nothing else.

Pairs are counted in full; `duplicates.csv` lists the first LISTED_PAIRS of each kind and pair
of splits (a data set built from shifted copies has hundreds of thousands).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashionnet.data.catalog import IMAGE_SHAPE, NUM_PIXELS
from fashionnet.data.statistics import INK_BYTE

CROP = 26  # the centre that every alignment of at most one pixel keeps
QUADRANT = CROP // 2
QUADRANTS = 4
# Alignments (row offset, column offset) of the 26x26 window: (1, 1) is the centre; an image
# moved by (dr, dc) has the original's centre at (1 + dr, 1 + dc).
OFFSETS = tuple((row, column) for row in range(3) for column in range(3))
CENTRE = OFFSETS.index((1, 1))
NEAR_QUADRANTS = 3
SEARCH_BLOCK = 10_000  # images of the later split searched at a time (bounds the candidates)
LISTED_PAIRS = 1_000
# Marks a quadrant without ink: never a key to look up, so blank corners match nothing.
BLANK = np.uint64(0)

# 64-bit mixing constants (MurmurHash3's finaliser, and the golden ratio for the rounds).
_ROUND = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
# Mixed into a quadrant's hash to tell the four quadrants apart: a search key is one uint64.
_QUADRANT_TAGS = np.arange(QUADRANTS, dtype=np.uint64) * _ROUND


def hash_rows(data: np.ndarray) -> np.ndarray:
    """A 64-bit hash (uint64 (n,)) of each image or part of one: the bytes of `data[i]`
    (uint8 (n, ...)), zero padded to whole 8-byte words, folded word by word, then mixed
    (MurmurHash3's finaliser); never BLANK. Not cryptographic: it tells images apart, it does
    not resist someone forging a collision."""
    return _fold(*_padded(data))


def _padded(data: np.ndarray) -> tuple[np.ndarray, int]:
    """`data`'s rows copied once into whole 8-byte words, and their width in bytes."""
    data = np.asarray(data, dtype=np.uint8)
    rows, width = len(data), int(np.prod(data.shape[1:]))
    padded = np.zeros((rows, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width].reshape(data.shape)[...] = data
    return padded, width


def _fold(padded: np.ndarray, width: int) -> np.ndarray:
    stream = padded.view("<u8")
    h = np.full(len(padded), np.uint64(width), dtype=np.uint64)
    for column in range(stream.shape[1]):
        h ^= stream[:, column]
        h *= _ROUND
        h ^= h >> np.uint64(29)
    for multiplier in _MIX:
        h ^= h >> np.uint64(33)
        h *= multiplier
    h ^= h >> np.uint64(33)
    h[h == BLANK] = np.uint64(1)  # 0 means a blank quadrant
    return h


def quadrant_hashes(images: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """uint64 (n, len(offsets), 4): the hash of each 13x13 quadrant of each image's 26x26
    window at each offset; BLANK for a quadrant without ink."""
    grid = np.asarray(images, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)
    out = np.empty((len(grid), len(offsets), QUADRANTS), dtype=np.uint64)
    for position, (row, column) in enumerate(offsets):
        for quadrant in range(QUADRANTS):
            top = row + QUADRANT * (quadrant // 2)
            left = column + QUADRANT * (quadrant % 2)
            padded, width = _padded(grid[:, top : top + QUADRANT, left : left + QUADRANT])
            hashes = _fold(padded, width)
            hashes[padded.max(axis=1) < INK_BYTE] = BLANK
            out[:, position, quadrant] = hashes
    return out


@dataclass(frozen=True)
class ImageKeys:
    """Per-image keys of some rows of a split: what duplicate finding needs of each image."""

    rows: np.ndarray  # int64 (n,): row numbers in the split
    labels: np.ndarray  # uint8 (n,)
    exact: np.ndarray  # uint64 (n,): hash of the 784 bytes
    reference: np.ndarray  # uint64 (n, 4): quadrant hashes of the centre
    aligned: np.ndarray | None  # uint64 (n, 9, 4): at every alignment; None when not compared

    @classmethod
    def of_images(
        cls, rows: np.ndarray, labels: np.ndarray, images: np.ndarray, *, aligned: bool
    ) -> "ImageKeys":
        images = np.asarray(images, dtype=np.uint8).reshape(-1, NUM_PIXELS)
        every = quadrant_hashes(images, OFFSETS) if aligned else None
        return cls(
            rows=np.asarray(rows, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.uint8),
            exact=hash_rows(images),
            reference=(
                every[:, CENTRE] if every is not None else quadrant_hashes(images, [(1, 1)])[:, 0]
            ),
            aligned=every,
        )

    @classmethod
    def concatenate(cls, parts: Sequence["ImageKeys"]) -> "ImageKeys":
        if not parts:
            raise ValueError("no keys to concatenate")
        aligned = None if parts[0].aligned is None else np.concatenate([p.aligned for p in parts])
        return cls(
            rows=np.concatenate([p.rows for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            exact=np.concatenate([p.exact for p in parts]),
            reference=np.concatenate([p.reference for p in parts]),
            aligned=aligned,
        )

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}{name}": getattr(self, name) for name in KEY_ARRAYS}
        if self.aligned is not None:
            arrays[f"{prefix}aligned"] = self.aligned
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> "ImageKeys":
        aligned = arrays.get(f"{prefix}aligned")
        return cls(
            **{name: np.asarray(arrays[f"{prefix}{name}"]) for name in KEY_ARRAYS},
            aligned=None if aligned is None else np.asarray(aligned),
        )


KEY_ARRAYS = ("rows", "labels", "exact", "reference")

# duplicates.csv: one row per pair listed. For a pair within one split, split_a = split_b and
# row_a is the first copy; for near-duplicates, shift_rows and shift_columns say how far the
# second image is moved against the first (0 for exact duplicates).
PAIR_COLUMNS = [
    "kind",
    "split_a",
    "row_a",
    "label_a",
    "split_b",
    "row_b",
    "label_b",
    "labels_agree",
    "shift_rows",
    "shift_columns",
]
# duplicate_counts.csv: every kind and pair of splits searched, with its count even when 0.
COUNT_COLUMNS = ["kind", "split_a", "split_b", "pairs", "labels_disagree", "images_b", "listed"]


@dataclass(frozen=True)
class Pairs:
    """Pairs of one kind between split_a and split_b (the same split for pairs within one):
    how many, and the first LISTED_PAIRS of them (by row of b, then row of a), so that memory
    stays bounded by the splits' sizes however many pairs a data set holds."""

    kind: str  # "exact" or "near"
    split_a: str
    split_b: str
    count: int
    labels_disagree: int  # among all `count` pairs
    shared_b: np.ndarray  # int64: the rows of split_b in any of the pairs, sorted
    rows_a: np.ndarray  # int64, the listed pairs from here on
    rows_b: np.ndarray  # int64
    labels_a: np.ndarray
    labels_b: np.ndarray
    shifts: np.ndarray  # int64 (n, 2): (rows, columns) b is moved against a

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "kind": self.kind,
                "split_a": self.split_a,
                "row_a": self.rows_a,
                "label_a": self.labels_a.astype(np.int64),
                "split_b": self.split_b,
                "row_b": self.rows_b,
                "label_b": self.labels_b.astype(np.int64),
                "labels_agree": self.labels_a == self.labels_b,
                "shift_rows": self.shifts[:, 0],
                "shift_columns": self.shifts[:, 1],
            },
            columns=PAIR_COLUMNS,
        )

    def count_row(self) -> dict:
        return {
            "kind": self.kind,
            "split_a": self.split_a,
            "split_b": self.split_b,
            "pairs": self.count,
            "labels_disagree": self.labels_disagree,
            "images_b": len(self.shared_b),
            "listed": len(self.rows_a),
        }


class _Tally:
    """Pairs as they are found, a block of them at a time: the count, the rows of b they
    touch, and the first LISTED_PAIRS (`Pairs`)."""

    def __init__(self, kind: str, split_a: str, keys_a: ImageKeys, split_b: str, keys_b: ImageKeys):
        self.kind, self.split_a, self.split_b = kind, split_a, split_b
        self.keys_a, self.keys_b = keys_a, keys_b
        self.count = self.labels_disagree = 0
        self.in_pairs_b = np.zeros(len(keys_b.rows), dtype=bool)
        self.listed = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.int64))

    def add(self, at_a: np.ndarray, at_b: np.ndarray, shifts: np.ndarray | None = None) -> None:
        """Pairs (positions in keys_a, in keys_b) and how b is moved against a (0: exact)."""
        if shifts is None:
            shifts = np.zeros((len(at_a), 2), np.int64)
        self.count += len(at_a)
        self.labels_disagree += int(
            np.count_nonzero(self.keys_a.labels[at_a] != self.keys_b.labels[at_b])
        )
        self.in_pairs_b[at_b] = True
        at_a, at_b, shifts = (
            np.concatenate([listed, new])
            for listed, new in zip(self.listed, (at_a, at_b, shifts), strict=True)
        )
        first = np.lexsort((self.keys_a.rows[at_a], self.keys_b.rows[at_b]))[:LISTED_PAIRS]
        self.listed = (at_a[first], at_b[first], shifts[first])

    def pairs(self) -> Pairs:
        at_a, at_b, shifts = self.listed
        return Pairs(
            self.kind,
            self.split_a,
            self.split_b,
            self.count,
            self.labels_disagree,
            np.sort(self.keys_b.rows[self.in_pairs_b]),
            self.keys_a.rows[at_a],
            self.keys_b.rows[at_b],
            self.keys_a.labels[at_a],
            self.keys_b.labels[at_b],
            shifts,
        )


class SortedKeys:
    """Keys sorted once, to find every position holding each of many keys (a sort-merge
    join): the reference side of a search, asked block after block."""

    def __init__(self, keys: np.ndarray) -> None:
        self.order = np.argsort(keys)
        ordered = keys[self.order]
        # The distinct keys, where each one's run starts in `ordered`, and its length.
        new = np.ones(len(ordered), dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        self.starts = np.flatnonzero(new)
        self.distinct = ordered[self.starts]
        self.lengths = np.diff(np.append(self.starts, len(ordered)))

    def matches(self, sought: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (i, j) with keys[i] == sought[j], as two index arrays."""
        if not len(self.distinct) or not len(sought):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # Searched in sorted order: each search starts near the last one's answer (5x faster).
        order = np.argsort(sought)
        ordered = sought[order]
        place = np.minimum(np.searchsorted(self.distinct, ordered), len(self.distinct) - 1)
        counts = np.where(self.distinct[place] == ordered, self.lengths[place], 0)
        at_sought = np.repeat(order, counts)
        # For each match, its place among its key's matches, added to where its run starts.
        within = np.arange(len(at_sought)) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.order[np.repeat(self.starts[place], counts) + within], at_sought


def exact_within(split: str, keys: ImageKeys) -> Pairs:
    """Each image whose bytes occur earlier in its split, paired with the first copy."""
    order = np.argsort(keys.exact, kind="stable")  # stable: copies stay in row order
    ordered = keys.exact[order]
    new_value = np.ones(len(ordered), dtype=bool)
    new_value[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new_value)
    first = np.repeat(order[starts], np.diff(np.append(starts, len(order))))
    later = first != order
    tally = _Tally("exact", split, keys, split, keys)
    tally.add(first[later], order[later])
    return tally.pairs()


def blocks_of(keys: ImageKeys) -> range:
    """Where each block of SEARCH_BLOCK images starts: pairs are found a block at a time, so
    that the candidates in memory are bounded (a data set of shifted copies has millions)."""
    return range(0, len(keys.rows), SEARCH_BLOCK)


def exact_across(split_a: str, keys_a: ImageKeys, split_b: str, keys_b: ImageKeys) -> Pairs:
    """Every pair of an image of split_a and one of split_b with the same bytes."""
    index = SortedKeys(keys_a.exact)
    tally = _Tally("exact", split_a, keys_a, split_b, keys_b)
    for first in blocks_of(keys_b):
        at_a, at_b = index.matches(keys_b.exact[first : first + SEARCH_BLOCK])
        tally.add(at_a, at_b + first)
    return tally.pairs()


def near_across(split_a: str, keys_a: ImageKeys, split_b: str, keys_b: ImageKeys) -> Pairs:
    """Near-duplicate pairs (see the module's definition) of split_a's images and split_b's,
    leaving out the exact ones (the same bytes: `exact_across`); each pair once, at its best
    alignment (most equal quadrants, then the smallest shift)."""
    if keys_b.aligned is None:
        raise ValueError(f"the keys of {split_b} lack the aligned quadrant hashes")
    reference = keys_a.reference
    inked = np.nonzero(reference != BLANK)
    index = SortedKeys(reference[inked] ^ _QUADRANT_TAGS[inked[1]])
    tally = _Tally("near", split_a, keys_a, split_b, keys_b)
    for first in blocks_of(keys_b):
        at_a, at_b, shifts = _near_block(index, inked[0], reference, keys_b.aligned, first)
        inexact = keys_a.exact[at_a] != keys_b.exact[at_b]
        tally.add(at_a[inexact], at_b[inexact], shifts[inexact])
    return tally.pairs()


def _near_block(
    index: SortedKeys,
    inked_rows: np.ndarray,
    reference: np.ndarray,
    aligned: np.ndarray,
    first: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The near pairs of the images first..first + SEARCH_BLOCK of split b: (rows of a, rows of
    b, shifts), each pair once, at its best alignment (most equal quadrants, then the smallest
    shift)."""
    block = aligned[first : first + SEARCH_BLOCK]
    inked = np.nonzero(block != BLANK)
    found_a, found_b = index.matches(block[inked] ^ _QUADRANT_TAGS[inked[2]])
    at_a, at_b, offset = inked_rows[found_a], inked[0][found_b], inked[1][found_b]
    # A pair found through several quadrants once per alignment.
    unique = np.unique((at_a * len(block) + at_b) * len(OFFSETS) + offset)
    at_a, rest = np.divmod(unique, len(block) * len(OFFSETS))
    at_b, offset = np.divmod(rest, len(OFFSETS))
    equal = (block[at_b, offset] == reference[at_a]).sum(axis=1)
    near = equal >= NEAR_QUADRANTS
    at_a, at_b, offset, equal = at_a[near], at_b[near], offset[near], equal[near]
    shifts = np.asarray(OFFSETS, dtype=np.int64)[offset] - 1
    rank = np.lexsort((np.abs(shifts).sum(axis=1), -equal, at_b, at_a))
    at_a, at_b, shifts = at_a[rank], at_b[rank], shifts[rank]
    best = np.ones(len(at_a), dtype=bool)
    best[1:] = (at_a[1:] != at_a[:-1]) | (at_b[1:] != at_b[:-1])
    return at_a[best], at_b[best] + first, shifts[best]


@dataclass(frozen=True)
class Duplicates:
    """The pairs found between and within the splits."""

    found: list[Pairs]

    def pairs_table(self) -> pd.DataFrame:
        """duplicates.csv: the first LISTED_PAIRS pairs of each kind and pair of splits."""
        tables = [pairs.table() for pairs in self.found]
        return (
            pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PAIR_COLUMNS)
        )

    def counts_table(self) -> pd.DataFrame:
        """duplicate_counts.csv: every kind and pair of splits searched, found or not."""
        rows = [pairs.count_row() for pairs in self.found]
        return pd.DataFrame(rows, columns=COUNT_COLUMNS)

    def shared_rows(self, split: str, with_split: str) -> np.ndarray:
        """The rows of `split` that are an exact or near copy of an image of `with_split`."""
        rows = [
            pairs.shared_b
            for pairs in self.found
            if pairs.split_b == split and pairs.split_a == with_split
        ]
        return np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def find_duplicates(keys: Mapping[str, ImageKeys]) -> Duplicates:
    """Exact duplicates within each split and across every pair of splits, and near-duplicates
    across them; each later split (in `keys`' order) is compared with every earlier one."""
    found: list[Pairs] = [exact_within(split, split_keys) for split, split_keys in keys.items()]
    names = list(keys)
    for later, split_b in enumerate(names):
        for split_a in names[:later]:
            found += [
                exact_across(split_a, keys[split_a], split_b, keys[split_b]),
                near_across(split_a, keys[split_a], split_b, keys[split_b]),
            ]
    return Duplicates(found)
