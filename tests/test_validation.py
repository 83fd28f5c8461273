"""The split rule: a fixed, stratified, seeded validation set held out of the training images."""

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.data.split_rule import (
    SplitRule,
    class_shares,
    rows_digest,
    training_rows,
    validation_rows,
)

# Fashion-MNIST's training labels are balanced: 6,000 of each class, in no order.
BALANCED = np.random.default_rng(3).permutation(np.repeat(np.arange(10), 6_000))


def test_fashion_mnist_sized_labels_give_1000_of_each_class():
    rows = validation_rows(BALANCED, 10_000, seed=0)
    assert len(rows) == 10_000 and np.all(np.diff(rows) > 0)
    assert np.bincount(BALANCED[rows], minlength=10).tolist() == [1_000] * 10


def test_same_seed_same_rows_another_seed_other_rows():
    first = validation_rows(BALANCED, 10_000, seed=0)
    assert np.array_equal(first, validation_rows(BALANCED, 10_000, seed=0))
    other = validation_rows(BALANCED, 10_000, seed=1)
    assert not np.array_equal(first, other)
    assert np.bincount(BALANCED[other], minlength=10).tolist() == [1_000] * 10


def test_training_rows_are_the_rest_disjoint_and_complete():
    held_out = validation_rows(BALANCED, 10_000, seed=0)
    kept = training_rows(len(BALANCED), held_out)
    assert len(kept) == 50_000 and not np.intersect1d(kept, held_out).size
    assert np.array_equal(np.sort(np.concatenate([kept, held_out])), np.arange(60_000))


@pytest.mark.parametrize("size", [1, 9, 11, 333, 999])
def test_unbalanced_classes_get_proportional_shares_summing_to_size(size):
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    rows = validation_rows(labels, size, seed=0)
    assert len(rows) == size == len(np.unique(rows))
    counts = np.bincount(labels[rows], minlength=4)
    exact = size * np.array([500, 300, 150, 50]) / 1000
    assert np.all(np.abs(counts - exact) < 1)  # each share within one of the exact quota


def test_largest_remainders_get_the_extra_rows():
    # 7 rows of 3 classes of 5, 3, 2: exact quotas 3.5, 2.1, 1.4 -> 3, 2, 1 plus one for 3.5.
    assert class_shares(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]


@pytest.mark.parametrize("size", [0, 60_000, 70_000])
def test_a_size_that_leaves_no_training_or_no_validation_is_refused(size):
    with pytest.raises(FashionnetError, match=f"validation_size={size}.*between 1 and 59999"):
        validation_rows(BALANCED, size, seed=0)


def test_the_rule_records_size_seed_and_the_digest_of_its_rows():
    rows = validation_rows(BALANCED, 100, seed=4)
    described = SplitRule(100, 4).describe(rows)
    assert described == {
        "validation_size": 100,
        "validation_seed": 4,
        "validation_rows_sha256": rows_digest(rows),
    }
    assert rows_digest(rows) != rows_digest(validation_rows(BALANCED, 100, seed=5))
