import logging
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from fashionnet import predict as predict_module
from fashionnet.core import integrity
from fashionnet.core.errors import FashionnetError
from fashionnet.core.formats import NewerFormat
from fashionnet.core.layout import Layout
from fashionnet.core.threads import CONCURRENT_CHUNKS, blas_threads_for_chunks
from fashionnet.data.catalog import SPLITS
from fashionnet.data.idx import read_split as read_idx_split
from fashionnet.data.parquet import SplitFile, open_split
from fashionnet.data.prepare import write_split
from fashionnet.model.functions import log_softmax
from fashionnet.model.source import Model
from fashionnet.model.train import DEFAULT_CONFIG
from fashionnet.model.two_layer_net import TwoLayerNet, predict, scores
from fashionnet.model.weights import save_params
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, map_in_threads, predict_splits
from fashionnet.predict import (
    PREDICTIONS_SCHEMA,
    ChunkJob,
    chunk_bytes,
    plan_chunks,
    predict_chunk,
    predict_chunk_job,
    prediction_metadata,
    predictions_up_to_date,
    read_predictions,
    tally_of_file,
    top_two,
    total_tally,
    write_predictions,
)
from fashionnet.report.metrics import CALIBRATION_BINS, Tally, confusion_matrix

ROW_GROUP_ROWS = (7, 7, 7, 3, 10, 1, 5)
SPLIT_SCHEMA = pa.schema(
    [("index", pa.int32()), ("label", pa.uint8()), ("pixels", pa.list_(pa.float32(), 784))],
    # the metadata fashionnet.data.parquet requires of a prepared split
    metadata={
        "fashionnet.format": "1",
        "fashionnet.rows": str(sum(ROW_GROUP_ROWS)),
        "fashionnet.sources": '{"test-images": "11"}',
    },
)
METADATA = {
    "fashionnet.format": "1",
    "fashionnet.model_id": "m1",
    "fashionnet.data_fingerprint": "f1",
}


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
        np.testing.assert_array_equal(result.second, np.argsort(-probabilities, axis=1)[:, 1])
        np.testing.assert_array_equal(result.confidence, probabilities.max(axis=1))
        exact = log_softmax(scores(params, x[rows]).astype(np.float64))
        expected_log_prob = exact[np.arange(len(exact)), labels[rows]]
        np.testing.assert_allclose(result.true_log_prob, expected_log_prob, rtol=1e-5, atol=1e-6)
        assert result.index.dtype == np.int32 and result.label.dtype == np.uint8
        assert result.predicted.dtype == np.uint8 and result.second.dtype == np.uint8
        assert result.confidence.dtype == np.float32 and result.true_log_prob.dtype == np.float32
        assert result.tally.samples == rows.stop - rows.start
        assert [f.name for f in PREDICTIONS_SCHEMA] == [
            "index",
            "label",
            "predicted",
            "second",
            "confidence",
            "true_log_prob",
            "raw_confidence",
            "raw_true_log_prob",
        ]
        # at temperature 1 the calibrated columns are the raw ones
        np.testing.assert_array_equal(result.raw_confidence, result.confidence)
        np.testing.assert_array_equal(result.raw_true_log_prob, result.true_log_prob)


