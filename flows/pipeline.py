"""The fashionnet pipeline: fetch -> prepare -> train or load -> predict in chunks -> report.

Each task calls one stage of the `fashionnet` library; every stage skips work whose
output is already up to date, so a rerun only does what changed.

Run it:
    make run                      # defaults, on Prefect's ephemeral local server
    fashionnet run --help         # every option
    FASHIONNET_RAW_DIR=/path/to/fashion-mnist fashionnet run --epochs 5

Outputs: data/parquet/, data/predictions/, models/, reports/runs/<run id>/,
reports/latest/ (the last successful run) and reports/history.csv.
"""

import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from fashionnet import atomic, plots, report_markdown, reports
from fashionnet.dataset import SplitFile, open_split, read_split
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import SPLITS
from fashionnet.fetch import DownloadError, RawFiles, find_raw_files
from fashionnet.keras_source import array_sha256, load_keras_arrays
from fashionnet.layout import Layout
from fashionnet.metrics import confusion_matrix
from fashionnet.model_store import load_stored, store_trained, train_key
from fashionnet.paths import resolve_output
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
from fashionnet.prepare import is_up_to_date, prepare_split, write_split
from fashionnet.runlock import run_lock
from fashionnet.train import DEFAULT_CONFIG, TrainConfig, train
from fashionnet.two_layer_net import TwoLayerNet
from fashionnet.weights import load_params, model_id, save_params
from flows.artifacts import ChunkProgress, publish_run_artifacts
from flows.logs import configure_run_logging

D = DEFAULT_CONFIG


@dataclass(frozen=True)
class Model:
    weights_path: Path
    model_id: str
    origin: str
    hyperparameters: dict[str, Any]
    learning_curve: Path | None = None


def is_download_failure(task, task_run, state) -> bool:
    """Retry the fetch when the mirrors failed, not when a local file is bad or we are offline."""
    try:
        state.result()
    except DownloadError as error:
        return not error.offline
    except Exception:
        return False
    return False


@task(
    name="fetch-raw-files",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=is_download_failure,
)
def fetch_raw_files(cache_dir: Path, local_dir: Path | None, verify: bool) -> RawFiles:
    raw = find_raw_files(cache_dir=cache_dir, local_dir=local_dir, verify=verify)
    get_run_logger().info("raw files: %s", raw.origin)
    return raw


@task(name="prepare-parquet", cache_policy=NO_CACHE)
def prepare_parquet(split: str, raw: RawFiles, out_path: Path, row_group_size: int) -> SplitFile:
    images, labels = SPLITS[split]
    result = prepare_split(
        raw.paths[images],
        raw.paths[labels],
        out_path,
        sources={name: raw.sha256[name] for name in (images, labels)},
        row_group_size=row_group_size,
    )
    state = "up to date" if result.skipped else "written"
    get_run_logger().info("%s: %d rows %s: %s", split, result.rows, state, out_path)
    return open_split(out_path)


@task(name="prepare-parquet-from-keras", cache_policy=NO_CACHE)
def prepare_parquet_from_keras(layout: Layout, row_group_size: int) -> dict[str, SplitFile]:
    arrays = load_keras_arrays()
    splits = {}
    for split, (images, labels) in arrays.items():
        out_path = layout.parquet(split)
        sources = {
            f"keras:{split}-images": array_sha256(images),
            f"keras:{split}-labels": array_sha256(labels),
        }
        if not is_up_to_date(out_path, sources, row_group_size):
            write_split(images, labels, out_path, sources=sources, row_group_size=row_group_size)
        splits[split] = open_split(out_path)
    return splits


