"""The pipeline's stages as plain library calls, without Prefect, so each can be timed alone.

Each function does what the matching task in `flows/pipeline.py` does; the benchmark times
them here and compares their sum with a whole `fashionnet run` to find Prefect's share.
"""

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fashionnet import atomic, plots, report_markdown, reports
from fashionnet.dataset import SplitFile, open_split, read_split
from fashionnet.fashion_mnist import SPLITS
from fashionnet.fetch import RawFiles, find_raw_files
from fashionnet.layout import Layout
from fashionnet.metrics import confusion_matrix
from fashionnet.model_store import StoredModel, load_stored
from fashionnet.predict import (
    CONCURRENT_CHUNKS,
    ChunkPrediction,
    blas_threads_shared_by,
    plan_chunks,
    predict_chunk,
    predictions_up_to_date,
    read_predictions,
    total_confusion,
    write_predictions,
)
from fashionnet.prepare import is_up_to_date, prepare_split
from fashionnet.reports import new_run_id
from fashionnet.weights import load_params

MODEL_ID_KEY = "fashionnet.model_id"  # the predictions' metadata key the flow writes


def verify(raw_dir: Path, cache_dir: Path) -> RawFiles:
    """Find the four raw files and check their sha256 (the fetch-raw-files task)."""
    return find_raw_files(cache_dir=cache_dir, local_dir=raw_dir, verify=True)


def prepare(raw: RawFiles, layout: Layout, row_group_size: int = 10_000) -> dict[str, SplitFile]:
    """Both splits to Parquet, always written afresh (the prepare-parquet task, uncached)."""
    splits = {}
    for split, (images, labels) in SPLITS.items():
        out_path = layout.parquet(split)
        out_path.unlink(missing_ok=True)
        prepare_split(
            raw.paths[images],
            raw.paths[labels],
            out_path,
            sources={name: raw.sha256[name] for name in (images, labels)},
            row_group_size=row_group_size,
        )
        splits[split] = open_split(out_path)
    return splits


def _predict_chunk_from_paths(
    weights_path: Path, parquet_path: Path, rows: range
) -> ChunkPrediction:
    return predict_chunk(load_params(weights_path), parquet_path, rows)  # as predict_chunk_task


def predict(
    weights_path: Path,
    parquet_paths: Mapping[str, Path],
    predictions_dir: Path,
    *,
    chunk_size: int = 10_000,
    threads: int = CONCURRENT_CHUNKS,
) -> dict[str, np.ndarray]:
    """Every split in chunks on a thread pool, then its predictions file (predict-in-chunks).

    All chunks are submitted at once, as the flow does; returns each split's confusion counts.
    """
    with blas_threads_shared_by(threads), ThreadPoolExecutor(threads) as pool:
        futures = {
            split: [
                pool.submit(_predict_chunk_from_paths, weights_path, path, rows)
                for rows in plan_chunks(open_split(path), chunk_size)
            ]
            for split, path in parquet_paths.items()
        }
        confusions = {}
        for split, split_futures in futures.items():
            chunks = [future.result() for future in split_futures]
            write_predictions(predictions_dir / f"{split}.parquet", chunks, metadata={})
            confusions[split] = total_confusion(chunks)
    return confusions


def report(
    layout: Layout,
    confusions: Mapping[str, np.ndarray],
    model: StoredModel,
    splits: Mapping[str, SplitFile],
) -> Path:
    """The run folder with its figures and report.md, then history and `latest` (the
    write-reports and publish-reports tasks)."""

    def add_figures_and_summary(folder: Path) -> None:
        plots.write_run_figures(
            folder,
            test_images=read_split(layout.parquet("test")).x,
            test_predictions=read_predictions(layout.predictions("test")),
        )
        report_markdown.write_report_md(folder)

    run_id = new_run_id()
    run_dir = reports.write_run(
        layout.runs_dir,
        run_id,
        confusions=confusions,
        model_id=model.model_id,
        manifest={"run_id": run_id, "model": {"model_id": model.model_id}},
        extra_files={"learning_curve.csv": model.learning_curve_path},
        finish=add_figures_and_summary,
    )
    finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    digests = {split: reports.split_digest(f.sources) for split, f in splits.items()}
    reports.append_history(
        layout.history_csv, run_id, finished_at, reports.read_overall(run_dir), digests
    )
    atomic.replace_symlink(layout.latest_link, run_dir)
    return run_dir


def up_to_date_run(layout: Layout, raw_dir: Path, model: StoredModel) -> Path:
    """The library's part of a run that finds every output up to date: verify the raw files,
    check the Parquet, model and predictions, count the confusions, write the report."""
    raw = verify(raw_dir, layout.raw_dir)
    for split, names in SPLITS.items():
        sources = {name: raw.sha256[name] for name in names}
        assert is_up_to_date(layout.parquet(split), sources, row_group_size=10_000)
    splits = {split: open_split(layout.parquet(split)) for split in SPLITS}
    assert load_stored(layout.models_dir, model.folder.name) is not None
    confusions = {}
    for split in SPLITS:
        assert predictions_up_to_date(
            layout.predictions(split), {MODEL_ID_KEY: model.model_id}, splits[split].num_rows
        )
        predictions = read_predictions(layout.predictions(split))
        confusions[split] = confusion_matrix(predictions["label"], predictions["predicted"])
    return report(layout, confusions, model, splits)
