"""Predict a split in chunks of whole Parquet row groups, then save the predictions.

Memory follows the chunk size, not the data size: a chunk reads only its own row groups.
Each chunk also returns its tally (`metrics.Tally`: 10x10 confusion counts, top-2 hits, the sum
of -log p(true class), calibration bins), whose sums simply add up, so the chunks can run
anywhere (threads, processes, Dask workers) and be combined in any order.
`predict_chunk` takes paths and arrays only and touches no shared state.

`predict_splits` is the whole stage: it plans the chunks of every split whose predictions are
not up to date (or damaged: `integrity`), hands them to a chunk runner (threads here; the flow's
runner sends each chunk to a Prefect task), and writes each split's predictions file with its
provenance. A chunk is refused, before anything is written, when the machine lacks the memory
for it or the weights give probabilities that are not finite.
"""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from fashionnet.core import atomic, integrity, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data.catalog import NUM_PIXELS
from fashionnet.data.parquet import SplitFile, read_row_groups
from fashionnet.model.functions import log_softmax, softmax
from fashionnet.model.two_layer_net import scores
from fashionnet.model.weights import load_params, refusal
from fashionnet.options import cli_flag
from fashionnet.report.metrics import Tally

log = logging.getLogger(__name__)

# Chunks to predict at the same time on one machine (the width of the flow's thread runner):
# one per CPU lets a chunk's Parquet decoding overlap another's matrix products, and memory
# stays at a few chunks however many rows the split has.
CONCURRENT_CHUNKS = os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads_shared_by(concurrent_chunks: int) -> Iterator[None]:
    """While `concurrent_chunks` chunks predict at once in this process, give each its share
    of the cores for BLAS (at least one thread).

    Otherwise every chunk's matrix product starts a BLAS thread per core while the other chunks
    decode Parquet on the same cores: oversubscribed, two chunks at a time took 0.45 s for
    70,000 rows on 2 cores, against 0.30 s with one BLAS thread each. The limit holds for the
    whole process until the block ends.
    """
    per_chunk = max(1, (os.cpu_count() or 1) // max(1, concurrent_chunks))
    with threadpool_limits(limits=per_chunk, user_api="blas"):
        yield


# The predictions file's metadata: which weights predicted it, from which data.
META_MODEL_ID = "fashionnet.model_id"
META_DATA_FINGERPRINT = "fashionnet.data_fingerprint"

# One row per image: its position in the split, its true class, the most and the second most
# probable classes, the probability of the first (`confidence`) and the log of the probability
# of the true class (`true_log_prob`, by log-sum-exp from the scores: finite even where the
# probability underflows float32). Every figure of the report can be recomputed from these.
PREDICTIONS_SCHEMA = pa.schema(
    [
        ("index", pa.int32()),
        ("label", pa.uint8()),
        ("predicted", pa.uint8()),
        ("second", pa.uint8()),
        ("confidence", pa.float32()),
        ("true_log_prob", pa.float32()),
    ]
)


def plan_chunks(split: SplitFile, chunk_rows: int) -> list[range]:
    """Consecutive ranges of row-group indices, each about `chunk_rows` rows.

    Row groups are never split: a chunk gathers row groups while they fit within
    `chunk_rows`, and holds at least one even if that one alone is larger.
    """
    if chunk_rows < 1:
        raise FashionnetError(f"chunk_size must be at least 1 row, got {chunk_rows}")
    chunks = []
    start, rows = 0, 0
    for group, group_rows in enumerate(split.row_group_rows):
        if group > start and rows + group_rows > chunk_rows:
            chunks.append(range(start, group))
            start, rows = group, 0
        rows += group_rows
    if start < len(split.row_group_rows):
        chunks.append(range(start, len(split.row_group_rows)))
    return chunks


@dataclass
class ChunkPrediction:
    index: np.ndarray  # int32 (n,), the rows' positions in their split
    label: np.ndarray  # uint8 (n,)
    predicted: np.ndarray  # uint8 (n,), the most probable class
    second: np.ndarray  # uint8 (n,), the second most probable class
    confidence: np.ndarray  # float32 (n,), the probability of the predicted class
    true_log_prob: np.ndarray  # float32 (n,), log of the probability of the true class
    tally: Tally  # the chunk's sums: confusion counts, top-2 hits, log loss, calibration bins

    def columns(self) -> list[np.ndarray]:
        """The chunk's rows as PREDICTIONS_SCHEMA's columns, in its order."""
        return [getattr(self, name) for name in PREDICTIONS_SCHEMA.names]


def top_two(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most and the second most probable class of each row (ties: the lower class first,
    as argmax picks)."""
    rows = np.arange(len(probabilities))
    first = probabilities.argmax(axis=1)
    others = probabilities.copy()
    others[rows, first] = -np.inf
    return first.astype(np.uint8), others.argmax(axis=1).astype(np.uint8)


def predict_chunk(
    params: Mapping[str, np.ndarray], parquet_path: Path, row_groups: range
) -> ChunkPrediction:
    """Read the row groups `row_groups` of a split and predict them in one call."""
    batch = read_row_groups(parquet_path, row_groups)
    output = scores(params, batch.x)
    probabilities = softmax(output)  # = two_layer_net.predict, without a second forward pass
    predicted, second = top_two(probabilities)
    confidence = probabilities.max(axis=1).astype(np.float32)
    rows = np.arange(len(output))
    true_log_prob = log_softmax(output)[rows, batch.label].astype(np.float32)
    return ChunkPrediction(
        index=batch.index,
        label=batch.label,
        predicted=predicted,
        second=second,
        confidence=confidence,
        true_log_prob=true_log_prob,
        tally=Tally.of_predictions(batch.label, predicted, second, confidence, true_log_prob),
    )


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to predict: these row groups of that split's Parquet, `rows` rows in all."""

    parquet_path: Path
    row_groups: range
    rows: int


def chunk_bytes(rows: int, hidden: int) -> int:
    """About the memory predicting `rows` rows at once takes: the float32 pixels, and the
    hidden layer twice (ReLU makes its result while its input is alive)."""
    return rows * (NUM_PIXELS + 2 * hidden) * 4


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def check_memory(weights_path: Path, rows: int, hidden: int) -> None:
    """Refuse a chunk larger than the memory this machine has free, before allocating it: an
    allocation NumPy cannot make is a traceback, and one Linux grants but cannot back is a
    process killed without a word."""
    need, available = chunk_bytes(rows, hidden), psutil.virtual_memory().available
    if need <= available:
        return
    fitting = max(1, available // chunk_bytes(1, hidden))
    raise FashionnetError(
        f"predicting {rows} rows at a time with the {hidden} hidden units of {weights_path} needs "
        f"about {_megabytes(need)} of memory, but {_megabytes(available)} is available: use "
        f"{cli_flag('chunk_size')} {fitting} or less (and {cli_flag('row_group_size')} no "
        "larger, as a chunk holds at least one row group)"
    )


def predict_chunk_file(weights_path: Path, job: ChunkJob) -> ChunkPrediction:
    """`predict_chunk` with the weights read from their file: all a worker needs is two paths.
    Refused in one line, on the machine that would predict it: a chunk its memory cannot
    hold, and weights whose probabilities are not finite (finite weights can still overflow
    float32 in the products). A chunk that starts after a stop was asked for (`interrupts`)
    raises instead: chunks still waiting for a thread never start."""
    interrupts.check()
    params = load_params(weights_path)
    check_memory(weights_path, job.rows, params["b1"].size)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow ends in NaN: refused below
        prediction = predict_chunk(params, job.parquet_path, job.row_groups)
    finite = (
        np.isfinite(prediction.confidence).all() and np.isfinite(prediction.true_log_prob).all()
    )
    if not finite:  # a NaN probability makes its row's max NaN, an infinite score its log NaN
        raise refusal(weights_path, "gives class probabilities that are not finite (overflow)")
    return prediction


# Predicts the jobs with the weights at a path; returns their predictions in the jobs' order.
ChunkRunner = Callable[[Path, Sequence[ChunkJob]], list[ChunkPrediction]]


def run_chunks_in_threads(
    weights_path: Path, jobs: Sequence[ChunkJob], threads: int = CONCURRENT_CHUNKS
) -> list[ChunkPrediction]:
    """The chunk runner without an orchestrator: `threads` chunks at a time in this process."""
    with blas_threads_shared_by(threads), ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: predict_chunk_file(weights_path, job), jobs))


def prediction_metadata(model_id: str, split: SplitFile) -> dict[str, str]:
    """What a predictions file must record to be up to date: the model and the split's data (its
    sources and, for a file cut by the split rule, the rule: another rule, other rows)."""
    return {META_MODEL_ID: model_id, META_DATA_FINGERPRINT: split.fingerprint}


def predict_splits(
    splits: Mapping[str, SplitFile],
    weights_path: Path,
    model_id: str,
    layout: Layout,
    chunk_size: int,
    run_chunks: ChunkRunner = run_chunks_in_threads,
) -> dict[str, Tally]:
    """The predict stage: each split's predictions file, made unless it is up to date, and its
    tally (`metrics.Tally`: confusion counts, top-2 hits, log loss sum, calibration bins).

    The chunks of all splits go to `run_chunks` in one call, so they can all run at once.
    """
    tallies, jobs, pending = {}, [], {}
    for split, split_file in splits.items():
        out_path, metadata = layout.predictions(split), prediction_metadata(model_id, split_file)
        if predictions_up_to_date(out_path, metadata, split_file.num_rows):
            tallies[split] = tally_of_file(out_path)
            log.info("%s predictions up to date: %s", split, out_path)
            continue
        chunks = plan_chunks(split_file, chunk_size)
        log.info("%s: predicting %d rows in %d chunks", split, split_file.num_rows, len(chunks))
        pending[split] = (out_path, metadata, slice(len(jobs), len(jobs) + len(chunks)))
        jobs += [
            ChunkJob(split_file.path, groups, sum(split_file.row_group_rows[g] for g in groups))
            for groups in chunks
        ]
    predicted = run_chunks(weights_path, jobs) if jobs else []
    for split, (out_path, metadata, positions) in pending.items():
        with integrity.sealing(out_path):
            write_predictions(out_path, predicted[positions], metadata=metadata)
        tallies[split] = total_tally(predicted[positions])
    return {split: tallies[split] for split in splits}


def total_tally(chunks: Sequence[ChunkPrediction]) -> Tally:
    """The tally of a whole split: the sum over its chunks."""
    return Tally.total(chunk.tally for chunk in chunks)


def tally_of_file(path: Path) -> Tally:
    """The tally of a predictions file, a row group at a time (memory stays at one chunk)."""
    parquet = pq.ParquetFile(path)
    names = ["label", "predicted", "second", "confidence", "true_log_prob"]
    groups = range(parquet.num_row_groups)
    return Tally.total(
        Tally.of_predictions(*(group[name].to_numpy() for name in names))
        for group in (parquet.read_row_group(g, columns=names) for g in groups)
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
    `rows` predictions with our schema and exactly these metadata values."""
    if not integrity.verified(path):
        return False
    file_metadata = pq.read_metadata(path)
    schema = file_metadata.schema.to_arrow_schema()
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
