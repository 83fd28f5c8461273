"""Scores of a split's predictions, all derived from sums that add up across chunks.

A confusion matrix has one row per true class and one column per predicted class, so
the diagonal holds the correct predictions, row sums are the samples of each class and
column sums are how often each class was predicted. A `Tally` adds to those counts what the
probabilities say: how often the true class is among the top two, the sum of -log p(true
class), and per confidence bin its count, confidence sum and correct count. Tallies add up
across chunks, which is why prediction produces them per chunk and the report only ever sees
their sum: memory stays independent of the number of images.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from fashionnet.data.catalog import CLASS_NAMES, NUM_CLASSES
from fashionnet.report.columns import OVERALL_COLUMNS, PER_CLASS_COLUMNS


def confusion_matrix(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Counts of (true class, predicted class) pairs as an int64 (num_classes, num_classes)."""
    # int64 first: labels * num_classes would wrap around in uint8.
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predicted {predicted.shape} differ in shape")
    for name, values in (("labels", labels), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}"
            )
    counts = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, with 0 wherever the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


# The standard normal's 97.5% quantile: the Wilson interval it gives covers 95%.
WILSON_Z = 1.959963984540054


def wilson_interval(
    successes: np.ndarray, trials: np.ndarray, z: float = WILSON_Z
) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a proportion, (low, high) as float64, element-wise.

    Unlike p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not shrink to a point
    at 0 or n successes. With no trials nothing is known: (0, 1).
    """
    successes = np.asarray(successes, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    n = np.where(trials > 0, trials, 1.0)  # the no-trial cells are replaced below
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not move it inside.
    low = np.where((trials > 0) & (successes > 0), np.clip(centre - half_width, 0.0, 1.0), 0.0)
    high = np.where(
        (trials > 0) & (successes < trials), np.clip(centre + half_width, 0.0, 1.0), 1.0
    )
    return low, high


# Equal-width confidence bins over [0, 1] for the ECE and the reliability diagram.
CALIBRATION_BINS = 15


def confidence_bins(confidence: np.ndarray) -> np.ndarray:
    """The bin of each confidence: bin b holds [b / 15, (b + 1) / 15), the last also 1.0.

    Computed in float64 from the stored float32 values, so the predictions file gives back
    exactly the bins the predict stage counted. A NaN (from weights that overflow, which the
    predict stage refuses) is put in bin 0 rather than breaking the count."""
    scaled = np.floor(np.asarray(confidence, dtype=np.float64) * CALIBRATION_BINS)
    return np.clip(np.nan_to_num(scaled), 0, CALIBRATION_BINS - 1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Tally:
    """The additive sums of some predictions (a chunk, or a whole split): tallies add with `+`.

    `bin_*` are per confidence bin (`confidence_bins`): how many predictions fell in it, the
    sum of their confidences (top probabilities) and how many of them were right. The
    probabilities are calibrated (`model.calibration`); `raw` is the tally of the same
    predictions with the probabilities as the network gave them, when they were given.
    """

    confusion: np.ndarray  # int64 (classes, classes), rows true class, columns predicted
    top2_correct: int  # predictions whose true class is the first or second most probable
    log_loss_sum: float  # sum over the predictions of -log p(true class), float64
    bin_counts: np.ndarray  # int64 (CALIBRATION_BINS,)
    bin_confidence_sums: np.ndarray  # float64 (CALIBRATION_BINS,)
    bin_correct: np.ndarray  # int64 (CALIBRATION_BINS,)
    raw: "Tally | None" = None  # the same before calibration

    @classmethod
    def of_predictions(
        cls,
        labels: np.ndarray,
        predicted: np.ndarray,
        second: np.ndarray,
        confidence: np.ndarray,
        true_log_prob: np.ndarray,
        raw_confidence: np.ndarray | None = None,
        raw_true_log_prob: np.ndarray | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> "Tally":
        """The tally of predictions given row by row, as the predictions file stores them
        (with `raw`, given the probabilities before calibration)."""
        labels = np.asarray(labels)
        right = labels == np.asarray(predicted)
        bins = confidence_bins(confidence)
        raw = None
        if raw_confidence is not None and raw_true_log_prob is not None:
            raw = cls.of_predictions(
                labels,
                predicted,
                second,
                raw_confidence,
                raw_true_log_prob,
                None,
                None,
                num_classes,
            )
        return cls(
            confusion=confusion_matrix(labels, predicted, num_classes),
            top2_correct=int(np.count_nonzero(right | (labels == np.asarray(second)))),
            log_loss_sum=-float(np.sum(true_log_prob, dtype=np.float64)),
            bin_counts=np.bincount(bins, minlength=CALIBRATION_BINS),
            bin_confidence_sums=np.bincount(
                bins, weights=np.asarray(confidence, dtype=np.float64), minlength=CALIBRATION_BINS
            ),
            bin_correct=np.bincount(bins, weights=right, minlength=CALIBRATION_BINS).astype(
                np.int64
            ),
            raw=raw,
        )

    @classmethod
    def total(cls, tallies: Iterable["Tally"], num_classes: int = NUM_CLASSES) -> "Tally":
        """The sum of `tallies`; of none, the empty tally."""
        tallies = list(tallies)
        empty = np.zeros(0, dtype=np.int64)
        with_raw = bool(tallies) and all(tally.raw is not None for tally in tallies)
        raw = (empty, empty) if with_raw else (None, None)
        total = cls.of_predictions(empty, empty, empty, empty, empty, *raw, num_classes)
        for tally in tallies:
            total += tally
        return total

    def __add__(self, other: "Tally") -> "Tally":
        both_raw = self.raw is not None and other.raw is not None
        return Tally(
            confusion=self.confusion + other.confusion,
            top2_correct=self.top2_correct + other.top2_correct,
            log_loss_sum=self.log_loss_sum + other.log_loss_sum,
            bin_counts=self.bin_counts + other.bin_counts,
            bin_confidence_sums=self.bin_confidence_sums + other.bin_confidence_sums,
            bin_correct=self.bin_correct + other.bin_correct,
            raw=self.raw + other.raw if both_raw else None,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tally):
            return NotImplemented
        arrays = [name for name in self.__dataclass_fields__ if name != "raw"]
        return self.raw == other.raw and all(
            np.array_equal(getattr(self, name), getattr(other, name)) for name in arrays
        )

    @property
    def samples(self) -> int:
        return int(self.confusion.sum())

    def log_loss(self) -> float:
        return float(safe_ratio(self.log_loss_sum, self.samples))

    def ece(self) -> float:
        return expected_calibration_error(
            self.bin_counts, self.bin_confidence_sums, self.bin_correct
        )

    def probability_metrics(self) -> "ProbabilityMetrics":
        """The calibrated figures, and the log loss and ECE before calibration (the same as
        calibrated for a tally without `raw`: a model at temperature 1)."""
        raw = self.raw or self
        return ProbabilityMetrics(
            top2_accuracy=float(safe_ratio(self.top2_correct, self.samples)),
            log_loss=self.log_loss(),
            ece=self.ece(),
            raw_log_loss=raw.log_loss(),
            raw_ece=raw.ece(),
        )


def expected_calibration_error(
    bin_counts: np.ndarray, bin_confidence_sums: np.ndarray, bin_correct: np.ndarray
) -> float:
    """ECE: the mean over bins of |accuracy - mean confidence|, each bin weighted by its count.

    sum_b (n_b / N) |correct_b / n_b - confidence_sum_b / n_b| = sum_b |correct_b -
    confidence_sum_b| / N, so only the sums are needed. 0 for no predictions.
    """
    gaps = np.abs(np.asarray(bin_correct, dtype=np.float64) - bin_confidence_sums)
    return float(safe_ratio(gaps.sum(), np.sum(bin_counts)))


def reliability_table(tally: Tally) -> pd.DataFrame:
    """The reliability diagram's data, one row per confidence bin: its edges, how many
    predictions fell in it, their mean confidence and their accuracy (0 in an empty bin)."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "samples": tally.bin_counts,
            "confidence": safe_ratio(tally.bin_confidence_sums, tally.bin_counts),
            "accuracy": safe_ratio(tally.bin_correct, tally.bin_counts),
        }
    )


