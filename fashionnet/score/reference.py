"""What a scored batch is compared with: the project's training data, as its data card has it.

A batch's images have no labels and may be anything. Two questions are asked of them, with the
validate stage's own measures (docs/DATA_VALIDATION.md):

- Is this image like the training images? An image is **out of distribution** when one of its
  properties (`statistics.PROPERTIES`: brightness, contrast, ink, and the height, width and centre
  of its ink's box) lies outside the range the training split's images span (the card's
  `<property>_min` to `<property>_max`). A training image is never flagged; measured on the real
  data: 0.06% of the test images, 82% of them inverted. Handwritten digits are not caught one by
  one (0.2%: each has a garment's properties) but are as a batch, by drift.
- Is this batch like the training data? The batch's card (`statistics.CardTally`, summed over its
  chunks) against the training split's: every drift statistic of the validate stage, with its
  threshold and its rule of no verdict below `drift.MIN_VERDICT_IMAGES` images. The label
  statistics (label shares, class mean images) take the predicted classes and compare them with
  the validation split's images as the same model classes them, so that the model's own errors
  are not counted as drift.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.data.drift import drift_rows
from fashionnet.data.statistics import PROPERTIES, CardTally, image_properties
from fashionnet.data.validate import REFERENCE_SPLIT

BATCH = "batch"  # the batch's name in its drift.csv
PREDICTED_VALIDATION = "validation_predicted"  # the validation images, labelled by the model
LABEL_FEATURES = ("label", "class_mean_image")  # the drift features that read labels
OUT_OF_DISTRIBUTION_RULE = (
    "an image is out of distribution when one of its properties ("
    + ", ".join(PROPERTIES)
    + ") lies outside the range of the training split's images (docs/DATA_VALIDATION.md)"
)


@dataclass(frozen=True)
class TrainingReference:
    """The training split's card, and the validation split's as the scoring model classes it."""

    source: str  # the training split's file
    train: CardTally
    predicted_validation: CardTally

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Per property, the smallest and largest value among the training images."""
        return {
            name: (self.train.property_min[name], self.train.property_max[name])
            for name in PROPERTIES
        }

    def describe(self) -> dict[str, Any]:
        """What the batch's manifest records of the reference."""
        return {
            "rule": OUT_OF_DISTRIBUTION_RULE,
            "training_split": self.source,
            "training_images": self.train.images,
            "ranges": {name: list(bounds) for name, bounds in self.ranges().items()},
        }


def outside_ranges(
    images: np.ndarray, ranges: Mapping[str, tuple[float, float]]
) -> tuple[np.ndarray, list[str]]:
    """For uint8 images (n, 784): whether each is out of distribution, and for each the
    properties outside their range, as text (`brightness 0.81 > 0.731`; empty when none)."""
    properties = image_properties(images)
    flagged = np.zeros(len(images), bool)
    reasons: list[list[str]] = [[] for _ in range(len(images))]
    for name, (low, high) in ranges.items():
        values = properties[name]
        outside = (values < low) | (values > high)
        for row in np.flatnonzero(outside):
            bound = f"< {low:.3g}" if values[row] < low else f"> {high:.3g}"
            reasons[row].append(f"{name} {values[row]:.3g} {bound}")
        flagged |= outside
    return flagged, ["; ".join(reason) for reason in reasons]


def batch_drift(reference: TrainingReference, batch: CardTally) -> pd.DataFrame:
    """drift.csv of a batch (its card labelled by the predicted classes): the label features
    against the validation split as the model classes it, the others against train."""
    on_labels = drift_rows(PREDICTED_VALIDATION, reference.predicted_validation, BATCH, batch)
    on_images = drift_rows(REFERENCE_SPLIT, reference.train, BATCH, batch)
    reads_labels = on_images["feature"].isin(LABEL_FEATURES)
    return on_labels.where(reads_labels, on_images)
