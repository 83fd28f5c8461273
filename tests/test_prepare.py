"""prepare: raw arrays -> Parquet as specified, one row group at a time, skipped if current."""

import json
import logging
import os
import tracemalloc
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashionnet.core import formats, integrity
from fashionnet.core.errors import FashionnetError
from fashionnet.core.integrity import sha256_file
from fashionnet.core.layout import Layout
from fashionnet.data import idx, keras_source, prepare
from fashionnet.data.catalog import SPLITS
from fashionnet.data.idx import write_idx
from fashionnet.data.parquet import read_split
from fashionnet.data.prepare import (
    Output,
    RawData,
    RawSplit,
    array_blocks,
    is_up_to_date,
    prepare_outputs,
    prepare_splits,
    write_split,
)
from fashionnet.data.split_rule import SplitRule, training_rows, validation_rows

SOURCES = {"b-labels.gz": "22" * 32, "a-images.gz": "11" * 32}


def make_split(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images.flat[:256] = np.arange(256)  # every pixel value appears
    return images, rng.integers(0, 10, size=n, dtype=np.uint8)


def prepare_split(images_path, labels_path, out_path, *, sources, row_group_size=10_000):
    """One raw split's IDX files -> one Parquet file (all its rows), unless it is current."""
    labels = idx.read_labels(labels_path)
    (result,) = prepare_outputs(
        [Output(out_path, None)],
        labels,
        partial(idx.image_blocks, images_path),
        sources=sources,
        row_group_size=row_group_size,
    )
    return result


def prepare_raw_split(name, labels, image_blocks, layout, *, sources, row_group_size, rule):
    """The prepare stage on one raw split alone."""
    raw = RawData("test arrays", (RawSplit(name, labels, image_blocks, sources),))
    return prepare_splits(raw, layout, row_group_size, rule)


@pytest.fixture
def raw(tmp_path):
    """A small split as IDX files: (images path, labels path, images, labels)."""
    images, labels = make_split(25)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    return tmp_path / "images.gz", tmp_path / "labels.gz", images, labels


def test_write_split_schema_values_and_metadata(tmp_path):
    images, labels = make_split(25)
    out = tmp_path / "split.parquet"
    write_split(images, labels, out, sources=SOURCES, row_group_size=10)

    parquet = pq.ParquetFile(out)
    schema = parquet.schema_arrow
    assert schema.names == ["index", "label", "pixels"]
    assert schema.field("index").type == pa.int32()
    assert schema.field("label").type == pa.uint8()
    assert schema.field("pixels").type == pa.list_(pa.float32(), 784)
    assert isinstance(schema.field("pixels").type, pa.FixedSizeListType)
    metadata = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert metadata["fashionnet.sources"] == json.dumps(dict(sorted(SOURCES.items())))
    assert metadata["fashionnet.rows"] == "25"
    assert metadata["fashionnet.row_group_size"] == "10"
    assert metadata["fashionnet.format"] == "1"
    assert [parquet.metadata.row_group(i).num_rows for i in range(3)] == [10, 10, 5]

    table = parquet.read()
    assert table.column("index").to_pylist() == list(range(25))
    np.testing.assert_array_equal(table.column("label").to_numpy(), labels)
    pixels = np.array(table.column("pixels").combine_chunks().flatten()).reshape(25, 28, 28)
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, (images / 255).astype(np.float32))
    # no temporary left; the file and its checksum record
    assert sorted(os.listdir(tmp_path)) == ["split.parquet", "split.parquet.sha256"]


def test_write_split_converts_one_row_group_at_a_time(tmp_path):
    images, labels = make_split(4000)
    whole_as_float32 = images.size * 4
    tracemalloc.start()  # NumPy reports its array allocations to tracemalloc
    try:
        write_split(images, labels, tmp_path / "split.parquet", sources=SOURCES, row_group_size=400)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_as_float32 / 4


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    images, labels = make_split(30)
    calls = []

    def fail_on_second_group(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(*args)

    original = prepare._row_group
    monkeypatch.setattr(prepare, "_row_group", fail_on_second_group)
    with pytest.raises(RuntimeError):
        write_split(images, labels, tmp_path / "split.parquet", sources=SOURCES, row_group_size=10)
    assert os.listdir(tmp_path) == []


def test_write_split_refuses_mismatched_lengths(tmp_path):
    images, labels = make_split(5)
    with pytest.raises(ValueError):
        write_split(images, labels[:4], tmp_path / "split.parquet", sources=SOURCES)


def test_prepare_split_then_skip_when_up_to_date(raw, tmp_path, caplog):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "out" / "split.parquet"
    assert not is_up_to_date(out, SOURCES, 10, rows=25)
    with caplog.at_level(logging.INFO, logger="fashionnet.data.prepare"):
        first = prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    assert (first.path, first.rows, first.skipped) == (out, 25, False)
    assert "25 rows" in caplog.text
    assert is_up_to_date(out, SOURCES, 10, rows=25)
    written = out.stat().st_mtime_ns

    again = prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    assert (again.rows, again.skipped) == (25, True)
    assert out.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    "change",
    [
        {"sources": {**SOURCES, "a-images.gz": "33" * 32}},
        {"sources": {"a-images.gz": "11" * 32}},
        {"row_group_size": 7},
    ],
    ids=["source changed", "source dropped", "row group size"],
)
def test_prepare_split_rewrites_when_inputs_change(raw, tmp_path, change):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "split.parquet"
    prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    options = {"sources": SOURCES, "row_group_size": 10, **change}
    assert not is_up_to_date(out, **options, rows=25)
    result = prepare_split(images_path, labels_path, out, **options)
    assert not result.skipped
    assert is_up_to_date(out, **options, rows=25)
    assert json.loads(pq.read_schema(out).metadata[b"fashionnet.sources"]) == options["sources"]


