"""dataset: prepared Parquet back to NumPy, with the file checked before it is trusted."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashionnet.core import formats
from fashionnet.core.errors import FashionnetError
from fashionnet.data import parquet
from fashionnet.data.parquet import SCHEMA, open_split, read_row_groups, read_rows, read_split
from fashionnet.data.prepare import write_split

SOURCES = {"images.gz": "ab" * 32, "labels.gz": "cd" * 32}


@pytest.fixture
def split(tmp_path):
    """A prepared split of 25 rows in row groups of 10: (path, images, labels)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(25, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=25, dtype=np.uint8)
    path = tmp_path / "split.parquet"
    write_split(images, labels, path, sources=SOURCES, row_group_size=10)
    return path, images, labels


def scaled(images):
    return (images.reshape(len(images), 784) / 255).astype(np.float32)


def test_open_split_describes_the_file(split):
    path, _, _ = split
    opened = open_split(path)
    assert opened.path == path
    assert opened.num_rows == 25
    assert opened.row_group_rows == (10, 10, 5)
    assert opened.num_row_groups == 3
    assert opened.sources == SOURCES
    assert opened.split_rule is None and opened.num_features == 784


def test_a_split_reads_its_row_groups_for_training(split):
    path, images, labels = split
    x, read_labels = open_split(path).read([1])
    np.testing.assert_array_equal(x, scaled(images)[10:20])
    np.testing.assert_array_equal(read_labels, labels[10:20])


def test_the_split_rule_is_part_of_the_fingerprint(split, tmp_path):
    path, images, labels = split
    rule = {"validation_size": 5, "validation_seed": 0, "validation_rows_sha256": "0" * 16}
    cut = tmp_path / "cut.parquet"
    write_split(images, labels, cut, sources=SOURCES, row_group_size=10, split_rule=rule)
    assert open_split(cut).split_rule == rule
    assert open_split(cut).fingerprint != open_split(path).fingerprint


def test_read_row_groups_returns_those_rows_in_order(split):
    path, images, labels = split
    batch = read_row_groups(path, [2, 0])
    rows = np.r_[20:25, 0:10]
    assert batch.index.dtype == np.int32 and batch.index.tolist() == rows.tolist()
    assert batch.label.dtype == np.uint8
    np.testing.assert_array_equal(batch.label, labels[rows])
    assert batch.x.dtype == np.float32 and batch.x.shape == (15, 784)
    assert batch.x.flags.c_contiguous
    np.testing.assert_array_equal(batch.x, scaled(images)[rows])


def test_read_row_groups_of_none_is_empty(split):
    batch = read_row_groups(split[0], [])
    assert batch.x.shape == (0, 784) and batch.label.shape == (0,)


def test_read_rows_returns_exactly_those_rows_in_the_order_asked(split):
    path, images, _ = split
    rows = [24, 0, 13, 13, 9, 20]
    np.testing.assert_array_equal(read_rows(path, rows), scaled(images)[rows])
    assert read_rows(path, []).shape == (0, 784)
    with pytest.raises(IndexError, match="rows outside 0..24"):
        read_rows(path, [25])


def test_read_rows_reads_only_the_row_groups_it_needs(split, monkeypatch):
    read = []
    real = parquet.read_row_groups
    monkeypatch.setattr(parquet, "read_row_groups", lambda p, g: read.append(g) or real(p, g))
    read_rows(split[0], [21, 3])
    assert read == [[0, 2]]


def test_read_split_reads_everything(split):
    path, images, labels = split
    batch = read_split(path)
    assert batch.index.tolist() == list(range(25))
    np.testing.assert_array_equal(batch.label, labels)
    np.testing.assert_array_equal(batch.x, scaled(images))


def write_parquet(path, columns, schema, metadata):
    table = pa.Table.from_arrays(columns, schema=schema.with_metadata(metadata))
    pq.write_table(table, path)


def valid_columns(n):
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 784, np.float32)), 784)
    return [pa.array(np.arange(n, dtype=np.int32)), pa.array(np.zeros(n, np.uint8)), pixels]


def metadata(rows, version="1"):
    return {
        "fashionnet.format": version,
        "fashionnet.rows": str(rows),
        "fashionnet.sources": json.dumps(SOURCES),
    }


def expect_error(path, *words):
    for read in (open_split, read_split):
        with pytest.raises(FashionnetError) as caught:
            read(path)
        message = str(caught.value)
        assert str(path) in message
        for word in words:
            assert word in message


def test_missing_file(tmp_path):
    expect_error(tmp_path / "train.parquet", "run prepare")


def test_not_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("index,label\n0,1\n")
    expect_error(path, "not a readable Parquet file", "delete it")


def test_truncated_parquet(split):
    path = split[0]
    path.write_bytes(path.read_bytes()[:-50])
    expect_error(path, "not a readable Parquet file")


VARIABLE_LIST = pa.list_(pa.float32())


@pytest.mark.parametrize(
    "position, field, column",
    [
        (0, pa.field("index", pa.int64()), pa.array(np.arange(3))),
        (2, pa.field("pixels", VARIABLE_LIST), pa.array([[0.0] * 784] * 3, VARIABLE_LIST)),
        (2, pa.field("pixel", pa.list_(pa.float32(), 784)), None),
    ],
    ids=["index int64", "pixels variable list", "column renamed"],
)
def test_wrong_schema(tmp_path, position, field, column):
    columns = valid_columns(3)
    if column is not None:
        columns[position] = column
    path = tmp_path / "train.parquet"
    write_parquet(path, columns, SCHEMA.set(position, field), metadata(3))
    expect_error(path, "expected (index: int32", "delete it")


def test_wrong_row_count(tmp_path):
    path = tmp_path / "train.parquet"
    write_parquet(path, valid_columns(3), SCHEMA, metadata(4))
    expect_error(path, "has 3 rows but was written with 4")


def test_missing_metadata(tmp_path):
    path = tmp_path / "train.parquet"
    write_parquet(path, valid_columns(3), SCHEMA, {"fashionnet.format": "1"})
    expect_error(path, "lacks fashionnet metadata")


def test_a_split_records_its_format_version(split):
    stored = pq.read_schema(split[0]).metadata[b"fashionnet.format"]
    assert stored == str(formats.CURRENT[formats.SPLIT]).encode() == b"1"


@pytest.mark.parametrize(
    "version, problem",
    [
        (None, "no split format version"),
        ("0", "split format 0 is older than this fashionnet's 1"),
        ("one", "split format version 'one' is not a whole number"),
    ],
    ids=["missing", "older", "garbled"],
)
def test_a_split_without_the_current_format_version_is_to_be_prepared_again(
    tmp_path, version, problem
):
    path = tmp_path / "train.parquet"
    written = metadata(3, version)
    if version is None:
        del written["fashionnet.format"]
    write_parquet(path, valid_columns(3), SCHEMA, written)
    expect_error(path, f"{path}: {problem}; delete it and run prepare again")


def test_a_split_of_a_newer_fashionnet_is_named_whatever_its_columns(tmp_path):
    path = tmp_path / "train.parquet"
    newer = pa.schema([pa.field("image", pa.binary())])
    write_parquet(path, [pa.array([b"png"])], newer, {"fashionnet.format": "2"})
    for read in (open_split, read_split):
        with pytest.raises(formats.NewerFormat) as caught:
            read(path)
        assert str(caught.value) == (
            f"{path}: written by a newer fashionnet (split format 2; this one reads up to 1): "
            "upgrade fashionnet, or move the file aside"
        )
