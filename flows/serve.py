"""`make serve`: the deployments in prefect.yaml, served by this one process (no pool, no worker).

The simple path on one machine. It registers `fashionnet/daily-served` (the pipeline) and
`fashionnet-inbox/inbox-served` (the inbox scoring), each with the schedules, parameters,
concurrency limit and environment of its deployment in prefect.yaml, then runs both's flow runs
from this checkout until stopped (Ctrl-C), which pauses their schedules. It needs a Prefect
server (`make server`): the ephemeral one never starts scheduled runs.

One scheduler at a time: while it serves, the active schedules of the worker's deployments (the
same ones, `fashionnet/daily` and `fashionnet-inbox/inbox`) are paused, so the two never run the
pipeline twice at 03:00 nor poll the inbox twice; they are resumed when serving stops (Ctrl-C,
SIGTERM), and only those that were active.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m fashionnet_flows.serve
"""

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from fashionnet.core.errors import FashionnetError
from fashionnet.core.settings import apply_environment_defaults

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_YAML = PROJECT_DIR / "prefect.yaml"
# The flows served, by their entrypoint in prefect.yaml: the pipeline, then the inbox.
ENTRYPOINTS = ("flows/pipeline.py:fashionnet_pipeline", "flows/inbox.py:score_inbox")
SERVED_SUFFIX = "-served"  # a name of its own, so it never replaces the worker's deployment


def read_deployments(prefect_yaml: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployment of each served flow (ENTRYPOINTS) in prefect.yaml, as written there."""
    spec = yaml.safe_load(Path(prefect_yaml).read_text(encoding="utf-8")) or {}
    deployments = []
    for entrypoint in ENTRYPOINTS:
        found = [d for d in spec.get("deployments") or [] if d.get("entrypoint") == entrypoint]
        if len(found) != 1:
            raise FashionnetError(
                f"{prefect_yaml} has {len(found)} deployments with entrypoint {entrypoint}; "
                "keep exactly one"
            )
        deployments += found
    return deployments


def schedule_of(schedule: dict[str, Any]) -> Any:
    """A schedule of prefect.yaml (cron or interval) as `prefect.schedules` makes it."""
    from prefect.schedules import Cron, Interval

    common = {
        "timezone": schedule.get("timezone"),
        "active": schedule.get("active", True),
        "slug": schedule.get("slug"),
    }
    if "cron" in schedule:
        return Cron(schedule["cron"], **common)
    if "interval" in schedule:
        return Interval(schedule["interval"], anchor_date=schedule.get("anchor_date"), **common)
    raise FashionnetError(f"{PREFECT_YAML}: flows/serve.py serves cron and interval schedules only")


def serve_options(deployment: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `Flow.to_deployment` that repeat the deployment's settings."""
    # Prefect is imported here, not at the top: main() sets PREFECT_HOME first.
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    limit = deployment.get("concurrency_limit")
    return {
        "name": deployment["name"] + SERVED_SUFFIX,
        "description": deployment.get("description"),
        "tags": deployment.get("tags"),
        "parameters": deployment.get("parameters") or {},
        "schedules": [schedule_of(schedule) for schedule in deployment.get("schedules") or []],
        "concurrency_limit": (
            ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit
        ),
    }


def job_environment(deployments: list[dict[str, Any]]) -> dict[str, str]:
    """The environment prefect.yaml gives the worker's flow runs (work_pool.job_variables.env):
    served runs share this process's, so a variable the deployments set differently is refused."""
    environment: dict[str, str] = {}
    for deployment in deployments:
        job_variables = (deployment.get("work_pool") or {}).get("job_variables") or {}
        for name, value in (job_variables.get("env") or {}).items():
            if environment.setdefault(name, str(value)) != str(value):
                raise FashionnetError(
                    f"{PREFECT_YAML}: the deployments set {name} differently; served runs share "
                    "one environment, so give it one value"
                )
    return environment


def pause_schedules(client: Any, name: str) -> list[Any]:
    """Pause the active schedules of the deployment `name`; returns them (none if not deployed)."""
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        return []
    active = [schedule for schedule in deployment.schedules if schedule.active]
    for schedule in active:
        client.update_deployment_schedule(deployment.id, schedule.id, active=False)
    return active


def resume_schedules(client: Any, name: str, schedules: list[Any]) -> None:
    deployment = client.read_deployment_by_name(name)
    for schedule in schedules:
        client.update_deployment_schedule(deployment.id, schedule.id, active=True)


def main() -> None:
    apply_environment_defaults(PROJECT_DIR)
    try:
        deployments = read_deployments()
        options = [serve_options(deployment) for deployment in deployments]
        environment = job_environment(deployments)
    except FashionnetError as exc:
        sys.exit(f"fashionnet serve: error: {exc}")
    for name, value in environment.items():
        os.environ.setdefault(name, value)  # served runs are child processes: they inherit it
    os.chdir(PROJECT_DIR)  # what the pull step does for the worker: runs start in this checkout

    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        sys.exit(
            "fashionnet serve: error: no Prefect server configured; start one with `make server` "
            "and use `make serve` (or set PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    from prefect import serve
    from prefect.client.orchestration import get_client

    from fashionnet_flows.inbox import score_inbox
    from fashionnet_flows.pipeline import fashionnet_pipeline

    flows = (fashionnet_pipeline, score_inbox)  # in the order of ENTRYPOINTS
    scheduled = [
        f"{flow.name}/{deployment['name']}"
        for flow, deployment in zip(flows, deployments, strict=True)
    ]
    with get_client(sync_client=True) as client:
        paused = {name: pause_schedules(client, name) for name in scheduled}
    for name in scheduled:
        if paused[name]:
            print(f"Paused the schedule of {name} while serving; it resumes when this stops.")
    try:
        serve(*(flow.to_deployment(**served) for flow, served in zip(flows, options, strict=True)))
    finally:
        with get_client(sync_client=True) as client:
            for name in scheduled:
                if paused[name]:
                    resume_schedules(client, name, paused[name])
                    print(f"Resumed the schedule of {name}.")


if __name__ == "__main__":
    main()