class ProbabilityMetrics(NamedTuple):
    """What a split's probabilities score beyond its confusion counts (from `Tally`)."""

    top2_accuracy: float
    log_loss: float  # mean -log p(true class), from the scores by log-sum-exp, never clipped
    ece: float  # expected calibration error over CALIBRATION_BINS bins
    raw_log_loss: float  # log_loss before calibration (temperature 1)
    raw_ece: float  # ece before calibration


def overall_table(
    confusions: Mapping[str, np.ndarray],
    model_id: str,
    probability_metrics: Mapping[str, ProbabilityMetrics] | None = None,
) -> pd.DataFrame:
    """One row per split (in the given order): samples, correct, accuracy and its Wilson 95%
    interval, then top-2 accuracy, log loss and ECE, calibrated and raw (empty where
    `probability_metrics` has no entry for the split), and the model id."""
    probability_metrics = probability_metrics or {}
    missing = ProbabilityMetrics(*[math.nan] * len(ProbabilityMetrics._fields))
    rows = []
    for split, confusion in confusions.items():
        samples = int(confusion.sum())
        correct = int(np.trace(confusion))
        low, high = wilson_interval(correct, samples)
        rows.append(
            {
                "split": split,
                "samples": samples,
                "correct": correct,
                "accuracy": float(safe_ratio(correct, samples)),
                "ci_low": float(low),
                "ci_high": float(high),
                **probability_metrics.get(split, missing)._asdict(),
                "model_id": model_id,
            }
        )
    return pd.DataFrame(rows, columns=OVERALL_COLUMNS)


