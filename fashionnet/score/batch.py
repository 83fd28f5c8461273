"""`fashionnet score`: new, unlabelled images classified by the champion, into a batch folder.

The inputs (`inputs.discover`) are cut into chunks of about `chunk_size` images; each chunk is
read, converted (`convert`) and predicted on its own (`score_chunk`: paths in, rows out), on the
same chunk mapper as the predict stage (a thread pool, or the flow's task runner), a few chunks
at a time, so memory follows the chunk size. Every probability is calibrated by the model's
temperature. The batch folder `scores/<batch id>/` is built hidden and renamed whole:

- predictions.parquet and predictions.csv: one row per image (input file, frame or row, sha256,
  predicted class and name, calibrated probability, the top 3, `low_confidence`,
  `out_of_distribution`: `reference`);
- failed.csv: every input that could not be scored, with the reason (never deleted or moved);
- summary.csv: per class its count, share, mean confidence and flagged counts;
- drift.csv: the batch against the training data, every drift statistic of the validate stage
  (`reference.batch_drift`; absent when the project has no training split);
- manifest.json: the model (id, key, temperature, the low-confidence threshold), the inputs and
  their sha256, the out-of-distribution rule and ranges, the drift found, the options and the
  package versions;
- report.html: the class distribution against training, a confidence histogram, the drift, and
  the lowest-confidence and out-of-distribution images with their predictions.
"""

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fashionnet.champion import current_champion
from fashionnet.core import atomic
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data import validate
from fashionnet.data.catalog import CLASS_NAMES, NUM_PIXELS
from fashionnet.data.drift import DRIFTED, MIN_VERDICT_IMAGES, NO_VERDICT, drifted_lines
from fashionnet.data.parquet import open_split, read_row_groups
from fashionnet.data.statistics import CardTally, image_bytes
from fashionnet.model.functions import softmax
from fashionnet.model.source import recorded_calibration
from fashionnet.model.store import META_NAME, WEIGHTS_NAME
from fashionnet.model.two_layer_net import scores
from fashionnet.model.weights import load_metadata, load_params, model_id
from fashionnet.report.columns import csv_text
from fashionnet.report.html_page import figure as html_figure
from fashionnet.report.html_page import page, paragraph, section, table
from fashionnet.report.run_report import package_versions
from fashionnet.score.convert import Invert, Unusable, negated, stacked
from fashionnet.score.inputs import Failure, Input, discover, file_sha256, frames, image_picture
from fashionnet.score.inputs import read_rows as read_input_rows
from fashionnet.score.reference import (
    OUT_OF_DISTRIBUTION_RULE,
    TrainingReference,
    batch_drift,
    outside_ranges,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

TOP_K = 3
LOWEST_SHOWN = 20  # lowest-confidence (and out-of-distribution) images shown in report.html
# The low-confidence threshold: below it, validation images were right less than this often.
LOW_CONFIDENCE_ACCURACY = 0.5
SCORES_DIR = "scores"
FAILED_COLUMNS = ["input", "sha256", "reason"]
SUMMARY_COLUMNS = [
    "label",
    "class_name",
    "count",
    "share",
    "mean_confidence",
    "low_confidence",
    "out_of_distribution",
]


@dataclass(frozen=True)
class ScoringModel:
    """The model a batch is scored with: its weights, temperature and low-confidence threshold,
    and what its batches are compared with."""

    weights_path: Path
    model_id: str
    model_key: str | None
    temperature: float
    low_confidence_below: float | None  # None: no validation split to choose it on
    reference: TrainingReference | None = None  # None: the project has no prepared splits

    def describe(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_key": self.model_key,
            "weights": str(self.weights_path),
            "temperature": self.temperature,
            "low_confidence_below": self.low_confidence_below,
        }


def scoring_model(layout: Layout, model: str | None) -> ScoringModel:
    """The champion, or `model`: a model key under models/ or a weights file (.npz)."""
    if model is None:
        champion = current_champion(layout)
        if champion is None:
            raise FashionnetError(
                f"{layout.champion_link}: there is no champion model yet; run `fashionnet run` "
                "(a blessed run makes one) or give --model KEY|FILE.npz"
            )
        folder = champion.folder
    elif model.endswith(".npz"):
        folder = Path(model).parent if (Path(model).parent / META_NAME).is_file() else None
        if folder is None:
            return _bare_weights(layout, Path(model))
    else:
        folder = layout.models_dir / model
        if not (folder / WEIGHTS_NAME).is_file():
            raise FashionnetError(f"--model {model}: no model {folder}; give a model key or .npz")
    calibration = recorded_calibration(folder)
    temperature = calibration.temperature if calibration else 1.0
    weights = folder / WEIGHTS_NAME
    load_params(weights)  # refused here, in one line, rather than in every chunk
    identity = calibration.model_id if calibration else model_id(load_params(weights))
    return ScoringModel(
        weights, identity, folder.name, temperature, *validation_pass(layout, weights, temperature)
    )


def _bare_weights(layout: Layout, path: Path) -> ScoringModel:
    """A weights file outside a model folder: its own recorded temperature, else 1."""
    params = load_params(path)
    recorded = load_metadata(path).get("calibration") or {}
    temperature = float(recorded.get("temperature", 1.0))
    identity = recorded.get("model_id", model_id(params))
    return ScoringModel(
        path.resolve(), identity, None, temperature, *validation_pass(layout, path, temperature)
    )


def validation_pass(
    layout: Layout, weights: Path, temperature: float
) -> tuple[float | None, TrainingReference | None]:
    """What the project's validation split tells of a model, in one pass over it: the
    low-confidence threshold (the confidence below which its images were right less than half
    the time, LOW_CONFIDENCE_ACCURACY), and the reference its batches are compared with (the
    training split's card, and the validation images' as the model classes them)."""
    path = layout.parquet("validation")
    if not path.is_file():
        return None, None
    params = load_params(weights)
    confidence, right, tallies = [], [], []
    for group in range(open_split(path).num_row_groups):
        batch = read_row_groups(path, range(group, group + 1))
        probabilities = softmax(scores(params, batch.x) / np.float32(temperature))
        predicted = probabilities.argmax(axis=1)
        confidence.append(probabilities.max(axis=1))
        right.append(predicted == batch.label)
        tallies.append(CardTally.of_images(image_bytes(batch.x)[0], predicted))
    threshold = choose_threshold(np.concatenate(confidence), np.concatenate(right))
    train = layout.parquet(validate.REFERENCE_SPLIT)
    if not train.is_file():
        return threshold, None
    card = validate.split_card(layout, validate.REFERENCE_SPLIT)
    return threshold, TrainingReference(str(train), card.tally, CardTally.total(tallies))


def choose_threshold(confidence: np.ndarray, right: np.ndarray) -> float | None:
    """The largest confidence c such that the images below c are right less than
    LOW_CONFIDENCE_ACCURACY of the time (None when no such cut exists)."""
    order = np.argsort(confidence, kind="stable")
    accuracy_below = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    below = np.flatnonzero(accuracy_below < LOW_CONFIDENCE_ACCURACY)
    if below.size == 0:
        return None
    return round(float(confidence[order][below[-1]]), 6)


@dataclass(frozen=True)
class ScoreJob:
    """One chunk: these inputs (with their row ranges) scored with that model."""

    parts: tuple[
        tuple[Input, range, str], ...
    ]  # input, rows, sha256 ("" for images: hashed on read)
    model: ScoringModel
    invert: Invert


# An image shown in report.html: its caption and its pixels.
Shown = tuple[str, np.ndarray]


@dataclass
class ScoredChunk:
    rows: pd.DataFrame
    failures: list[Failure]
    # the chunk's least confident images, with their confidence, for report.html
    lowest: list[tuple[float, Shown]] = field(default_factory=list)
    # its first out-of-distribution images, for report.html
    flagged: list[Shown] = field(default_factory=list)
    # the card of its images, labelled by the predicted classes (drift)
    tally: CardTally = field(default_factory=CardTally.empty)


def score_chunk(job: ScoreJob) -> ScoredChunk:
    """Read, convert and predict one chunk (anywhere: it takes paths and returns rows)."""
    pictures, blocks, where, failures = [], [], [], []
    for item, rows, sha256 in job.parts:
        try:
            if item.kind == "image":
                data = item.path.read_bytes()
                sha256 = hashlib.sha256(data).hexdigest()
                pictures.append(image_picture(data))
            else:
                blocks.append(read_input_rows(item, rows).reshape(-1, NUM_PIXELS))
        except FileNotFoundError:
            failures.append(Failure(item.name, "the file was removed before it was read", sha256))
            continue
        except Unusable as problem:
            failures.append(Failure(item.name, str(problem), sha256))
            continue
        where += [(item.name, frame, sha256) for frame in rows]
    if pictures:  # a chunk holds image files or one array input's rows (plan_jobs)
        blocks.append(negated(stacked(pictures), job.invert).reshape(-1, NUM_PIXELS))
    if not blocks:
        return ScoredChunk(predictions_frame([], np.zeros((0, 10)), job.model), failures)
    images = np.concatenate(blocks)
    x = images.astype(np.float32) / np.float32(255)  # as prepare scales the dataset's pixels
    params = load_params(job.model.weights_path)
    probabilities = softmax(scores(params, x) / np.float32(job.model.temperature))
    reference = job.model.reference
    if reference is None:
        flagged, reasons = np.zeros(len(images), bool), [""] * len(images)
    else:
        flagged, reasons = outside_ranges(images, reference.ranges())
    frame = predictions_frame(where, probabilities, job.model, flagged)
    confidence, names = frame["confidence"].to_numpy(), frame["class_name"].to_numpy()
    lowest = [
        (float(confidence[i]), (f"{names[i]}? {confidence[i]:.0%}", images[i]))
        for i in np.argsort(confidence, kind="stable")[:LOWEST_SHOWN]
    ]
    outside = [
        (f"{names[i]}? {reasons[i]}", images[i]) for i in np.flatnonzero(flagged)[:LOWEST_SHOWN]
    ]
    tally = CardTally.of_images(images, frame["predicted"].to_numpy())
    return ScoredChunk(frame, failures, lowest, outside, tally)


def predictions_frame(
    where: Sequence[tuple[str, int, str]],
    probabilities: np.ndarray,
    model: ScoringModel,
    out_of_distribution: np.ndarray | None = None,
) -> pd.DataFrame:
    """predictions.csv's rows: input, frame, sha256, the top classes and their probabilities,
    and the two flags."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_K]
    top_p = np.take_along_axis(probabilities, top, axis=1)
    columns: dict[str, Any] = {
        "input": [w[0] for w in where],
        "frame": np.array([w[1] for w in where], dtype=np.int64),
        "sha256": [w[2] for w in where],
        "predicted": top[:, 0].astype(np.uint8),
        "class_name": [CLASS_NAMES[c] for c in top[:, 0]],
        "confidence": top_p[:, 0].astype(np.float32),
    }
    for k in range(TOP_K):
        columns[f"top{k + 1}_class"] = [CLASS_NAMES[c] for c in top[:, k]]
        columns[f"top{k + 1}_probability"] = top_p[:, k].astype(np.float32)
    threshold = model.low_confidence_below
    columns["low_confidence"] = (
        top_p[:, 0] < threshold if threshold is not None else np.zeros(len(top), bool)
    )
    columns["out_of_distribution"] = (
        np.zeros(len(top), bool) if out_of_distribution is None else out_of_distribution
    )
    return pd.DataFrame(columns)


def plan_jobs(
    inputs: Sequence[Input], model: ScoringModel, invert: Invert, chunk_size: int
) -> tuple[list[ScoreJob], list[Failure], dict[str, str]]:
    """The chunks of a batch, the inputs refused before reading, and the array inputs' sha256."""
    jobs, failures, hashes, images = [], [], {}, []
    for item in inputs:
        if item.kind == "image":
            images.append((item, range(0, 1), ""))
            if len(images) == chunk_size:
                jobs.append(ScoreJob(tuple(images), model, invert))
                images = []
            continue
        try:
            hashes[item.name] = file_sha256(item.path)
            jobs += [
                ScoreJob(((item, rows, hashes[item.name]),), model, invert)
                for rows in frames(item, chunk_size)
            ]
        except FileNotFoundError:
            failures.append(Failure(item.name, "the file was removed before it was read"))
        except Unusable as problem:
            failures.append(Failure(item.name, str(problem), hashes.get(item.name, "")))
    if images:
        jobs.append(ScoreJob(tuple(images), model, invert))
    return jobs, failures, hashes


Mapper = Callable[[Callable[[ScoreJob], ScoredChunk], Sequence[ScoreJob]], list[ScoredChunk]]


@dataclass(frozen=True)
class BatchResult:
    folder: Path
    predictions: pd.DataFrame
    failures: pd.DataFrame
    summary: pd.DataFrame
    drift: pd.DataFrame | None  # drift.csv; None without a training split to compare with

    @property
    def drifted(self) -> list[str]:
        """One line naming every drifted statistic (none: no drift, or no verdict)."""
        return drifted_lines(self.drift) if self.drift is not None else []


def new_batch_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def score_batch(
    named: Sequence[Path],
    model: ScoringModel,
    out_dir: Path,
    *,
    map_chunks: Mapper,
    invert: Invert = "auto",
    chunk_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    batch_id: str | None = None,
) -> BatchResult:
    """Score every input under `named` into the new batch folder `out_dir/<batch id>/`.

    `map_chunks(score_chunk, jobs)` runs the chunks; `progress(done, total)` hears how many of
    the batch's images (files, and rows of arrays) are done: 0 once they are counted, then after
    each group of chunks."""
    inputs, refused = discover(list(named))
    jobs, unreadable, _ = plan_jobs(inputs, model, invert, chunk_size)
    sizes = [sum(len(rows) for _, rows, _ in job.parts) for job in jobs]
    report = progress or (lambda done, total: None)
    report(0, sum(sizes))
    chunks: list[ScoredChunk] = []
    step = max(1, 2 * (os.cpu_count() or 1))  # a few chunks in flight at a time: bounded memory
    for start in range(0, len(jobs), step):
        chunks += map_chunks(score_chunk, jobs[start : start + step])
        report(sum(sizes[: start + step]), sum(sizes))
    frames_ = [chunk.rows for chunk in chunks]
    predictions = (
        pd.concat(frames_, ignore_index=True)
        if frames_
        else predictions_frame([], np.zeros((0, 10)), model)
    )
    failures = pd.DataFrame(
        [f.__dict__ for f in [*refused, *unreadable, *(f for c in chunks for f in c.failures)]],
        columns=FAILED_COLUMNS,
    )
    lowest = sorted((item for c in chunks for item in c.lowest), key=lambda item: item[0])
    flagged = [item for c in chunks for item in c.flagged][:LOWEST_SHOWN]
    summary = summary_table(predictions)
    reference = model.reference
    drift = (
        None
        if reference is None
        else batch_drift(reference, CardTally.total(chunk.tally for chunk in chunks))
    )
    batch_id = batch_id or new_batch_id()
    manifest = {
        "batch_id": batch_id,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model.describe(),
        "inputs": sorted({*map(str, named)}),
        "files": dict(
            sorted({**dict(zip(predictions["input"], predictions["sha256"], strict=True))}.items())
        ),
        "failed": len(failures),
        "images": len(predictions),
        "out_of_distribution": {
            "images": int(predictions["out_of_distribution"].sum()),
            **(reference.describe() if reference else {"rule": None, "why": NO_REFERENCE}),
        },
        "drift": drift_summary(drift),
        "options": {"invert": invert, "chunk_size": chunk_size},
        "packages": package_versions(),
    }
    tables = {"predictions": predictions, "failed": failures, "summary": summary}
    if drift is not None:
        tables["drift"] = drift
    html = report_html(
        predictions,
        summary,
        failures,
        [shown for _, shown in lowest[:LOWEST_SHOWN]],
        flagged,
        model,
        drift,
    )
    folder = write_batch(Path(out_dir), batch_id, tables, manifest, html)
    return BatchResult(folder, predictions, failures, summary, drift)


NO_REFERENCE = "the project has no prepared training and validation splits to compare with"


def drift_summary(drift: pd.DataFrame | None) -> dict[str, Any]:
    """What the manifest records of the batch's drift: its verdict and the drifted lines."""
    if drift is None:
        return {"verdict": None, "why": NO_REFERENCE}
    if (drift["verdict"] == NO_VERDICT).all():
        verdict = NO_VERDICT
    else:
        verdict = DRIFTED if (drift["verdict"] == DRIFTED).any() else "no drift"
    return {"verdict": verdict, "drifted": drifted_lines(drift), "file": "drift.csv"}


def summary_table(predictions: pd.DataFrame) -> pd.DataFrame:
    rows = []
    total = max(1, len(predictions))
    for label, name in enumerate(CLASS_NAMES):
        mine = predictions[predictions["predicted"] == label]
        rows.append(
            {
                "label": label,
                "class_name": name,
                "count": len(mine),
                "share": len(mine) / total,
                "mean_confidence": float(mine["confidence"].mean()) if len(mine) else 0.0,
                "low_confidence": int(mine["low_confidence"].sum()),
                "out_of_distribution": int(mine["out_of_distribution"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def write_batch(
    out_dir: Path,
    batch_id: str,
    tables: dict[str, pd.DataFrame],
    manifest: dict[str, Any],
    html_text: str,
) -> Path:
    """The batch folder, built hidden and renamed into place whole: `<name>.csv` of each table,
    and predictions.parquet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / batch_id
    building = Path(tempfile.mkdtemp(prefix=f".{batch_id}{atomic.TEMP_MARKER}", dir=out_dir))
    try:
        with atomic.atomic_path(building / "predictions.parquet") as tmp:
            pq.write_table(pa.Table.from_pandas(tables["predictions"], preserve_index=False), tmp)
        for name, frame in tables.items():
            atomic.write_text(building / f"{name}.csv", csv_text(frame))
        atomic.write_text(
            building / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )
        atomic.write_text(building / "report.html", html_text)
        os.chmod(building, 0o755)
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("wrote batch folder %s", final)
    return final


def _png_uri(figure: "Figure") -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def thumbnail(pixels: np.ndarray) -> str:
    """An image's pixels as a PNG data URI, 3x larger."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels.reshape(28, 28)).resize((84, 84), Image.Resampling.NEAREST)
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def thumbnails_table(shown: Sequence[Shown]) -> str:
    """Images, each over its caption (drawn with Pillow, not matplotlib: a grid of subplots
    costs seconds per batch)."""
    items = "".join(
        f'<figure><img src="{thumbnail(pixels)}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for caption, pixels in shown
    )
    return f'<div class="thumbnails">{items}</div>'


def report_html(
    predictions: pd.DataFrame,
    summary: pd.DataFrame,
    failures: pd.DataFrame,
    lowest: Sequence[Shown],
    flagged: Sequence[Shown],
    model: ScoringModel,
    drift: pd.DataFrame | None,
) -> str:
    """The batch at a glance: classes against training, confidences, drift, the least sure
    images and those unlike the training images."""
    # Imported to draw only: every run imports this module, to score chunks.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4))
    figure.subplots_adjust(bottom=0.3, wspace=0.25)
    classes_ax, confidence_ax = figure.subplots(1, 2)
    positions = np.arange(len(CLASS_NAMES))
    classes_ax.bar(positions - 0.2, summary["share"], 0.4, label="this batch")
    if model.reference is not None:
        shares = model.reference.train.class_shares()
        classes_ax.bar(positions + 0.2, shares, 0.4, label="training")
    classes_ax.set_xticks(positions, CLASS_NAMES, rotation=40, ha="right")
    classes_ax.set_ylabel("share of images")
    classes_ax.legend()
    confidence_ax.hist(predictions["confidence"], bins=20, range=(0, 1), color="C2")
    if model.low_confidence_below is not None:
        confidence_ax.axvline(
            model.low_confidence_below, color="C3", linestyle="--", label="low confidence"
        )
        confidence_ax.legend()
    confidence_ax.set_xlabel("calibrated confidence")
    confidence_ax.set_ylabel("images")
    parts = [
        paragraph(
            f"{len(predictions):,} images scored, {len(failures):,} inputs failed (failed.csv), "
            f"with model {model.model_id} at temperature {model.temperature:.4f}."
        ),
        html_figure(_png_uri(figure), "Classes against training; calibrated confidences"),
        section(
            "Per class", table(SUMMARY_COLUMNS[1:], summary[SUMMARY_COLUMNS[1:]].values.tolist())
        ),
    ]
    parts.append(section("Drift from the training data", drift_paragraph(drift)))
    if lowest:
        parts.append(section("Lowest confidence", thumbnails_table(lowest)))
    if model.reference is not None:
        count = int(predictions["out_of_distribution"].sum())
        parts.append(
            section(
                "Out of distribution",
                paragraph(
                    f"{count:,} images flagged: {OUT_OF_DISTRIBUTION_RULE}."
                    + (f" The first {len(flagged)}:" if flagged else "")
                ),
                thumbnails_table(flagged),
            )
        )
    if len(failures):
        parts.append(section("Failed", table(FAILED_COLUMNS, failures.values.tolist())))
    return page("fashionnet score", "\n".join(parts))


def drift_paragraph(drift: pd.DataFrame | None) -> str:
    """What the report says of the batch's drift (drift.csv has every statistic)."""
    if drift is None:
        return paragraph(f"Not measured: {NO_REFERENCE}.")
    if (drift["verdict"] == NO_VERDICT).all():
        return paragraph(
            f"No verdict: a batch of fewer than {MIN_VERDICT_IMAGES:,} images is too small to "
            "tell drift from chance (docs/DATA_VALIDATION.md); drift.csv has the values."
        )
    lines = drifted_lines(drift)
    if not lines:
        return paragraph("No drift: every statistic of drift.csv is within its threshold.")
    return "\n".join(paragraph(f"Drifted: {line}.") for line in lines)