@task(name="train-or-load-model", cache_policy=NO_CACHE)
def train_or_load_model(
    init: str,
    weights: Path | None,
    config: TrainConfig,
    splits: dict[str, SplitFile],
    layout: Layout,
) -> Model:
    logger = get_run_logger()
    if weights is not None:
        params = load_params(weights)
        logger.info("using the weights in %s", weights)
        return Model(weights, model_id(params), f"weights file {weights}", {})
    if init == "random":
        net = TwoLayerNet(
            hidden_size=config.hidden_size,
            weight_init_std=config.weight_init_std,
            init="std",
            seed=config.seed,
        )
        path = layout.models_dir / f"random-{model_id(net.params)}" / "weights.npz"
        save_params(path, net.params)
        hyper = {
            "hidden_size": config.hidden_size,
            "weight_init_std": config.weight_init_std,
            "seed": config.seed,
        }
        logger.info("untrained model with random weights (expect about 10%% accuracy)")
        return Model(path, model_id(net.params), "random initialisation, untrained", hyper)

    data_sha256 = {name: sha for s in splits.values() for name, sha in s.sources.items()}
    key = train_key(config, data_sha256)
    stored = load_stored(layout.models_dir, key)
    if stored is None:
        logger.info("training: %s", config)
        train_set, test_set = read_split(splits["train"].path), read_split(splits["test"].path)
        result = train(config, train_set.x, train_set.label, test_set.x, test_set.label)
        stored = store_trained(layout.models_dir, key, result, config, data_sha256)
        logger.info("trained in %.1f s, saved to %s", result.seconds, stored.folder)
    else:
        logger.info("model up to date, not training again: %s", stored.folder)
    return Model(
        stored.weights_path,
        stored.model_id,
        f"trained ({stored.folder})",
        asdict(config),
        stored.learning_curve_path,
    )


@task(name="predict-chunk", cache_policy=NO_CACHE)
def predict_chunk_task(
    weights_path: Path, parquet_path: Path, row_groups: range
) -> ChunkPrediction:
    return predict_chunk(load_params(weights_path), parquet_path, row_groups)


def make_task_runner(task_runner: str, dask_address: str | None):
    if task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=CONCURRENT_CHUNKS)
    if task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # Dask's dashboard would listen on every interface; keep the local cluster local.
        return DaskTaskRunner(cluster_kwargs={"dashboard_address": "127.0.0.1:8787"})
    raise FashionnetError(f"task_runner must be 'threads' or 'dask', not {task_runner!r}")


@contextlib.contextmanager
def local_dask_workers_share_the_api(task_runner: str, dask_address: str | None):
    """Point the workers of a local Dask cluster at this run's temporary Prefect API.

    Without PREFECT_API_URL each worker process would start a temporary Prefect server of its
    own and record the chunks' task runs there, out of sight. A remote cluster needs
    PREFECT_API_URL set to a server every machine reaches (docs/DISTRIBUTED.md).
    """
    if task_runner != "dask" or dask_address or PREFECT_API_URL.value():
        yield
        return
    api_url = str(get_client(sync_client=True).api_url).rstrip("/")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def blas_threads_for(task_runner: str) -> contextlib.AbstractContextManager:
    """The thread runner's chunks share this process's cores; Dask workers run elsewhere."""
    if task_runner == "threads":
        return blas_threads_shared_by(CONCURRENT_CHUNKS)
    return contextlib.nullcontext()


