import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from fashionnet.dataset import SplitFile, open_split
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import SPLITS
from fashionnet.idx import read_split as read_idx_split
from fashionnet.layout import Layout
from fashionnet.metrics import confusion_matrix
from fashionnet.predict import (
    PREDICTIONS_SCHEMA,
    blas_threads_shared_by,
    plan_chunks,
    predict_chunk,
    predict_splits,
    prediction_metadata,
    predictions_up_to_date,
    read_predictions,
    run_chunks_in_threads,
    total_confusion,
    write_predictions,
)
from fashionnet.prepare import write_split
from fashionnet.two_layer_net import TwoLayerNet, predict
from fashionnet.weights import save_params

ROW_GROUP_ROWS = (7, 7, 7, 3, 10, 1, 5)
SPLIT_SCHEMA = pa.schema(
    [("index", pa.int32()), ("label", pa.uint8()), ("pixels", pa.list_(pa.float32(), 784))],
    # the metadata fashionnet.dataset requires of a prepared split
    metadata={"fashionnet.rows": str(sum(ROW_GROUP_ROWS)), "fashionnet.sources": "{}"},
)
METADATA = {"fashionnet.model_id": "m1", "fashionnet.sources": '{"a": "1"}'}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = sum(ROW_GROUP_ROWS)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


@pytest.fixture(scope="module")
def split_path(tmp_path_factory, data):
    """A tiny split Parquet with row groups of uneven sizes."""
    x, labels = data
    path = tmp_path_factory.mktemp("parquet") / "test.parquet"
    with pq.ParquetWriter(path, SPLIT_SCHEMA) as writer:
        start = 0
        for rows in ROW_GROUP_ROWS:
            stop = start + rows
            pixels = pa.FixedSizeListArray.from_arrays(x[start:stop].ravel(), 784)
            index = np.arange(start, stop, dtype=np.int32)
            columns = [pa.array(index), pa.array(labels[start:stop]), pixels]
            writer.write_table(pa.Table.from_arrays(columns, schema=SPLIT_SCHEMA))
            start = stop
    return path


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "W1": rng.standard_normal((784, 16), dtype=np.float32) * 0.1,
        "b1": rng.standard_normal(16, dtype=np.float32) * 0.1,
        "W2": rng.standard_normal((16, 10), dtype=np.float32),
        "b2": rng.standard_normal(10, dtype=np.float32),
    }


def fake_split(row_group_rows: tuple[int, ...]) -> SplitFile:
    return SplitFile(
        path="unused.parquet",
        num_rows=sum(row_group_rows),
        row_group_rows=row_group_rows,
        sources={},
    )


def check_plan(row_group_rows: tuple[int, ...], chunk_rows: int) -> None:
    chunks = plan_chunks(fake_split(row_group_rows), chunk_rows)
    # every row group exactly once, in order, each chunk a non-empty consecutive range
    assert [group for chunk in chunks for group in chunk] == list(range(len(row_group_rows)))
    assert all(len(chunk) >= 1 and chunk.step == 1 for chunk in chunks)
    for chunk, following in zip(chunks, [*chunks[1:], None], strict=False):
        rows = sum(row_group_rows[g] for g in chunk)
        assert rows <= chunk_rows or len(chunk) == 1  # never over, unless one group is
        if following is not None:  # greedy: the next group would not have fitted
            assert rows + row_group_rows[following.start] > chunk_rows


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 10, 14, 15, 21, 40, 1000])
def test_plan_chunks_covers_every_row_group_once(chunk_rows):
    check_plan(ROW_GROUP_ROWS, chunk_rows)


@given(
    row_group_rows=st.lists(st.integers(1, 50), max_size=30).map(tuple),
    chunk_rows=st.integers(1, 200),
)
def test_plan_chunks_property(row_group_rows, chunk_rows):
    check_plan(row_group_rows, chunk_rows)


