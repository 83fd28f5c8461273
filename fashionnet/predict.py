"""The predict stage, in three steps an orchestrator strings together:

1. `plan_predictions`: the chunks (whole Parquet row groups) of every split whose predictions
   file is not up to date (or is damaged: `integrity`); the tallies of the others;
2. `predict_chunk_job`: one chunk, anywhere (threads, processes, Dask workers): it takes paths
   only, touches no shared state and returns its rows and its tally (`metrics.Tally`), whose
   sums simply add up, so chunks combine in any order;
3. `save_predictions`: each planned split's predictions file, with its provenance.

Memory follows the chunk size, not the data size: a chunk reads only its own row groups. The
plan is refused when the machine lacks the memory for the chunks that run at once
(`check_memory`), and a chunk, before anything is written, when the weights give probabilities
that are not finite.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from fashionnet.core import atomic, formats, integrity, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.threads import CONCURRENT_CHUNKS
from fashionnet.data.catalog import NUM_PIXELS
from fashionnet.data.parquet import SplitFile, plan_chunks, read_row_groups
from fashionnet.model.functions import log_softmax, softmax
from fashionnet.model.source import Model
from fashionnet.model.two_layer_net import scores
from fashionnet.model.weights import load_params, megabytes, read_layout, refusal
from fashionnet.options import cli_flag
from fashionnet.report.metrics import Tally

log = logging.getLogger(__name__)

# The predictions file's metadata: which weights predicted it, from which data.
META_MODEL_ID = "fashionnet.model_id"
META_DATA_FINGERPRINT = "fashionnet.data_fingerprint"

# One row per image: its position in the split, its true class, the most and the second most
# probable classes, the calibrated probability of the first (`confidence`) and the log of the
# calibrated probability of the true class (`true_log_prob`, by log-sum-exp from the scores:
# finite even where the probability underflows float32), then the same two before calibration
# (temperature 1). Every figure of the report can be recomputed from these.
PREDICTIONS_SCHEMA = pa.schema(
    [
        ("index", pa.int32()),
        ("label", pa.uint8()),
        ("predicted", pa.uint8()),
        ("second", pa.uint8()),
        ("confidence", pa.float32()),
        ("true_log_prob", pa.float32()),
        ("raw_confidence", pa.float32()),
        ("raw_true_log_prob", pa.float32()),
    ]
)
# The columns a split's tally is made of (`Tally.of_predictions`), in its argument order.
TALLY_COLUMNS = [
    "label",
    "predicted",
    "second",
    "confidence",
    "true_log_prob",
    "raw_confidence",
    "raw_true_log_prob",
]


@dataclass
class ChunkPrediction:
    index: np.ndarray  # int32 (n,), the rows' positions in their split
    label: np.ndarray  # uint8 (n,)
    predicted: np.ndarray  # uint8 (n,), the most probable class
    second: np.ndarray  # uint8 (n,), the second most probable class
    confidence: np.ndarray  # float32 (n,), the calibrated probability of the predicted class
    true_log_prob: np.ndarray  # float32 (n,), log of the calibrated probability of the true class
    raw_confidence: np.ndarray  # float32 (n,), `confidence` at temperature 1
    raw_true_log_prob: np.ndarray  # float32 (n,), `true_log_prob` at temperature 1
    tally: Tally  # the chunk's sums: confusion counts, top-2 hits, log loss, calibration bins

    def columns(self) -> list[np.ndarray]:
        """The chunk's rows as PREDICTIONS_SCHEMA's columns, in its order."""
        return [getattr(self, name) for name in PREDICTIONS_SCHEMA.names]


def top_two(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most and the second most probable class of each row (ties: the lower class first,
    as argmax picks), from probabilities or from the scores they are the softmax of."""
    rows = np.arange(len(probabilities))
    first = probabilities.argmax(axis=1)
    others = probabilities.copy()
    others[rows, first] = -np.inf
    return first.astype(np.uint8), others.argmax(axis=1).astype(np.uint8)