@flow(name="predict-in-chunks")
def predict_in_chunks(
    weights_path: Path,
    model: str,
    parquet_paths: dict[str, Path],
    chunk_size: int,
    predictions_dir: Path,
) -> dict[str, np.ndarray]:
    """One task per chunk of row groups, for every split whose predictions are not up to date.

    Returns each split's 10x10 confusion counts (rows true class, columns predicted).
    """
    logger = get_run_logger()
    progress = ChunkProgress()
    confusions, futures, metadata, out_paths = {}, {}, {}, {}
    for split, parquet_path in parquet_paths.items():
        split_file = open_split(parquet_path)
        out_path = out_paths[split] = predictions_dir / f"{split}.parquet"
        metadata[split] = {
            "fashionnet.model_id": model,
            "fashionnet.sources": json.dumps(split_file.sources, sort_keys=True),
        }
        if predictions_up_to_date(out_path, metadata[split], split_file.num_rows):
            frame = read_predictions(out_path)
            confusions[split] = confusion_matrix(
                frame["label"].to_numpy(), frame["predicted"].to_numpy()
            )
            logger.info("%s predictions up to date: %s", split, out_path)
            continue
        chunks = plan_chunks(split_file, chunk_size)
        logger.info("%s: predicting %d rows in %d chunks", split, split_file.num_rows, len(chunks))
        futures[split] = predict_chunk_task.map(
            unmapped(weights_path), unmapped(parquet_path), chunks
        )

    pending = [f for fs in futures.values() for f in fs]
    for done, _ in enumerate(as_completed(pending), start=1):
        if done == len(pending) or done % max(1, len(pending) // 10) == 0:
            logger.info("predicted %d of %d chunks", done, len(pending))
            progress.update(done, len(pending))
    if not pending:
        progress.update(0, 0)

    for split, split_futures in futures.items():
        chunks = [f.result() for f in split_futures]
        write_predictions(out_paths[split], chunks, metadata=metadata[split])
        confusions[split] = total_confusion(chunks)
    return {split: confusions[split] for split in parquet_paths}


@task(name="write-reports", cache_policy=NO_CACHE)
def write_reports(
    layout: Layout,
    run_id: str,
    confusions: dict[str, np.ndarray],
    model: Model,
    manifest: dict[str, Any],
) -> Path:
    extra = {"learning_curve.csv": model.learning_curve} if model.learning_curve else {}

    def add_figures_and_summary(folder: Path) -> None:
        plots.write_run_figures(
            folder,
            test_images=read_split(layout.parquet("test")).x,
            test_predictions=read_predictions(layout.predictions("test")),
        )
        report_markdown.write_report_md(folder)

    run_dir = reports.write_run(
        layout.runs_dir,
        run_id,
        confusions=confusions,
        model_id=model.model_id,
        manifest=manifest,
        extra_files=extra,
        finish=add_figures_and_summary,
    )
    get_run_logger().info("reports written: %s", run_dir)
    return run_dir


@task(name="publish-reports", cache_policy=NO_CACHE)
def publish_reports(
    layout: Layout, run_dir: Path, run_id: str, data_sha256: dict[str, str]
) -> None:
    """Only a complete, successful run becomes `reports/latest` and enters the history."""
    overall = reports.read_overall(run_dir)
    reports.append_history(
        layout.history_csv,
        run_id,
        datetime.now(UTC).isoformat(timespec="seconds"),
        overall,
        data_sha256,
    )
    atomic.replace_symlink(layout.latest_link, run_dir)
    get_run_logger().info("reports/latest now points at %s", run_dir.name)


class StageTimer:
    """Wall time of each stage, for the manifest and the logs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)


@flow(name="fashionnet")
def fashionnet_pipeline(
    raw_dir: str | None = None,
    source: Literal["files", "keras"] = "files",
    verify_checksums: bool = True,
    row_group_size: int = 10_000,
    chunk_size: int = 10_000,
    init: Literal["train", "random"] = "train",
    weights: str | None = None,
    hidden_size: int = D.hidden_size,
    epochs: int = D.epochs,
    batch_size: int = D.batch_size,
    learning_rate: float = D.learning_rate,
    optimizer: Literal["sgd", "momentum", "adam"] = D.optimizer,
    lr_schedule: Literal["constant", "cosine", "step"] = D.lr_schedule,
    weight_init: Literal["he", "std"] = D.init,
    weight_init_std: float = D.weight_init_std,
    weight_decay: float = D.weight_decay,
    standardize: bool = D.standardize,
    seed: int = D.seed,
    task_runner: Literal["threads", "dask"] = "threads",
    dask_address: str | None = None,
    project_dir: str = ".",
    lock_timeout: float = 3600.0,
) -> dict[str, Any]:
    """Classify Fashion-MNIST with a NumPy TwoLayerNet and write accuracy reports.

    Args:
        raw_dir: folder with the four canonical .gz files, used before any download
            (default: the FASHIONNET_RAW_DIR environment variable).
        source: "files" (local folder, data/raw cache, then mirrors) or "keras"
            (tf.keras.datasets.fashion_mnist.load_data()).
        verify_checksums: check local raw files against the published sha256; turn off
            only for your own IDX data in raw_dir. Downloads are always checked.
        row_group_size: Parquet rows per row group.
        chunk_size: rows per prediction task (whole row groups).
        init: "train" learns the weights; "random" keeps the untrained initialisation.
        weights: an .npz with W1, b1, W2, b2 to use instead of training.
        hidden_size, epochs, batch_size, learning_rate, optimizer, lr_schedule,
            weight_init, weight_init_std, weight_decay, standardize, seed: the training
            configuration (see fashionnet.train.TrainConfig).
        task_runner: "threads" or "dask" for the prediction chunks.
        dask_address: a running Dask scheduler (default: a local cluster).
        project_dir: the folder holding data/, models/ and reports/ (a relative path must
            stay inside the working directory; see fashionnet.paths).
        lock_timeout: seconds to wait for another run on the same folder to finish.
    """
    configure_run_logging()
    logger = get_run_logger()
    layout = Layout(resolve_output(project_dir, Path.cwd(), option="project_dir"))
    config = TrainConfig(
        hidden_size=hidden_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        init=weight_init,
        weight_init_std=weight_init_std,
        weight_decay=weight_decay,
        standardize=standardize,
        seed=seed,
    )
    runner = make_task_runner(task_runner, dask_address)
    local_dir = raw_dir or os.environ.get("FASHIONNET_RAW_DIR") or None
    weights_path = Path(weights).resolve() if weights else None
    run_id = reports.new_run_id()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    timer = StageTimer()

    with run_lock(layout.lock_file, timeout=lock_timeout):
        for folder in (layout.data_dir, layout.models_dir, layout.reports_dir):
            for stale in atomic.sweep_stale_temps(folder):
                logger.info("removed %s, left by an interrupted run", stale)

        with timer("fetch_prepare"):
            if source == "keras":
                raw_origin = "tf.keras.datasets.fashion_mnist"
                splits = prepare_parquet_from_keras(layout, row_group_size)
            else:
                raw = fetch_raw_files(
                    layout.raw_dir, Path(local_dir) if local_dir else None, verify_checksums
                )
                raw_origin = raw.origin
                splits = {
                    split: prepare_parquet(split, raw, layout.parquet(split), row_group_size)
                    for split in SPLITS
                }
        with timer("model"):
            model = train_or_load_model(init, weights_path, config, splits, layout)
        with (
            timer("predict"),
            local_dask_workers_share_the_api(task_runner, dask_address),
            blas_threads_for(task_runner),
        ):
            confusions = predict_in_chunks.with_options(task_runner=runner)(
                model.weights_path,
                model.model_id,
                {split: s.path for split, s in splits.items()},
                chunk_size,
                layout.predictions_dir,
            )
        with timer("report"):
            manifest = {
                "run_id": run_id,
                "started_at": started_at,
                "data": {"origin": raw_origin, "sha256": {s: f.sources for s, f in splits.items()}},
                "model": {
                    "model_id": model.model_id,
                    "origin": model.origin,
                    "hyperparameters": model.hyperparameters,
                },
                "packages": reports.package_versions(),
                "python": platform.python_version(),
                "stage_seconds": timer.seconds,
            }
            run_dir = write_reports(layout, run_id, confusions, model, manifest)
            data_sha256 = {split: reports.split_digest(f.sources) for split, f in splits.items()}
            publish_reports(layout, run_dir, run_id, data_sha256)
            publish_run_artifacts(run_dir)

    overall = reports.read_overall(run_dir)
    for row in overall.itertuples():
        logger.info(
            "%s accuracy %.4f (%d of %d)", row.split, row.accuracy, row.correct, row.samples
        )
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_id": model.model_id,
        "accuracy": dict(zip(overall["split"], overall["accuracy"].astype(float), strict=True)),
    }


if __name__ == "__main__":
    fashionnet_pipeline()