def test_plan_chunks_examples():
    assert plan_chunks(fake_split(ROW_GROUP_ROWS), 14) == [
        range(0, 2),
        range(2, 4),
        range(4, 6),
        range(6, 7),
    ]
    assert plan_chunks(fake_split(ROW_GROUP_ROWS), 1000) == [range(0, 7)]
    assert plan_chunks(fake_split(()), 10) == []


@pytest.mark.parametrize("chunk_rows", [0, -5])
def test_plan_chunks_rejects_non_positive_chunk_size(chunk_rows):
    with pytest.raises(FashionnetError, match="chunk_size"):
        plan_chunks(fake_split(ROW_GROUP_ROWS), chunk_rows)


def test_predict_chunk_equals_direct_predict_on_its_rows(split_path, data, params):
    x, labels = data
    starts = np.concatenate([[0], np.cumsum(ROW_GROUP_ROWS)])
    for chunk in plan_chunks(open_split(split_path), 10):
        rows = slice(starts[chunk.start], starts[chunk.stop])
        result = predict_chunk(params, split_path, chunk)
        probabilities = predict(params, x[rows])
        np.testing.assert_array_equal(result.index, np.arange(rows.start, rows.stop))
        np.testing.assert_array_equal(result.label, labels[rows])
        np.testing.assert_array_equal(result.predicted, probabilities.argmax(axis=1))
        np.testing.assert_array_equal(result.confidence, probabilities.max(axis=1))
        assert result.index.dtype == np.int32 and result.label.dtype == np.uint8
        assert result.predicted.dtype == np.uint8 and result.confidence.dtype == np.float32
        assert result.confusion.sum() == rows.stop - rows.start


@pytest.mark.parametrize("chunk_rows", [1, 10, 25, 1000])
def test_chunked_predictions_equal_whole_data_predictions(split_path, data, params, chunk_rows):
    x, labels = data
    chunks = plan_chunks(open_split(split_path), chunk_rows)
    with ThreadPoolExecutor(max_workers=4) as pool:  # pure, so threads may share params
        results = list(pool.map(lambda chunk: predict_chunk(params, split_path, chunk), chunks))
    whole = predict(params, x).argmax(axis=1)
    np.testing.assert_array_equal(np.concatenate([r.predicted for r in results]), whole)
    np.testing.assert_array_equal(total_confusion(results), confusion_matrix(labels, whole))
    assert total_confusion(results).sum() == len(labels)


def test_predictions_round_trip_with_metadata(tmp_path, split_path, params):
    chunks = [predict_chunk(params, split_path, c) for c in plan_chunks(open_split(split_path), 10)]
    path = tmp_path / "predictions" / "test.parquet"
    write_predictions(path, chunks, metadata=METADATA)
    assert [p.name for p in path.parent.iterdir()] == ["test.parquet"]  # no temp left
    parquet = pq.ParquetFile(path)
    assert parquet.num_row_groups == len(chunks)
    assert parquet.schema_arrow.remove_metadata() == PREDICTIONS_SCHEMA
    assert parquet.schema_arrow.metadata[b"fashionnet.model_id"] == b"m1"
    table = read_predictions(path)
    assert list(table.columns) == ["index", "label", "predicted", "confidence"]
    assert [str(t) for t in table.dtypes] == ["int32", "uint8", "uint8", "float32"]
    for column in table.columns:
        expected = np.concatenate([getattr(chunk, column) for chunk in chunks])
        np.testing.assert_array_equal(table[column].to_numpy(), expected)


def test_predictions_up_to_date_compares_rows_schema_and_every_given_key(
    tmp_path, split_path, params
):
    path = tmp_path / "test.parquet"
    assert not predictions_up_to_date(path, METADATA, rows=1)  # missing
    chunk = predict_chunk(params, split_path, range(0, 1))
    rows = len(chunk.index)
    write_predictions(path, [chunk], metadata=METADATA)
    assert predictions_up_to_date(path, METADATA, rows)
    assert predictions_up_to_date(path, {"fashionnet.model_id": "m1"}, rows)
    assert not predictions_up_to_date(path, {**METADATA, "fashionnet.model_id": "m2"}, rows)
    assert not predictions_up_to_date(path, {**METADATA, "fashionnet.chunk": "x"}, rows)
    assert not predictions_up_to_date(path, METADATA, rows + 1)  # a truncated or padded file
    pq.write_table(
        pa.table({"index": np.arange(rows, dtype=np.int64)}).replace_schema_metadata(METADATA),
        path,
    )
    assert not predictions_up_to_date(path, METADATA, rows)  # right metadata, wrong columns
    path.write_bytes(b"not parquet")
    assert not predictions_up_to_date(path, METADATA, rows)


