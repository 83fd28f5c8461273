"""SIGKILL in the middle of a download, of prepare, of prediction and of report writing.

The pipeline tests start from a copy of an uninterrupted run on the real data, whose
reports/latest is "the previous run". They remove the outputs of the stage under test and of
the stages after it, so the run has to redo them, start `fashionnet run` and kill it (SIGKILL:
none of its cleanup code runs) the moment the stage is under way: when the stage's temporary
file appears (prepare, reports), or when it reports progress (prediction runs in memory; its
one write at the end is too short to aim at). Then:
- the previous reports/latest, its files and history.csv are exactly as they were;
- nothing incomplete sits under a final name (the kill hit a temporary);
- a rerun completes, leaves no temporary anywhere, and writes report CSVs byte-identical to
  the uninterrupted run's.
"""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from cli_runs import LiveRun, api_env, leftovers, report_csvs, run_fashionnet, snapshot, summary
from synthetic import write_synthetic_raw
from test_fetch import IMAGES, Mirror, ok

from fashionnet.core.atomic import TEMP_MARKER, sweep_stale_temps
from fashionnet.core.layout import Layout
from fashionnet.data.fetch import find_raw_files
from fashionnet.data.parquet import open_split
from fashionnet.model.weights import load_params
from fashionnet.predict import read_predictions


@pytest.fixture(scope="module")
def env(prefect_harness):
    return api_env()


@pytest.fixture(scope="module")
def real_options(real_raw_dir):
    """The real data, with row groups and chunks small enough to give each stage some length."""
    return (
        *("--raw-dir", str(real_raw_dir), "--row-group-size", "1000", "--chunk-size", "1000"),
        *("--hidden-size", "32", "--epochs", "1"),
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_options, env) -> Path:
    project = tmp_path_factory.mktemp("uninterrupted")
    result = run_fashionnet(*real_options, "--project-dir", str(project), env=env)
    assert result.returncode == 0, summary(result)
    return project


def copy_without(project: Path, destination: Path, *removed: str) -> Path:
    """A copy of `project` (reports/latest kept as a link) without the `removed` folders."""
    shutil.copytree(project, destination, symlinks=True)
    for folder in removed:
        shutil.rmtree(destination / folder)
    return destination


def previous_reports(project: Path) -> dict[str, str]:
    """reports/ as a reader sees it: latest, its run folder, history.csv (not temporaries)."""
    return {
        name: state
        for name, state in snapshot(project).items()
        if name.startswith("reports") and TEMP_MARKER not in name
    }


def assert_final_names_complete(project: Path) -> None:
    layout = Layout(project)
    for path in layout.parquet_dir.glob("*.parquet"):
        open_split(path)
    for path in layout.predictions_dir.glob("*.parquet"):
        assert len(read_predictions(path)) == open_split(layout.parquet(path.stem)).num_rows
    for path in layout.models_dir.glob("*/weights.npz"):
        load_params(path)


def assert_rerun_matches(project: Path, uninterrupted: Path, options, env, *, swept: bool):
    result = run_fashionnet(*options, "--project-dir", str(project), env=env)
    assert result.returncode == 0, summary(result)
    assert ("left by an interrupted run" in result.stderr) == swept, summary(result)
    assert leftovers(project) == []
    latest, expected = Layout(project).latest_link, Layout(uninterrupted).latest_link
    assert latest.resolve().name != expected.resolve().name, "a new run, published"
    assert report_csvs(latest) == report_csvs(expected)
    ours, theirs = (
        load_params(next(p.glob("models/*/weights.npz"))) for p in (project, uninterrupted)
    )
    for name, array in ours.items():
        np.testing.assert_array_equal(array, theirs[name])


