"""The example systemd units of deploy/systemd/: valid for systemd, and running what make runs.
(The prune timer and its service: tests/test_operations_retention.py.)"""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT_FOLDER = REPO_ROOT / "deploy" / "systemd"
# The long-running services: the server and the worker.
UNITS = sorted(u for u in UNIT_FOLDER.glob("*.service") if u.name != "fashionnet-prune.service")
EXAMPLE_CHECKOUT = "/opt/fashionnet"


def service_section(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(unit.read_text())
    return parser["Service"]


def test_there_is_a_unit_for_the_server_and_one_for_the_worker():
    commands = [service_section(unit)["ExecStart"] for unit in UNITS]
    assert len(commands) == 2
    assert any(c.endswith("prefect server start --host 127.0.0.1 --port 4200") for c in commands)
    assert any(c.endswith("python -m fashionnet_flows.worker --pool fashionnet") for c in commands)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_each_unit_restarts_on_failure_and_runs_through_the_settings(unit):
    service = service_section(unit)
    assert service["Restart"] == "on-failure"
    venv = f"{EXAMPLE_CHECKOUT}/.venv/bin"
    assert service["ExecStart"].startswith(f"{venv}/python -m fashionnet.core.settings {venv}/")
    assert service["WorkingDirectory"] == EXAMPLE_CHECKOUT
    assert int(service["TimeoutStopSec"]) > 0
    # One SIGTERM to the main process alone, which stops the rest (flows/worker.py's stop takes
    # at most its runs' and the worker's grace); SIGKILL for what is left after the timeout.
    assert service["KillMode"] == "mixed"


def test_the_worker_unit_waits_longer_than_the_worker_takes_to_stop():
    from fashionnet_flows.worker import RUN_GRACE_SECONDS, WORKER_GRACE_SECONDS

    [worker] = [unit for unit in UNITS if "worker" in unit.name]
    stop_seconds = int(service_section(worker)["TimeoutStopSec"])
    assert stop_seconds > RUN_GRACE_SECONDS + WORKER_GRACE_SECONDS


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_units(tmp_path):
    """`systemd-analyze verify`, with the example checkout replaced by this one (it checks that
    the commands exist)."""
    copies = []
    for unit in sorted(UNIT_FOLDER.glob("*.service")) + sorted(UNIT_FOLDER.glob("*.timer")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(EXAMPLE_CHECKOUT, str(REPO_ROOT)))
        copies.append(str(copy))
    done = subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
