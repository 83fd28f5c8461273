"""A real Prefect server for the tests, like `make server`, and the calls the tests make to it.

`running_server` starts `prefect server start` on a free 127.0.0.1 port with a temporary
PREFECT_HOME; `start_worker` the worker of `make worker` (flows/worker.py); `deploy` runs the
deploy step of `make deploy` (flows/deploy.py) on the real prefect.yaml. Processes are stopped
by PID.
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
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fashionnet_flows.temporary_server import start_from_template

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
PREFECT = PYTHON.with_name("prefect")
FASHIONNET = PYTHON.with_name("fashionnet")
SPECS = {
    d["name"]: d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
}
SPEC, INBOX_SPEC = SPECS["daily"], SPECS["inbox"]
POOL = SPEC["work_pool"]["name"]
DEPLOYMENT = f"fashionnet/{SPEC['name']}"
INBOX_DEPLOYMENT = f"fashionnet-inbox/{INBOX_SPEC['name']}"


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
        return run_checked([str(PREFECT), *args], self.env, f"prefect {' '.join(args)}")


def run_checked(command: list[str], env: dict[str, str], what: str) -> str:
    """Run `command` from the repo root, as make does; its output, once it has succeeded."""
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{what} failed:\n{output}"
    return output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    command: list[str], env: dict[str, str], log: Path, *, new_session: bool = False
) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
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


@contextlib.contextmanager
def running_server(folder: Path, **settings: str) -> Iterator[Server]:
    """`prefect server start` on a free port with its home in `folder`, like `make server`."""
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
        **settings,
    }
    # The flow runs must get these from prefect.yaml alone, as a user's worker would.
    for name in (
        "PREFECT_LOGGING_EXTRA_LOGGERS",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
        "FASHIONNET_RAW_DIR",
        "FASHIONNET_ALERT_WEBHOOK",
        "FASHIONNET_INBOX",
        "PREFECT_PROFILE",
    ):
        env.pop(name, None)
    # Its new database from the installation's template, as a new project's temporary server
    # starts (Prefect's migrations would take seconds of CPU from the other tests).
    start_from_template(folder / "home" / "prefect.db")
    log = folder / "server.log"
    command = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(command, env, log)
    try:
        api = Server(env["PREFECT_API_URL"], env)
        wait_for(lambda: api.get("/health") is True, "the server's /api/health", 120, log)
        yield api
    finally:
        stop(process)


def deploy(server: Server, parameters: dict[str, dict], **env: str) -> str:
    """The deploy step of `make deploy` with these parameters per deployment (by its name in
    prefect.yaml); returns its output."""
    command = [str(PYTHON), "-m", "fashionnet_flows.deploy"]
    for name, given in parameters.items():
        command += ["--params", f"{name}={json.dumps(given)}"]
    return run_checked(command, {**server.env, **env}, "fashionnet_flows.deploy")


def pause_schedules(server: Server, deployment: str) -> None:
    """Switch off the deployment's schedules through the API (which drops their pending runs)."""
    found = server.get(f"/deployments/name/{deployment}")
    for schedule in found["schedules"]:
        server.patch(f"/deployments/{found['id']}/schedules/{schedule['id']}", {"active": False})


def start_worker(server: Server, log: Path) -> subprocess.Popen:
    """The worker of `make worker` on the pool, in a process group of its own."""
    command = [str(PYTHON), "-m", "fashionnet_flows.worker", "--pool", POOL]
    process = spawn(command, server.env, log, new_session=True)
    try:
        wait_for(lambda: "started!" in log.read_text(), "the worker to start", 60, log)
    except BaseException:
        stop(process, sigterms=2, grace=5)
        raise
    return process


def trigger(server: Server, *args: str, deployment: str = DEPLOYMENT) -> str:
    """`prefect deployment run` the deployment; returns the new flow run's id."""
    output = server.prefect("deployment", "run", deployment, *args)
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def finished(server: Server, flow_run_id: str, timeout: float = 120) -> dict:
    """The flow run once it is in a final state."""

    def final_run():
        run = server.get(f"/flow_runs/{flow_run_id}")
        return (
            run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None
        )

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