def confidence_and_true_log_prob(
    output: np.ndarray, labels: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """The probability of the most probable class and the log probability of the true class,
    float32, from the scores divided by `temperature` (which changes no ranking)."""
    scaled = output / np.float32(temperature)
    confidence = softmax(scaled).max(axis=1).astype(np.float32)
    true_log_prob = log_softmax(scaled)[np.arange(len(scaled)), labels].astype(np.float32)
    return confidence, true_log_prob


def predict_chunk(
    params: Mapping[str, np.ndarray],
    parquet_path: Path,
    row_groups: range,
    temperature: float = 1.0,
) -> ChunkPrediction:
    """Read the row groups `row_groups` of a split and predict them in one call, the
    probabilities calibrated by `temperature` (`model.calibration`) and also as they were."""
    batch = read_row_groups(parquet_path, row_groups)
    output = scores(params, batch.x)
    predicted, second = top_two(output)  # the softmax and the temperature keep the order
    raw = confidence_and_true_log_prob(output, batch.label, 1.0)
    calibrated = confidence_and_true_log_prob(output, batch.label, temperature)
    columns = (batch.label, predicted, second, *calibrated, *raw)
    return ChunkPrediction(batch.index, *columns, tally=Tally.of_predictions(*columns))


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to predict: these row groups of that split's Parquet, `rows` rows in all, with
    the weights in that file. All a worker needs is in it, as paths."""

    weights_path: Path
    parquet_path: Path
    row_groups: range
    rows: int
    temperature: float = 1.0


def chunk_bytes(rows: int, hidden: int) -> int:
    """About the memory predicting `rows` rows at once takes: the float32 pixels, and the
    hidden layer twice (ReLU makes its result while its input is alive)."""
    return rows * (NUM_PIXELS + 2 * hidden) * 4


def check_memory(weights_path: Path, rows: int) -> None:
    """Refuse chunks of `rows` rows when CONCURRENT_CHUNKS of them, each with the copy of the
    weights its job reads, do not fit in the memory this machine has free, before any chunk
    starts (the plan is made on the machine that predicts with threads or a local Dask
    cluster): an allocation NumPy cannot make is a traceback, and one Linux grants but cannot
    back is a process killed without a word. The chunk size it suggests fits with as many
    chunks at once, however many chunks it makes. Sizes come from the weights' headers."""
    weights = read_layout(weights_path)
    per_chunk = weights.load_bytes + chunk_bytes(rows, weights.hidden)
    need, available = CONCURRENT_CHUNKS * per_chunk, psutil.virtual_memory().available
    if need <= available:
        return
    at_once = f"{CONCURRENT_CHUNKS} at once (one per CPU)"
    room_for_rows = available // CONCURRENT_CHUNKS - weights.load_bytes
    fitting = room_for_rows // chunk_bytes(1, weights.hidden)
    if fitting < 1:
        raise refusal(
            weights_path,
            f"needs about {megabytes(CONCURRENT_CHUNKS * weights.load_bytes)} of memory to be "
            f"read by the prediction chunks, {at_once}, but {megabytes(available)} is available",
        )
    raise FashionnetError(
        f"predicting chunks of {rows} rows, {at_once}, with the {weights.hidden} hidden units of "
        f"{weights_path} needs about {megabytes(need)} of memory, but {megabytes(available)} "
        f"is available: use {cli_flag('chunk_size')} {fitting} or less (and "
        f"{cli_flag('row_group_size')} no larger, as a chunk holds at least one row group)"
    )


def predict_chunk_job(job: ChunkJob) -> ChunkPrediction:
    """Step 2: `predict_chunk` with the weights read from their file. Refused in one line:
    weights whose probabilities are not finite (finite weights can still overflow float32 in
    the products). A chunk that starts after a stop was asked for (`interrupts`) raises
    instead: chunks still waiting for a thread never start."""
    interrupts.check()
    params = load_params(job.weights_path)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow ends in NaN: refused below
        prediction = predict_chunk(params, job.parquet_path, job.row_groups, job.temperature)
    finite = all(
        np.isfinite(getattr(prediction, name)).all()
        for name in ("confidence", "true_log_prob", "raw_confidence", "raw_true_log_prob")
    )
    if not finite:  # a NaN probability makes its row's max NaN, an infinite score its log NaN
        raise refusal(job.weights_path, "gives class probabilities that are not finite (overflow)")
    return prediction


def prediction_metadata(model_id: str, split: SplitFile) -> dict[str, str]:
    """What a predictions file must record to be up to date: its format version, the model and
    the split's data (its sources and, for a file cut by the split rule, the rule: another rule,
    other rows)."""
    return {
        formats.PARQUET_KEY: str(formats.CURRENT[formats.PREDICTIONS]),
        META_MODEL_ID: model_id,
        META_DATA_FINGERPRINT: split.fingerprint,
    }


@dataclass(frozen=True)
class PendingSplit:
    """A split to predict: where its file goes, what it records, and its jobs in the plan."""

    path: Path
    metadata: dict[str, str]
    jobs: slice  # its chunks' positions in PredictionPlan.jobs


@dataclass(frozen=True)
class PredictionPlan:
    """Step 1's answer: the chunks to predict (of every split at once, so they can all run at
    the same time), and the tallies of the splits whose predictions are up to date."""

    splits: tuple[str, ...]  # every split, in the order the tallies are returned
    jobs: list[ChunkJob]
    pending: dict[str, PendingSplit]
    current: dict[str, Tally]


def plan_predictions(
    splits: Mapping[str, SplitFile], model: Model, layout: Layout, chunk_size: int
) -> PredictionPlan:
    """Step 1: the chunks of every split whose predictions file is not up to date with `model`
    and the split's data; a current file is tallied instead."""
    jobs: list[ChunkJob] = []
    pending, current = {}, {}
    for split, split_file in splits.items():
        out_path = layout.predictions(split)
        metadata = prediction_metadata(model.model_id, split_file)
        if predictions_up_to_date(out_path, metadata, split_file.num_rows):
            current[split] = tally_of_file(out_path)
            log.info("%s predictions up to date: %s", split, out_path)
            continue
        chunks = plan_chunks(split_file, chunk_size)
        log.info("%s: predicting %d rows in %d chunks", split, split_file.num_rows, len(chunks))
        positions = slice(len(jobs), len(jobs) + len(chunks))
        pending[split] = PendingSplit(out_path, metadata, positions)
        jobs += [
            ChunkJob(
                model.weights_path,
                split_file.path,
                groups,
                sum(split_file.row_group_rows[g] for g in groups),
                model.temperature,
            )
            for groups in chunks
        ]
    if jobs:
        check_memory(model.weights_path, max(job.rows for job in jobs))
    return PredictionPlan(tuple(splits), jobs, pending, current)


def save_predictions(
    plan: PredictionPlan, predicted: Sequence[ChunkPrediction]
) -> dict[str, Tally]:
    """Step 3: write each planned split's predictions (`predicted`: one per job of the plan, in
    its order); return every split's tally (`metrics.Tally`), in the plan's split order."""
    tallies = dict(plan.current)
    for split, pending in plan.pending.items():
        chunks = predicted[pending.jobs]
        with integrity.sealing(pending.path):
            write_predictions(pending.path, chunks, metadata=pending.metadata)
        tallies[split] = total_tally(chunks)
    return {split: tallies[split] for split in plan.splits}


def total_tally(chunks: Sequence[ChunkPrediction]) -> Tally:
    """The tally of a whole split: the sum over its chunks."""
    return Tally.total(chunk.tally for chunk in chunks)


def tally_of_file(path: Path) -> Tally:
    """The tally of a predictions file, a row group at a time (memory stays at one chunk)."""
    parquet = pq.ParquetFile(path)
    groups = range(parquet.num_row_groups)
    return Tally.total(
        Tally.of_predictions(*(group[name].to_numpy() for name in TALLY_COLUMNS))
        for group in (parquet.read_row_group(g, columns=TALLY_COLUMNS) for g in groups)
    )


def write_predictions(
    path: Path, chunks: Sequence[ChunkPrediction], *, metadata: Mapping[str, str]
) -> None:
    """Write the chunks in order as one Parquet file (a row group per chunk), atomically.

    `metadata` (e.g. `fashionnet.model_id`, `fashionnet.sources`) goes into the schema
    metadata, where `predictions_up_to_date` finds it again.
    """
    schema = PREDICTIONS_SCHEMA.with_metadata({key: str(value) for key, value in metadata.items()})
    with atomic.atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_arrays(chunk.columns(), schema=schema))
    log.info("wrote %d prediction chunks to %s", len(chunks), path)


