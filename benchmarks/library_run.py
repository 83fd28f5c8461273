"""A `fashionnet run` without Prefect: the library's stage calls, in the flow's order.

flows/pipeline.py calls each of these stage functions from a task; here they are called
directly, with the defaults of `fashionnet run`, so the benchmark can time the stages alone
and the library's share of a whole run. Nothing here repeats what a stage does.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from fashionnet.core.layout import Layout
from fashionnet.data.catalog import SPLITS
from fashionnet.data.fetch import RawFiles, find_raw_files
from fashionnet.data.parquet import SplitFile
from fashionnet.data.prepare import prepare_raw_split
from fashionnet.model.source import Model, obtain_model
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig
from fashionnet.options import RunOptions
from fashionnet.predict import predict_splits
from fashionnet.report import publish
from fashionnet.report.metrics import Tally
from fashionnet.report.run_report import StageTimer, build_report

CONFIG = DEFAULT_CONFIG  # the model `fashionnet run` trains by default
RUN = RunOptions()  # its other defaults: verify, row group and chunk sizes


def fetch(layout: Layout, raw_dir: Path, options: RunOptions = RUN) -> RawFiles:
    """The fetch stage of `fashionnet run --raw-dir RAW_DIR`: the local files, verified
    unless `options.verify` is off."""
    return find_raw_files(cache_dir=layout.raw_dir, local_dir=raw_dir, verify=options.verify)


def prepare(raw: RawFiles, layout: Layout, options: RunOptions = RUN) -> dict[str, SplitFile]:
    """The prepare stage: each split's Parquet (train, validation, test), written unless it is
    up to date."""
    splits: dict[str, SplitFile] = {}
    for raw_split in SPLITS:
        splits |= prepare_raw_split(
            raw, raw_split, layout, options.row_group_size, options.split_rule()
        )
    return splits


def predict(
    layout: Layout, splits: Mapping[str, SplitFile], model: Model, options: RunOptions = RUN
) -> dict[str, Tally]:
    """The predict stage on a thread pool: each split's tally (confusion counts and more)."""
    return predict_splits(splits, model.weights_path, model.model_id, layout, options.chunk_size)


def run(
    layout: Layout,
    raw_dir: Path,
    config: TrainConfig = CONFIG,
    options: RunOptions = RUN,
    stage_done: Callable[[str], None] = lambda stage: None,
) -> dict[str, float]:
    """The library's work in a `fashionnet run --raw-dir RAW_DIR` with these options: every
    stage (each reusing what is up to date), then a new run folder published as `latest`.
    Calls `stage_done(stage)` after each stage; returns each stage's seconds."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    timer = StageTimer()
    with timer("fetch_prepare"):
        raw = fetch(layout, raw_dir, options)
        splits = prepare(raw, layout, options)
    stage_done("fetch_prepare")
    with timer("model"):
        model = obtain_model("train", config, splits, layout.models_dir)
    stage_done("model")
    with timer("predict"):
        tallies = predict(layout, splits, model, options)
    stage_done("predict")
    with timer("report"):
        run_report = build_report(
            run_id=publish.new_run_id(),
            started_at=started_at,
            data_origin=raw.origin,
            splits=splits,
            model=model,
            tallies=tallies,
            layout=layout,
            stage_seconds=dict(timer.seconds),  # the stages before the report, as in the flow
        )
        run_dir = publish.write_run(layout.runs_dir, run_report)
        publish.publish_run(layout, run_dir, run_report)
    stage_done("report")
    return timer.seconds
