"""The deployment left alone for months: dead runs end, pauses and alerts hold, every failure,
late run and lost worker reaches a person, and the worker stops when asked.

One real Prefect server and worker for the module (tests/prefect_server.py), the deploy step of
`make deploy` with FASHIONNET_ALERT_WEBHOOK (and the success ping) pointing at an HTTP receiver
in this process on 127.0.0.1, and runs on small synthetic data. The server marks runs Late and
workers offline within seconds here (SERVER_SETTINGS). A test kills the worker during a run,
and the tests after it run while the zombie automation waits out its grace (heartbeats come
every 30 s at the least); the last tests check what it did. About 3 minutes.
"""

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from prefect_server import (
    DEPLOYMENT,
    INBOX_DEPLOYMENT,
    POOL,
    SPEC,
    Server,
    deploy,
    finished,
    pause_schedules,
    running_server,
    start_worker,
    stop,
    trigger,
    wait_for,
)
from synthetic import SMALL_TRAIN, inbox_poll, small_run, write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.data.idx import read_images, write_idx
from fashionnet.report.publish import read_history
from fashionnet.score.inbox import inbox_dir
from fashionnet_flows.automations import (
    ALERT_KINDS,
    HEARTBEAT_GRACE,
    PING_BLOCK,
    STOP_ALERT,
    SUCCESS_PING,
    WEBHOOK_BLOCK,
    ZOMBIE_AUTOMATION,
    ZOMBIE_MESSAGE,
)
from fashionnet_flows.deploy import (
    ALERT_VARIABLE,
    ALERTS_VARIABLE,
    PING_VARIABLE,
    STOPS_VARIABLE,
    alert_request,
    save_automations,
)
from fashionnet_flows.inbox import POLL_LOCK
from fashionnet_flows.pipeline import code_version

pytestmark = pytest.mark.server

# Failing without the network: checksums verified on synthetic (not canonical) files.
CORRUPT_MESSAGE = "replace it with the canonical file or remove it"
ALERT_DELAY = 60  # seconds from a run's end to its alert
CRASHED_WITHIN = timedelta(seconds=180)  # of its kill, a dead run is Crashed
STOPPED_MESSAGE = "stopped on request (interrupted by SIGTERM)"
RUN_NAME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ-(schedule|deployment-manual)$")
SERVER_SETTINGS = {
    # A scheduled run no worker took within 5 s is Late (the default is 15 s; the units', 600).
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "5",
    # A worker silent for 2 heartbeats of 2 s is offline, and its pool then not ready.
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_FOREMAN_INACTIVITY_HEARTBEAT_MULTIPLE": "2",
}
ALL_ALERTS = sorted(set(ALERT_KINDS) - {STOP_ALERT})
LATE_ALERT = "flow run Late: not started"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 keeping the JSON body of every POST it gets."""

    def __init__(self) -> None:
        bodies: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                bodies.put({**json.loads(body), "path": self.path})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.bodies = bodies
        self.received: list[dict] = []
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        address = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.url, self.ping_url = f"{address}/alerts", f"{address}/ping"

    def wait(self, matches, what: str, timeout: float = ALERT_DELAY) -> list[dict]:
        """The bodies that `matches`, once there is one (every body so far is kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.received.append(self.bodies.get(timeout=0.5))
            if found := [body for body in self.received if matches(body)]:
                return found
        pytest.fail(f"no {what} within {timeout} s: {self.received}")

    def alerts_for(
        self, flow_run_id: str, alert: str | None = None, timeout: float = ALERT_DELAY
    ) -> list[dict]:
        """The alerts (not pings) naming the flow run: of the kind `alert` if given, else of
        any kind but Late (on a loaded machine a triggered run can wait longer than the
        server's 5 s for the worker, and its Late alert then comes first)."""
        return self.wait(
            lambda b: (
                b["path"] == "/alerts"
                and b.get("flow_run_id") == flow_run_id
                and (b["alert"] == alert if alert else b["alert"] != LATE_ALERT)
            ),
            f"alert {alert or ''} for flow run {flow_run_id}",
            timeout,
        )


@dataclass(frozen=True)
class Deployed:
    layout: Layout
    parameters: dict  # the daily deployment's parameters
    output: str  # of the first deploy

    @property
    def every_deployment(self) -> dict[str, dict]:
        """The parameters of each deployment, as `make deploy` is given them here."""
        return {"daily": self.parameters, "inbox": inbox_poll(self.layout.root)}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.http.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.http.shutdown()
        receiver.http.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("prefect-server"), **SERVER_SETTINGS) as api:
        yield api


