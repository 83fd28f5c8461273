"""The example systemd units of deploy/systemd/: valid for systemd, and running what make runs."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((REPO_ROOT / "deploy" / "systemd").glob("*.service"))
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
    assert any(c.endswith("prefect worker start --pool fashionnet") for c in commands)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_each_unit_restarts_on_failure_and_runs_prefect_through_the_settings(unit):
    service = service_section(unit)
    assert service["Restart"] == "on-failure"
    venv = f"{EXAMPLE_CHECKOUT}/.venv/bin"
    assert service["ExecStart"].startswith(
        f"{venv}/python -m fashionnet.core.settings {venv}/prefect "
    )
    assert service["WorkingDirectory"] == EXAMPLE_CHECKOUT
    assert int(service["TimeoutStopSec"]) > 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_units(tmp_path):
    """`systemd-analyze verify`, with the example checkout replaced by this one (it checks that
    the commands exist)."""
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(EXAMPLE_CHECKOUT, str(REPO_ROOT)))
        copies.append(str(copy))
    done = subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