def per_class_table(confusions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per (split, class): accuracy (= recall) with its Wilson 95% interval, precision,
    recall and f1.

    Precision of a class never predicted, and f1 when precision and recall are both 0,
    are reported as 0 rather than NaN, so the CSV has no holes.
    """
    frames = []
    for split, confusion in confusions.items():
        correct = np.diag(confusion)
        samples = confusion.sum(axis=1)
        recall = safe_ratio(correct, samples)
        low, high = wilson_interval(correct, samples)
        precision = safe_ratio(correct, confusion.sum(axis=0))
        f1 = safe_ratio(2 * precision * recall, precision + recall)
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "label": np.arange(len(confusion)),
                    "class_name": CLASS_NAMES[: len(confusion)],
                    "samples": samples,
                    "correct": correct,
                    "accuracy": recall,
                    "ci_low": low,
                    "ci_high": high,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[PER_CLASS_COLUMNS]


class WeakClass(NamedTuple):
    label: int
    class_name: str
    accuracy: float
    confused_with: str | None  # the class it is most often mistaken for; None if never wrong
    confused_count: int


def weakest_classes(confusion: np.ndarray, k: int = 3) -> list[WeakClass]:
    """The k classes with the lowest accuracy, each with its most frequent wrong prediction."""
    accuracy = safe_ratio(np.diag(confusion), confusion.sum(axis=1))
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    weakest = []
    # A stable sort keeps ties in label order, so the summary is deterministic.
    for label in np.argsort(accuracy, kind="stable")[:k]:
        partner = int(np.argmax(mistakes[label]))
        count = int(mistakes[label, partner])
        weakest.append(
            WeakClass(
                label=int(label),
                class_name=CLASS_NAMES[label],
                accuracy=float(accuracy[label]),
                confused_with=CLASS_NAMES[partner] if count else None,
                confused_count=count,
            )
        )
    return weakest


def accuracy_by_class(per_class: pd.DataFrame) -> pd.DataFrame:
    """A `per_class_table` reshaped: one row per class (label order), one column per split."""
    wide = per_class.pivot(index="label", columns="split", values="accuracy")
    wide = wide[per_class["split"].unique()]  # splits in their table order, not sorted
    wide.index = [CLASS_NAMES[label] for label in wide.index]
    wide.index.name = "class_name"
    wide.columns.name = None
    return wide