@pytest.fixture(scope="module")
def deployed(server, receiver, tmp_path_factory) -> Deployed:
    """`make deploy FASHIONNET_ALERT_WEBHOOK=<receiver>` with a small run on synthetic data."""
    folder = tmp_path_factory.mktemp("deployed")
    raw = folder / "raw"
    raw.mkdir()
    write_synthetic_raw(raw, n_train=300, n_test=100, seed=5)
    layout = Layout(folder / "project")
    parameters = small_run(raw, layout.root)
    alerts = {ALERT_VARIABLE: receiver.url, PING_VARIABLE: receiver.ping_url}
    output = deploy(server, Deployed(layout, parameters, "").every_deployment, **alerts)
    return Deployed(layout, parameters, output)


class Worker:
    """The module's worker (`make worker`), in a process group of its own; tests that stop or
    kill it start the next one."""

    def __init__(self, server: Server, folder: Path) -> None:
        self.server, self.folder, self.starts = server, folder, 0
        self.process: subprocess.Popen | None = None
        self.log = folder / "worker-0.log"

    def start(self) -> None:
        self.starts += 1
        self.log = self.folder / f"worker-{self.starts}.log"
        self.process = start_worker(self.server, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=20)


@pytest.fixture(scope="module")
def worker(server, deployed, tmp_path_factory) -> Iterator[Worker]:
    """The worker, with the schedules paused: it runs the tests' runs alone."""
    for deployment in (DEPLOYMENT, INBOX_DEPLOYMENT):
        pause_schedules(server, deployment)
    worker = Worker(server, tmp_path_factory.mktemp("worker"))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@dataclass(frozen=True)
class DeadRun:
    """A flow run whose worker a test killed, left to the zombie automation."""

    flow_run_id: str
    killed_at: datetime


@pytest.fixture(scope="module")
def dead_runs() -> list[DeadRun]:
    """The runs killed by a test, checked by a later one."""
    return []


def automation_names(server: Server) -> list[str]:
    return sorted(a["name"] for a in server.post("/automations/filter", {}))


def block_names(server: Server) -> list[str]:
    blocks = server.post("/block_documents/filter", {"block_documents": {}})
    return sorted(b["name"] for b in blocks if b["name"] in {WEBHOOK_BLOCK, PING_BLOCK})


def schedule_states(server: Server) -> list[bool]:
    return [s["active"] for s in server.get(f"/deployments/name/{DEPLOYMENT}")["schedules"]]


def leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) of every non-dict value in nested dicts."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, name)
    else:
        yield key, value


def run_with(deployed: Deployed, **train: Any) -> list[str]:
    """`prefect deployment run` arguments for a run with these training settings."""
    return ["--param", "train=" + json.dumps({**deployed.parameters["train"], **train})]


def wait_for_state(server: Server, flow_run_id: str, state_type: str, timeout: float) -> dict:
    def in_state():
        run = server.get(f"/flow_runs/{flow_run_id}")
        return run if run["state"]["type"] == state_type else None

    return wait_for(in_state, f"flow run {flow_run_id} to be {state_type}", timeout)


def wait_for_heartbeat(server: Server, flow_run_id: str) -> None:
    """The run's first heartbeat: its flow is under way (past Prefect's start-up)."""
    heartbeat = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        }
    }
    wait_for(lambda: server.post("/events/filter", heartbeat)["events"], "the run's heartbeat", 120)


