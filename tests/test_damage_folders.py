"""What stands where a folder the pipeline owns belongs (a file for a folder, a folder for the
run lock) is moved aside with a warning and the run goes on: never two failed runs in a row.

Each case damages its own copy of one finished project and runs the pipeline again in this
process (the library's run; the CLI adds nothing here but its one-line errors).
"""

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runs import report_csvs
from synthetic import SMALL_OPTIONS, SMALL_TRAIN, write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, Outcome, run_pipeline


def run(project: Path, raw: Path) -> Outcome:
    options = RunOptions(**{**SMALL_OPTIONS, "raw_dir": str(raw), "project_dir": str(project)})
    return run_pipeline(Context(Layout(project), options, TrainConfig(**SMALL_TRAIN)))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_synthetic_raw(folder, n_train=600, n_test=200, seed=5)
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory, raw) -> Path:
    project = tmp_path_factory.mktemp("finished") / "project"
    run(project, raw)
    return project


def file_instead(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("a file where a folder belongs\n")


@dataclass(frozen=True)
class Misplaced:
    name: str
    path: Callable[[Layout], Path]  # what is damaged
    damage: Callable[[Path], None]
    kind: str  # what the warning says stands there
    wanted: str  # what belongs there


def folder_in_place_of_the_lock(path: Path) -> None:
    path.unlink(missing_ok=True)
    (path / "inside").mkdir(parents=True)


def a_file_in_place_of(name: str, folder: Callable[[Layout], Path]) -> Misplaced:
    return Misplaced(f"{name} a file", folder, file_instead, "a file", "a folder")


CASES = [
    a_file_in_place_of("reports/runs", lambda layout: layout.runs_dir),
    a_file_in_place_of("reports", lambda layout: layout.reports_dir),
    a_file_in_place_of("models", lambda layout: layout.models_dir),
    a_file_in_place_of("models/<key>", lambda layout: layout.champion_link.resolve()),
    a_file_in_place_of("data/parquet", lambda layout: layout.parquet_dir),
    a_file_in_place_of("data/predictions", lambda layout: layout.predictions_dir),
    a_file_in_place_of("data/validation", lambda layout: layout.validation_dir),
    a_file_in_place_of("data", lambda layout: layout.data_dir),
    Misplaced(
        "data/raw a file",
        lambda layout: layout.raw_dir,
        lambda path: path.write_text("a file where the download cache belongs\n"),
        "a file",
        "a folder",
    ),
    Misplaced(
        "models/champion a broken link",
        lambda layout: layout.champion_link,
        lambda path: (path.unlink(), path.symlink_to("a-model-deleted-by-hand")),
        "a broken symbolic link",
        "a link to a model folder",
    ),
    Misplaced(
        "data/.run.lock a folder",
        lambda layout: layout.lock_file,
        folder_in_place_of_the_lock,
        "a folder",
        "a file",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_what_stands_where_an_owned_folder_belongs_is_moved_aside_and_the_run_publishes(
    case, finished, raw, tmp_path, caplog
):
    project = tmp_path / "project"
    shutil.copytree(finished, project, symlinks=True)
    layout = Layout(project)
    path = case.path(layout)
    case.damage(path)
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        outcome = run(project, raw)
    assert layout.latest_link.resolve() == outcome.run_dir.resolve()
    assert report_csvs(outcome.run_dir) == report_csvs(Layout(finished).latest_link)
    prefix = f"{path} is {case.kind}, not {case.wanted}; moved it to "
    [warning] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]
    aside = Path(warning.removeprefix(prefix))
    assert aside.parent == path.parent and aside.name.startswith(f"{path.name}.damaged-")
    assert os.path.isdir(aside) == (case.kind == "a folder"), "kept as it was"
    assert os.path.isdir(path) == (case.wanted != "a file"), "made again"
