"""`make server` and `make worker` under a supervisor: a SIGTERM to make stops the service.

Each recipe is one command that bash and fashionnet.core.settings exec, so make's child is the
service itself (Prefect's server; flows/worker.py, which runs Prefect's worker), and GNU make
passes a SIGTERM it gets on to its child. The setup step is taken as done
(`-o .venv/bin/fashionnet`): the test must not reinstall the environment.
"""

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from prefect_server import Server, free_port, spawn, stop, wait_for

pytestmark = pytest.mark.server

MAKE = ["make", "--no-print-directory", "-o", ".venv/bin/fashionnet"]


def make_target(target: str, port: int, home: Path, log: Path) -> subprocess.Popen:
    """make in a process group of its own, as under a supervisor or at a terminal."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    return spawn([*MAKE, target, f"PREFECT_PORT={port}"], env, log, new_session=True)


def only_child(make: subprocess.Popen) -> psutil.Process:
    [child] = psutil.Process(make.pid).children()
    return child


def test_a_sigterm_to_make_stops_the_server_and_the_worker_it_runs(tmp_path):
    port = free_port()
    home = tmp_path / "home"
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = make_target("server", port, home, server_log)
    worker = None
    try:
        api = Server(f"http://127.0.0.1:{port}/api", {})
        wait_for(lambda: api.get("/health") is True, "make server", 120, server_log)
        server_process = only_child(server)
        assert "prefect" in " ".join(server_process.cmdline()), "make's child is Prefect itself"

        worker = make_target("worker", port, home, worker_log)
        wait_for(lambda: "started!" in worker_log.read_text(), "make worker", 90, worker_log)
        worker_process = only_child(worker)
        assert "fashionnet_flows.worker" in worker_process.cmdline()
        [prefect_worker] = worker_process.children()

        # The whole group (a terminal's Ctrl-C, `kill -TERM -<pgid>`): flows/worker.py gets the
        # signal twice, from the group and from make, and stops once.
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        assert not worker_process.is_running(), "the worker stopped, not only make"
        assert not prefect_worker.is_running()
        log = worker_log.read_text()
        assert "stopped!" in log, "a graceful stop, not a kill"
        assert log.count("SIGTERM: stopping") == 1 and "killed" not in log

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert not server_process.is_running(), "the server stopped, not only make"
    finally:
        if worker is not None:
            stop(worker, sigterms=2, grace=5)
        stop(server)