def saved_alerts(server: Server, **environ: str) -> list[str]:
    """The alert step of `make deploy` alone (flows/deploy.py), with these variables set."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        return save_automations(alert_request(environ), [POOL])


def test_redeploys_keep_pauses_and_alerts_until_alerts_are_switched_off(server, deployed, receiver):
    assert schedule_states(server) == [True], "a new deployment starts active"
    everything = sorted([ZOMBIE_AUTOMATION, SUCCESS_PING, *ALL_ALERTS])
    assert automation_names(server) == everything
    assert "Alerts active" in deployed.output
    deployment = server.get(f"/deployments/name/{DEPLOYMENT}")
    assert deployment["version"] == code_version() and deployment["version"]

    pause_schedules(server, DEPLOYMENT)
    output = deploy(server, deployed.every_deployment)  # a plain `make deploy`
    assert schedule_states(server) == [False], output
    assert "stays paused" in output
    assert automation_names(server) == everything, "a plain redeploy keeps every alert"
    # Not updated: an update would restart the zombie automation's timing of dead runs.
    assert f"Automation {ZOMBIE_AUTOMATION!r} unchanged" in output
    assert "updated" not in output
    [active] = [line for line in output.splitlines() if line.startswith("Alerts active")]
    assert "TimedOut" in active and "Late" in active and "Cancelled" not in active

    lines = saved_alerts(server, **{ALERTS_VARIABLE: "off"})
    assert automation_names(server) == [ZOMBIE_AUTOMATION] and block_names(server) == []
    assert lines[-1] == "Alerts: none (switched off)."
    lines = saved_alerts(server)
    assert automation_names(server) == [ZOMBIE_AUTOMATION], "off stays off"
    assert ALERT_VARIABLE in lines[-2] and lines[-2].startswith("Alerts: none")

    alerts = {ALERT_VARIABLE: receiver.url, PING_VARIABLE: receiver.ping_url, STOPS_VARIABLE: "on"}
    saved_alerts(server, **alerts)
    lines = saved_alerts(server)
    assert "runs stopped on request (Cancelled)" in lines[-2]
    assert automation_names(server) == sorted([*everything, STOP_ALERT]), "never duplicated"
    assert block_names(server) == [WEBHOOK_BLOCK, PING_BLOCK]


def test_a_run_past_the_flow_timeout_ends_timed_out_and_posts_an_alert(
    server, deployed, worker, receiver
):
    """...and the zombie automation leaves it alone (checked at the end of the module)."""
    env = {**SPEC["work_pool"]["job_variables"]["env"], "FASHIONNET_FLOW_TIMEOUT_SECONDS": "15"}
    flow_run_id = trigger(
        server, *run_with(deployed, epochs=10**6), "--job-variable", "env=" + json.dumps(env)
    )
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "FAILED" and run["state"]["name"] == "TimedOut"

    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["state"] == "TimedOut" and alert["state_type"] == "FAILED"
    assert "timeout" in alert["message"]


def test_a_run_whose_worker_dies_leaves_the_pool_without_a_live_worker(
    server, deployed, worker, receiver, dead_runs
):
    """SIGKILL to the worker and its flow run (a machine going down): the run's heartbeats
    stop, and the zombie automation's 90 s of grace run while the tests below use a new worker
    (`test_a_run_whose_worker_died_ends_crashed_and_the_next_run_starts` checks the run). One of
    them saves the alerts again meanwhile, as `make deploy` does: the zombie automation, left
    unchanged, keeps timing the dead run.

    The run is an inbox poll, held waiting by the poll lock this test takes: a run of the daily
    deployment would hold that deployment's concurrency slot, and so every run below, until
    it is Crashed."""
    with run_lock(inbox_dir(deployed.layout) / POLL_LOCK, timeout=0):
        flow_run_id = trigger(server, deployment=INBOX_DEPLOYMENT)
        wait_for_heartbeat(server, flow_run_id)
        processes = [worker.process, *psutil.Process(worker.process.pid).children(recursive=True)]
        os.killpg(worker.process.pid, signal.SIGKILL)
        for process in processes[1:]:  # the flow run has a process group of its own
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        worker.process.wait()
    killed_at = datetime.now(UTC)
    dead_runs.append(DeadRun(flow_run_id, killed_at))

    # The pool had no live worker left (as after each stop of the tests below).
    [pool_alert] = receiver.wait(
        lambda b: b.get("work_pool") == POOL and datetime.fromisoformat(b["occurred"]) > killed_at,
        "the pool alert",
    )
    assert pool_alert["alert"] == "work pool has no live worker"
    worker.start()


def test_manifest_and_history_name_the_flow_run_and_what_started_it(
    server, deployed, worker, receiver
):
    override = {**deployed.parameters["train"], "epochs": SMALL_TRAIN["epochs"] + 1}
    flow_run_id = trigger(server, "--param", "train=" + json.dumps(override))
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    assert RUN_NAME.match(run["name"]), run["name"]

    manifest = json.loads((deployed.layout.latest_link / "manifest.json").read_text())
    origin = manifest["prefect"]
    assert origin["flow_run_id"] == flow_run_id
    assert origin["flow_run_name"] == run["name"]
    assert origin["deployment"] == DEPLOYMENT
    assert origin["trigger"] == "deployment-manual"
    assert ("epochs", override["epochs"]) in set(leaves(origin["overrides"]))
    history = read_history(deployed.layout.history_csv)  # this run's rows, one per split
    assert set(history["run_id"]) == {deployed.layout.latest_link.resolve().name}
    assert set(history["flow_run_id"]) == {flow_run_id}
    assert set(history["trigger"]) == {"deployment-manual"}
    assert set(history["deployment"]) == {DEPLOYMENT}
    assert set(history["code_version"]) == {code_version()} == {origin["code_version"]}

    # The dead-man's switch hears of every completed run.
    [ping] = receiver.wait(
        lambda b: b["path"] == "/ping" and b.get("flow_run_id") == flow_run_id, "the ping"
    )
    assert ping["deployment"] == DEPLOYMENT and ping["state"] == "Completed"


def test_a_worse_model_than_the_previous_run_posts_a_regression_alert(
    server, deployed, worker, receiver
):
    """After the trained model of the test above, untrained weights on the same data."""
    options = {**deployed.parameters["options"], "model_source": "random"}
    flow_run_id = trigger(server, "--param", "options=" + json.dumps(options))
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]

    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["deployment"] == DEPLOYMENT and alert["flow_run_name"] == run["name"]
    assert alert["test_accuracy"] < alert["previous_test_accuracy"] - alert["tolerance"]
    assert alert["run"] == f"fashionnet.run.{deployed.layout.latest_link.resolve().name}"


def test_a_run_whose_test_split_drifted_posts_a_drift_alert(
    server, deployed, worker, receiver, tmp_path
):
    """Data large enough for a verdict (2,000 test images), the test images inverted."""
    raw = tmp_path / "raw"
    write_synthetic_raw(raw, n_train=2_500, n_test=2_000, seed=7)
    images = raw / "t10k-images-idx3-ubyte.gz"
    write_idx(images, np.ascontiguousarray(255 - read_images(images)))
    options = {**deployed.parameters["options"], "raw_dir": str(raw)}
    flow_run_id = trigger(server, "--param", "options=" + json.dumps(options))
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]

    [alert] = [a for a in receiver.alerts_for(flow_run_id) if a["alert"].startswith("data")]
    assert alert["deployment"] == DEPLOYMENT and alert["splits"] == ["test"]
    assert alert["summary"].startswith("test drifted from train: brightness (Jensen-Shannon")
    assert alert["run"] == f"fashionnet.run.{deployed.layout.latest_link.resolve().name}"


def test_a_failed_run_posts_one_alert_naming_deployment_run_state_and_error(
    server, deployed, worker, receiver
):
    options = {**deployed.parameters["options"], "verify": True}
    flow_run_id = trigger(server, "--param", "options=" + json.dumps(options))
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "FAILED", "a problem a person must fix is not retried"

    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["deployment"] == DEPLOYMENT
    assert alert["flow_run_name"] == run["name"]
    assert alert["state"] == "Failed"
    assert CORRUPT_MESSAGE in alert["message"]
    assert (
        alert["flow_run_url"]
        == f"{server.api_url.removesuffix('/api')}/runs/flow-run/{flow_run_id}"
    )
    time.sleep(3)  # a duplicate would arrive right behind it
    assert len(receiver.alerts_for(flow_run_id)) == 1


def test_a_scheduled_run_no_worker_takes_posts_a_late_alert(server, deployed, worker, receiver):
    server.patch(f"/work_pools/{POOL}", {"is_paused": True})  # as if no worker were there
    try:
        flow_run_id = trigger(server)
        [alert] = receiver.alerts_for(flow_run_id, LATE_ALERT)
    finally:
        server.post(
            f"/flow_runs/{flow_run_id}/set_state", {"state": {"type": "CANCELLED"}, "force": True}
        )
        server.patch(f"/work_pools/{POOL}", {"is_paused": False})
    assert alert["deployment"] == DEPLOYMENT
    assert alert["flow_run_url"].endswith(f"/runs/flow-run/{flow_run_id}")


def test_one_sigterm_stops_the_worker_within_seconds_after_completed_runs(server, worker):
    """The worker has run the runs above; `systemctl stop` sends one SIGTERM."""
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0, worker.log.read_text()[-3000:]
    assert time.monotonic() - sent < 15
    assert "Worker 'fashionnet-" in worker.log.read_text()
    worker.start()


def test_stopping_the_worker_during_a_run_ends_the_run_cancelled_and_alerts_only_if_asked(
    server, deployed, worker, receiver
):
    """With the stop alert on, one "Cancelled" alert, and no failure alert."""
    saved_alerts(server, **{STOPS_VARIABLE: "on"})
    flow_run_id = trigger(server, *run_with(deployed, epochs=10**6))
    wait_for_heartbeat(server, flow_run_id)
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0, worker.log.read_text()[-3000:]
    assert time.monotonic() - sent < 30

    run = server.get(f"/flow_runs/{flow_run_id}")
    assert run["state"]["type"] == "CANCELLED", run["state"]
    assert run["state"]["message"].startswith(STOPPED_MESSAGE)
    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["state"] == "Cancelled" and alert["message"].startswith(STOPPED_MESSAGE)
    worker.start()


def test_a_run_whose_worker_died_ends_crashed_and_the_next_run_starts(
    server, deployed, worker, receiver, dead_runs
):
    """The run killed above, once the zombie automation's grace is over."""
    assert dead_runs, "no run was killed above"
    [dead] = dead_runs
    deadline = dead.killed_at + CRASHED_WITHIN
    run = wait_for_state(
        server,
        dead.flow_run_id,
        "CRASHED",
        max(1.0, (deadline - datetime.now(UTC)).total_seconds()),
    )
    assert datetime.fromisoformat(run["state"]["timestamp"]) < deadline, "crashed too late"
    assert run["state"]["message"] == ZOMBIE_MESSAGE
    [alert] = receiver.alerts_for(dead.flow_run_id)
    assert alert["state"] == "Crashed" and alert["deployment"] == INBOX_DEPLOYMENT

    # Crashed released the deployment's concurrency slot: the next run starts and completes.
    limit = server.get(f"/deployments/{run['deployment_id']}")["global_concurrency_limit"]
    assert limit["active_slots"] == 0
    after = finished(server, trigger(server, deployment=INBOX_DEPLOYMENT))
    assert after["state"]["type"] == "COMPLETED", after["state"]["message"]


