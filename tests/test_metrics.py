import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.report.columns import OVERALL_COLUMNS, PER_CLASS_COLUMNS
from fashionnet.report.metrics import (
    CALIBRATION_BINS,
    ProbabilityMetrics,
    Tally,
    accuracy_by_class,
    confidence_bins,
    confusion_matrix,
    expected_calibration_error,
    overall_table,
    per_class_table,
    reliability_table,
    safe_ratio,
    weakest_classes,
    wilson_interval,
)


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
    assert table["ci_low"].tolist() == pytest.approx([reference_wilson(11, 19)[0], 0.0])
    assert table["ci_high"].tolist() == pytest.approx([reference_wilson(11, 19)[1], 1.0])
    assert table["model_id"].tolist() == ["abc123", "abc123"]
    # without probability metrics for a split, its cells are empty, not made up
    assert table[["top2_accuracy", "log_loss", "ece"]].isna().all().all()


def test_overall_table_places_each_splits_probability_metrics(hand_confusion):
    metrics = {"test": ProbabilityMetrics(0.9, 0.3, 0.02, 0.35, 0.04)}
    table = overall_table({"train": hand_confusion, "test": hand_confusion}, "m", metrics)
    names = ["top2_accuracy", "log_loss", "ece", "raw_log_loss", "raw_ece"]
    assert table.loc[1, names].tolist() == [0.9, 0.3, 0.02, 0.35, 0.04]
    assert table.loc[0, names].isna().all()


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
    # the interval is that of each class's accuracy: 8 of 10, 3 of 4, and no samples at all
    assert table.loc[0, ["ci_low", "ci_high"]].tolist() == pytest.approx(reference_wilson(8, 10))
    assert table.loc[1, ["ci_low", "ci_high"]].tolist() == pytest.approx(reference_wilson(3, 4))
    assert table.loc[3, ["ci_low", "ci_high"]].tolist() == [0.0, 1.0]


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


def reference_wilson(successes: int, trials: int) -> tuple[float, float]:
    """The Wilson score interval by its textbook formula, in Python floats, with z from the
    standard library's normal distribution (not fashionnet's constant)."""
    z = NormalDist().inv_cdf(0.975)
    p = successes / trials
    centre = (successes + z * z / 2) / (trials + z * z)
    half = z * math.sqrt(trials) / (trials + z * z) * math.sqrt(p * (1 - p) + z * z / (4 * trials))
    return centre - half, centre + half


def test_wilson_interval_textbook_value():
    low, high = wilson_interval(81, 263)  # a textbook example: 81 of 263
    assert (round(float(low), 4), round(float(high), 4)) == (0.2553, 0.3662)
    assert (float(low), float(high)) == pytest.approx(reference_wilson(81, 263), rel=1e-12)


def test_wilson_interval_at_the_edges():
    z2 = NormalDist().inv_cdf(0.975) ** 2
    low, high = wilson_interval([0, 10, 0], [10, 10, 0])
    # none right: [0, z^2 / (n + z^2)]; all right: its mirror; no trials: nothing known
    np.testing.assert_allclose(low, [0.0, 10 / (10 + z2), 0.0], atol=1e-15)
    np.testing.assert_allclose(high, [z2 / (10 + z2), 1.0, 1.0], atol=1e-15)


@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_matches_the_formula_and_holds_the_proportion(case):
    successes, trials = case
    low, high = wilson_interval(successes, trials)
    expected_low, expected_high = reference_wilson(successes, trials)
    assert float(low) == pytest.approx(max(expected_low, 0.0), rel=1e-9, abs=1e-12)
    assert float(high) == pytest.approx(min(expected_high, 1.0), rel=1e-9, abs=1e-12)
    assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_confidence_bins_are_fifteen_equal_widths_with_one_in_the_last():
    assert CALIBRATION_BINS == 15
    confidence = np.array([0.0, 1 / 15 - 1e-9, 1 / 15, 0.5, 14 / 15, 1.0], dtype=np.float64)
    np.testing.assert_array_equal(confidence_bins(confidence), [0, 0, 1, 7, 14, 14])


def hand_tally() -> Tally:
    """Four predictions: two at confidence 0.95 (one right), two at 0.55 and 0.58 (both right).

    ECE = 2/4 * |1/2 - 0.95| + 2/4 * |1 - 0.565| = 0.225 + 0.2175 = 0.4425."""
    return Tally.of_predictions(
        labels=np.array([3, 3, 1, 7]),
        predicted=np.array([3, 5, 1, 7]),
        second=np.array([0, 3, 2, 2]),
        confidence=np.array([0.95, 0.95, 0.55, 0.58], dtype=np.float32),
        true_log_prob=np.log(np.array([0.95, 0.04, 0.55, 0.58], dtype=np.float32)),
    )


