"""Raw IDX images -> Parquet, one row group at a time (the format is described in `dataset`).

Pixels are stored as float32 image/255, ready for the network. The images stream in blocks of
one row group and are converted a row group at a time, so preparing holds neither the raw split
nor a float copy of it: memory is the same for 60,000 images or 60 million.
The raw training images become two files, `train.parquet` and `validation.parquet`, divided by
the split rule (`validation`); the raw test images become `test.parquet`. Each file records
which raw files (sha256) it came from and, when cut by the rule, the rule; the work is skipped
when the file on disk is intact (`integrity`) and already matches its sources, split rule and
row-group size. The labels are read first (they are small): they decide the split and whether
anything is out of date, so the images are read only when a file must be written.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fashionnet.core import formats, integrity
from fashionnet.core.atomic import atomic_path
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data import idx, parquet
from fashionnet.data.catalog import NUM_PIXELS, SPLITS
from fashionnet.data.fetch import RawFiles
from fashionnet.data.split_rule import SplitRule, training_rows, validation_rows

logger = logging.getLogger(__name__)

# pixel value -> value/255 in float32, so a row group converts with one lookup and no float64.
_SCALED = np.arange(256, dtype=np.float32) / np.float32(255)

# Only 256 distinct pixel values: Parquet's (default) dictionary encoding already stores them
# in about a byte each (train: 35 MB). A codec on top saved 15% of the size but cost 25-30% of
# the read time (snappy, zstd), so none.
_COMPRESSION = "none"


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    rows: int
    skipped: bool  # True when the file was already up to date


@dataclass(frozen=True)
class Output:
    """One Parquet file made from a raw split: which of its rows, and the rule that chose them."""

    path: Path
    rows: np.ndarray | None  # sorted row numbers of the raw split; None: all of them
    split_rule: dict[str, Any] | None = None  # `SplitRule.describe`, for a file cut by the rule

    def num_rows(self, total: int) -> int:
        return total if self.rows is None else len(self.rows)


def _planned_row_groups(rows: int, row_group_size: int) -> tuple[int, ...]:
    return tuple(min(row_group_size, rows - start) for start in range(0, rows, row_group_size))


def _row_group(images: np.ndarray, labels: np.ndarray, start: int) -> pa.Table:
    flat = _SCALED[images.reshape(-1)]  # float32, one row group only
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(start, start + len(labels), dtype=np.int32)),
            pa.array(labels),
            pa.FixedSizeListArray.from_arrays(pa.array(flat), NUM_PIXELS),
        ],
        schema=parquet.SCHEMA,
    )


class _SplitWriter:
    """Writes one output's rows as they stream by, a full row group at a time, atomically."""

    def __init__(self, output: Output, writer: pq.ParquetWriter, row_group_size: int) -> None:
        self.output, self.writer, self.row_group_size = output, writer, row_group_size
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # (images, labels), < 1 group
        self.pending_rows = self.written = 0

    def add(self, images: np.ndarray, labels: np.ndarray, first_row: int) -> None:
        """Take this output's rows among `images` (raw rows first_row.. of the split)."""
        if self.output.rows is not None:
            chosen = self.output.rows
            lo, hi = np.searchsorted(chosen, [first_row, first_row + len(images)])
            local = chosen[lo:hi] - first_row
            images, labels = images[local], labels[local]
        self.pending.append((images, labels))
        self.pending_rows += len(labels)
        while self.pending_rows >= self.row_group_size:
            self._write(self.row_group_size)

    def finish(self) -> None:
        if self.pending_rows:
            self._write(self.pending_rows)

    def _write(self, rows: int) -> None:
        images = np.concatenate([part[0] for part in self.pending])
        labels = np.concatenate([part[1] for part in self.pending])
        self.writer.write_table(_row_group(images[:rows], labels[:rows], self.written))
        self.written += rows
        self.pending = [(images[rows:], labels[rows:])]
        self.pending_rows -= rows


