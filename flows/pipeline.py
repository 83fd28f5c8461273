"""The fashionnet flow: the library's pipeline (`fashionnet.pipeline.run_pipeline`), each stage
run as a Prefect task and the validation and prediction chunks mapped as tasks on the run's
task runner (`chunk_mapper`, which the inbox flow maps its scoring chunks with too).

The stage order is the library's; this module adds what only the orchestrator knows: the flow
run behind the report (its name says when it was due and what started it; the code version
that ran), the UI's artifacts, the regression and drift events, a retry of a deployment's run
that failed for a reason that may pass, and a stop on request ending the run `Cancelled`.
Run it with `make run` (`fashionnet run --help` lists the options).
"""

import contextlib
import dataclasses
import functools
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelled, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from fashionnet.core import interrupts
from fashionnet.core.errors import is_user_fixable
from fashionnet.core.settings import flow_timeout_seconds
from fashionnet.core.threads import CONCURRENT_CHUNKS
from fashionnet.data.drift import DRIFTED, drifted_lines
from fashionnet.data.fetch import DownloadError
from fashionnet.data.validate import DataDrifted, card_of_chunk
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, run_pipeline
from fashionnet.predict import predict_chunk_job
from fashionnet.report import publish
from fashionnet.report.run_report import RunOrigin
from fashionnet.score.batch import score_chunk
from fashionnet_flows.artifacts import ChunkProgress, publish_run_artifacts
from fashionnet_flows.logs import configure_run_logging


@functools.cache
def as_task(stage: Callable) -> Any:
    """A library stage as a Prefect task named after it (plan_predictions -> plan-predictions)."""
    return task(stage, name=stage.__name__.replace("_", "-"), cache_policy=NO_CACHE)


def run_as_task(stage: Callable, *args: Any) -> Any:
    return as_task(stage)(*args)


def make_task_runner(options: RunOptions) -> TaskRunner:
    if options.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if options.dask_address:
            return DaskTaskRunner(address=options.dask_address)
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


# What the log says as a chunk step's chunks finish.
CHUNK_VERBS = {predict_chunk_job: "predicted", card_of_chunk: "counted", score_chunk: "scored"}


@contextlib.contextmanager
def chunk_mapper(options: RunOptions) -> Iterator[Callable]:
    """Map chunk steps as one task per chunk on the run's task runner (threads or Dask), with
    progress in the log and, for the prediction chunks, the UI's progress artifact.

    The runner starts with the first chunks to map (nothing to map starts no Dask cluster) and
    takes every later step's chunks until the block ends: a run's validation and prediction
    chunks, or a scored batch's groups of chunks, share one runner and one cluster."""
    with contextlib.ExitStack() as started:
        runner: TaskRunner | None = None

        def map_chunks(step: Callable, jobs: Sequence[Any]) -> list[Any]:
            nonlocal runner
            logger = get_run_logger()
            progress = ChunkProgress() if step is predict_chunk_job else None
            if not jobs:
                if progress is not None:
                    progress.update(0, 0)
                return []
            if runner is None:
                started.enter_context(local_dask_workers_share_the_api(options))
                runner = started.enter_context(make_task_runner(options))
            futures = runner.map(as_task(step), {"job": list(jobs)})
            for done, _ in enumerate(as_completed(futures), start=1):
                interrupts.check()
                if done == len(futures) or done % max(1, len(futures) // 10) == 0:
                    logger.info("%s %d of %d chunks", CHUNK_VERBS[step], done, len(futures))
                    if progress is not None:
                        progress.update(done, len(futures))
            return [future.result() for future in futures]

        yield map_chunks


REGRESSION_EVENT = "fashionnet.accuracy.regressed"
DRIFT_EVENT = "fashionnet.data.drifted"


PROJECT_CODE = Path(__file__).resolve().parents[1]  # the checkout this flow's code is in
# A run that fails for a reason that may pass (a download, the Prefect API, a bug that depends on
# the moment) is run once more after RETRY_DELAY_SECONDS; what a person must fix is not retried.
RETRIES = 1
RETRY_DELAY_SECONDS = 600


def code_version() -> str | None:
    """The git commit of the code (`<commit>-dirty` with uncommitted changes), None outside a
    git checkout: the deployment's version, and manifest.json's record of the code that ran."""
    git = ["git", "-C", str(PROJECT_CODE)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=30
        )
        if commit.returncode:
            return None
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")


def trigger_of(flow_run: Any) -> str:
    if flow_run.deployment_id is None:
        return "cli"
    return "schedule" if flow_run.auto_scheduled else "deployment-manual"


def run_name() -> str:
    """What the run is: when it was due (UTC) and what started it, e.g.
    `2026-12-05T03:00Z-schedule`, rather than Prefect's random two words."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    due = (flow_run and flow_run.expected_start_time) or datetime.now(UTC)
    trigger = trigger_of(flow_run) if flow_run else "cli"
    return f"{due.astimezone(UTC):%Y-%m-%dT%H:%MZ}-{trigger}"


def run_origin(options: RunOptions, train: TrainConfig) -> RunOrigin:
    """This flow run, what started it, and the parameters it changed from the flow's defaults."""
    context = FlowRunContext.get()
    flow_run = context.flow_run
    deployment = None
    if flow_run.deployment_id is not None:
        from prefect.runtime import deployment as this_deployment  # asks the API: only here

        deployment = f"{context.flow.name}/{this_deployment.name}"
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
        trigger=trigger_of(flow_run),
        overrides=overrides,
        code_version=code_version(),
    )