def test_an_inbox_batch_that_drifted_or_could_not_be_read_posts_its_alerts(
    server, deployed, worker, receiver, tmp_path
):
    """A poll of the inbox deployment scoring 2,000 inverted images (enough for a verdict) and a
    text file named .png: the drift alert names the batch; the poll ends Failed once the files
    are moved, and the failure alert names the file's folder."""
    raw = tmp_path / "raw"
    write_synthetic_raw(raw, n_train=2_500, n_test=2_000, seed=9)  # 2,400 training images
    options = {**deployed.parameters["options"], "raw_dir": str(raw)}
    daily = finished(server, trigger(server, "--param", "options=" + json.dumps(options)))
    assert daily["state"]["type"] == "COMPLETED", daily["state"]["message"]
    inbox = deployed.layout.data_dir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    np.save(inbox / "inverted.npy", 255 - read_images(raw / "t10k-images-idx3-ubyte.gz"))
    (inbox / "notes.png").write_text("not a picture")

    flow_run_id = trigger(server, deployment=INBOX_DEPLOYMENT)
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "FAILED"

    [drift] = receiver.alerts_for(flow_run_id, "data drifted from the training split")
    batch = drift["run"].removeprefix("fashionnet.batch.")
    assert drift["deployment"] == INBOX_DEPLOYMENT and drift["splits"] == ["batch"]
    assert drift["summary"].startswith("batch drifted from train: brightness (Jensen-Shannon")
    assert (deployed.layout.root / "scores" / batch / "drift.csv").is_file()
    [failure] = receiver.alerts_for(flow_run_id, "flow run Failed")
    assert failure["deployment"] == INBOX_DEPLOYMENT
    assert "1 files could not be scored" in failure["message"]
    assert (inbox / "failed" / "notes.png.reason.txt").is_file()


def test_the_zombie_automation_never_changed_a_run_that_had_ended(server):
    """After the runs above, and more than its 90 s of grace after the timed-out one.

    A run's last heartbeat travels on the events stream, its final state through the API: on a
    loaded machine the heartbeat can arrive after the state, and the automation then asks to
    crash an ended run. The server refuses; nothing else may have gone wrong."""
    failed = {"filter": {"event": {"name": ["prefect.automation.action.failed"]}}}
    for event in server.post("/events/filter", failed)["events"]:
        assert event["resource"]["prefect.resource.name"] == ZOMBIE_AUTOMATION, event
        assert event["payload"]["reason"].startswith("Failed to set state: Run is already in "), (
            event
        )
    timed_out = {"flow_runs": {"state": {"name": {"any_": ["TimedOut"]}}}}
    [run] = server.post("/flow_runs/filter", timed_out)  # still TimedOut, not Crashed
    # Ended before the killed run started, whose crash came after the same grace.
    assert datetime.now(UTC) - datetime.fromisoformat(run["end_time"]) > HEARTBEAT_GRACE