def test_kill_during_prepare(uninterrupted, real_options, env, tmp_path):
    project = copy_without(
        uninterrupted, tmp_path / "p", "data/parquet", "data/predictions", "models"
    )
    previous = previous_reports(project)
    run = LiveRun(*real_options, "--project-dir", str(project), env=env)
    parquet_dir = Layout(project).parquet_dir
    run.wait_for_path(parquet_dir, f".train.parquet{TEMP_MARKER}*")
    run.kill()

    assert previous_reports(project) == previous
    assert not (parquet_dir / "train.parquet").exists(), "the partial file never got its name"
    assert list(parquet_dir.glob(f".train.parquet{TEMP_MARKER}*")), "killed in mid-write"
    assert_final_names_complete(project)
    assert_rerun_matches(project, uninterrupted, real_options, env, swept=True)


def test_kill_during_prediction(uninterrupted, real_options, env, tmp_path):
    project = copy_without(uninterrupted, tmp_path / "p", "data/predictions")
    previous = previous_reports(project)
    run = LiveRun(*real_options, "--project-dir", str(project), env=env)
    run.wait_for_line(r"predicted \d+ of \d+ chunks")
    run.kill()

    assert previous_reports(project) == previous
    assert not list(Layout(project).predictions_dir.glob("*.parquet")), "killed before the write"
    assert_final_names_complete(project)
    assert_rerun_matches(project, uninterrupted, real_options, env, swept=False)


def test_kill_during_report_writing(uninterrupted, real_options, env, tmp_path):
    project = copy_without(uninterrupted, tmp_path / "p")  # every run writes a new run folder
    previous = previous_reports(project)
    run = LiveRun(*real_options, "--project-dir", str(project), env=env)
    runs_dir = Layout(project).runs_dir
    run.wait_for_path(runs_dir, f".*{TEMP_MARKER}*")
    run.kill()

    assert previous_reports(project) == previous, "no new run folder, latest and history as before"
    assert list(runs_dir.glob(f".*{TEMP_MARKER}*")), "the run folder was being built"
    assert_final_names_complete(project)
    assert_rerun_matches(project, uninterrupted, real_options, env, swept=True)


# --- a download killed half way ----------------------------------------------------------

DOWNLOAD = """
import json, sys
from pathlib import Path
from fashionnet.data.catalog import RawFile
from fashionnet.data.fetch import find_raw_files
raw = RawFile(**json.loads(sys.argv[3]))
find_raw_files(cache_dir=Path(sys.argv[1]), catalog={raw.name: raw}, mirrors=[sys.argv[2]])
"""
BLOCK = 1 << 20  # fetch writes the body in blocks of this size


def half_then_hang(release: threading.Event):
    """Send the headers and half the body, then stall until `release` is set."""

    def action(handler, body):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        release.wait(60)

    return action


def test_kill_during_download_leaves_only_a_temporary(tmp_path):
    origin, cache = tmp_path / "origin", tmp_path / "cache"
    catalog = write_synthetic_raw(origin, n_train=6000, n_test=10)
    raw = catalog[IMAGES]
    assert raw.size // 2 > BLOCK, "half the body must reach the disk before the stall"
    release = threading.Event()
    mirror = Mirror(origin)
    try:
        mirror.script(half_then_hang(release), names=[IMAGES])
        child = subprocess.Popen(
            [sys.executable, "-c", DOWNLOAD, str(cache), mirror.url, json.dumps(asdict(raw))]
        )
        partial = wait_for_file(cache, f".{IMAGES}{TEMP_MARKER}*", min_size=BLOCK, child=child)
        child.send_signal(signal.SIGKILL)
        child.wait(10)

        assert not (cache / IMAGES).exists(), "a partial download never gets the final name"
        assert sweep_stale_temps(cache) == [partial]
        assert list(cache.iterdir()) == []
        release.set()
        mirror.script(ok, names=[IMAGES])
        found = find_raw_files(cache_dir=cache, catalog={IMAGES: raw}, mirrors=[mirror.url])
        assert found.sha256[IMAGES] == raw.sha256
    finally:
        release.set()
        mirror.close()


def wait_for_file(folder: Path, glob: str, *, min_size: int, child: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert child.poll() is None, "the download ended before it could be killed"
        for path in folder.glob(glob) if folder.is_dir() else []:
            if path.stat().st_size >= min_size:
                return path
        time.sleep(0.01)
    child.kill()
    raise AssertionError(f"no {folder}/{glob} of {min_size} bytes within 30 s")