def test_read_predictions_of_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FashionnetError, match="missing.parquet.*predict"):
        read_predictions(tmp_path / "missing.parquet")


@pytest.fixture(scope="module")
def real_test_split(real_raw_dir, tmp_path_factory):
    """The real test split, prepared with 1,000-row row groups, and its float32 images."""
    images, labels = read_idx_split(*(real_raw_dir / name for name in SPLITS["test"]))
    path = tmp_path_factory.mktemp("real") / "test.parquet"
    write_split(images, labels, path, sources={"test": "real"}, row_group_size=1_000)
    return path, images.reshape(len(images), -1).astype(np.float32) / 255, labels


@pytest.mark.realdata
def test_real_test_split_chunked_equals_whole(real_test_split):
    path, x, labels = real_test_split
    params = TwoLayerNet(hidden_size=50, weight_init="he", seed=0).params
    chunks = plan_chunks(open_split(path), 2_500)
    assert [len(chunk) for chunk in chunks] == [2, 2, 2, 2, 2]
    results = [predict_chunk(params, path, chunk) for chunk in chunks]
    whole = predict(params, x).argmax(axis=1)
    np.testing.assert_array_equal(np.concatenate([r.predicted for r in results]), whole)
    np.testing.assert_array_equal(total_confusion(results), confusion_matrix(labels, whole))


@pytest.mark.realdata
def test_real_chunk_memory_follows_chunk_size_not_split_size(real_test_split):
    path, x, _ = real_test_split
    params = TwoLayerNet(hidden_size=50, weight_init="he", seed=0).params
    tracemalloc.start()
    try:
        predict_chunk(params, path, range(0, 1))  # 1,000 of 10,000 rows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 3  # the whole split's pixels would not fit


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.mark.parametrize("concurrent_chunks", [1, 2, 64])
def test_concurrent_chunks_share_the_blas_threads_while_they_run(monkeypatch, concurrent_chunks):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    before = blas_threads()
    assert before, "NumPy's BLAS is visible to threadpoolctl"
    with blas_threads_shared_by(concurrent_chunks):
        assert set(blas_threads()) == {max(1, 4 // concurrent_chunks)}
    assert blas_threads() == before


def test_predict_splits_writes_each_split_then_skips_it_while_up_to_date(
    tmp_path, split_path, data, params
):
    weights = tmp_path / "weights.npz"
    save_params(weights, params)
    layout = Layout(tmp_path)
    splits = {"test": open_split(split_path)}
    calls = []

    def run_chunks(weights_path, jobs):
        calls.append(list(jobs))
        return run_chunks_in_threads(weights_path, jobs, threads=2)

    confusions = predict_splits(splits, weights, "m1", layout, 10, run_chunks)

    x, labels = data
    expected = predict(params, x).argmax(axis=1)
    np.testing.assert_array_equal(confusions["test"], confusion_matrix(labels, expected))
    frame = read_predictions(layout.predictions("test"))
    np.testing.assert_array_equal(frame["predicted"], expected)
    assert [job.row_groups for job in calls[0]] == plan_chunks(splits["test"], 10)
    assert predictions_up_to_date(
        layout.predictions("test"), prediction_metadata("m1", splits["test"]), len(labels)
    )
    again = predict_splits(splits, weights, "m1", layout, 10, run_chunks)
    assert len(calls) == 1, "up to date: no chunk predicted again"
    np.testing.assert_array_equal(again["test"], confusions["test"])
    predict_splits(splits, weights, "another model", layout, 10, run_chunks)
    assert len(calls) == 2, "another model id: predicted again"
