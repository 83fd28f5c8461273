"""Scores from a confusion matrix: everything here is derived from 10x10 counts.

A confusion matrix has one row per true class and one column per predicted class, so
the diagonal holds the correct predictions, row sums are the samples of each class and
column sums are how often each class was predicted. Counts add up across chunks, which
is why prediction produces them per chunk and the report only ever sees their sum.
"""

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from fashionnet.fashion_mnist import CLASS_NAMES, NUM_CLASSES
from fashionnet.schema import OVERALL_COLUMNS, PER_CLASS_COLUMNS


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


def overall_table(confusions: Mapping[str, np.ndarray], model_id: str) -> pd.DataFrame:
    """One row per split (in the given order): samples, correct, accuracy, model id."""
    rows = []
    for split, confusion in confusions.items():
        samples = int(confusion.sum())
        correct = int(np.trace(confusion))
        rows.append(
            {
                "split": split,
                "samples": samples,
                "correct": correct,
                "accuracy": float(safe_ratio(correct, samples)),
                "model_id": model_id,
            }
        )
    return pd.DataFrame(rows, columns=OVERALL_COLUMNS)


def per_class_table(confusions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per (split, class): accuracy (= recall), precision, recall and f1.

    Precision of a class never predicted, and f1 when precision and recall are both 0,
    are reported as 0 rather than NaN, so the CSV has no holes.
    """
    frames = []
    for split, confusion in confusions.items():
        correct = np.diag(confusion)
        samples = confusion.sum(axis=1)
        recall = safe_ratio(correct, samples)
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
