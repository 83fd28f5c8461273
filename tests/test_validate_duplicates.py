"""Duplicate finding on small synthetic splits: exact copies within and across splits with the
labels that disagree, near copies (a pixel changed, a one-pixel move) at their shift, and
nothing between different garments that merely share blank corners."""

import numpy as np
import pandas as pd
import pytest

from fashionnet.data import duplicates
from fashionnet.data.duplicates import (
    COUNT_COLUMNS,
    PAIR_COLUMNS,
    ImageKeys,
    find_duplicates,
    hash_rows,
)


def garments(n: int, seed: int) -> np.ndarray:
    """n different textured garments in the middle of the frame (blank corners)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 4:24, 6:22] = rng.integers(30, 256, (n, 20, 16))
    return images.reshape(n, -1)


def keys_of(images: np.ndarray, labels: np.ndarray, aligned: bool) -> ImageKeys:
    return ImageKeys.of_images(np.arange(len(images)), labels, images, aligned=aligned)


def shift(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    return np.roll(images.reshape(-1, 28, 28), (rows, columns), axis=(1, 2)).reshape(-1, 784)


def test_hash_rows_tells_rows_apart_and_is_stable():
    data = np.zeros((3, 784), np.uint8)
    data[1, 0] = 1
    data[2, 783] = 1
    hashes = hash_rows(data)
    assert len(set(hashes.tolist())) == 3
    np.testing.assert_array_equal(hashes, hash_rows(data.copy()))
    assert (hashes != duplicates.BLANK).all()


def test_exact_copies_within_and_across_splits_with_disagreeing_labels():
    train = garments(40, 1)
    train[30:33] = train[5]  # three more copies of row 5 in train
    test = garments(20, 2)
    test[[3, 11]] = train[[7, 8]]
    train_labels = np.arange(40) % 10
    test_labels = np.arange(20) % 10
    test_labels[3] = train_labels[7]
    test_labels[11] = (train_labels[8] + 1) % 10  # this copy is labelled otherwise
    found = find_duplicates(
        {"train": keys_of(train, train_labels, False), "test": keys_of(test, test_labels, True)}
    )
    pairs = found.pairs_table()
    assert list(pairs.columns) == PAIR_COLUMNS
    within = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "train")]
    assert within[["row_a", "row_b"]].values.tolist() == [[5, 30], [5, 31], [5, 32]]
    across = pairs[(pairs["kind"] == "exact") & (pairs["split_b"] == "test")]
    assert across[["row_a", "row_b", "labels_agree"]].values.tolist() == [
        [7, 3, True],
        [8, 11, False],
    ]
    counts = found.counts_table().set_index(["kind", "split_a", "split_b"])
    assert list(found.counts_table().columns) == COUNT_COLUMNS
    assert counts.loc[("exact", "train", "test"), "labels_disagree"] == 1
    assert counts.loc[("near", "train", "test"), "pairs"] == 0, "exact pairs are not near ones"
    np.testing.assert_array_equal(found.shared_rows("test", "train"), [3, 11])


@pytest.mark.parametrize("moved", [(1, 0), (0, -1), (-1, 1)])
def test_a_changed_pixel_and_a_one_pixel_move_are_near_copies_at_their_shift(moved):
    train = garments(30, 3)
    test = garments(10, 4)
    test[2] = train[12]
    test[2, 14 * 28 + 14] ^= 0xFF  # one pixel changed, inside the centre
    test[6] = shift(train[20:21], *moved)[0]
    found = find_duplicates(
        {"train": keys_of(train, np.zeros(30), False), "test": keys_of(test, np.zeros(10), True)}
    )
    [near] = [p for p in found.found if p.kind == "near"]
    assert near.rows_a.tolist() == [12, 20] and near.rows_b.tolist() == [2, 6]
    assert near.shifts.tolist() == [[0, 0], list(moved)]


def test_different_garments_sharing_blank_corners_are_not_near_copies():
    train, test = garments(50, 5), garments(50, 6)
    found = find_duplicates(
        {"train": keys_of(train, np.zeros(50), False), "test": keys_of(test, np.zeros(50), True)}
    )
    assert found.counts_table()["pairs"].sum() == 0


def test_two_changes_in_two_quadrants_are_no_longer_a_near_copy():
    """At least NEAR_QUADRANTS of the four quadrants must be the same."""
    train = garments(5, 7)
    test = train[:1].copy()
    test[0, 8 * 28 + 8] ^= 0xFF  # top left quadrant
    test[0, 20 * 28 + 20] ^= 0xFF  # bottom right quadrant
    found = find_duplicates(
        {"train": keys_of(train, np.zeros(5), False), "test": keys_of(test, np.zeros(1), True)}
    )
    assert found.counts_table()["pairs"].sum() == 0


def test_the_list_stops_at_its_limit_but_the_count_does_not(monkeypatch):
    monkeypatch.setattr(duplicates, "LISTED_PAIRS", 4)
    train = garments(10, 8)
    test = train.copy()
    found = find_duplicates(
        {"train": keys_of(train, np.zeros(10), False), "test": keys_of(test, np.zeros(10), True)}
    )
    counts = found.counts_table().set_index(["kind", "split_a", "split_b"])
    assert counts.loc[("exact", "train", "test"), "pairs"] == 10
    assert counts.loc[("exact", "train", "test"), "listed"] == 4
    assert len(found.pairs_table()) == 4


def test_keys_combine_across_chunks_and_survive_their_arrays():
    images = garments(12, 9)
    whole = keys_of(images, np.arange(12), True)
    parts = [
        ImageKeys.of_images(np.arange(a, b), np.arange(a, b), images[a:b], aligned=True)
        for a, b in ((0, 5), (5, 12))
    ]
    joined = ImageKeys.concatenate(parts)
    again = ImageKeys.from_arrays(joined.arrays("k."), "k.")
    for name in ("rows", "labels", "exact", "reference", "aligned"):
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name))


def test_pairs_found_a_block_at_a_time_are_those_found_at_once(monkeypatch):
    """Blocks bound memory; the counts, the list and the shared rows do not depend on them."""
    monkeypatch.setattr(duplicates, "LISTED_PAIRS", 5)
    train = garments(20, 10)
    test = np.concatenate([train, shift(train, 1, 0), train[:7]])  # exact, near, exact again
    labels = np.arange(len(test)) % 10
    keys = {
        "train": keys_of(train, np.arange(20) % 10, False),
        "test": keys_of(test, labels, True),
    }
    at_once = find_duplicates(keys)
    monkeypatch.setattr(duplicates, "SEARCH_BLOCK", 3)
    in_blocks = find_duplicates(keys)
    counts = in_blocks.counts_table()
    pd.testing.assert_frame_equal(counts, at_once.counts_table())
    pd.testing.assert_frame_equal(in_blocks.pairs_table(), at_once.pairs_table())
    np.testing.assert_array_equal(
        in_blocks.shared_rows("test", "train"), at_once.shared_rows("test", "train")
    )
    rows = counts.set_index(["kind", "split_a", "split_b"])
    exact, near = rows.loc[("exact", "train", "test")], rows.loc[("near", "train", "test")]
    assert (exact["pairs"], exact["listed"], exact["images_b"]) == (27, 5, 27)
    assert (near["pairs"], near["listed"], near["images_b"]) == (20, 5, 20)
