import numpy as np
import pytest

from fashionnet.fashion_mnist import CLASS_NAMES
from fashionnet.metrics import (
    accuracy_by_class,
    confusion_matrix,
    overall_table,
    per_class_table,
    safe_ratio,
    weakest_classes,
)
from fashionnet.schema import OVERALL_COLUMNS, PER_CLASS_COLUMNS


@pytest.fixture
def hand_confusion() -> np.ndarray:
    """19 samples; class 2 is never right, class 3 has no samples, class 2 is never predicted."""
    confusion = np.zeros((10, 10), dtype=np.int64)
    confusion[0, 0], confusion[0, 1] = 8, 2  # 10 T-shirts, 8 right, 2 called Trouser
    confusion[1, 0], confusion[1, 1] = 1, 3  # 4 Trousers, 3 right
    confusion[2, 1] = 5  # 5 Pullovers, all called Trouser
    return confusion


def test_confusion_matrix_counts_pairs_rows_true_columns_predicted():
    labels = np.array([0, 0, 1, 9, 9, 9], dtype=np.uint8)
    predicted = np.array([0, 1, 1, 9, 9, 3], dtype=np.uint8)
    confusion = confusion_matrix(labels, predicted)
    assert confusion.dtype == np.int64 and confusion.shape == (10, 10)
    assert confusion[0, 0] == 1 and confusion[0, 1] == 1 and confusion[1, 1] == 1
    assert confusion[9, 9] == 2 and confusion[9, 3] == 1
    assert confusion.sum() == 6


def test_confusion_matrix_does_not_overflow_uint8_labels():
    # with 20 classes, 19 * 20 + 19 = 399 would wrap to 143 if computed in uint8
    labels = np.full(3, 19, dtype=np.uint8)
    confusion = confusion_matrix(labels, labels, num_classes=20)
    assert confusion.shape == (20, 20) and confusion[19, 19] == 3


def test_confusion_matrix_rejects_out_of_range_and_mismatched_inputs():
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(np.array([10]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.array([1, 2]), np.array([1]))


def test_confusion_matrix_of_nothing_is_all_zero():
    empty = np.array([], dtype=np.uint8)
    assert not confusion_matrix(empty, empty).any()


def test_safe_ratio_is_zero_where_denominator_is_zero():
    np.testing.assert_array_equal(safe_ratio([1, 2, 0], [2, 0, 0]), [0.5, 0.0, 0.0])


def test_overall_table_hand_values_and_exact_columns(hand_confusion):
    empty = np.zeros((10, 10), dtype=np.int64)
    table = overall_table({"train": hand_confusion, "test": empty}, "abc123")
    assert list(table.columns) == OVERALL_COLUMNS
    assert table["split"].tolist() == ["train", "test"]
    assert table["samples"].tolist() == [19, 0]
    assert table["correct"].tolist() == [11, 0]
    assert table["accuracy"].tolist() == [11 / 19, 0.0]
    assert table["model_id"].tolist() == ["abc123", "abc123"]


def test_per_class_table_hand_values(hand_confusion):
    table = per_class_table({"train": hand_confusion}).set_index("label")
    assert table.loc[0, "precision"] == pytest.approx(8 / 9)
    assert table.loc[0, "recall"] == pytest.approx(8 / 10)
    assert table.loc[0, "f1"] == pytest.approx(16 / 19)
    assert table.loc[1, "precision"] == pytest.approx(3 / 10)
    assert table.loc[1, "recall"] == pytest.approx(3 / 4)
    assert table.loc[1, "f1"] == pytest.approx(3 / 7)
    assert table["accuracy"].tolist() == table["recall"].tolist()
    assert table.loc[0, "samples"] == 10 and table.loc[0, "correct"] == 8
    assert table.loc[4, "class_name"] == "Coat"


def test_per_class_table_zero_division_gives_zero_not_nan(hand_confusion):
    table = per_class_table({"train": hand_confusion}).set_index("label")
    # class 2: has samples, never right, never predicted; class 3: no samples at all
    for label in (2, 3):
        assert table.loc[label, ["accuracy", "precision", "recall", "f1"]].tolist() == [0, 0, 0, 0]
    assert not table.isna().any().any()


def test_per_class_table_has_twenty_rows_and_exact_columns(hand_confusion):
    table = per_class_table({"train": hand_confusion, "test": hand_confusion.T.copy()})
    assert list(table.columns) == PER_CLASS_COLUMNS
    assert len(table) == 20
    assert table["split"].tolist() == ["train"] * 10 + ["test"] * 10
    assert table["class_name"].tolist() == list(CLASS_NAMES) * 2
    assert table.groupby("split", sort=False)["samples"].sum().tolist() == [19, 19]


def test_weakest_classes_lists_lowest_accuracy_with_main_confusion(hand_confusion):
    confusion = hand_confusion.copy()
    confusion[3:, 3:] += np.eye(7, dtype=np.int64) * 5  # classes 3..9 perfect
    weakest = weakest_classes(confusion, k=3)
    assert [w.label for w in weakest] == [2, 1, 0]
    assert weakest[0] == (2, "Pullover", 0.0, "Trouser", 5)
    assert weakest[1] == (1, "Trouser", 0.75, "T-shirt/top", 1)
    assert weakest[2].confused_with == "Trouser" and weakest[2].confused_count == 2


def test_weakest_classes_without_mistakes_name_no_partner():
    weakest = weakest_classes(np.eye(10, dtype=np.int64) * 3, k=2)
    assert [(w.label, w.accuracy, w.confused_with, w.confused_count) for w in weakest] == [
        (0, 1.0, None, 0),
        (1, 1.0, None, 0),
    ]


def test_accuracy_by_class_puts_splits_side_by_side(hand_confusion):
    table = per_class_table({"train": hand_confusion, "test": np.eye(10, dtype=np.int64)})
    wide = accuracy_by_class(table)
    assert list(wide.columns) == ["train", "test"]
    assert list(wide.index) == list(CLASS_NAMES)
    assert wide.loc["T-shirt/top", "train"] == 0.8 and wide.loc["Trouser", "train"] == 0.75
    assert (wide["test"] == 1.0).all()
