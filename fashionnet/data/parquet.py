"""Read a prepared split (Parquet) straight into NumPy: schema check, row groups, whole split.

The format, written by `fashionnet.data.prepare`: one row per image with `index` int32 (its row
number in the file), `label` uint8 and `pixels` fixed_size_list<float32, 784> (image/255, row-major
28x28), plus key-value metadata recording the format version (`formats.PARQUET_KEY`), the raw
sources (name -> sha256), the row count and, for the train and validation splits, the split rule
that divided the raw training images (`validation.SplitRule`). Row groups are the unit of
reading, so a consumer can work through a split a few thousand rows at a time.
"""

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fashionnet.core import formats
from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import NUM_PIXELS

SCHEMA = pa.schema(
    [
        pa.field("index", pa.int32(), nullable=False),
        pa.field("label", pa.uint8(), nullable=False),
        pa.field("pixels", pa.list_(pa.float32(), NUM_PIXELS), nullable=False),
    ]
)
META_SOURCES = "fashionnet.sources"
META_ROWS = "fashionnet.rows"
META_ROW_GROUP_SIZE = "fashionnet.row_group_size"
META_SPLIT_RULE = "fashionnet.split_rule"
READ_BATCH_ROWS = 2_000  # rows decoded at a time by read_row_groups
FINGERPRINT_CHARS = 16

_REPREPARE = "delete it and run prepare again"


