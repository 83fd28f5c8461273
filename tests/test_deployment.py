"""prefect.yaml end to end: a real Prefect server, the work pool, the deploy step, a worker, runs.

Like `make server`, `make deploy` and `make worker` (tests/prefect_server.py), on a free
127.0.0.1 port with a temporary PREFECT_HOME, deploying the real prefect.yaml with parameters
pointing at a small synthetic dataset in a temporary project folder: the daily pipeline, and
the inbox scoring what is dropped into that project's data/inbox. Every process started here
is stopped by PID at the end of the module, also when a test fails. About two minutes on two
cores. The automations, alerts and pauses: tests/test_operations.py.
"""

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from prefect_server import (
    DEPLOYMENT,
    FASHIONNET,
    INBOX_DEPLOYMENT,
    INBOX_SPEC,
    POOL,
    REPO_ROOT,
    SPEC,
    Server,
    deploy,
    finished,
    pause_schedules,
    running_server,
    scheduled_runs,
    spawn,
    start_worker,
    stop,
    trigger,
    wait_for,
    wait_for_log,
)
from synthetic import SMALL_OPTIONS, garment_photos, inbox_poll, small_run, write_synthetic_raw

from fashionnet.core.atomic import TEMP_MARKER
from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions, cli_args
from fashionnet.report.publish import read_history
from fashionnet.score.batch import SCORES_DIR
from fashionnet_flows.artifacts import PER_CLASS_KEY, PROGRESS_KEY, REPORT_KEY, SCORING_PROGRESS_KEY
from fashionnet_flows.pipeline import code_version

# The deployment runs a small run on synthetic data; verifying the checksums makes that data
# "corrupt" (not the canonical files), so a run with this option must fail cleanly.
CORRUPT_MESSAGE = "replace it with the canonical file or remove it"
WAITING = "another run is using"  # what a run logs while another holds the project folder


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("prefect-server")) as api:
        yield api


@pytest.fixture(scope="module")
def project(server, tmp_path_factory) -> Layout:
    """`make deploy`'s step on prefect.yaml, its runs writing to a temporary project folder."""
    folder = tmp_path_factory.mktemp("deployed")
    raw = folder / "raw"
    raw.mkdir()
    write_synthetic_raw(raw, n_train=300, n_test=100, seed=3)
    layout = Layout(folder / "project")
    output = deploy(
        server, {"daily": small_run(raw, layout.root), "inbox": inbox_poll(layout.root)}
    )
    assert DEPLOYMENT in output and INBOX_DEPLOYMENT in output
    return layout


@pytest.fixture(scope="module")
def worker(server, project, tmp_path_factory) -> Iterator[None]:
    """`prefect worker start` on the pool, like `make worker`; stopped with two SIGTERMs.

    The schedules are switched off first (which also drops their pending runs), so that the
    worker runs only the tests' own runs, even across 03:00 UTC or 5 minutes on.
    """
    for deployment in (DEPLOYMENT, INBOX_DEPLOYMENT):
        pause_schedules(server, deployment)
        assert not scheduled_runs(server, server.get(f"/deployments/name/{deployment}")["id"])
    process = start_worker(server, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        yield
    finally:
        stop(process, sigterms=2, grace=5)


def run_folders(layout: Layout) -> set[str]:
    return {p.name for p in layout.runs_dir.iterdir()} if layout.runs_dir.exists() else set()


def interval(run: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["end_time"])


def test_deployment_carries_the_daily_schedule_limit_and_working_directory(server, project):
    deployment = server.get(f"/deployments/name/{DEPLOYMENT}")

    [schedule] = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert schedule["slug"] == SPEC["schedules"][0]["slug"]
    assert schedule["active"] and not deployment["paused"]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["work_pool_name"] == POOL
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}
    ]
    assert deployment["parameters"]["options"]["project_dir"] == str(project.root)

    # The server's scheduler has put the next daily runs on the calendar, at 03:00 UTC.
    runs = wait_for(
        lambda: scheduled_runs(server, deployment["id"]),
        "the scheduler to create the daily runs",
        60,
    )
    for run in runs:
        assert datetime.fromisoformat(run["expected_start_time"]).strftime("%H:%M:%S") == "03:00:00"


