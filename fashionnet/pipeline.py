"""The pipeline, written once: fetch -> prepare -> validate -> model -> calibrate -> predict
-> report -> bless -> publish.

`run_pipeline` calls the stages in order. How a stage is run and how the prediction chunks are
mapped are its arguments: the Prefect flow (flows/pipeline.py) runs each stage as a task and
maps the chunks as tasks on its task runner; the benchmark, the tests and any plain Python
caller keep the defaults, a direct call and a thread pool. Every stage takes the run's
`Context` (the layout, the run options and the training recipe) and returns what the next
stage needs.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fashionnet import champion, predict
from fashionnet.core import atomic, threads
from fashionnet.core.errors import machine_errors_named
from fashionnet.core.layout import Layout
from fashionnet.core.paths import A_FOLDER, clear_way, resolve_output, writable_folder
from fashionnet.core.runlock import run_lock
from fashionnet.data import validate
from fashionnet.data.fetch import find_raw_files
from fashionnet.data.keras_source import keras_raw_data
from fashionnet.data.parquet import SplitFile
from fashionnet.data.prepare import RawData, prepare_splits, raw_data_of_files
from fashionnet.data.schema import load_schema
from fashionnet.model.source import Model, calibrated, obtain_model
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions
from fashionnet.report import html, markdown, publish
from fashionnet.report.metrics import Tally
from fashionnet.report.run_report import RunOrigin, RunReport, StageTimer, build_report

log = logging.getLogger(__name__)

Result = TypeVar("Result")
Job = TypeVar("Job")
# Runs one stage: `run_stage(stage, *args)` returns `stage(*args)`, however it runs it.
StageRunner = Callable[..., Any]
# Maps a chunk step (the validate stage's `card_of_chunk`, the predict stage's
# `predict_chunk_job`) over its jobs: `map_chunks(step, jobs)` returns
# [step(job) for job in jobs], in the jobs' order, wherever the chunks run.
ChunkMapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class Context:
    """What every stage of a run takes: where the project's files live, the run options and the
    training recipe."""

    layout: Layout
    options: RunOptions
    train: TrainConfig

    @classmethod
    def create(cls, options: RunOptions, train: TrainConfig) -> "Context":
        """The context of a run in `options.project_dir` (relative to the working directory),
        checked to be a folder this user can write."""
        project_dir = resolve_output(options.project_dir, Path.cwd(), option="project_dir")
        return cls(Layout(writable_folder(project_dir, option="project_dir")), options, train)


# The stages, in order. Each takes the context first.


def fetch(context: Context) -> RawData:
    """The raw images and labels of every split, from the chosen source."""
    if context.options.source == "keras":
        return keras_raw_data()
    options = context.options
    raw = find_raw_files(
        cache_dir=context.layout.raw_dir, local_dir=options.local_raw_dir(), verify=options.verify
    )
    return raw_data_of_files(raw)


def prepare(context: Context, raw: RawData) -> dict[str, SplitFile]:
    """Every split's Parquet file (train, validation, test), written unless it is current."""
    options = context.options
    return prepare_splits(raw, context.layout, options.row_group_size, options.split_rule())


def plan_cards(context: Context, splits: dict[str, SplitFile]) -> validate.CardPlan:
    """The chunks of every split whose data card is not stored and current."""
    return validate.plan_cards(splits, context.layout, context.options.chunk_size)


def save_cards(
    context: Context, plan: validate.CardPlan, counted: list[validate.SplitCard]
) -> dict[str, validate.SplitCard]:
    """Each counted split's card, stored; every split's card."""
    return validate.save_cards(plan, counted)


def check_data(context: Context, cards: dict[str, validate.SplitCard]) -> validate.DataValidation:
    """Anomalies against the schema (they stop the run), drift from train, duplicates."""
    options = context.options
    schema = load_schema(options.schema)
    return validate.validate_cards(cards, schema, context.layout, options.on_drift)


def obtain(context: Context, splits: dict[str, SplitFile]) -> Model:
    """The model the run predicts with: trained (or found again), random, or the user's file."""
    options = context.options
    return obtain_model(
        options.model_source, context.train, splits, context.layout.models_dir, options.weights_file
    )