def test_hand_built_tally_gives_top2_log_loss_and_ece():
    tally = hand_tally()
    assert tally.samples == 4 and tally.top2_correct == 4  # the wrong one had it second
    assert tally.bin_counts[14] == 2 and tally.bin_counts[8] == 2 and tally.bin_counts.sum() == 4
    metrics = tally.probability_metrics()
    assert metrics.top2_accuracy == 1.0
    expected_log_loss = -(math.log(0.95) + math.log(0.04) + math.log(0.55) + math.log(0.58)) / 4
    assert metrics.log_loss == pytest.approx(expected_log_loss, rel=1e-6)
    assert metrics.ece == pytest.approx(0.4425, abs=1e-7)


def test_ece_by_definition_on_per_row_values():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, 500)
    right = rng.random(500) < confidence**2  # overconfident on purpose
    by_definition = 0.0
    for b in range(15):
        upper = confidence < (b + 1) / 15 if b < 14 else confidence <= 1.0
        in_bin = (confidence >= b / 15) & upper
        if in_bin.any():
            gap = abs(right[in_bin].mean() - confidence[in_bin].mean())
            by_definition += in_bin.sum() / 500 * gap
    bins = confidence_bins(confidence)
    ece = expected_calibration_error(
        np.bincount(bins, minlength=15),
        np.bincount(bins, weights=confidence, minlength=15),
        np.bincount(bins, weights=right, minlength=15),
    )
    assert ece == pytest.approx(by_definition, rel=1e-12)
    assert ece > 0.05


def test_tallies_add_up_to_the_tally_of_all_rows():
    rng = np.random.default_rng(1)
    n = 300
    labels, predicted, second = (rng.integers(0, 10, n) for _ in range(3))
    confidence = rng.uniform(0.1, 1, n).astype(np.float32)
    true_log_prob = np.log(rng.uniform(0.01, 1, n)).astype(np.float32)
    rows = (labels, predicted, second, confidence, true_log_prob)
    whole = Tally.of_predictions(*rows)
    parts = [
        Tally.of_predictions(*(column[cut] for column in rows))
        for cut in (slice(0, 100), slice(100, 101), slice(101, n))
    ]
    total = Tally.total(parts)
    assert total.log_loss_sum == pytest.approx(whole.log_loss_sum, rel=1e-12)
    for name in ("confusion", "top2_correct", "bin_counts", "bin_correct"):
        np.testing.assert_array_equal(getattr(total, name), getattr(whole, name))
    np.testing.assert_allclose(total.bin_confidence_sums, whole.bin_confidence_sums, rtol=1e-12)
    assert Tally.total([]).samples == 0
    assert Tally.total([]).probability_metrics() == (0.0,) * 5


def test_a_tally_with_raw_probabilities_adds_them_up_and_reports_both():
    rng = np.random.default_rng(2)
    n = 200
    labels, predicted, second = (rng.integers(0, 10, n) for _ in range(3))
    confidence = rng.uniform(0.1, 1, n).astype(np.float32)
    raw_confidence = np.minimum(confidence * 1.2, 1).astype(np.float32)
    true_log_prob = np.log(rng.uniform(0.01, 1, n)).astype(np.float32)
    rows = (labels, predicted, second, confidence, true_log_prob, raw_confidence, 2 * true_log_prob)
    whole = Tally.of_predictions(*rows)
    parts = [Tally.of_predictions(*(c[cut] for c in rows)) for cut in (slice(0, 50), slice(50, n))]
    assert Tally.total(parts) == whole
    assert whole.raw == Tally.of_predictions(
        labels, predicted, second, raw_confidence, 2 * true_log_prob
    )
    metrics = whole.probability_metrics()
    assert metrics.raw_log_loss == pytest.approx(2 * metrics.log_loss)
    assert metrics.raw_ece == pytest.approx(whole.raw.ece()) and metrics.raw_ece != metrics.ece


def test_reliability_table_is_the_diagrams_data():
    table = reliability_table(hand_tally())
    assert len(table) == 15
    assert table["bin_low"].iloc[8] == pytest.approx(8 / 15)
    assert table["bin_high"].iloc[-1] == 1.0
    assert table.loc[14, ["samples", "accuracy"]].tolist() == [2, 0.5]
    assert table.loc[14, "confidence"] == pytest.approx(0.95)
    assert table.loc[8, ["samples", "accuracy"]].tolist() == [2, 1.0]
    assert table.loc[8, "confidence"] == pytest.approx(0.565)
    assert (table.drop(index=[8, 14])[["samples", "confidence", "accuracy"]] == 0).all().all()
