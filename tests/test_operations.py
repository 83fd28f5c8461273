"""The deployment left alone for months: dead runs end, pauses hold, failures reach a person.

One real Prefect server and worker for the module (tests/prefect_server.py), the deploy step of
`make deploy` with FASHIONNET_ALERT_WEBHOOK pointing at an HTTP receiver in this process on
127.0.0.1, and runs on small synthetic data. The last test kills the worker and waits for the
zombie automation (up to 3 minutes: heartbeats come every 30 s at the least). About 4 minutes.
"""

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
from prefect_server import (
    DEPLOYMENT,
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
from synthetic import SMALL_TRAIN, small_run, write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.data.idx import read_images, write_idx
from fashionnet_flows.automations import (
    DRIFT_ALERT,
    FAILURE_ALERT,
    REGRESSION_ALERT,
    WEBHOOK_BLOCK,
    ZOMBIE_AUTOMATION,
    ZOMBIE_MESSAGE,
)
from fashionnet_flows.deploy import ALERT_VARIABLE

pytestmark = pytest.mark.server

# Failing without the network: checksums verified on synthetic (not canonical) files.
CORRUPT_MESSAGE = "replace it with the canonical file or remove it"
ALERT_DELAY = 60  # seconds from a run's end to its alert


class Receiver:
    """An HTTP endpoint on 127.0.0.1 keeping the JSON body of every POST it gets."""

    def __init__(self) -> None:
        bodies: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                bodies.put(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.bodies = bodies
        self.received: list[dict] = []
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/alerts"

    def alerts_for(self, flow_run_id: str, timeout: float = ALERT_DELAY) -> list[dict]:
        """The bodies naming the flow run, once there is one (every body so far is kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.received.append(self.bodies.get(timeout=0.5))
            if found := [b for b in self.received if b.get("flow_run_id") == flow_run_id]:
                return found
        pytest.fail(f"no alert for flow run {flow_run_id} within {timeout} s: {self.received}")


@dataclass(frozen=True)
class Deployed:
    layout: Layout
    parameters: dict  # the deployment's parameters
    output: str  # of the first deploy


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
    with running_server(tmp_path_factory.mktemp("prefect-server")) as api:
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
    output = deploy(server, parameters, **{ALERT_VARIABLE: receiver.url})
    return Deployed(layout, parameters, output)


@pytest.fixture(scope="module")
def worker(server, deployed, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A worker in a process group of its own (the last test kills it); schedules paused."""
    pause_schedules(server, DEPLOYMENT)
    process = start_worker(server, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        yield process
    finally:
        stop(process, sigterms=2, grace=5)


def automation_names(server: Server) -> list[str]:
    return sorted(a["name"] for a in server.post("/automations/filter", {}))


def schedule_states(server: Server) -> list[bool]:
    return [s["active"] for s in server.get(f"/deployments/name/{DEPLOYMENT}")["schedules"]]


def leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) of every non-dict value in nested dicts."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, name)
    else:
        yield key, value


def test_deploy_keeps_a_paused_schedule_paused_and_saves_each_automation_once(
    server, deployed, receiver
):
    assert schedule_states(server) == [True], "a new deployment starts active"
    every_one = sorted([ZOMBIE_AUTOMATION, FAILURE_ALERT, REGRESSION_ALERT, DRIFT_ALERT])
    assert automation_names(server) == every_one

    pause_schedules(server, DEPLOYMENT)
    output = deploy(server, deployed.parameters)  # no FASHIONNET_ALERT_WEBHOOK this time
    assert schedule_states(server) == [False], output
    assert "stays paused" in output
    assert automation_names(server) == [ZOMBIE_AUTOMATION]
    [no_alerts] = [line for line in output.splitlines() if line.startswith("No alerts")]
    assert ALERT_VARIABLE in no_alerts

    output = deploy(server, deployed.parameters, **{ALERT_VARIABLE: receiver.url})
    assert schedule_states(server) == [False], output
    assert automation_names(server) == every_one, "deploying again updates, never duplicates"
    blocks = server.post("/block_documents/filter", {"block_documents": {}})
    assert [b["name"] for b in blocks if b["name"] == WEBHOOK_BLOCK] == [WEBHOOK_BLOCK]


def test_manifest_and_history_name_the_flow_run_and_what_started_it(server, deployed, worker):
    override = {**deployed.parameters["train"], "epochs": SMALL_TRAIN["epochs"] + 1}
    flow_run_id = trigger(server, "--param", "train=" + json.dumps(override))
    run = finished(server, flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]

    manifest = json.loads((deployed.layout.latest_link / "manifest.json").read_text())
    origin = manifest["prefect"]
    assert origin["flow_run_id"] == flow_run_id
    assert origin["flow_run_name"] == run["name"]
    assert origin["deployment"] == DEPLOYMENT
    assert origin["trigger"] == "deployment-manual"
    assert ("epochs", override["epochs"]) in set(leaves(origin["overrides"]))
    history = pd.read_csv(deployed.layout.history_csv)  # this run's rows, one per split
    assert set(history["run_id"]) == {deployed.layout.latest_link.resolve().name}
    assert set(history["flow_run_id"]) == {flow_run_id}
    assert set(history["trigger"]) == {"deployment-manual"}


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
    assert run["state"]["type"] == "FAILED"

    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["deployment"] == DEPLOYMENT
    assert alert["flow_run_name"] == run["name"]
    assert alert["state"] == "Failed"
    assert CORRUPT_MESSAGE in alert["message"]
    time.sleep(3)  # a duplicate would arrive right behind it
    assert len(receiver.alerts_for(flow_run_id)) == 1


def test_a_run_whose_worker_dies_ends_crashed_and_the_next_run_starts(
    server, deployed, worker, receiver, tmp_path
):
    """SIGKILL to the worker and its flow run (a machine going down); heartbeats stop."""
    endless = {**deployed.parameters["train"], "epochs": 10**6}
    flow_run_id = trigger(server, "--param", "train=" + json.dumps(endless))
    heartbeat = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        }
    }
    wait_for(
        lambda: server.post("/events/filter", heartbeat)["events"],
        "the run's first heartbeat",
        120,
    )
    processes = [worker, *psutil.Process(worker.pid).children(recursive=True)]
    os.killpg(worker.pid, signal.SIGKILL)
    for process in processes[1:]:  # the flow run may have a process group of its own
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    worker.wait()
    killed = time.monotonic()

    def crashed():
        run = server.get(f"/flow_runs/{flow_run_id}")
        return run if run["state"]["type"] == "CRASHED" else None

    run = wait_for(crashed, "the zombie automation to crash the run", 180)
    assert time.monotonic() - killed < 180
    assert run["state"]["message"] == ZOMBIE_MESSAGE
    [alert] = receiver.alerts_for(flow_run_id)
    assert alert["state"] == "Crashed" and alert["deployment"] == DEPLOYMENT

    # Crashed released the deployment's concurrency slot: the next run starts and completes.
    limit = server.get(f"/deployments/{run['deployment_id']}")["global_concurrency_limit"]
    assert limit["active_slots"] == 0
    replacement = start_worker(server, tmp_path / "worker.log")
    try:
        after = finished(server, trigger(server))
    finally:
        stop(replacement, sigterms=2, grace=5)
    assert after["state"]["type"] == "COMPLETED", after["state"]["message"]