def calibrate(context: Context, splits: dict[str, SplitFile], model: Model) -> Model:
    """The model with its temperature, fitted on the validation split (or recorded in its
    folder from an earlier fit on the same data)."""
    return calibrated(model, splits.get("validation"), context.layout.models_dir)


def plan_predictions(
    context: Context, splits: dict[str, SplitFile], model: Model
) -> predict.PredictionPlan:
    """The chunks of every split whose predictions are not up to date."""
    return predict.plan_predictions(splits, model, context.layout, context.options.chunk_size)


def save_predictions(
    context: Context, plan: predict.PredictionPlan, predicted: list[predict.ChunkPrediction]
) -> dict[str, Tally]:
    """Each planned split's predictions file; every split's tally."""
    return predict.save_predictions(plan, predicted)


def write_report(context: Context, report: RunReport) -> Path:
    """The run folder `reports/runs/<run id>/`, complete but not yet published."""
    layout = context.layout
    return publish.write_run(layout.runs_dir, report, layout.figure_cache_dir)


def bless(
    context: Context,
    splits: dict[str, SplitFile],
    model: Model,
    run_dir: Path,
    report: RunReport,
) -> RunReport:
    """The gate: judge the run's model against the floors and the champion, write
    `blessing.json` into the (not yet published) run folder, blessed or not, and render the
    verdict into its report.md and report.html. Nothing is switched here: `publish_report`
    does, so a run stopped before publishing leaves the champion as it was."""
    options, layout = context.options, context.layout
    blessing = champion.judge(
        run_id=report.run_id,
        model=model,
        confusions=report.confusions,
        validation=splits.get(champion.GATE_SPLIT),
        candidate_predictions=layout.predictions(champion.GATE_SPLIT),
        champion=champion.current_champion(layout),
        champion_runs=champion.champion_runs(layout, publish.read_history(layout.history_csv)),
        thresholds={
            "min_accuracy": options.champion_min_accuracy,
            "min_class_accuracy": options.champion_min_class_accuracy,
            "tolerance": options.regression_tolerance,
        },
        force_promote=options.force_promote,
    )
    blessing.write(run_dir)
    log.info("%s", blessing.reason)
    report = dataclasses.replace(report, blessing=blessing.describe())
    markdown.write_report_md(run_dir, report)
    html.write_report_html(run_dir, report)
    return report


def publish_report(context: Context, run_dir: Path, report: RunReport) -> None:
    """`reports/latest` and the history: the run becomes the project's last run, and its model
    the champion if the gate (or force_promote) said so."""
    publish.publish_run(context.layout, run_dir, report)


def record_unchanged(context: Context, report: RunReport, previous: str) -> Path:
    """A run that repeats the run `previous` (same data, model and code): a short record in the
    history and a manifest, no copy of the report."""
    return publish.record_unchanged(context.layout, report, previous)


def call(stage: Callable[..., Result], *args: Any) -> Result:
    """The plain way to run a stage: call it."""
    return stage(*args)


