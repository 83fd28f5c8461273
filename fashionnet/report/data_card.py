"""The data card in a run's report: what the validate stage found, as the report shows it.

`DataReport` carries the validate stage's `DataValidation` into the `RunReport`, with what only
the report stage knows: the test accuracy on the test images that are not copies of training
images (the "deduplicated" row, when some are), and the pixels of a few duplicate pairs for
their figure. The rows below are shared by report.md, report.html and the UI's artifact, so
they all say the same.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.data.drift import MIN_VERDICT_IMAGES, NO_DRIFT, NO_VERDICT
from fashionnet.data.validate import REFERENCE_SPLIT, DataValidation
from fashionnet.report.columns import csv_text
from fashionnet.report.metrics import Tally, overall_table

DEDUPLICATED = "deduplicated"
PAIRS_SHOWN = 8
# The data card's figures, with their captions (after the run's others: `run_report.FIGURES`).
DATA_FIGURES = {
    "class_balance.png": "Class balance per split",
    "properties.png": "Image properties: train against each split",
    "class_means.png": "Mean image of each class, per split",
    "duplicate_pairs.png": "Duplicate pairs across splits, side by side",
}


@dataclass(frozen=True)
class PairGallery:
    """Some duplicate pairs: row i of each array is pair i."""

    images_a: np.ndarray  # float32 (k, 784)
    images_b: np.ndarray  # float32 (k, 784)
    captions: list[str]  # "exact: train 12 / test 7", one per pair


@dataclass(frozen=True)
class DataReport:
    validation: DataValidation
    # overall.csv's row for the evaluation split without its copies of training images; None
    # when it has none
    deduplicated: pd.DataFrame | None = None
    pairs: PairGallery | None = None

    def figures(self) -> set[str]:
        """The data figures this card has data for."""
        drawn = set(DATA_FIGURES) - {"duplicate_pairs.png"}
        return drawn | ({"duplicate_pairs.png"} if self.pairs is not None else set())

    def files(self) -> dict[str, str]:
        """The validation's CSVs for the run folder, by name."""
        return {name: csv_text(table) for name, table in self.validation.tables().items()}


def deduplicated_overall(
    predictions: pd.DataFrame, shared_rows: np.ndarray, split: str, model_id: str
) -> pd.DataFrame | None:
    """The overall row of `split`'s predictions without the rows in `shared_rows` (its copies
    of training images), named "<split> (deduplicated)"; None when no row is shared."""
    shared = predictions["index"].isin(shared_rows).to_numpy()
    if not shared.any():
        return None
    kept = predictions[~shared]
    columns = ("label", "predicted", "second", "confidence", "true_log_prob")
    tally = Tally.of_predictions(*(kept[name].to_numpy() for name in columns))
    name = f"{split} ({DEDUPLICATED})"
    return overall_table({name: tally.confusion}, model_id, {name: tally.probability_metrics()})


def pair_gallery(
    validation: DataValidation, images_of: Callable[[str, np.ndarray], np.ndarray]
) -> PairGallery | None:
    """Up to PAIRS_SHOWN pairs between splits (exact ones first), with their pixels
    (`images_of(split, rows)`); None when there is no pair."""
    chosen: list[tuple[str, str, str, int, int]] = []
    for kind in ("exact", "near"):
        for pairs in validation.duplicates.found:
            if pairs.kind != kind:
                continue
            for row_a, row_b in zip(pairs.rows_a.tolist(), pairs.rows_b.tolist(), strict=True):
                if len(chosen) < PAIRS_SHOWN:
                    chosen.append((kind, pairs.split_a, pairs.split_b, row_a, row_b))
    if not chosen:
        return None
    images_a = np.stack([images_of(a, np.array([ra]))[0] for _, a, _, ra, _ in chosen])
    images_b = np.stack([images_of(b, np.array([rb]))[0] for _, _, b, _, rb in chosen])
    captions = [f"{kind}: {a} {ra} / {b} {rb}" for kind, a, b, ra, rb in chosen]
    return PairGallery(images_a, images_b, captions)


# The rows the report's data card shows.


def split_rows(validation: DataValidation) -> tuple[list[str], list[list[str]]]:
    """One row per split: its size, class balance and the properties' means."""
    header = [
        "split",
        "images",
        "images per class",
        "brightness",
        "contrast",
        "ink",
        "box height",
        "box width",
    ]
    rows = []
    for split, tally in validation.tallies.items():
        counts = tally.class_counts()
        rows.append(
            [
                split,
                f"{tally.images:,}",
                f"{counts.min():,} to {counts.max():,}",
                *(
                    f"{tally.property_mean(name):.3f}"
                    for name in ("brightness", "contrast", "ink", "box_height", "box_width")
                ),
            ]
        )
    return header, rows


