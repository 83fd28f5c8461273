"""A run's report, built once in memory: every file and view of a run is rendered from it.

`RunReport` holds the confusion counts and probability metrics (top-2 accuracy, log loss, ECE)
of each split, the manifest (provenance), the learning curve, the test split's tally (for the
reliability diagram) and the few test images the figures show. The CSVs, figures and report.md
of the run folder (`publish.write_run`), the Prefect artifacts and the terminal view all render
this one object. `RunReport.read` rebuilds it from a run folder, for `fashionnet report` and
re-rendering.
"""

import contextlib
import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.champion import BLESSING_NAME, read_blessing
from fashionnet.core import formats
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.paths import A_FILE, A_FOLDER, kind_of
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.data.parquet import SplitFile, read_rows
from fashionnet.data.validate import DataValidation
from fashionnet.model.source import Model
from fashionnet.model.train import read_learning_curve
from fashionnet.predict import read_predictions
from fashionnet.report.columns import CONFUSION_INDEX, OVERALL_COLUMNS, TEXT_COLUMNS
from fashionnet.report.data_card import (
    DATA_FIGURES,
    DataReport,
    build_data_report,
    manifest_entry,
)
from fashionnet.report.metrics import ProbabilityMetrics, Tally, overall_table, per_class_table

# The split the report's headline, weakest classes and image figures are about.
EVALUATION_SPLIT = "test"
MISCLASSIFIED_SHOWN = 25
SAMPLES_PER_CLASS = 5
VERSIONED_PACKAGES = ("numpy", "pandas", "pyarrow", "prefect", "fashionnet")
MANIFEST_NAME = "manifest.json"

# Figures a run folder may hold, in the order report.md shows them, with their captions;
# SPLIT_FIGURE stands for one figure per split, in the report's split order.
SPLIT_FIGURE = "confusion_{split}.png"
FIGURES = {
    "per_class_accuracy.png": "Accuracy per class",
    SPLIT_FIGURE: "Confusion matrix ({split})",
    "reliability.png": "Reliability diagram of the calibrated model (validation and test)",
    "learning_curve.png": "Learning curve",
    "misclassified_test.png": "Most confidently wrong test images",
    "samples.png": "Test images by class",
    **DATA_FIGURES,
}


@dataclass(frozen=True)
class Gallery:
    """Images picked for a figure, with their predictions; row i of each array is image i."""

    images: np.ndarray  # float32 (k, 784)
    labels: np.ndarray  # (k,)
    predicted: np.ndarray  # (k,)
    confidence: np.ndarray  # (k,)


# What started a run (manifest.json's prefect.trigger, history.csv's trigger): a deployment's
# schedule, a deployment run started by hand or through the API, or `fashionnet run`.
TRIGGERS = ("schedule", "deployment-manual", "cli")


@dataclass(frozen=True)
class RunOrigin:
    """The orchestrator's run behind a report and what started it: manifest.json's "prefect".

    Gathered by the flow from its flow run, so the library never asks the orchestrator.
    `overrides` holds the flow parameters that differ from the flow's defaults (field -> value).
    """

    flow_run_id: str | None = None
    flow_run_name: str | None = None
    deployment: str | None = None  # "<flow>/<deployment>", None outside a deployment
    trigger: str = "cli"
    overrides: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None  # the git commit of the code that ran, "-dirty" if changed

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger {self.trigger!r} is not one of {', '.join(TRIGGERS)}")