def test_prepare_split_records_the_checksum_of_what_it_writes(raw, tmp_path):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "out" / "split.parquet"
    prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    assert sorted(os.listdir(out.parent)) == ["split.parquet", "split.parquet.sha256"]
    assert integrity.record_of(out).read_text() == f"{sha256_file(out)}  split.parquet\n"


def overwrite_middle(path):
    """64 bytes in the middle: pixel values change, the footer still reads fine."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(range(64))
    path.write_bytes(data)


def folder_instead(path):
    path.unlink()
    (path / "inside").mkdir(parents=True)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (overwrite_middle, "its sha256 does not match the one recorded in split.parquet.sha256"),
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "its sha256 does not match"),
        (folder_instead, "a folder or special file, not a file"),
    ],
    ids=["bytes overwritten", "truncated", "a folder in its place"],
)
def test_a_damaged_split_is_moved_aside_and_rebuilt(raw, tmp_path, caplog, damage, problem):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "out" / "split.parquet"
    prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    good = out.read_bytes()
    damage(out)
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        result = prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    assert not result.skipped
    assert out.read_bytes() == good and is_up_to_date(out, SOURCES, 10, rows=25)
    (aside,) = out.parent.glob("split.parquet.damaged-*")
    assert f"{out} is damaged ({problem}" in caplog.text
    assert f"moved to {aside} (its checksum record beside it); making it again" in caplog.text


def test_a_split_without_its_checksum_record_is_rewritten_in_place(raw, tmp_path, caplog):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "out" / "split.parquet"
    prepare_split(images_path, labels_path, out, sources=SOURCES, row_group_size=10)
    integrity.record_of(out).unlink()  # an interrupted run, or an older fashionnet
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        assert not prepare_split(images_path, labels_path, out, sources=SOURCES).skipped
    assert f"{out} has no checksum record (split.parquet.sha256); making it again" in caplog.text
    assert sorted(os.listdir(out.parent)) == ["split.parquet", "split.parquet.sha256"]


@pytest.mark.parametrize(
    "version, problem",
    [(None, "no split format version"), (b"1", "has columns (index: int64)")],
    ids=["without a format version", "current version, other columns"],
)
def test_an_intact_split_in_another_format_is_rebuilt(raw, tmp_path, caplog, version, problem):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "split.parquet"
    table = pa.table({"index": pa.array([0], pa.int64())})
    if version is not None:
        table = table.replace_schema_metadata({b"fashionnet.format": version})
    with integrity.sealing(out):  # intact, but not what this fashionnet writes
        pq.write_table(table, out)
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        assert not prepare_split(images_path, labels_path, out, sources=SOURCES).skipped
    assert f"rebuilding {out} from the raw files: {out}" in caplog.text
    assert problem in caplog.text
    assert pq.ParquetFile(out).metadata.num_rows == 25


def test_a_split_of_a_newer_fashionnet_stops_prepare_and_stays(raw, tmp_path):
    images_path, labels_path, _, _ = raw
    out = tmp_path / "split.parquet"
    table = pa.table({"image": [b"png"]}).replace_schema_metadata({b"fashionnet.format": b"2"})
    with integrity.sealing(out):
        pq.write_table(table, out)
    before = out.read_bytes()
    with pytest.raises(formats.NewerFormat, match=r"split format 2; this one reads up to 1"):
        prepare_split(images_path, labels_path, out, sources=SOURCES)
    assert out.read_bytes() == before and not list(tmp_path.glob("*.damaged-*"))


RULE = SplitRule(validation_size=20, validation_seed=0)
TRAIN_SOURCES = {"train-images.gz": "11" * 32, "train-labels.gz": "22" * 32}


def prepare_train(layout, images, labels, rule=RULE, loads=None):
    def load_images(block_rows):
        if loads is not None:
            loads.append(1)
        return array_blocks(images, block_rows)

    return prepare_raw_split(
        "train",
        labels,
        load_images,
        layout,
        sources=TRAIN_SOURCES,
        row_group_size=30,
        rule=rule,
    )


def test_the_raw_training_images_become_disjoint_train_and_validation_files(tmp_path):
    images, labels = make_split(100)
    splits = prepare_train(Layout(tmp_path), images, labels)
    assert sorted(splits) == ["train", "validation"]
    assert splits["train"].path == tmp_path / "data" / "parquet" / "train.parquet"
    held_out = validation_rows(labels, 20, 0)
    kept = training_rows(100, held_out)
    for name, rows in (("train", kept), ("validation", held_out)):
        batch = read_split(splits[name].path)
        assert batch.index.tolist() == list(range(len(rows)))  # row numbers in the file
        np.testing.assert_array_equal(batch.label, labels[rows])
        np.testing.assert_array_equal(
            batch.x, (images[rows] / 255).astype(np.float32).reshape(-1, 784)
        )
        assert splits[name].sources == TRAIN_SOURCES
        assert splits[name].split_rule == RULE.describe(held_out)
    assert splits["train"].row_group_rows == (30, 30, 20)
    # Another rule gives the files another fingerprint.
    other = prepare_train(Layout(tmp_path / "other"), images, labels, SplitRule(20, 1))
    assert other["train"].fingerprint != splits["train"].fingerprint


def test_up_to_date_train_and_validation_are_skipped_without_reading_the_images(tmp_path):
    images, labels = make_split(100)
    loads = []
    prepare_train(Layout(tmp_path), images, labels, loads=loads)
    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "data/parquet").glob("*")}
    prepare_train(Layout(tmp_path), images, labels, loads=loads)
    assert loads == [1], "the labels decided that nothing was to do"
    assert {path: path.stat().st_mtime_ns for path in written} == written


@pytest.mark.parametrize("rule", [SplitRule(25, 0), SplitRule(20, 3)], ids=["size", "seed"])
def test_another_split_rule_rebuilds_both_files(tmp_path, rule):
    images, labels = make_split(100)
    prepare_train(Layout(tmp_path), images, labels)
    loads = []
    splits = prepare_train(Layout(tmp_path), images, labels, rule, loads=loads)
    assert loads == [1]
    held_out = validation_rows(labels, rule.validation_size, rule.validation_seed)
    assert splits["validation"].num_rows == rule.validation_size
    assert splits["train"].num_rows == 100 - rule.validation_size
    assert splits["validation"].split_rule == rule.describe(held_out)


def test_the_test_split_is_whole_and_without_a_split_rule(tmp_path):
    images, labels = make_split(40)
    splits = prepare_raw_split(
        "test",
        labels,
        partial(array_blocks, images),
        Layout(tmp_path),
        sources=SOURCES,
        row_group_size=30,
        rule=RULE,
    )
    assert list(splits) == ["test"]
    assert (splits["test"].num_rows, splits["test"].split_rule) == (40, None)


def test_a_validation_size_leaving_no_training_image_is_one_clear_error(tmp_path):
    images, labels = make_split(20)
    with pytest.raises(FashionnetError, match="validation_size=20: the training split has 20"):
        prepare_train(Layout(tmp_path), images, labels)


def test_the_keras_source_makes_the_same_three_files(tmp_path, monkeypatch):
    train_images, train_labels = make_split(100)
    test_images, test_labels = make_split(40, seed=1)
    arrays = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    monkeypatch.setattr(keras_source, "load_keras_arrays", lambda: arrays)
    raw = keras_source.keras_raw_data()
    assert raw.origin == "tf.keras.datasets.fashion_mnist"
    splits = prepare_splits(raw, Layout(tmp_path), 30, RULE)
    assert sorted(splits) == ["test", "train", "validation"]
    held_out = validation_rows(train_labels, 20, 0)
    np.testing.assert_array_equal(
        read_split(splits["validation"].path).label, train_labels[held_out]
    )
    assert splits["validation"].split_rule == RULE.describe(held_out)
    assert set(splits["train"].sources) == {"keras:train-images", "keras:train-labels"}
    assert splits["test"].num_rows == 40 and splits["test"].split_rule is None


def test_prepare_real_data(real_raw_dir, tmp_path):
    expected = {
        "train": (60_000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]),
        "test": (10_000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]),
    }
    for split, (rows, first_labels) in expected.items():
        paths = [real_raw_dir / name for name in SPLITS[split]]
        sources = {path.name: sha256_file(path) for path in paths}
        result = prepare_split(*paths, tmp_path / f"{split}.parquet", sources=sources)
        assert result.rows == rows
        batch = read_split(result.path)
        assert batch.x.shape == (rows, 784)
        assert batch.label[:10].tolist() == first_labels
        if split == "train":
            assert batch.x.mean(dtype=np.float64) == pytest.approx(72.94 / 255, abs=1e-4)