def drift_rows(validation: DataValidation) -> tuple[list[str], list[list[str]]]:
    """Every drift statistic with its threshold: one row per feature and statistic, one column
    per split compared with train, each value marked when drifted or without a verdict."""
    drift = validation.drift
    splits = list(dict.fromkeys(drift["split"]))
    header = ["feature", "statistic", "drifted when", *splits]
    rows = []
    for (feature, statistic), found in drift.groupby(["feature", "statistic"], sort=False):
        first = found.iloc[0]
        cells = {row.split: _drift_cell(row) for row in found.itertuples()}
        rows.append(
            [
                feature,
                statistic,
                f"{first.drifted_when} {first.threshold:g}",
                *(cells.get(split, "") for split in splits),
            ]
        )
    return header, rows


def _drift_cell(row: Any) -> str:
    notes = [note for note in (row.item, "" if row.verdict == NO_DRIFT else row.verdict) if note]
    return f"{row.value:.3g}" + (f" ({', '.join(notes)})" if notes else "")


def duplicate_rows(validation: DataValidation) -> tuple[list[str], list[list[str]]]:
    """Per kind and pair of splits: the pairs found and those whose labels disagree."""
    header = ["kind", "between", "pairs", "labels disagree", "images of the second split"]
    counts = validation.duplicates.counts_table()
    rows = [
        [
            row.kind,
            f"{row.split_a} (within)"
            if row.split_a == row.split_b
            else f"{row.split_a} / {row.split_b}",
            f"{row.pairs:,}",
            f"{row.labels_disagree:,}",
            f"{row.images_b:,}",
        ]
        for row in counts.itertuples()
    ]
    return header, rows


def card_sentences(report: DataReport, evaluation_split: str) -> list[str]:
    """What the data card says in words: the schema, anomalies, drift and leakage."""
    validation = report.validation
    sentences = [
        f"Every split was checked against {validation.schema_source}: no anomaly. Each "
        "number of the card is in card.csv; docs/DATA_VALIDATION.md defines them."
    ]
    drifted = validation.drifted
    if drifted:
        sentences.append("Drift beyond a threshold: " + " ".join(f"{line}." for line in drifted))
    else:
        sentences.append(f"No split drifted from {REFERENCE_SPLIT} beyond a threshold.")
    if (validation.drift["verdict"] == NO_VERDICT).any():
        sentences.append(
            f"No verdict is given for splits of fewer than {MIN_VERDICT_IMAGES:,} images: "
            "histogram distances grow as samples shrink, whatever the data."
        )
    shared = validation.shared_with_training(evaluation_split)
    if report.deduplicated is not None:
        row = report.deduplicated.iloc[0]
        sentences.append(
            f"{len(shared):,} {evaluation_split} images are copies of training images (exact "
            f"or near: duplicates.csv); on the other {row.samples:,} the accuracy is "
            f"{row.accuracy:.2%} (the {DEDUPLICATED} row above)."
        )
    elif evaluation_split in validation.tallies:
        sentences.append(f"No {evaluation_split} image is a copy of a training image.")
    return sentences


def build_data_report(
    validation: DataValidation,
    evaluation: tuple[str, pd.DataFrame] | None,
    model_id: str,
    images_of: Callable[[str, np.ndarray], np.ndarray],
) -> DataReport:
    """The data card of a run: `evaluation` is the evaluation split's name and predictions
    (`predict.read_predictions`), when it has some; `images_of(split, rows)` reads pixels."""
    deduplicated = None
    if evaluation is not None:
        split, predictions = evaluation
        shared = validation.shared_with_training(split)
        deduplicated = deduplicated_overall(predictions, shared, split, model_id)
    return DataReport(validation, deduplicated, pair_gallery(validation, images_of))


def manifest_entry(report: DataReport) -> Mapping:
    """What manifest.json records of the data card."""
    entry = dict(report.validation.summary())
    if report.deduplicated is not None:
        row = report.deduplicated.iloc[0]
        entry["deduplicated"] = {
            "split": row.split,
            "samples": int(row.samples),
            "accuracy": float(row.accuracy),
        }
    return entry
