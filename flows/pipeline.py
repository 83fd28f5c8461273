"""The fashionnet pipeline: fetch -> prepare -> obtain the model -> predict in chunks -> report.

Each task calls one stage of the `fashionnet` library; every stage skips work whose output is
already up to date, so a rerun only does what changed. Run it with `make run` (`fashionnet run
--help` lists the options). Outputs: data/parquet/, data/predictions/, models/,
reports/runs/<run id>/, reports/latest (the last successful run), reports/history.csv.
"""

import contextlib
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fashionnet_flows.artifacts import ChunkProgress, publish_run_artifacts
from fashionnet_flows.logs import configure_run_logging
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from fashionnet.core import atomic, interrupts
from fashionnet.core.errors import machine_errors_named
from fashionnet.core.layout import Layout
from fashionnet.core.paths import resolve_output, writable_folder
from fashionnet.core.runlock import run_lock
from fashionnet.core.settings import flow_timeout_seconds
from fashionnet.data.catalog import SPLITS
from fashionnet.data.fetch import DownloadError, RawFiles, find_raw_files
from fashionnet.data.keras_source import prepare_keras_splits
from fashionnet.data.parquet import SplitFile
from fashionnet.data.prepare import prepare_raw_split
from fashionnet.model.source import Model, obtain_model
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig
from fashionnet.options import RunOptions, TaskRunner
from fashionnet.predict import (
    CONCURRENT_CHUNKS,
    ChunkJob,
    ChunkPrediction,
    blas_threads_shared_by,
    predict_chunk_file,
    predict_splits,
)
from fashionnet.report import publish
from fashionnet.report.metrics import Tally
from fashionnet.report.run_report import RunOrigin, RunReport, StageTimer, build_report


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
def fetch_raw_files(layout: Layout, options: RunOptions) -> RawFiles:
    local_dir = options.local_raw_dir()
    return find_raw_files(cache_dir=layout.raw_dir, local_dir=local_dir, verify=options.verify)


@task(name="prepare-parquet", cache_policy=NO_CACHE)
def prepare_parquet(
    raw: RawFiles, raw_split: str, layout: Layout, options: RunOptions
) -> dict[str, SplitFile]:
    return prepare_raw_split(raw, raw_split, layout, options.row_group_size, options.split_rule())


@task(name="prepare-parquet-from-keras", cache_policy=NO_CACHE)
def prepare_parquet_from_keras(layout: Layout, options: RunOptions) -> dict[str, SplitFile]:
    return prepare_keras_splits(layout, options.row_group_size, options.split_rule())


@task(name="obtain-model", cache_policy=NO_CACHE)
def obtain_model_task(
    options: RunOptions, train: TrainConfig, splits: dict[str, SplitFile], layout: Layout
) -> Model:
    return obtain_model(
        options.model_source, train, splits, layout.models_dir, options.weights_file
    )


@task(name="predict-chunk", cache_policy=NO_CACHE)
def predict_chunk_task(weights_path: Path, job: ChunkJob) -> ChunkPrediction:
    return predict_chunk_file(weights_path, job)