@dataclass(frozen=True)
class RunReport:
    run_id: str
    model_id: str
    confusions: dict[str, np.ndarray]  # split -> int64 (10, 10), rows true, columns predicted
    manifest: dict[str, Any]
    learning_curve: pd.DataFrame | None = None
    misclassified: Gallery | None = None  # the most confidently wrong evaluation images
    samples: Gallery | None = None  # the first evaluation images of each class
    # split -> top-2 accuracy, log loss, ECE; a split without an entry has empty cells
    probability_metrics: dict[str, ProbabilityMetrics] = field(default_factory=dict)
    # split -> tally of the validation and evaluation splits: the reliability diagram
    calibration: dict[str, Tally] | None = None
    blessing: dict[str, Any] | None = None  # blessing.json (`champion.Blessing`), once judged
    data: DataReport | None = None  # the data card: what the validate stage found

    @cached_property
    def overall(self) -> pd.DataFrame:
        """overall.csv: one row per split."""
        return overall_table(self.confusions, self.model_id, self.probability_metrics)

    @cached_property
    def per_class(self) -> pd.DataFrame:
        """per_class.csv: one row per split and class."""
        return per_class_table(self.confusions)

    @property
    def figures(self) -> dict[str, str]:
        """The figures this report has data for: file name -> caption, in FIGURES order."""
        available = {"per_class_accuracy.png"}
        if self.calibration:
            available.add("reliability.png")
        if self.learning_curve is not None:
            available.add("learning_curve.png")
        if self.misclassified is not None:
            available.add("misclassified_test.png")
        if self.samples is not None:
            available.add("samples.png")
        if self.data is not None:
            available |= self.data.figures()
        figures = {}
        for name, caption in FIGURES.items():
            if name == SPLIT_FIGURE:
                for split in self.confusions:
                    figures[name.format(split=split)] = caption.format(split=split)
            elif name in available:
                figures[name] = caption
        return figures

    @property
    def data_files(self) -> list[str]:
        """The run folder's data files, in the order report.md lists them."""
        names = ["overall.csv", "per_class.csv"]
        names += [f"confusion_{split}.csv" for split in self.confusions]
        if self.learning_curve is not None:
            names.append("learning_curve.csv")
        if self.data is not None:
            names += list(self.data.files())
        names.append(MANIFEST_NAME)
        return [*names, BLESSING_NAME] if self.blessing is not None else names

    @classmethod
    def read(cls, run_dir: Path) -> "RunReport":
        """The report of an existing run folder, without the image galleries and the reliability
        diagram (their data are in the PNGs and the predictions files only). What cannot be
        read is named in one line (`read_run_csv`, `read_manifest`)."""
        run_dir = run_folder(run_dir)
        overall = read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS)
        manifest = read_manifest(run_dir / MANIFEST_NAME)
        curve_path = run_dir / "learning_curve.csv"
        return cls(
            run_id=manifest.get("run_id", run_dir.resolve().name),
            model_id=str(overall["model_id"].iloc[0]) if len(overall) else "",
            confusions={split: read_confusion(run_dir, split) for split in overall["split"]},
            manifest=manifest,
            learning_curve=read_learning_curve(curve_path) if curve_path.is_file() else None,
            probability_metrics=stored_probability_metrics(overall),
            blessing=read_blessing(run_dir),
        )


class StageTimer:
    """Wall time of each stage, for the manifest and the logs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)


def build_report(
    *,
    run_id: str,
    started_at: str,
    data_origin: str,
    splits: Mapping[str, SplitFile],
    model: Model,
    tallies: Mapping[str, Tally],
    layout: Layout,
    stage_seconds: Mapping[str, float],
    origin: RunOrigin | None = None,
    validation: DataValidation | None = None,
) -> RunReport:
    """The report of a run whose predictions are written: the report stage's one input.

    `tallies` are the predict stage's (`predict.predict_splits`), one per split; `validation`
    the validate stage's (`validate.validate_cards`)."""
    manifest = build_manifest(
        run_id=run_id,
        started_at=started_at,
        data_origin=data_origin,
        splits=splits,
        model=model.describe(),
        stage_seconds=stage_seconds,
        origin=origin,
    )
    misclassified = samples = data = None
    evaluation = None
    if EVALUATION_SPLIT in splits:
        predictions = read_predictions(layout.predictions(EVALUATION_SPLIT))
        parquet_path = splits[EVALUATION_SPLIT].path
        misclassified, samples = galleries(predictions, lambda rows: read_rows(parquet_path, rows))
        evaluation = (EVALUATION_SPLIT, predictions)
    if validation is not None:
        data = build_data_report(
            validation,
            evaluation,
            model.model_id,
            lambda split, rows: read_rows(splits[split].path, rows),
        )
        manifest["data"]["validation"] = manifest_entry(data)
    return RunReport(
        run_id=run_id,
        model_id=model.model_id,
        confusions={split: tally.confusion for split, tally in tallies.items()},
        manifest=manifest,
        learning_curve=model.learning_curve,
        misclassified=misclassified,
        samples=samples,
        probability_metrics={
            split: tally.probability_metrics() for split, tally in tallies.items()
        },
        calibration=reliability_tallies(tallies),
        data=data,
    )