def test_a_temperature_softens_the_probabilities_and_keeps_the_predictions(
    split_path, data, params
):
    x, labels = data
    groups = range(len(ROW_GROUP_ROWS))
    plain = predict_chunk(params, split_path, groups)
    warm = predict_chunk(params, split_path, groups, temperature=2.0)
    output = scores(params, x).astype(np.float64) / 2.0
    expected = log_softmax(output)
    np.testing.assert_array_equal(warm.predicted, plain.predicted)
    np.testing.assert_array_equal(warm.second, plain.second)
    np.testing.assert_allclose(warm.confidence, np.exp(expected.max(axis=1)), rtol=1e-5)
    np.testing.assert_allclose(
        warm.true_log_prob, expected[np.arange(len(x)), labels], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(warm.raw_confidence, plain.confidence)
    assert (warm.confidence < plain.confidence).all()
    assert warm.tally.raw == plain.tally.raw
    assert (
        warm.tally.probability_metrics().raw_log_loss == plain.tally.probability_metrics().log_loss
    )


def test_top_two_breaks_ties_like_argmax():
    probabilities = np.array([[0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
    first, second = top_two(probabilities)
    np.testing.assert_array_equal(first, [0, 2, 0])
    np.testing.assert_array_equal(second, [1, 1, 1])
    np.testing.assert_array_equal(
        probabilities, [[0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]]
    )


@pytest.mark.parametrize("chunk_rows", [1, 10, 25, 1000])
def test_chunked_predictions_equal_whole_data_predictions(split_path, data, params, chunk_rows):
    x, labels = data
    chunks = plan_chunks(open_split(split_path), chunk_rows)
    with ThreadPoolExecutor(max_workers=4) as pool:  # pure, so threads may share params
        results = list(pool.map(lambda chunk: predict_chunk(params, split_path, chunk), chunks))
    whole = predict(params, x).argmax(axis=1)
    np.testing.assert_array_equal(np.concatenate([r.predicted for r in results]), whole)
    total = total_tally(results)
    np.testing.assert_array_equal(total.confusion, confusion_matrix(labels, whole))
    assert total.samples == len(labels)
    # the chunks' sums add up to those of the whole split predicted at once (up to float32
    # rounding: BLAS may round a row differently in a batch of another size)
    at_once = predict_chunk(params, split_path, range(len(ROW_GROUP_ROWS)))
    assert total.top2_correct == at_once.tally.top2_correct
    assert total.log_loss_sum == pytest.approx(at_once.tally.log_loss_sum, rel=1e-6)
    for name in ("bin_counts", "bin_correct"):
        np.testing.assert_array_equal(getattr(total, name), getattr(at_once.tally, name))
    np.testing.assert_allclose(total.bin_confidence_sums, at_once.tally.bin_confidence_sums, 1e-6)
    assert len(total.bin_counts) == CALIBRATION_BINS


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
    assert list(table.columns) == PREDICTIONS_SCHEMA.names
    assert [str(t) for t in table.dtypes] == [
        "int32",
        "uint8",
        "uint8",
        "uint8",
        "float32",
        "float32",
        "float32",
        "float32",
    ]
    assert tally_of_file(path) == total_tally(chunks)  # the file gives back the same sums
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
    with integrity.sealing(path):
        write_predictions(path, [chunk], metadata=METADATA)
    assert predictions_up_to_date(path, METADATA, rows)
    assert predictions_up_to_date(path, {"fashionnet.model_id": "m1"}, rows)
    assert not predictions_up_to_date(path, {**METADATA, "fashionnet.model_id": "m2"}, rows)
    assert not predictions_up_to_date(path, {**METADATA, "fashionnet.chunk": "x"}, rows)
    assert not predictions_up_to_date(path, METADATA, rows + 1)  # a truncated or padded file
    with integrity.sealing(path):  # intact, but not what this fashionnet writes
        pq.write_table(
            pa.table({"index": np.arange(rows, dtype=np.int64)}).replace_schema_metadata(METADATA),
            path,
        )
    assert not predictions_up_to_date(path, METADATA, rows)  # right metadata, wrong columns


@pytest.mark.parametrize("version", [None, "0", "x"], ids=["none", "older", "garbled"])
def test_predictions_without_this_format_version_are_made_again(
    tmp_path, split_path, params, version, caplog
):
    path, chunk = tmp_path / "test.parquet", predict_chunk(params, split_path, range(0, 1))
    metadata = {key: value for key, value in METADATA.items() if key != "fashionnet.format"}
    if version is not None:
        metadata["fashionnet.format"] = version
    with integrity.sealing(path):
        write_predictions(path, [chunk], metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="fashionnet.predict"):
        assert not predictions_up_to_date(path, METADATA, len(chunk.index))
    assert "predicting again" in caplog.text


def test_predictions_of_a_newer_format_stop_the_run(tmp_path, split_path, params):
    path, chunk = tmp_path / "test.parquet", predict_chunk(params, split_path, range(0, 1))
    with integrity.sealing(path):
        write_predictions(path, [chunk], metadata={**METADATA, "fashionnet.format": "2"})
    with pytest.raises(NewerFormat, match="written by a newer fashionnet"):
        predictions_up_to_date(path, METADATA, len(chunk.index))


def test_damaged_predictions_are_moved_aside_and_not_up_to_date(tmp_path, split_path, params):
    path = tmp_path / "test.parquet"
    chunk = predict_chunk(params, split_path, range(0, 1))
    with integrity.sealing(path):
        write_predictions(path, [chunk], metadata=METADATA)
    damaged = bytearray(path.read_bytes())
    damaged[100:356] = bytes(256)  # in the middle: the footer still reads fine
    path.write_bytes(damaged)
    assert not predictions_up_to_date(path, METADATA, len(chunk.index))
    assert not path.exists()
    (aside,) = tmp_path.glob("test.parquet.damaged-*")
    assert aside.read_bytes() == damaged


def test_read_predictions_of_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FashionnetError, match="missing.parquet.*predict"):
        read_predictions(tmp_path / "missing.parquet")


def test_predictions_of_rows_cut_by_another_split_rule_are_not_up_to_date(tmp_path):
    # Same raw sources, same model, other held-out rows: the old predictions describe other images.
    images = np.zeros((20, 28, 28), np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    splits = []
    for seed in (0, 1):
        path = tmp_path / f"cut-{seed}.parquet"
        rule = {"validation_size": 10, "validation_seed": seed}
        write_split(
            images, labels, path, sources={"raw": "same"}, rows=np.arange(10), split_rule=rule
        )
        splits.append(open_split(path))
    assert prediction_metadata("m", splits[0]) != prediction_metadata("m", splits[1])


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
    np.testing.assert_array_equal(total_tally(results).confusion, confusion_matrix(labels, whole))


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


@pytest.mark.parametrize("cpus", [1, 2, 4, 64])
def test_chunks_in_this_process_share_the_blas_threads_while_they_run(monkeypatch, cpus):
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    before = blas_threads()
    assert before, "NumPy's BLAS is visible to threadpoolctl"
    with blas_threads_for_chunks(in_this_process=True):
        assert set(blas_threads()) == {max(1, cpus // CONCURRENT_CHUNKS)}
    assert blas_threads() == before
    with blas_threads_for_chunks(in_this_process=False):  # Dask workers: not this process's
        assert blas_threads() == before


def model_of(weights_path, model_id) -> Model:
    return Model("file", weights_path, model_id, None, f"weights file {weights_path}", {})


def predict_stage(splits, model, layout, chunk_size, map_chunks=map_in_threads):
    """The pipeline's predict stage, in a project at `layout`."""
    context = Context(layout, RunOptions(chunk_size=chunk_size), DEFAULT_CONFIG)
    return predict_splits(context, splits, model, map_chunks=map_chunks)


@pytest.fixture
def stage(tmp_path, split_path, params) -> SimpleNamespace:
    """The predict stage on the tiny split in chunks of 10 rows (`stage.run(model_id)`), and the
    jobs it gave its chunk mapper (`stage.calls`; none when every split is up to date)."""
    weights = tmp_path / "weights.npz"
    save_params(weights, params)
    layout, splits, calls = Layout(tmp_path), {"test": open_split(split_path)}, []

    def map_chunks(step, jobs):
        if jobs:
            calls.append(list(jobs))
        return map_in_threads(step, jobs)

    def run(model_id):
        return predict_stage(splits, model_of(weights, model_id), layout, 10, map_chunks)

    return SimpleNamespace(run=run, layout=layout, splits=splits, calls=calls)


def test_predict_stage_writes_each_split_then_skips_it_while_up_to_date(stage, data, params):
    tallies = stage.run("m1")

    x, labels = data
    expected = predict(params, x).argmax(axis=1)
    np.testing.assert_array_equal(tallies["test"].confusion, confusion_matrix(labels, expected))
    frame = read_predictions(stage.layout.predictions("test"))
    np.testing.assert_array_equal(frame["predicted"], expected)
    assert [job.row_groups for job in stage.calls[0]] == plan_chunks(stage.splits["test"], 10)
    assert predictions_up_to_date(
        stage.layout.predictions("test"),
        prediction_metadata("m1", stage.splits["test"]),
        len(labels),
    )
    again = stage.run("m1")
    assert len(stage.calls) == 1, "up to date: no chunk predicted again"
    assert again["test"] == tallies["test"]  # read back from the file: the same sums exactly
    assert isinstance(again["test"], Tally)
    stage.run("another model")
    assert len(stage.calls) == 2, "another model id: predicted again"


def test_predict_stage_records_checksums_and_replaces_damaged_predictions(stage, caplog):
    stage.run("m1")
    out = stage.layout.predictions("test")
    assert integrity.verified(out)
    assert sum(job.rows for job in stage.calls[0]) == sum(ROW_GROUP_ROWS)
    good = out.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # one byte of the data: the footer still reads fine
    out.write_bytes(damaged)

    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        stage.run("m1")
    assert len(stage.calls) == 2, "predicted again"
    assert out.read_bytes() == good and integrity.verified(out)
    (aside,) = out.parent.glob("test.parquet.damaged-*")
    assert f"{out} is damaged (" in caplog.text and f"moved to {aside}" in caplog.text


def job_of(weights, split_path) -> ChunkJob:
    return ChunkJob(weights, split_path, range(0, len(ROW_GROUP_ROWS)), sum(ROW_GROUP_ROWS))


def test_weights_whose_probabilities_overflow_are_refused_before_anything_is_written(
    tmp_path, split_path, params
):
    weights = tmp_path / "weights.npz"
    huge = {
        **params,
        "W1": np.full_like(params["W1"], 1e30),
        "W2": np.full_like(params["W2"], 1e30),
    }
    save_params(weights, huge)  # finite, so the file itself passes its checks
    expected = f"weights file {weights} gives class probabilities that are not finite"
    with pytest.raises(FashionnetError, match=expected):
        predict_chunk_job(job_of(weights, split_path))
    layout = Layout(tmp_path)
    with pytest.raises(FashionnetError, match=expected):
        predict_stage({"test": open_split(split_path)}, model_of(weights, "m1"), layout, 10)
    assert not layout.predictions_dir.exists()


@pytest.fixture
def small_machine(monkeypatch, tmp_path, split_path, params) -> SimpleNamespace:
    """The tiny split and its weights on a machine running 2 chunks at once, whose free memory
    the test sets (`machine.available`); no chunk may start."""
    weights = tmp_path / "weights.npz"
    save_params(weights, params)
    machine = SimpleNamespace(
        weights=weights,
        layout=Layout(tmp_path),
        splits={"test": open_split(split_path)},
        hidden=params["b1"].size,
        weights_bytes=sum(array.nbytes for array in params.values()),  # float32: read as is
        available=0,
    )
    monkeypatch.setattr(predict_module, "CONCURRENT_CHUNKS", 2)
    monkeypatch.setattr(
        predict_module.psutil,
        "virtual_memory",
        lambda: SimpleNamespace(available=machine.available),
    )
    return machine


def refused_plan(machine, chunk_size: int) -> str:
    def no_chunk_starts(step, jobs):
        pytest.fail("a chunk started")

    model = model_of(machine.weights, "m1")
    with pytest.raises(FashionnetError) as refused:
        predict_stage(machine.splits, model, machine.layout, chunk_size, no_chunk_starts)
    assert not machine.layout.predictions_dir.exists()
    return str(refused.value)


def test_chunks_that_do_not_fit_side_by_side_are_refused_before_any_starts(small_machine):
    """One chunk of 40 rows and its weights would fit; two at once (each job reads its own
    copy of the weights) do not."""
    one_chunk = small_machine.weights_bytes + chunk_bytes(40, small_machine.hidden)
    small_machine.available = one_chunk + one_chunk // 2
    message = refused_plan(small_machine, chunk_size=40)
    fitting = (small_machine.available // 2 - small_machine.weights_bytes) // chunk_bytes(
        1, small_machine.hidden
    )
    assert message == (
        f"predicting chunks of 40 rows, 2 at once (one per CPU), with the "
        f"{small_machine.hidden} hidden units of {small_machine.weights} needs about "
        f"{2 * one_chunk / 1e6:,.1f} MB of memory, but {small_machine.available / 1e6:,.1f} MB "
        f"is available: use --chunk-size {fitting} or less (and --row-group-size no larger, as "
        "a chunk holds at least one row group)"
    )


def test_the_chunk_size_suggested_fits_however_many_chunks_it_makes(small_machine):
    per_row = chunk_bytes(1, small_machine.hidden)
    small_machine.available = 2 * (small_machine.weights_bytes + 10 * per_row) + 1
    assert "use --chunk-size 10 or less" in refused_plan(small_machine, chunk_size=40)
    model = model_of(small_machine.weights, "m1")
    tallies = predict_stage(small_machine.splits, model, small_machine.layout, 10)
    assert tallies["test"].samples == sum(ROW_GROUP_ROWS)


def test_weights_too_large_for_the_chunks_at_once_are_refused_whatever_the_chunk_size(
    small_machine,
):
    small_machine.available = 2 * small_machine.weights_bytes
    assert refused_plan(small_machine, chunk_size=1) == (
        f"weights file {small_machine.weights} needs about "
        f"{2 * small_machine.weights_bytes / 1e6:,.1f} MB of memory to be read by the prediction "
        f"chunks, 2 at once (one per CPU), but {small_machine.available / 1e6:,.1f} MB is "
        "available: retrain the model or point to a good weights file"
    )


# In a fresh interpreter: tracemalloc counts every thread's allocations, and in the test process
# other tests leave threads that allocate (Prefect's log and event workers).
PEAK_OF_A_PREDICTION = """
import tracemalloc
import numpy as np
from fashionnet.model.two_layer_net import TwoLayerNet, predict
params = TwoLayerNet(784, 1000, 10, seed=0).params  # a hidden layer larger than the rest
x = np.random.default_rng(0).random((500, 784), dtype=np.float32)
tracemalloc.start()
predict(params, x)
print(tracemalloc.get_traced_memory()[1])
"""


def test_chunk_bytes_is_about_the_peak_of_a_prediction():
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_A_PREDICTION], capture_output=True, text=True, check=True
    )
    peak = int(done.stdout)
    beyond_the_pixels = chunk_bytes(500, 1000) - 500 * 784 * 4  # the pixels are the caller's
    assert 0.95 * beyond_the_pixels < peak < 1.05 * beyond_the_pixels