@dataclass(frozen=True)
class SplitFile:
    path: Path
    num_rows: int
    row_group_rows: tuple[int, ...]
    sources: dict[str, str]  # raw file name -> sha256
    # The split rule of a split cut from the raw training images (`SplitRule.describe`); None
    # for a split that is a whole raw split (test).
    split_rule: dict[str, Any] | None = None

    @property
    def num_row_groups(self) -> int:
        return len(self.row_group_rows)

    @property
    def fingerprint(self) -> str:
        return split_fingerprint(self.sources, self.split_rule)

    @property
    def num_features(self) -> int:
        return NUM_PIXELS

    def read(self, row_groups: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The pixels and labels of these row groups (what training streams through)."""
        batch = read_row_groups(self.path, row_groups)
        return batch.x, batch.label


def split_fingerprint(
    sources: Mapping[str, str], split_rule: Mapping[str, Any] | None = None
) -> str:
    """A short fingerprint of one split's data from its sources (file name -> sha256).

    The first 16 hex digits of the sha256 of the sources' sha256 digests joined by newlines
    in file-name order, so it changes whenever the image or the label file does; for a split
    cut by a split rule, the rule (as JSON) is a last line, so another held-out set changes it.
    """
    if not sources:
        raise ValueError("a split fingerprint needs at least one source sha256")
    lines = [sources[name] for name in sorted(sources)]
    if split_rule is not None:
        lines.append(json.dumps(dict(split_rule), sort_keys=True))
    return hashlib.sha256("\n".join(lines).encode("ascii")).hexdigest()[:FINGERPRINT_CHARS]


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
class Batch:
    index: np.ndarray  # int32 (n,): row number in the split
    label: np.ndarray  # uint8 (n,)
    x: np.ndarray  # float32 (n, 784), C-contiguous


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def _open(path: Path) -> tuple[pq.ParquetFile, SplitFile]:
    if not path.is_file():
        raise FashionnetError(f"{path} does not exist; run prepare first")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise FashionnetError(
            f"{path} is not a readable Parquet file ({error}); {_REPREPARE}"
        ) from None
    schema = parquet.schema_arrow
    metadata = {
        key.decode(errors="replace"): value.decode(errors="replace")
        for key, value in (schema.metadata or {}).items()
    }
    # First, so that a newer fashionnet's file is named as such whatever else it changed.
    try:
        formats.check(path, formats.SPLIT, metadata.get(formats.PARQUET_KEY))
    except ValueError as problem:
        raise FashionnetError(f"{path}: {problem}; {_REPREPARE}") from None
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in SCHEMA]:
        raise FashionnetError(
            f"{path} has columns ({_describe(schema)}), "
            f"expected ({_describe(SCHEMA)}); {_REPREPARE}"
        )
    try:
        rows = int(metadata[META_ROWS])
        sources = json.loads(metadata[META_SOURCES])
        split_rule = json.loads(metadata.get(META_SPLIT_RULE, "null"))
    except (KeyError, ValueError):
        raise FashionnetError(f"{path} lacks fashionnet metadata; {_REPREPARE}") from None
    if parquet.metadata.num_rows != rows:
        raise FashionnetError(
            f"{path} has {parquet.metadata.num_rows} rows but was written with {rows}; {_REPREPARE}"
        )
    row_group_rows = tuple(
        parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)
    )
    return parquet, SplitFile(path, rows, row_group_rows, sources, split_rule)


def open_split(path: str | Path) -> SplitFile:
    """Check that `path` is a complete prepared split and describe it."""
    return _open(Path(path))[1]


def row_group_batches(path: str | Path, row_groups: Sequence[int]) -> Iterator[Batch]:
    """The rows of the given row groups, in that order, READ_BATCH_ROWS at a time; each
    batch's arrays are read-only views of Arrow's buffers, valid until the next batch.

    A few thousand rows at a time keep memory small: a whole 10,000-row group took Arrow
    buffers of three times its 31 MB of pixels; 2,000-row batches take under 30 MB in all."""
    parquet, _ = _open(Path(path))
    for group in row_groups:  # one group per call, so the rows come in the order asked for
        for record_batch in parquet.iter_batches(
            batch_size=READ_BATCH_ROWS, row_groups=[group], use_threads=False
        ):
            pixels = record_batch.column("pixels").flatten().to_numpy(zero_copy_only=True)
            yield Batch(
                record_batch.column("index").to_numpy(),
                record_batch.column("label").to_numpy(),
                pixels.reshape(-1, NUM_PIXELS),
            )


def read_row_groups(path: str | Path, row_groups: Sequence[int]) -> Batch:
    """The rows of the given row groups, in that order, as NumPy arrays (ordinary writable
    memory, decoded a batch at a time straight into them: peak memory is the result plus one
    small record batch)."""
    split = open_split(path)
    n = sum(split.row_group_rows[group] for group in row_groups)
    batch = Batch(
        np.empty(n, np.int32), np.empty(n, np.uint8), np.empty((n, NUM_PIXELS), np.float32)
    )
    start = 0
    for part in row_group_batches(path, row_groups):
        rows = slice(start, start + len(part.label))
        batch.index[rows], batch.label[rows], batch.x[rows] = part.index, part.label, part.x
        start = rows.stop
    return batch


def read_split(path: str | Path) -> Batch:
    """The whole split (tests and tools; training streams row groups instead)."""
    split = open_split(path)
    return read_row_groups(path, range(split.num_row_groups))


def read_rows(path: str | Path, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """The pixels (len(rows), 784) of the given rows, in that order, reading only the row
    groups that hold them."""
    split = open_split(path)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= split.num_rows):
        raise IndexError(f"rows outside 0..{split.num_rows - 1} of {path}")
    group_starts = np.cumsum((0, *split.row_group_rows))
    groups = np.searchsorted(group_starts, rows, side="right") - 1
    needed = sorted(set(groups.tolist()))
    batch = read_row_groups(path, needed)
    # Where each needed row group begins in `batch`, which holds only those groups.
    sizes = [split.row_group_rows[group] for group in needed]
    batch_starts = dict(zip(needed, np.cumsum([0, *sizes])[:-1], strict=True))
    positions = [batch_starts[g] + r - group_starts[g] for g, r in zip(groups, rows, strict=True)]
    return batch.x[np.asarray(positions, dtype=np.int64)]
