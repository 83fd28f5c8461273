"""`make worker`: Prefect's process worker for prefect.yaml's pool, stopped within seconds by one
SIGTERM or Ctrl-C, and the runs it was running ending `Cancelled`.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m fashionnet_flows.worker

It runs `prefect worker start --pool <pool> --name <pool>-<host>` as its child, in a session of
its own, and is the one process a supervisor signals (systemd's KillMode=mixed, make, a
terminal). Why not the worker alone: a process worker that has run a flow run may ignore its
first SIGTERM or Ctrl-C for minutes (and pick up more runs meanwhile), a second one makes it
SIGKILL itself and leaves its runs `Running`, and a SIGTERM to make's process group reaches it
twice (from the group and from make). Here the first SIGTERM, SIGINT or SIGHUP:

1. sends SIGTERM to each flow run the worker is running (and to one it starts meanwhile): the
   run stops at its next step and ends `Cancelled` ("stopped on request", flows/pipeline.py);
   a run still going after RUN_GRACE_SECONDS is killed and set `Cancelled` through the API;
2. asks the worker to stop (SIGINT); if it has not stopped WORKER_GRACE_SECONDS later it is
   killed (its runs are over by then: nothing is lost);
3. exits 0. More signals meanwhile are the same request: "already stopping".

The fixed name makes a restarted worker the same worker in the UI instead of a new one each time.
"""

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from fashionnet_flows.deploy import read_spec, work_pools

PREFECT = Path(sys.executable).with_name("prefect")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RUN_GRACE_SECONDS = 60  # a step of any stage takes seconds; the unit's TimeoutStopSec is 120
WORKER_GRACE_SECONDS = 10
FLOW_RUN_VARIABLE = "PREFECT__FLOW_RUN_ID"  # in the environment of each flow run's process


def say(message: str) -> None:
    print(f"fashionnet worker: {message}", file=sys.stderr, flush=True)


def default_pool() -> str:
    [pool] = sorted(work_pools(read_spec())) or ["fashionnet"]
    return pool


def flow_runs(worker: psutil.Process) -> dict[psutil.Process, str]:
    """The worker's flow-run processes, with their flow run ids."""
    runs = {}
    for child in worker.children():
        with contextlib.suppress(psutil.Error):
            if flow_run_id := child.environ().get(FLOW_RUN_VARIABLE):
                runs[child] = flow_run_id
    return runs


def mark_cancelled(flow_run_id: str, message: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Cancelled(message=message), force=True)
    except Exception as error:  # noqa: BLE001 (the server may be down: say so, go on stopping)
        say(
            f"could not mark flow run {flow_run_id} Cancelled ({error}); the zombie automation "
            "will end it Crashed"
        )


def stop_runs(runs: dict[psutil.Process, str]) -> None:
    for run, flow_run_id in runs.items():
        say(f"asking flow run {flow_run_id} (PID {run.pid}) to stop at its next step")
        with contextlib.suppress(psutil.Error):
            run.send_signal(signal.SIGTERM)
    _, still_going = psutil.wait_procs(list(runs), timeout=RUN_GRACE_SECONDS)
    for run in still_going:
        flow_run_id = runs[run]
        say(f"flow run {flow_run_id} did not stop within {RUN_GRACE_SECONDS} s: killed")
        with contextlib.suppress(psutil.Error):
            for process in [*run.children(recursive=True), run]:
                process.kill()
        mark_cancelled(
            flow_run_id,
            f"stopped on request: killed {RUN_GRACE_SECONDS} s after the worker was asked to stop",
        )


def stop(worker: subprocess.Popen) -> None:
    # The worker keeps running meanwhile (its runs write their output through it): a run it
    # starts before it is asked to stop is stopped in the next round.
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(worker.pid)
        while runs := flow_runs(process):
            stop_runs(runs)
        process.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=WORKER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        say(f"the Prefect worker did not stop within {WORKER_GRACE_SECONDS} s: killed")
        worker.kill()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fashionnet_flows.worker")
    parser.add_argument("--pool", default=None, help="the work pool (prefect.yaml's)")
    parser.add_argument("--name", default=None, help="the worker's name (<pool>-<host name>)")
    args = parser.parse_args()
    pool = args.pool or default_pool()
    name = args.name or f"{pool}-{socket.gethostname()}"

    asked = threading.Event()
    # Taken by the first stop signal alone. A handler can be interrupted by the next signal's
    # (make and the process group send SIGTERM at once): checking and then setting `asked`
    # let both say "stopping"; taking a lock is one step.
    first = threading.Lock()

    def on_stop_signal(number: int, _frame: object) -> None:
        if not first.acquire(blocking=False):
            say(f"{signal.Signals(number).name}: already stopping")
            return
        asked.set()
        say(f"{signal.Signals(number).name}: stopping (runs in progress end Cancelled)")

    for number in STOP_SIGNALS:
        signal.signal(number, on_stop_signal)
    command = [str(PREFECT), "worker", "start", "--pool", pool, "--name", name]
    # A session of its own: signals for the group of make or of a terminal reach only this
    # process, which passes on one stop.
    worker = subprocess.Popen(command, start_new_session=True)
    while worker.poll() is None and not asked.wait(0.5):
        pass
    if not asked.is_set():
        sys.exit(worker.returncode)  # it ended on its own: the supervisor decides what next
    stop(worker)
    say("stopped")
    sys.exit(0)


if __name__ == "__main__":
    main()
