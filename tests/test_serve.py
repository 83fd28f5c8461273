"""`make serve` (flows/serve.py): one process registers and serves the prefect.yaml deployment."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fashionnet.core.errors import FashionnetError
from fashionnet_flows.serve import PREFECT_YAML, SERVED_SUFFIX, read_deployment

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load(PREFECT_YAML.read_text())["deployments"][0]


def read_served(name: str):
    """The served deployment once it is registered (None before)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        return client.read_deployment_by_name(name)


@pytest.fixture
def scheduled_deployment(prefect_harness):
    """`fashionnet/<name>` as `make deploy` leaves it: its daily schedule active."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    [expected] = SPEC["schedules"]
    schedule = DeploymentScheduleCreate(
        schedule=CronSchedule(cron=expected["cron"], timezone=expected["timezone"]),
        active=True,
        slug=expected["slug"],
    )
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("fashionnet")
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=SPEC["name"], schedules=[schedule]
        )
    try:
        yield f"fashionnet/{SPEC['name']}"
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


def schedules_active(name: str) -> list[bool]:
    return [schedule.active for schedule in read_served(name).schedules]


@pytest.fixture
def serving(prefect_harness, tmp_path):
    """`python -m fashionnet_flows.serve` against the test server; stopped (SIGTERM, then
    SIGKILL) after."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fashionnet_flows.serve"],
            cwd=tmp_path,  # it must find its checkout on its own
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_serve_registers_the_deployment_with_the_schedule_of_prefect_yaml(
    scheduled_deployment, serving
):
    """...and pauses the worker's deployment while it serves (one scheduler at a time)."""
    process, log = serving
    name = f"fashionnet/{SPEC['name']}{SERVED_SUFFIX}"
    deadline = time.monotonic() + 120
    # Registered, and polled once: the runner is up (and handles SIGTERM from then on).
    while (deployment := read_served(name)) is None or deployment.last_polled is None:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{name} not served:\n{log.read_text()}"
        time.sleep(0.5)

    [schedule] = deployment.schedules
    [expected] = SPEC["schedules"]
    assert schedule.schedule.cron == expected["cron"] == "0 3 * * *"
    assert schedule.schedule.timezone == expected["timezone"] == "UTC"
    assert schedule.slug == expected["slug"] and schedule.active
    assert deployment.parameters == SPEC["parameters"]
    assert deployment.global_concurrency_limit.limit == SPEC["concurrency_limit"]["limit"]
    assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert deployment.work_pool_name is None, "served by the process itself, not a worker"
    assert process.poll() is None, "serve keeps running to start the scheduled runs"
    assert schedules_active(scheduled_deployment) == [False], "one scheduler at a time"
    assert f"Paused the schedule of {scheduled_deployment}" in log.read_text()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    assert read_served(name).paused, "stopping serve pauses its schedule"
    assert schedules_active(scheduled_deployment) == [True], "and resumes the worker's"


def test_prefect_yaml_without_the_pipeline_deployment_is_refused(tmp_path):
    spec = tmp_path / "prefect.yaml"
    spec.write_text("deployments:\n  - name: other\n    entrypoint: elsewhere.py:other\n")
    with pytest.raises(FashionnetError, match="keep exactly one"):
        read_deployment(spec)