# The splits the reliability diagram shows, side by side: the temperature is fitted on the first.
RELIABILITY_SPLITS = ("validation", EVALUATION_SPLIT)


def reliability_tallies(tallies: Mapping[str, Tally]) -> dict[str, Tally] | None:
    """The tallies the reliability diagram shows (None when a run has neither split)."""
    shown = {split: tallies[split] for split in RELIABILITY_SPLITS if split in tallies}
    return shown or None


def most_confident_errors(
    labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, k: int
) -> np.ndarray:
    """Positions of the k wrong predictions made with the highest confidence, highest first."""
    wrong = np.flatnonzero(labels != predicted)
    # Stable sort on -confidence: equal confidences keep row order, so the grid is repeatable.
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order[:k]]


def sample_positions(labels: np.ndarray, per_class: int) -> list[np.ndarray]:
    """For each class, the positions of its first `per_class` images (fewer if it has fewer)."""
    return [np.flatnonzero(labels == label)[:per_class] for label in range(len(CLASS_NAMES))]


def galleries(
    predictions: pd.DataFrame, images_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[Gallery, Gallery]:
    """The misclassified and the samples galleries of a split's predictions
    (`predict.read_predictions`); `images_of(rows)` gives the pixels of those rows of the split,
    so only the images shown are read."""
    predictions = predictions.sort_values("index", kind="stable")
    columns = [predictions[name].to_numpy() for name in ("label", "predicted", "confidence")]
    picked = [
        most_confident_errors(*columns, MISCLASSIFIED_SHOWN),
        np.concatenate(sample_positions(columns[0], SAMPLES_PER_CLASS)),
    ]
    images = images_of(predictions["index"].to_numpy()[np.concatenate(picked)])
    made, start = [], 0
    for positions in picked:
        shown = images[start : start + len(positions)]
        made.append(Gallery(shown, *(column[positions] for column in columns)))
        start += len(positions)
    return made[0], made[1]


def package_versions() -> dict[str, str]:
    """Versions of the packages behind a run, for the manifest (no package is imported)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_manifest(
    *,
    run_id: str,
    started_at: str,
    data_origin: str,
    splits: Mapping[str, SplitFile],
    model: Mapping[str, Any],
    stage_seconds: Mapping[str, float],
    origin: RunOrigin | None = None,
) -> dict[str, Any]:
    """manifest.json: where the run's data and model came from, and what ran it.

    `model` describes the model (`model.source.Model.describe()`); `origin` the flow run
    (a run outside a flow, as the benchmark's, has none: "prefect" is null).
    """
    return {
        "run_id": run_id,
        "started_at": started_at,
        "data": {
            "origin": data_origin,
            "sources": {name: split.sources for name, split in splits.items()},
            "fingerprints": {name: split.fingerprint for name, split in splits.items()},
            # How the raw training images were divided into train and validation (the same
            # rule is recorded in both files): size, seed and the digest of the held-out rows.
            "split_rule": splits["validation"].split_rule if "validation" in splits else None,
        },
        "model": dict(model),
        "packages": package_versions(),
        "python": platform.python_version(),
        "stage_seconds": dict(stage_seconds),
        "prefect": asdict(origin) if origin is not None else None,
    }


def run_folder(run_dir: Path) -> Path:
    """`run_dir` once it is a folder (or a link to one, as `latest` is); else one line saying
    what stands there instead."""
    run_dir = Path(run_dir)
    kind = kind_of(run_dir)
    if kind == A_FOLDER:
        return run_dir
    problem = "does not exist" if kind is None else f"is {kind}, not a run folder"
    raise FashionnetError(
        f"{run_dir} {problem}; name a run that `fashionnet runs` lists, or run the pipeline"
    )


def _run_file(path: Path) -> Path:
    """`path`, a file of a run folder, once it is a file; looked at before it is opened, so a
    FIFO cannot block the reader."""
    kind = kind_of(path)
    if kind is None:
        raise FashionnetError(f"{path} is missing; run the pipeline to write a complete run folder")
    if kind != A_FILE:
        raise FashionnetError(f"{path} is {kind}, not a file; delete its run folder")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's manifest.json, without its format version (checked first: `formats.check`).

    A manifest that is missing, cannot be read or is not in the current format is named in one
    line; one of a newer fashionnet raises `formats.NewerFormat`. Nothing is moved aside, as
    nothing writes a run folder again, and a run never reads an earlier run's manifest: a
    damaged one stops `fashionnet report` on that folder, never a run.
    """
    try:
        manifest = json.loads(_run_file(path).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        formats.check(path, formats.MANIFEST, manifest.pop(formats.VERSION_FIELD, None))
    except (OSError, ValueError) as error:
        raise FashionnetError(f"{path} cannot be read ({error}); delete its run folder") from None
    return manifest


def read_run_csv(run_dir: Path, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """One CSV of a run folder, which must have exactly `columns`: its text columns
    (TEXT_COLUMNS, CONFUSION_INDEX) kept as text, every other one numbers. What is wrong with it
    (not a file, not text, empty, rows that do not fit its header, other columns, words where
    numbers belong) is named in one line."""
    path = _run_file(Path(run_dir) / name)
    try:
        # A hex id or digest made only of digits must not be read as a number.
        table = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    except (OSError, ValueError) as error:  # pandas' parser errors are ValueErrors
        problem = str(error).strip().splitlines()[-1] if str(error).strip() else type(error)
        raise FashionnetError(f"{path} cannot be read ({problem}); delete its run folder") from None
    if list(table.columns) != list(columns):
        raise FashionnetError(
            f"{path} does not have the columns of {name} ({', '.join(columns)}); "
            "delete its run folder"
        )
    text = {*TEXT_COLUMNS, CONFUSION_INDEX}
    for column in columns:
        if column not in text and not pd.api.types.is_numeric_dtype(table[column]):
            raise FashionnetError(
                f"{path} has values of {column} that are not numbers; delete its run folder"
            )
    return table


def stored_probability_metrics(overall: pd.DataFrame) -> dict[str, ProbabilityMetrics]:
    """The probability metrics an overall.csv holds, by split (none for a split whose cells are
    empty: a report made without them)."""
    names = list(ProbabilityMetrics._fields)
    return {
        row.split: ProbabilityMetrics(*(float(getattr(row, name)) for name in names))
        for row in overall.itertuples()
        if overall.loc[row.Index, names].notna().all()
    }


def read_confusion(run_dir: Path, split: str) -> np.ndarray:
    """The int64 (10, 10) counts of a run's `confusion_<split>.csv`."""
    frame = read_run_csv(run_dir, f"confusion_{split}.csv", [CONFUSION_INDEX, *CLASS_NAMES])
    if frame[CONFUSION_INDEX].tolist() != list(CLASS_NAMES):
        raise FashionnetError(
            f"{Path(run_dir) / f'confusion_{split}.csv'} is not a confusion matrix CSV; "
            "delete its run folder"
        )
    return frame[list(CLASS_NAMES)].to_numpy(dtype=np.int64)