def test_the_inbox_deployment_has_its_own_schedule_parameters_and_limit(server, project):
    """`make deploy` gives each deployment of prefect.yaml its own parameters (the daily run's
    are not the inbox's), its schedule and its concurrency limit, and the code version."""
    inbox = server.get(f"/deployments/name/{INBOX_DEPLOYMENT}")
    daily = server.get(f"/deployments/name/{DEPLOYMENT}")

    [schedule] = inbox["schedules"]
    assert schedule["schedule"]["interval"] == INBOX_SPEC["schedules"][0]["interval"] == 300
    assert schedule["slug"] == INBOX_SPEC["schedules"][0]["slug"] and schedule["active"]
    assert inbox["parameters"] == inbox_poll(project.root)
    assert set(daily["parameters"]) == {"options", "train"}
    assert inbox["global_concurrency_limit"]["limit"] == 1
    assert inbox["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert inbox["work_pool_name"] == POOL and "fashionnet" in inbox["tags"]
    assert inbox["version"] == daily["version"] == code_version()
    env = inbox["job_variables"]["env"]
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # the zombie automation's grace


def test_a_deployment_run_publishes_reports_history_and_artifacts(server, project, worker):
    flow_run_id = trigger(server)
    run = finished(server, flow_run_id)

    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    [run_id] = run_folders(project)
    assert project.latest_link.resolve() == (project.runs_dir / run_id).resolve()
    history = pd.read_csv(project.history_csv)
    assert set(history["run_id"]) == {run_id}
    held_out = SMALL_OPTIONS["validation_size"]  # of the 300 training images
    assert dict(zip(history["split"], history["samples"], strict=True)) == {
        "train": 300 - held_out,
        "validation": held_out,
        "test": 100,
    }

    # The library's own log lines reach the run's logs (PREFECT_LOGGING_EXTRA_LOGGERS from
    # prefect.yaml: this worker's environment does not set it).
    wait_for_log(server, flow_run_id, lambda line: line["name"].startswith("fashionnet."))

    latest = server.post("/artifacts/latest/filter", {})
    by_key = {artifact["key"]: artifact for artifact in latest}
    assert {PER_CLASS_KEY, REPORT_KEY, PROGRESS_KEY} <= set(by_key)
    table = by_key[PER_CLASS_KEY]
    assert table["type"] == "table" and table["flow_run_id"] == flow_run_id
    rows = json.loads(table["data"])
    assert [row["class"] for row in rows][:2] == ["T-shirt/top", "Trouser"] and len(rows) == 10
    report = by_key[REPORT_KEY]
    assert report["type"] == "markdown" and report["flow_run_id"] == flow_run_id
    assert str(project.runs_dir / run_id) in report["data"]
    assert "## Weakest test classes" in report["data"]
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report["data"])
    assert images and all(image.startswith("data:image/png;base64,") for image in images), (
        "figures inline: the UI cannot load files from the run folder"
    )
    progress = by_key[PROGRESS_KEY]
    assert progress["type"] == "progress" and progress["data"] == 100
    assert progress["flow_run_id"] == flow_run_id  # the chunks map in the run itself


def test_overlapping_runs_take_turns_and_a_failed_run_changes_nothing(server, project, worker):
    history_before = read_history(project.history_csv)
    folders_before = run_folders(project)
    # Both runs are waiting before the worker may start either, so they surely overlap.
    server.patch(f"/work_pools/{POOL}", {"is_paused": True})
    try:
        good = trigger(server)
        options = server.get(f"/deployments/name/{DEPLOYMENT}")["parameters"]["options"]
        corrupt = trigger(server, "--param", "options=" + json.dumps({**options, "verify": True}))
    finally:
        server.patch(f"/work_pools/{POOL}", {"is_paused": False})
    good_run, corrupt_run = finished(server, good), finished(server, corrupt)

    assert good_run["state"]["type"] == "COMPLETED", good_run["state"]["message"]
    assert corrupt_run["state"]["type"] == "FAILED"
    assert CORRUPT_MESSAGE in corrupt_run["state"]["message"]
    wait_for_log(server, corrupt, lambda line: CORRUPT_MESSAGE in line["message"])

    first, second = sorted([interval(good_run), interval(corrupt_run)])
    assert first[1] <= second[0], "the deployment's concurrency limit keeps runs apart"
    states = [
        s["name"]
        for run in (good, corrupt)
        for s in server.get(f"/flow_run_states/?flow_run_id={run}")
    ]
    assert "AwaitingConcurrencySlot" in states, "the later run waited for the earlier one"

    [new_run_id] = run_folders(project) - folders_before
    assert project.latest_link.resolve() == (project.runs_dir / new_run_id).resolve()
    history = read_history(project.history_csv)
    pd.testing.assert_frame_equal(history.iloc[: len(history_before)], history_before)
    added = history.iloc[len(history_before) :]
    assert set(added["run_id"]) == {new_run_id}, "the failed run added no row"
    assert not list(project.root.rglob(f"*{TEMP_MARKER}*"))


