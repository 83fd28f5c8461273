"""A `fashionnet run` without Prefect: the library's stage calls, in the flow's order.

flows/pipeline.py calls each of these stage functions from a task; here they are called
directly, with the defaults of `fashionnet run`, so the benchmark can time the stages alone
and the library's share of a whole run. Nothing here repeats what a stage does.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fashionnet import reports
from fashionnet.dataset import SplitFile
from fashionnet.fashion_mnist import SPLITS
from fashionnet.fetch import RawFiles, find_raw_files
from fashionnet.layout import Layout
from fashionnet.model_source import Model, obtain_model
from fashionnet.options import RunOptions
from fashionnet.predict import predict_splits
from fashionnet.prepare import prepare_raw_split
from fashionnet.run_report import StageTimer, build_report
from fashionnet.train import DEFAULT_CONFIG

CONFIG = DEFAULT_CONFIG  # the model `fashionnet run` trains by default
RUN = RunOptions()  # its other defaults: verify, row group and chunk sizes


def fetch(layout: Layout, raw_dir: Path) -> RawFiles:
    """The fetch stage of `fashionnet run --raw-dir RAW_DIR`: the local files, verified."""
    return find_raw_files(cache_dir=layout.raw_dir, local_dir=raw_dir, verify=RUN.verify)


def prepare(raw: RawFiles, layout: Layout) -> dict[str, SplitFile]:
    """The prepare stage: each split's Parquet, written unless it is up to date."""
    return {
        split: prepare_raw_split(raw, split, layout.parquet(split), RUN.row_group_size)
        for split in SPLITS
    }


def predict(layout: Layout, splits: Mapping[str, SplitFile], model: Model) -> dict[str, np.ndarray]:
    """The predict stage on a thread pool: each split's confusion counts."""
    return predict_splits(splits, model.weights_path, model.model_id, layout, RUN.chunk_size)


def up_to_date_run(layout: Layout, raw_dir: Path) -> dict[str, float]:
    """The library's work in a run that finds data, model and predictions up to date: every
    stage, then a new run folder published as `latest`. Returns each stage's seconds."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    timer = StageTimer()
    with timer("fetch_prepare"):
        raw = fetch(layout, raw_dir)
        splits = prepare(raw, layout)
    with timer("model"):
        model = obtain_model("train", CONFIG, splits, layout.models_dir)
    with timer("predict"):
        confusions = predict(layout, splits, model)
    with timer("report"):
        run_report = build_report(
            run_id=reports.new_run_id(),
            started_at=started_at,
            data_origin=raw.origin,
            splits=splits,
            model=model,
            confusions=confusions,
            layout=layout,
            stage_seconds=dict(timer.seconds),  # the stages before the report, as in the flow
        )
        run_dir = reports.write_run(layout.runs_dir, run_report)
        reports.publish_run(layout, run_dir, run_report)
    return timer.seconds