def predictions_up_to_date(path: Path, metadata: Mapping[str, str], rows: int) -> bool:
    """Whether `path` is intact (`integrity.verified`: a damaged file is moved aside) and holds
    `rows` predictions with our schema and exactly these metadata values. A file of a newer
    format stops the run (`formats.NewerFormat`); one without this format's version is made
    again."""
    if not integrity.verified(path):
        return False
    file_metadata = pq.read_metadata(path)
    schema = file_metadata.schema.to_arrow_schema()
    try:
        version = (schema.metadata or {}).get(formats.PARQUET_KEY.encode())
        formats.check(path, formats.PREDICTIONS, version)
    except ValueError as problem:
        log.warning("%s: %s; predicting again", path, problem)
        return False
    if file_metadata.num_rows != rows or not schema.equals(PREDICTIONS_SCHEMA):
        log.warning(
            "%s does not hold %d predictions of the expected columns; rewriting", path, rows
        )
        return False
    stored = schema.metadata or {}
    return all(stored.get(key.encode()) == str(value).encode() for key, value in metadata.items())


def read_predictions(path: Path) -> pd.DataFrame:
    """The predictions of one split: the columns of PREDICTIONS_SCHEMA."""
    if not Path(path).is_file():
        raise FashionnetError(f"{path} is missing; run the predict stage first")
    return pq.read_table(path, columns=PREDICTIONS_SCHEMA.names).to_pandas()
