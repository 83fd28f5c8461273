"""Two `fashionnet run` processes on one project folder: they take turns, nothing is mixed up.

The test holds the project's run lock while the runs start, so both are surely waiting for it at
the same time (no dependence on timing); then it lets them race for it.
"""

from collections.abc import Iterator

import pytest
from cli_runs import SMALL, LiveRun, api_env, error_line, leftovers, run_fashionnet, snapshot
from synthetic import write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.report.columns import OVERALL_COLUMNS
from fashionnet.report.publish import read_history
from fashionnet.report.run_report import read_run_csv

WAITING = "another run is using"


@pytest.fixture
def project(tmp_path) -> tuple[Layout, tuple[str, ...]]:
    """A project folder and the `fashionnet run` options for it, on small synthetic data."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_synthetic_raw(raw, n_train=300, n_test=100, seed=2)
    layout = Layout(tmp_path / "project")
    return layout, ("--raw-dir", str(raw), "--project-dir", str(layout.root), *SMALL)


@pytest.fixture
def live_runs() -> Iterator[list[LiveRun]]:
    """Runs started by a test; any still going at the end (a failed test) is killed."""
    runs: list[LiveRun] = []
    yield runs
    for run in runs:
        if run.process.poll() is None:
            run.kill()


def test_two_runs_started_together_both_publish_whole_run_folders(
    prefect_harness, project, live_runs
):
    layout, options = project
    with run_lock(layout.lock_file, timeout=0):
        live_runs.extend(LiveRun(*options, env=api_env()) for _ in range(2))
        for run in live_runs:
            run.wait_for_line(WAITING)
    codes = [run.finish() for run in live_runs]

    assert codes == [0, 0], "\n\n".join(run.output for run in live_runs)
    run_dirs = sorted(layout.runs_dir.iterdir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        for name in ("overall.csv", "per_class.csv", "confusion_test.csv", "manifest.json"):
            assert (run_dir / name).is_file(), f"{run_dir.name} lacks {name}"
    assert layout.latest_link.is_symlink()
    assert layout.latest_link.resolve() in {run_dir.resolve() for run_dir in run_dirs}
    history = read_history(layout.history_csv)
    for run_dir in run_dirs:  # one history row per split of each run, as in its overall.csv
        overall = read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS)
        rows = history[history["run_id"] == run_dir.name]
        assert rows["split"].tolist() == overall["split"].tolist()
        assert rows["samples"].tolist() == overall["samples"].tolist()
    assert len(history) == 2 * len(overall)
    assert leftovers(layout.root) == []


def test_a_run_that_cannot_get_the_lock_fails_clearly_and_writes_nothing(prefect_harness, project):
    layout, options = project
    with run_lock(layout.lock_file, timeout=0):  # another run holds the project folder
        before = snapshot(layout.root)
        result = run_fashionnet(*options, "--lock-timeout", "1", env=api_env())

    assert error_line(result) == (
        f"another fashionnet run still holds {layout.lock_file} after 1 s: "
        "wait for it to finish, or raise --lock-timeout"
    )
    assert snapshot(layout.root) == before