def test_a_manual_run_during_a_deployment_run_waits_for_the_project_folder(
    server, project, worker, tmp_path
):
    """`make run` by hand while the deployment's run works: the folder's lock makes them take turns.

    The manual run uses its own ephemeral API on the server's PREFECT_HOME, as `make run` next to
    `make server` does. The test holds the lock until both runs are seen waiting for it.
    """
    history_before = read_history(project.history_csv)
    folders_before = run_folders(project)
    parameters = server.get(f"/deployments/name/{DEPLOYMENT}")["parameters"]
    options = cli_args(RunOptions(**parameters["options"])) + cli_args(
        TrainConfig(**parameters["train"])
    )
    manual_env = {name: value for name, value in server.env.items() if name != "PREFECT_API_URL"}
    log = tmp_path / "manual.log"
    manual = None
    try:
        with run_lock(project.lock_file, timeout=0):
            scheduled = trigger(server)
            manual = spawn([str(FASHIONNET), "run", *options], manual_env, log)
            wait_for(lambda: WAITING in log.read_text(), "the manual run to wait", 120, log)
            wait_for_log(server, scheduled, lambda line: WAITING in line["message"], 120)
        scheduled_run = finished(server, scheduled)
        assert manual.wait(timeout=120) == 0, log.read_text()
    finally:
        if manual is not None:
            stop(manual)

    assert scheduled_run["state"]["type"] == "COMPLETED", scheduled_run["state"]["message"]
    new_folders = run_folders(project) - folders_before
    assert len(new_folders) == 2
    assert project.latest_link.resolve() in {
        (project.runs_dir / name).resolve() for name in new_folders
    }
    added = read_history(project.history_csv).iloc[len(history_before) :]
    assert set(added["run_id"]) == new_folders
    assert added.groupby("split").size().to_dict() == {"test": 2, "train": 2, "validation": 2}
    assert not list(project.root.rglob(f"*{TEMP_MARKER}*"))


def test_an_inbox_deployment_run_scores_the_dropped_files_with_its_progress(
    server, project, worker
):
    """Photos dropped into the project's data/inbox: a run of the inbox deployment scores them
    with the champion the daily runs above made, moves them to done/<batch>/, and shows its
    progress and summary in the UI's artifacts."""
    assert project.champion_link.exists(), "the daily runs above made a champion"
    inbox = project.data_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    names = garment_photos(inbox, 6)

    flow_run_id = trigger(server, deployment=INBOX_DEPLOYMENT)
    run = finished(server, flow_run_id)

    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    [batch] = list((project.root / SCORES_DIR).iterdir())
    scored = pd.read_csv(batch / "predictions.csv")
    assert sorted(Path(name).name for name in scored["input"]) == names
    assert sorted(p.name for p in (inbox / "done" / batch.name).iterdir()) == names
    latest = server.post("/artifacts/latest/filter", {})
    by_key = {artifact["key"]: artifact for artifact in latest}
    progress = by_key[SCORING_PROGRESS_KEY]
    assert progress["type"] == "progress" and progress["data"] == 100
    assert progress["flow_run_id"] == flow_run_id
    assert "images scored: 6 of 6 done" in progress["description"]
    assert by_key["fashionnet-inbox"]["flow_run_id"] == flow_run_id
