"""`make serve` (flows/serve.py): one process registers and serves the prefect.yaml deployments,
the daily pipeline and the inbox scoring."""

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
from fashionnet_flows.serve import ENTRYPOINTS, PREFECT_YAML, SERVED_SUFFIX, read_deployments

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    spec["entrypoint"]: spec for spec in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
}
DAILY, INBOX = (SPECS[entrypoint] for entrypoint in ENTRYPOINTS)
FLOW_NAMES = {"daily": "fashionnet", "inbox": "fashionnet-inbox"}  # by deployment name


def read_served(name: str):
    """The served deployment once it is registered (None before)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        return client.read_deployment_by_name(name)


@pytest.fixture
def scheduled_deployments(prefect_harness):
    """`fashionnet/daily` and `fashionnet-inbox/inbox` as `make deploy` leaves them: their
    schedules active."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    [daily], [inbox] = DAILY["schedules"], INBOX["schedules"]
    made = {}
    with get_client(sync_client=True) as client:
        for spec, schedule in (
            (DAILY, CronSchedule(cron=daily["cron"], timezone=daily["timezone"])),
            (INBOX, IntervalSchedule(interval=inbox["interval"])),
        ):
            flow_id = client.create_flow_from_name(FLOW_NAMES[spec["name"]])
            created = DeploymentScheduleCreate(
                schedule=schedule, active=True, slug=spec["schedules"][0]["slug"]
            )
            made[f"{FLOW_NAMES[spec['name']]}/{spec['name']}"] = client.create_deployment(
                flow_id=flow_id, name=spec["name"], schedules=[created]
            )
    try:
        yield list(made)
    finally:
        with get_client(sync_client=True) as client:
            for deployment_id in made.values():
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
    # A served inbox poll that falls due meanwhile finds an empty inbox, not the checkout's.
    env["FASHIONNET_INBOX"] = str(tmp_path / "inbox")
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


def wait_until_served(process, log, name: str):
    """The served deployment `name`, once registered and polled (the runner is up)."""
    deadline = time.monotonic() + 120
    while (deployment := read_served(name)) is None or deployment.last_polled is None:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{name} not served:\n{log.read_text()}"
        time.sleep(0.5)
    return deployment


def test_serve_registers_both_deployments_with_the_schedules_of_prefect_yaml(
    scheduled_deployments, serving
):
    """...from one process, and pauses the worker's deployments while it serves (one scheduler
    at a time)."""
    process, log = serving
    daily_name, inbox_name = scheduled_deployments
    daily = wait_until_served(process, log, f"{daily_name}{SERVED_SUFFIX}")
    inbox = wait_until_served(process, log, f"{inbox_name}{SERVED_SUFFIX}")

    [schedule] = daily.schedules
    [expected] = DAILY["schedules"]
    assert schedule.schedule.cron == expected["cron"] == "0 3 * * *"
    assert schedule.schedule.timezone == expected["timezone"] == "UTC"
    assert schedule.slug == expected["slug"] and schedule.active
    assert daily.parameters == DAILY["parameters"]
    assert daily.global_concurrency_limit.limit == DAILY["concurrency_limit"]["limit"]
    assert daily.concurrency_options.collision_strategy == "ENQUEUE"

    [schedule] = inbox.schedules
    [expected] = INBOX["schedules"]
    assert schedule.schedule.interval.total_seconds() == expected["interval"] == 300
    assert schedule.slug == expected["slug"] and schedule.active
    assert inbox.parameters == INBOX["parameters"]
    assert inbox.global_concurrency_limit.limit == INBOX["concurrency_limit"]["limit"]
    assert inbox.concurrency_options.collision_strategy == "CANCEL_NEW"

    for deployment in (daily, inbox):
        assert deployment.work_pool_name is None, "served by the process itself, not a worker"
    assert process.poll() is None, "serve keeps running to start the scheduled runs"
    for name in scheduled_deployments:
        assert schedules_active(name) == [False], f"one scheduler at a time: {name}"
        assert f"Paused the schedule of {name}" in log.read_text()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    for name in scheduled_deployments:
        assert read_served(f"{name}{SERVED_SUFFIX}").paused, "stopping serve pauses its schedule"
        assert schedules_active(name) == [True], f"and resumes the worker's: {name}"


def test_prefect_yaml_without_a_served_deployment_is_refused(tmp_path):
    spec = tmp_path / "prefect.yaml"
    spec.write_text(
        "deployments:\n  - name: other\n    entrypoint: elsewhere.py:other\n"
        f"  - name: daily\n    entrypoint: {ENTRYPOINTS[0]}\n"
    )
    with pytest.raises(FashionnetError, match=f"0 deployments with entrypoint {ENTRYPOINTS[1]}"):
        read_deployments(spec)


def test_deployments_that_set_one_variable_differently_are_refused():
    """Served runs share one environment: the deployments' must agree."""
    from fashionnet_flows.serve import job_environment

    def env(**variables):
        return {"work_pool": {"job_variables": {"env": variables}}}

    assert job_environment([env(A="1", B=2), env(A="1")]) == {"A": "1", "B": "2"}
    with pytest.raises(FashionnetError, match="set A differently"):
        job_environment([env(A="1"), env(A="2")])
