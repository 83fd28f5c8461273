"""`make serve`: the deployment in prefect.yaml, served by this one process (no pool, no worker).

The simple path on one machine. It registers the deployment `fashionnet/<name>-served` with the
schedules, parameters, concurrency limit and environment of the deployment in prefect.yaml, then
runs its flow runs from this checkout until stopped (Ctrl-C), which pauses its schedule.
It needs a Prefect server (`make server`): the ephemeral one never starts scheduled runs.

One scheduler at a time: while it serves, the active schedules of the worker's deployment (the
same one, `fashionnet/<name>`) are paused, so the two never run the pipeline twice at 03:00;
they are resumed when serving stops (Ctrl-C, SIGTERM), and only those that were active.

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
ENTRYPOINT = "flows/pipeline.py:fashionnet_pipeline"
SERVED_SUFFIX = "-served"  # a name of its own, so it never replaces the worker's deployment


def read_deployment(prefect_yaml: Path = PREFECT_YAML) -> dict[str, Any]:
    """The one deployment of the pipeline flow in prefect.yaml, as written there."""
    spec = yaml.safe_load(Path(prefect_yaml).read_text(encoding="utf-8")) or {}
    found = [d for d in spec.get("deployments") or [] if d.get("entrypoint") == ENTRYPOINT]
    if len(found) != 1:
        raise FashionnetError(
            f"{prefect_yaml} has {len(found)} deployments with entrypoint {ENTRYPOINT}; "
            "keep exactly one"
        )
    return found[0]


def serve_options(deployment: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `Flow.serve` that repeat the deployment's settings."""
    # Prefect is imported here, not at the top: main() sets PREFECT_HOME first.
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.schedules import Cron

    schedules = []
    for schedule in deployment.get("schedules") or []:
        if "cron" not in schedule:
            raise FashionnetError(f"{PREFECT_YAML}: flows/serve.py serves cron schedules only")
        schedules.append(
            Cron(
                schedule["cron"],
                timezone=schedule.get("timezone"),
                active=schedule.get("active", True),
                slug=schedule.get("slug"),
            )
        )
    limit = deployment.get("concurrency_limit")
    return {
        "name": deployment["name"] + SERVED_SUFFIX,
        "description": deployment.get("description"),
        "tags": deployment.get("tags"),
        "parameters": deployment.get("parameters") or {},
        "schedules": schedules,
        "global_limit": ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
    }


def job_environment(deployment: dict[str, Any]) -> dict[str, str]:
    """The environment prefect.yaml gives the worker's flow runs (work_pool.job_variables.env)."""
    job_variables = (deployment.get("work_pool") or {}).get("job_variables") or {}
    return {name: str(value) for name, value in (job_variables.get("env") or {}).items()}


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
        deployment = read_deployment()
        options = serve_options(deployment)
    except FashionnetError as exc:
        sys.exit(f"fashionnet serve: error: {exc}")
    for name, value in job_environment(deployment).items():
        os.environ.setdefault(name, value)  # served runs are child processes: they inherit it
    os.chdir(PROJECT_DIR)  # what the pull step does for the worker: runs start in this checkout

    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        sys.exit(
            "fashionnet serve: error: no Prefect server configured; start one with `make server` "
            "and use `make serve` (or set PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    from prefect.client.orchestration import get_client

    from fashionnet_flows.pipeline import fashionnet_pipeline

    scheduled = f"{fashionnet_pipeline.name}/{deployment['name']}"
    with get_client(sync_client=True) as client:
        paused = pause_schedules(client, scheduled)
    if paused:
        print(f"Paused the schedule of {scheduled} while serving; it resumes when this stops.")
    try:
        fashionnet_pipeline.serve(**options)
    finally:
        if paused:
            with get_client(sync_client=True) as client:
                resume_schedules(client, scheduled, paused)
            print(f"Resumed the schedule of {scheduled}.")


if __name__ == "__main__":
    main()
