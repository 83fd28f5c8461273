"""prefect.yaml end to end: a real Prefect server, the work pool, `prefect deploy`, a worker, runs.

Like `make server`, `make deploy` and `make worker`, on a free 127.0.0.1 port with a temporary
PREFECT_HOME, deploying the real prefect.yaml with parameters pointing at a small synthetic
dataset in a temporary project folder. Every process started here is stopped by PID at the end
of the module, also when a test fails. About a minute and a half on two cores.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import requests
import yaml
from requests.adapters import HTTPAdapter
from synthetic import small_run, write_synthetic_raw
from urllib3.util.retry import Retry

from fashionnet.atomic import TEMP_MARKER
from fashionnet.layout import Layout
from fashionnet.options import RunOptions, cli_args
from fashionnet.reports import read_history
from fashionnet.runlock import run_lock
from fashionnet.train import TrainConfig
from flows.artifacts import PER_CLASS_KEY, PROGRESS_KEY, REPORT_KEY

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
FASHIONNET = Path(sys.executable).with_name("fashionnet")
SPEC = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"][0]
POOL = SPEC["work_pool"]["name"]
DEPLOYMENT = f"fashionnet/{SPEC['name']}"
# The deployment runs a small run on synthetic data; verifying the checksums makes that data
# "corrupt" (not the canonical files), so a run with this option must fail cleanly.
CORRUPT_MESSAGE = "replace it with the canonical file or remove it"
WAITING = "another run is using"  # what a run logs while another holds the project folder


def api_session() -> requests.Session:
    """HTTP to the server, retrying what Prefect's own client retries.

    Under load the server answers 503 when its SQLite database is briefly locked; Prefect's
    client retries 429, 502 and 503 with backoff, and so does this one, for every method.
    """
    retry = Retry(
        total=6,
        backoff_factor=0.5,
        status_forcelist=(429, 502, 503),
        allowed_methods=None,
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


@dataclass(frozen=True)
class Server:
    api_url: str
    env: dict[str, str]  # for every prefect command of this module
    http: requests.Session = field(default_factory=api_session)

    def get(self, path: str) -> Any:
        response = self.http.get(self.api_url + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> Any:
        response = self.http.post(self.api_url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def patch(self, path: str, body: dict) -> None:
        self.http.patch(self.api_url + path, json=body, timeout=10).raise_for_status()

    def prefect(self, *args: str) -> str:
        """Run a prefect command from the repo root, as `make deploy` does; return its output."""
        done = subprocess.run(
            [str(PREFECT), *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{output}"
        return output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen, sigterms: int = 1, grace: float = 10.0) -> None:
    """SIGTERM (`sigterms` times: a process worker needs two), then SIGKILL, then its leftovers."""
    children = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(process.pid).children(recursive=True)
    for _ in range(sigterms):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
    if process.poll() is None:
        process.kill()
        process.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def wait_for(condition: Callable[[], Any], what: str, timeout: float, log: Path | None = None):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if result := condition():
                return result
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """`prefect server start` on a free port with a temporary home, like `make server`."""
    folder = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Quick turns for the test: schedule, retry a waiting run and poll every few seconds.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    # The flow runs must get these from prefect.yaml alone, as a user's worker would.
    for name in ("PREFECT_LOGGING_EXTRA_LOGGERS", "FASHIONNET_RAW_DIR", "PREFECT_PROFILE"):
        env.pop(name, None)
    log = folder / "server.log"
    command = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(command, env, log)
    try:
        api = Server(env["PREFECT_API_URL"], env)
        wait_for(lambda: api.get("/health") is True, "the server's /api/health", 120, log)
        yield api
    finally:
        stop(process)


@pytest.fixture(scope="module")
def project(server, tmp_path_factory) -> Layout:
    """The work pool and the deployment of prefect.yaml, its runs writing to a temporary project."""
    folder = tmp_path_factory.mktemp("deployed")
    raw = folder / "raw"
    raw.mkdir()
    write_synthetic_raw(raw, n_train=300, n_test=100, seed=3)
    layout = Layout(folder / "project")
    server.prefect("work-pool", "create", POOL, "--type", "process")
    parameters = small_run(raw, layout.root)
    output = server.prefect(
        "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml",
        "--params", json.dumps(parameters),
    )  # fmt: skip
    assert DEPLOYMENT in output
    return layout


@pytest.fixture(scope="module")
def worker(server, project, tmp_path_factory) -> Iterator[None]:
    """`prefect worker start` on the pool, like `make worker`; stopped with two SIGTERMs.

    The daily schedule is switched off first (which also drops its pending runs), so that the
    worker runs only the tests' own runs, even across 03:00 UTC.
    """
    deployment = server.get(f"/deployments/name/{DEPLOYMENT}")
    for schedule in deployment["schedules"]:
        server.patch(
            f"/deployments/{deployment['id']}/schedules/{schedule['id']}", {"active": False}
        )
    assert not scheduled_runs(server, deployment["id"])
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = spawn([str(PREFECT), "worker", "start", "--pool", POOL], server.env, log)
    try:
        wait_for(lambda: "started!" in log.read_text(), "the worker to start", 60, log)
        yield
    finally:
        stop(process, sigterms=2, grace=5)


def trigger(server: Server, *args: str) -> str:
    """`prefect deployment run` the deployment; returns the new flow run's id."""
    output = server.prefect("deployment", "run", DEPLOYMENT, *args)
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def finished(server: Server, flow_run_id: str, timeout: float = 120) -> dict:
    """The flow run once it is in a final state."""

    def final_run():
        run = server.get(f"/flow_runs/{flow_run_id}")
        return run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"} else None

    return wait_for(final_run, f"flow run {flow_run_id} to finish", timeout)


def wait_for_log(
    server: Server, flow_run_id: str, matches: Callable[[dict], bool], timeout: float = 30
) -> None:
    """Wait for a log line of the flow run that `matches` (logs arrive in batches, a bit late)."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    wait_for(
        lambda: any(matches(line) for line in server.post("/logs/filter", body)),
        f"a matching log line of flow run {flow_run_id}",
        timeout,
    )


def scheduled_runs(server: Server, deployment_id: str) -> list[dict]:
    body = {
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    return server.post("/flow_runs/filter", body)


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


def test_a_deployment_run_publishes_reports_history_and_artifacts(server, project, worker):
    flow_run_id = trigger(server)
    run = finished(server, flow_run_id)

    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    [run_id] = run_folders(project)
    assert project.latest_link.resolve() == (project.runs_dir / run_id).resolve()
    history = pd.read_csv(project.history_csv)
    assert history["run_id"].tolist() == [run_id, run_id]
    assert history["split"].tolist() == ["train", "test"]
    assert history["samples"].tolist() == [300, 100]

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
    predict_run = server.get(f"/flow_runs/{progress['flow_run_id']}")  # the chunk subflow
    assert server.get(f"/task_runs/{predict_run['parent_task_run_id']}")["flow_run_id"] == (
        flow_run_id
    )


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
    assert added["run_id"].tolist() == [new_run_id, new_run_id], "the failed run added no row"
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
    assert sorted(added["run_id"]) == sorted([*new_folders, *new_folders])
    assert added.groupby("split").size().to_dict() == {"test": 2, "train": 2}
    assert not list(project.root.rglob(f"*{TEMP_MARKER}*"))