@flow(name="predict-in-chunks")
def predict_in_chunks(
    splits: dict[str, SplitFile], model: Model, layout: Layout, chunk_size: int
) -> dict[str, Tally]:
    """One task per chunk of row groups, for every split whose predictions are not up to date.

    Returns each split's tally (`metrics.Tally`: confusion counts, top-2 hits, log loss sum,
    calibration bins).
    """
    logger = get_run_logger()
    progress = ChunkProgress()

    def run_chunks_as_tasks(weights_path: Path, jobs: list[ChunkJob]) -> list[ChunkPrediction]:
        futures = predict_chunk_task.map(unmapped(weights_path), jobs)
        for done, _ in enumerate(as_completed(futures), start=1):
            interrupts.check()
            if done == len(futures) or done % max(1, len(futures) // 10) == 0:
                logger.info("predicted %d of %d chunks", done, len(futures))
                progress.update(done, len(futures))
        return [future.result() for future in futures]

    tallies = predict_splits(
        splits, model.weights_path, model.model_id, layout, chunk_size, run_chunks_as_tasks
    )
    if not progress.updated:
        progress.update(0, 0)
    return tallies


@task(name="write-reports", cache_policy=NO_CACHE)
def write_reports(layout: Layout, report: RunReport) -> Path:
    return publish.write_run(layout.runs_dir, report)


@task(name="publish-reports", cache_policy=NO_CACHE)
def publish_reports(layout: Layout, run_dir: Path, report: RunReport) -> None:
    """Only a complete, successful run becomes `reports/latest` and enters the history: the
    UI's artifacts come first, so publishing is the last thing a run does that can fail."""
    publish_run_artifacts(report, run_dir)
    publish.publish_run(layout, run_dir, report)


def make_task_runner(task_runner: TaskRunner, dask_address: str | None):
    if task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # Dask's dashboard would listen on every interface; keep the local cluster local.
        return DaskTaskRunner(cluster_kwargs={"dashboard_address": "127.0.0.1:8787"})
    return ThreadPoolTaskRunner(max_workers=CONCURRENT_CHUNKS)


@contextlib.contextmanager
def local_dask_workers_share_the_api(options: RunOptions):
    """Point the workers of a local Dask cluster at this run's temporary Prefect API.

    Without PREFECT_API_URL each worker process would start a temporary Prefect server of its
    own and record the chunks' task runs there, out of sight. A remote cluster needs
    PREFECT_API_URL set to a server every machine reaches (docs/DISTRIBUTED.md).
    """
    if options.task_runner != "dask" or options.dask_address or PREFECT_API_URL.value():
        yield
        return
    api_url = str(get_client(sync_client=True).api_url).rstrip("/")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def blas_threads_for(task_runner: TaskRunner) -> contextlib.AbstractContextManager:
    """The thread runner's chunks share this process's cores; Dask workers run elsewhere."""
    if task_runner == "threads":
        return blas_threads_shared_by(CONCURRENT_CHUNKS)
    return contextlib.nullcontext()


REGRESSION_EVENT = "fashionnet.accuracy.regressed"


def run_origin(options: RunOptions, train: TrainConfig) -> RunOrigin:
    """This flow run, what started it, and the parameters it changed from the flow's defaults."""
    context = FlowRunContext.get()
    flow_run = context.flow_run
    if flow_run.deployment_id is None:
        deployment, trigger = None, "cli"
    else:
        from prefect.runtime import deployment as this_deployment  # asks the API: only here

        deployment = f"{context.flow.name}/{this_deployment.name}"
        trigger = "schedule" if flow_run.auto_scheduled else "deployment-manual"
    overrides = {}
    for given, default in ((options, RunOptions()), (train, DEFAULT_CONFIG)):
        defaults = default.model_dump(mode="json")
        for name, value in given.model_dump(mode="json").items():
            if value != defaults[name]:
                overrides[name] = value
    return RunOrigin(
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        deployment=deployment,
        trigger=trigger,
        overrides=overrides,
    )


def announce_regression(regression: publish.Regression, run_dir: Path) -> None:
    """One warning line in the run's log, and the event automations react to."""
    get_run_logger().warning(
        "accuracy regression: test accuracy %.4f is more than %.4f below %.4f of run %s "
        "on the same data",
        regression.test_accuracy,
        regression.tolerance,
        regression.previous_test_accuracy,
        regression.previous_run,
    )
    emit_event(
        event=REGRESSION_EVENT,
        resource={"prefect.resource.id": f"fashionnet.run.{run_dir.name}"},
        payload=dataclasses.asdict(regression),
    )


@flow(name="fashionnet", timeout_seconds=flow_timeout_seconds())
def fashionnet_pipeline(
    options: RunOptions = RunOptions(),  # noqa: B008 (frozen: safe to share as a default)
    train: TrainConfig = DEFAULT_CONFIG,
) -> dict[str, Any]:
    """Classify Fashion-MNIST with a NumPy TwoLayerNet and write accuracy reports.

    Args:
        options: where the run gets its data and its model, how it predicts the chunks and
            where it writes (fashionnet.options.RunOptions).
        train: the training recipe, used when the model source is 'train'
            (fashionnet.model.train.TrainConfig).
    """
    configure_run_logging()
    logger = get_run_logger()
    project_dir = resolve_output(options.project_dir, Path.cwd(), option="project_dir")
    layout = Layout(writable_folder(project_dir, option="project_dir"))
    runner = make_task_runner(options.task_runner, options.dask_address)
    run_id = publish.new_run_id()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    origin = run_origin(options, train)
    timer = StageTimer()

    # A full disk, a read-only mount or a folder this user may not write ends the run as one
    # line naming the path, wherever in the run it shows.
    with machine_errors_named(layout.root), run_lock(layout.lock_file, options.lock_timeout):
        for folder in (layout.data_dir, layout.models_dir, layout.reports_dir):
            for stale in atomic.sweep_stale_temps(folder):
                logger.info("removed %s, left by an interrupted run", stale)

        with timer("fetch_prepare"):
            if options.source == "keras":
                data_origin = "tf.keras.datasets.fashion_mnist"
                splits = prepare_parquet_from_keras(layout, options)
            else:
                raw = fetch_raw_files(layout, options)
                data_origin = raw.origin
                # train.parquet and validation.parquet from the raw training files, then test.
                splits = {}
                for raw_split in SPLITS:
                    splits |= prepare_parquet(raw, raw_split, layout, options)
        with timer("model"):
            model = obtain_model_task(options, train, splits, layout)
        with (
            timer("predict"),
            local_dask_workers_share_the_api(options),
            blas_threads_for(options.task_runner),
        ):
            tallies = predict_in_chunks.with_options(task_runner=runner)(
                splits, model, layout, options.chunk_size
            )
        with timer("report"):
            report = build_report(
                run_id=run_id,
                started_at=started_at,
                data_origin=data_origin,
                splits=splits,
                model=model,
                tallies=tallies,
                layout=layout,
                stage_seconds=timer.seconds,
                origin=origin,
            )
            run_dir = write_reports(layout, report)
            with publish.removed_unless_published(layout.latest_link, run_dir):
                publish_reports(layout, run_dir, report)
            regression = publish.regression_of(layout, report, options.regression_tolerance)
    if regression is not None:
        announce_regression(regression, run_dir)

    for row in report.overall.itertuples():
        logger.info(
            "%s accuracy %.4f (%d of %d)", row.split, row.accuracy, row.correct, row.samples
        )
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_id": model.model_id,
        "accuracy": dict(zip(report.overall["split"], report.overall["accuracy"], strict=True)),
        "regression": dataclasses.asdict(regression) if regression is not None else None,
    }


if __name__ == "__main__":
    fashionnet_pipeline()