@contextlib.contextmanager
def stop_signals_stop_the_run() -> Any:
    """In a deployment's run (its own process, started by a worker or `make serve`): SIGTERM
    or SIGINT asks the run to stop at its next step (`interrupts`), as Ctrl-C does for
    `fashionnet run`, instead of Prefect's default of ending it `Crashed` wherever it is."""
    flow_run = FlowRunContext.get().flow_run
    if flow_run.deployment_id is None or threading.current_thread() is not threading.main_thread():
        yield  # `fashionnet run` handles its own signals (flows/cli.py)
        return
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {
        number: signal.signal(number, lambda number, _: interrupts.request_stop(number))
        for number in stop_signals
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stopped() -> State:
    """The state of a run stopped on request: neither a failure nor a crash, wherever it was."""
    try:
        interrupts.check()
    except interrupts.Interrupted as stop:
        return Cancelled(message=f"stopped on request ({stop}): this run published nothing")
    raise AssertionError("no stop was requested")


class RunTimedOut(TimeoutError):
    """The run went past FASHIONNET_FLOW_TIMEOUT_SECONDS: a TimeoutError, which Prefect ends the
    flow run `TimedOut` for (a failure that is not retried)."""


def retry_may_help(error: BaseException) -> bool:
    """A download no mirror answered, or an error nobody foresaw (the Prefect API failing, a
    bug that depends on the moment); not what a person must fix, nor the run's time limit, nor
    any other interruption."""
    if isinstance(error, DownloadError):
        return True
    return isinstance(error, Exception) and not (
        is_user_fixable(error) or isinstance(error, interrupts.TimeLimitReached)
    )


def forbid_retry() -> None:
    """Make this failure final: the server retries a failed run while its policy allows."""
    flow_run = FlowRunContext.get().flow_run
    policy = flow_run.empirical_policy.model_copy(update={"retries": 0})
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, empirical_policy=policy)


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


def announce_drift(drift: pd.DataFrame, resource: str) -> None:
    """The event automations react to when data drifted (drift.csv's rows; the warning lines
    are logged already): a run's splits from the training split (resource
    `fashionnet.run.<run id>`), or a scored batch from the training data
    (`fashionnet.batch.<batch id>`, flows/inbox.py). Its payload names every drifted statistic."""
    drifted = drift[drift["verdict"] == DRIFTED]
    emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": resource},
        payload={
            "splits": sorted(set(drifted["split"])),
            "summary": "; ".join(drifted_lines(drift)),
            "statistics": [
                {
                    "split": row.split,
                    "reference": row.reference,
                    "feature": row.feature,
                    "statistic": row.statistic,
                    "value": float(row.value),
                    "threshold": float(row.threshold),
                }
                for row in drifted.itertuples()
            ],
        },
    )


@flow(
    name="fashionnet",
    flow_run_name=run_name,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY_SECONDS,
)
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
    origin = run_origin(options, train)
    try:
        # The time limit is kept at the steps' checks (`interrupts`), not by Prefect's
        # timeout_seconds, which raises into the flow's thread wherever it is.
        with (
            interrupts.time_limit(flow_timeout_seconds()),
            stop_signals_stop_the_run(),
            chunk_mapper(options) as map_chunks,
        ):
            outcome = run_pipeline(
                Context.create(options, train),
                run_stage=run_as_task,
                map_chunks=map_chunks,
                origin=origin,
                before_publish=publish_run_artifacts,
            )
    except (interrupts.Interrupted, KeyboardInterrupt):
        if not interrupts.stop_requested():
            raise
        return stopped()
    except BaseException as error:
        if isinstance(error, DataDrifted):  # --on-drift stop: the alert goes out, then it fails
            run = origin.flow_run_name or "stopped"
            announce_drift(error.validation.drift, f"fashionnet.run.{run}")
        if FlowRunContext.get().flow_run.deployment_id is None or not retry_may_help(error):
            # The API failing as well must not hide the run's own error: at worst it is retried.
            with contextlib.suppress(Exception):
                forbid_retry()
        if isinstance(error, interrupts.TimeLimitReached):
            raise RunTimedOut(str(error)) from error
        raise
    if outcome.validation.drifted:
        announce_drift(outcome.validation.drift, f"fashionnet.run.{outcome.run_dir.name}")
    if outcome.regression is not None:
        announce_regression(outcome.regression, outcome.run_dir)
    for row in outcome.report.overall.itertuples():
        get_run_logger().info(
            "%s accuracy %.4f (%d of %d)", row.split, row.accuracy, row.correct, row.samples
        )
    return {
        "run_id": outcome.report.run_id,
        "run_dir": str(outcome.run_dir),
        "model_id": outcome.model.model_id,
        "accuracy": outcome.accuracy(),
        "regression": dataclasses.asdict(outcome.regression) if outcome.regression else None,
        "drifted": outcome.validation.drifted,
    }


if __name__ == "__main__":
    fashionnet_pipeline()