def _metadata_schema(output: Output, rows: int, sources: Mapping[str, str], row_group_size: int):
    metadata = {
        parquet.META_SOURCES: json.dumps(dict(sources), sort_keys=True),
        parquet.META_ROWS: str(rows),
        parquet.META_ROW_GROUP_SIZE: str(row_group_size),
        formats.PARQUET_KEY: str(formats.CURRENT[formats.SPLIT]),
    }
    if output.split_rule is not None:
        metadata[parquet.META_SPLIT_RULE] = json.dumps(dict(output.split_rule), sort_keys=True)
    return parquet.SCHEMA.with_metadata(metadata)


def write_outputs(
    outputs: Sequence[Output],
    labels: np.ndarray,
    image_blocks: Iterable[np.ndarray],
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
) -> None:
    """Write every output of one raw split in a single pass over its images, which arrive in
    blocks (uint8 (k, 28, 28), in row order): each file holds its rows, numbered 0.., and is
    sealed (`integrity`) once complete. At most a block and one row group per output are in
    memory, however many images the split has."""
    with contextlib.ExitStack() as stack:
        writers = []
        for output in outputs:
            stack.enter_context(integrity.sealing(output.path))
            tmp = stack.enter_context(atomic_path(output.path))
            schema = _metadata_schema(output, output.num_rows(len(labels)), sources, row_group_size)
            file_writer = stack.enter_context(
                pq.ParquetWriter(tmp, schema, compression=_COMPRESSION)
            )
            writers.append(_SplitWriter(output, file_writer, row_group_size))
        first_row = 0
        for images in image_blocks:
            if first_row + len(images) > len(labels):
                raise ValueError(f"more images than the {len(labels)} labels")
            for writer in writers:
                writer.add(images, labels[first_row : first_row + len(images)], first_row)
            first_row += len(images)
        if first_row != len(labels):
            raise ValueError(f"{first_row} images but {len(labels)} labels")
        for writer in writers:
            writer.finish()


def array_blocks(images: np.ndarray, block_rows: int) -> Iterator[np.ndarray]:
    """An in-memory array as `write_outputs` takes its images."""
    for first in range(0, len(images), block_rows):
        yield images[first : first + block_rows]


def write_split(
    images: np.ndarray,
    labels: np.ndarray,
    out_path: Path,
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
    rows: np.ndarray | None = None,
    split_rule: Mapping[str, Any] | None = None,
) -> None:
    """Write one split (uint8 images (n, 28, 28), labels (n,)) as Parquet, atomically: all its
    rows, or only `rows` (sorted row numbers), numbered 0.. in the file."""
    write_outputs(
        [Output(out_path, rows, split_rule)],
        labels,
        array_blocks(images, row_group_size),
        sources=sources,
        row_group_size=row_group_size,
    )


def _current_split(
    out_path: Path,
    output_rows: int,
    sources: Mapping[str, str],
    row_group_size: int,
    split_rule: Mapping[str, Any] | None,
) -> parquet.SplitFile | None:
    """The split at `out_path` if it is intact, valid and was written from `sources` by this
    split rule in such row groups. A damaged one is moved aside (`integrity.verified`)."""
    if not integrity.verified(Path(out_path)):
        return None
    try:
        split = parquet.open_split(out_path)
    except formats.NewerFormat:
        raise  # a newer fashionnet's file: not this one's to replace
    except FashionnetError as error:
        # Intact but not in today's format (no format version, say): rebuild it.
        logger.warning("rebuilding %s from the raw files: %s", out_path, error)
        return None
    current = (
        split.sources == dict(sources)
        and split.split_rule == (None if split_rule is None else dict(split_rule))
        and split.row_group_rows == _planned_row_groups(output_rows, row_group_size)
    )
    return split if current else None


def is_up_to_date(
    out_path: Path,
    sources: Mapping[str, str],
    row_group_size: int,
    *,
    rows: int,
    split_rule: Mapping[str, Any] | None = None,
) -> bool:
    return _current_split(out_path, rows, sources, row_group_size, split_rule) is not None


