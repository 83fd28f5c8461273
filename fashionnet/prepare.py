"""Raw IDX arrays -> Parquet, one row group at a time (the format is described in `dataset`).

Pixels are stored as float32 image/255, ready for the network. They are converted a row group
at a time, so preparing the 60,000-image train split never holds a float copy of the whole set.
The file records which raw files (sha256) it came from; `prepare_split` skips the work when the
file on disk is intact (`integrity`) and already matches its sources and row-group size.
"""

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fashionnet import dataset, idx, integrity
from fashionnet.atomic import atomic_path
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import NUM_PIXELS, SPLITS
from fashionnet.fetch import RawFiles

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
        schema=dataset.SCHEMA,
    )


def write_split(
    images: np.ndarray,
    labels: np.ndarray,
    out_path: Path,
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
) -> None:
    """Write one split (uint8 images (n, 28, 28), labels (n,)) as Parquet, atomically."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    schema = dataset.SCHEMA.with_metadata(
        {
            dataset.META_SOURCES: json.dumps(dict(sources), sort_keys=True),
            dataset.META_ROWS: str(len(labels)),
            dataset.META_ROW_GROUP_SIZE: str(row_group_size),
            dataset.META_FORMAT: dataset.FORMAT_VERSION,
        }
    )
    with (
        atomic_path(out_path) as tmp,
        pq.ParquetWriter(tmp, schema, compression=_COMPRESSION) as writer,
    ):
        for start in range(0, len(labels), row_group_size):
            rows = slice(start, start + row_group_size)
            writer.write_table(_row_group(images[rows], labels[rows], start))


def _current_split(
    out_path: Path, sources: Mapping[str, str], row_group_size: int
) -> dataset.SplitFile | None:
    """The split at `out_path` if it is intact, valid and was written from `sources` in such
    row groups. A damaged one is moved aside (`integrity.verified`)."""
    if not integrity.verified(Path(out_path)):
        return None
    try:
        split = dataset.open_split(out_path)
    except FashionnetError as error:
        # Intact but not in today's format (an older fashionnet wrote it): rebuild it.
        logger.warning("rebuilding %s from the raw files: %s", out_path, error)
        return None
    planned = _planned_row_groups(split.num_rows, row_group_size)
    return split if split.sources == dict(sources) and split.row_group_rows == planned else None


def is_up_to_date(out_path: Path, sources: Mapping[str, str], row_group_size: int) -> bool:
    return _current_split(out_path, sources, row_group_size) is not None


def prepare_arrays(
    load: Callable[[], tuple[np.ndarray, np.ndarray]],
    out_path: Path,
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
) -> PrepareResult:
    """Write the split that `load()` returns (images, labels), unless the Parquet at `out_path`
    is already up to date with `sources`; `load` is called only when there is work to do."""
    current = _current_split(out_path, sources, row_group_size)
    if current is not None:
        logger.info("%s is up to date (%d rows)", out_path, current.num_rows)
        return PrepareResult(Path(out_path), current.num_rows, skipped=True)
    started = time.perf_counter()
    images, labels = load()
    with integrity.sealing(Path(out_path)):
        write_split(images, labels, out_path, sources=sources, row_group_size=row_group_size)
    logger.info("wrote %s: %d rows in %.1f s", out_path, len(labels), time.perf_counter() - started)
    return PrepareResult(Path(out_path), len(labels), skipped=False)


def prepare_split(
    images_path: Path,
    labels_path: Path,
    out_path: Path,
    *,
    sources: Mapping[str, str],
    row_group_size: int = 10_000,
) -> PrepareResult:
    """Convert one split's raw IDX files to Parquet, unless the Parquet is already up to date."""
    return prepare_arrays(
        lambda: idx.read_split(images_path, labels_path),
        out_path,
        sources=sources,
        row_group_size=row_group_size,
    )


def prepare_raw_split(
    raw: RawFiles, split: str, out_path: Path, row_group_size: int = 10_000
) -> dataset.SplitFile:
    """The prepare stage for one split of the raw files: its Parquet, written if not current."""
    names = SPLITS[split]
    prepare_split(
        raw.paths[names[0]],
        raw.paths[names[1]],
        out_path,
        sources={name: raw.sha256[name] for name in names},
        row_group_size=row_group_size,
    )
    return dataset.open_split(out_path)