def map_in_threads(step: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
    """The plain way to map the chunks: CONCURRENT_CHUNKS at a time in this process (none at
    all when there is nothing to do)."""
    with ThreadPoolExecutor(threads.CONCURRENT_CHUNKS) as pool:
        return list(pool.map(step, jobs))


def fetch_and_prepare(
    context: Context, run_stage: StageRunner = call
) -> tuple[str, dict[str, SplitFile]]:
    """The data stages: where the raw data came from, and every split's Parquet file."""
    raw = run_stage(fetch, context)
    return raw.origin, run_stage(prepare, context, raw)


def validate_data(
    context: Context,
    splits: dict[str, SplitFile],
    run_stage: StageRunner = call,
    map_chunks: ChunkMapper = map_in_threads,
) -> validate.DataValidation:
    """The validate stage's steps: plan the cards that are not current, map the chunk step over
    them, store the cards, then check them (anomalies stop the run here, before the model)."""
    plan = run_stage(plan_cards, context, splits)
    counted = map_chunks(validate.card_of_chunk, plan.jobs)
    cards = run_stage(save_cards, context, plan, counted)
    return run_stage(check_data, context, cards)


def predict_splits(
    context: Context,
    splits: dict[str, SplitFile],
    model: Model,
    run_stage: StageRunner = call,
    map_chunks: ChunkMapper = map_in_threads,
) -> dict[str, Tally]:
    """The predict stage's three steps: plan the chunks that are not up to date, map the chunk
    step over them, save each split's predictions; every split's tally."""
    plan = run_stage(plan_predictions, context, splits, model)
    with threads.blas_threads_for_chunks(context.options.task_runner == "threads"):
        predicted = map_chunks(predict.predict_chunk_job, plan.jobs)
    return run_stage(save_predictions, context, plan, predicted)


@dataclass(frozen=True)
class Outcome:
    """A finished, published run."""

    run_dir: Path
    report: RunReport
    model: Model
    regression: publish.Regression | None
    stage_seconds: dict[str, float]
    validation: validate.DataValidation

    def accuracy(self) -> dict[str, float]:
        overall = self.report.overall
        return dict(zip(overall["split"], overall["accuracy"].astype(float), strict=True))


def run_pipeline(
    context: Context,
    *,
    run_stage: StageRunner = call,
    map_chunks: ChunkMapper = map_in_threads,
    origin: RunOrigin | None = None,
    before_publish: Callable[[RunReport, Path], None] | None = None,
    timer: StageTimer | None = None,
) -> Outcome:
    """Run every stage in order, each reusing what is up to date, and publish the run.

    `origin` is the orchestrator's run behind this one (manifest.json's "prefect");
    `before_publish(report, run_dir)` is the orchestrator's last step before the run is
    published (the flow's UI artifacts), so publishing stays the last thing that can fail.
    `timer` times the stages (a `StageTimer`, or one that measures more).
    Holds the project's run lock throughout; a full disk or a folder this user may not write
    ends the run as one line naming the path, wherever in the run it shows.
    """
    layout, options = context.layout, context.options
    run_id = publish.new_run_id()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    timer = timer or StageTimer()
    with machine_errors_named(layout.root):
        clear_way(layout.data_dir, A_FOLDER)  # the run lock's folder, before the lock
    with machine_errors_named(layout.root), run_lock(layout.lock_file, options.lock_timeout):
        for folder in layout.owned_folders:
            clear_way(folder, A_FOLDER)
        champion.clear_champion_link(layout)
        for folder in (layout.data_dir, layout.models_dir, layout.reports_dir):
            for stale in atomic.sweep_stale_temps(folder):
                log.info("removed %s, left by an interrupted run", stale)
        publish.finish_interrupted_publishing(layout)
        with timer("fetch_prepare"):
            data_origin, splits = fetch_and_prepare(context, run_stage)
        with timer("validate"):
            validation = validate_data(context, splits, run_stage, map_chunks)
        with timer("model"):
            model = run_stage(obtain, context, splits)
            model = run_stage(calibrate, context, splits, model)
        with timer("predict"):
            tallies = predict_splits(context, splits, model, run_stage, map_chunks)
        with timer("report"):
            report = build_report(
                run_id=run_id,
                started_at=started_at,
                data_origin=data_origin,
                splits=splits,
                model=model,
                tallies=tallies,
                layout=layout,
                stage_seconds=dict(timer.seconds),
                origin=origin,
                validation=validation,
            )
            previous = publish.unchanged_since(layout, report)
            if previous is not None:  # the model was judged when the run it repeats published
                if before_publish is not None:
                    before_publish(report, layout.runs_dir / previous)
                run_dir = run_stage(record_unchanged, context, report, previous)
                regression = None
            else:
                run_dir = run_stage(write_report, context, report)
                with publish.removed_unless_published(layout.latest_link, run_dir):
                    report = run_stage(bless, context, splits, model, run_dir, report)
                    if before_publish is not None:
                        before_publish(report, run_dir)
                    run_stage(publish_report, context, run_dir, report)
                regression = publish.regression_of(layout, report, options.regression_tolerance)
    return Outcome(run_dir, report, model, regression, dict(timer.seconds), validation)