def prepare_outputs(
    outputs: Sequence[Output],
    labels: np.ndarray,
    image_blocks: Callable[[int], Iterable[np.ndarray]],
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
) -> list[PrepareResult]:
    """Write the outputs of one raw split (its `labels`; its images from
    `image_blocks(block_rows)`) unless every one is already up to date with `sources`; the
    images are read only when there is work to do."""
    current = []
    for output in outputs:
        rows = output.num_rows(len(labels))
        up_to_date = _current_split(output.path, rows, sources, row_group_size, output.split_rule)
        if up_to_date is not None:
            logger.info("%s is up to date (%d rows)", output.path, rows)
        current.append(up_to_date is not None)
    stale = [output for output, is_current in zip(outputs, current, strict=True) if not is_current]
    if stale:
        started = time.perf_counter()
        blocks = image_blocks(row_group_size)
        write_outputs(stale, labels, blocks, sources=sources, row_group_size=row_group_size)
        for output in stale:
            logger.info(
                "wrote %s: %d rows in %.1f s",
                output.path,
                output.num_rows(len(labels)),
                time.perf_counter() - started,
            )
    return [
        PrepareResult(output.path, output.num_rows(len(labels)), skipped=is_current)
        for output, is_current in zip(outputs, current, strict=True)
    ]


def outputs_of(raw_split: str, labels: np.ndarray, layout: Layout, rule: SplitRule) -> list[Output]:
    """The files a raw split becomes: train -> train and validation (cut by `rule`); test ->
    test."""
    if raw_split != "train":
        return [Output(layout.parquet(raw_split), None)]
    held_out = validation_rows(labels, rule.validation_size, rule.validation_seed)
    described = rule.describe(held_out)
    return [
        Output(layout.parquet("train"), training_rows(len(labels), held_out), described),
        Output(layout.parquet("validation"), held_out, described),
    ]


@dataclass(frozen=True)
class RawSplit:
    """One raw split of any data source, as the prepare stage takes it: its labels, its images
    (`image_blocks(block_rows)` streams them in row order) and what they were made from."""

    name: str  # "train" or "test": a key of catalog.SPLITS
    labels: np.ndarray
    image_blocks: Callable[[int], Iterable[np.ndarray]]
    sources: dict[str, str]  # raw file name -> sha256


@dataclass(frozen=True)
class RawData:
    """The fetch stage's answer for every data source: where the data came from, and its raw
    splits."""

    origin: str  # e.g. "local folder /x", "tf.keras.datasets.fashion_mnist"
    splits: tuple[RawSplit, ...]


def raw_data_of_files(raw: RawFiles) -> RawData:
    """The raw splits of the IDX files: labels read (they are small), images streamed later."""
    splits = []
    for raw_split, (images_name, labels_name) in SPLITS.items():
        images_path, labels_path = raw.paths[images_name], raw.paths[labels_name]
        labels = idx.read_labels(labels_path)
        idx.check_same_length(images_path, labels_path, len(labels))
        sources = {name: raw.sha256[name] for name in (images_name, labels_name)}
        splits.append(RawSplit(raw_split, labels, partial(idx.image_blocks, images_path), sources))
    return RawData(raw.origin, tuple(splits))


def prepare_splits(
    raw: RawData, layout: Layout, row_group_size: int, rule: SplitRule
) -> dict[str, parquet.SplitFile]:
    """The prepare stage, whatever the source: every split's Parquet file (train and validation
    from the raw training split, cut by `rule`; test), each written unless it is current."""
    splits: dict[str, parquet.SplitFile] = {}
    for raw_split in raw.splits:
        outputs = outputs_of(raw_split.name, raw_split.labels, layout, rule)
        prepare_outputs(
            outputs,
            raw_split.labels,
            raw_split.image_blocks,
            sources=raw_split.sources,
            row_group_size=row_group_size,
        )
        splits |= {output.path.stem: parquet.open_split(output.path) for output in outputs}
    return splits
