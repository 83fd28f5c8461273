"""`make deploy`: apply prefect.yaml to the server without undoing an operator's pause, then save
the automations that watch the runs (flows/automations.py).

    PREFECT_API_URL=http://127.0.0.1:4200/api \
        .venv/bin/python -m fashionnet_flows.deploy [prefect deploy args]

1. creates the process work pool of prefect.yaml if missing;
2. notes, for each deployment of prefect.yaml already on the server, whether it and each of its
   schedules are paused: `prefect deploy` makes every schedule what prefect.yaml says (active),
   so a schedule paused in the UI or with `prefect deployment schedule pause` would silently
   start again;
3. runs `prefect deploy --all` (extra arguments, e.g. `--params '{...}'`, are passed on);
4. pauses again what was paused (a deployment new to the server keeps prefect.yaml's state);
5. saves the zombie-run automation, and with FASHIONNET_ALERT_WEBHOOK=<url> the webhook block and
   the three alert automations (without it, removes the alert automations and says so).
Every step is idempotent: deploying twice leaves one of each.
"""

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fashionnet.core.errors import FashionnetError
from fashionnet.core.settings import apply_environment_defaults

PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_YAML = PROJECT_DIR / "prefect.yaml"
PREFECT = Path(sys.executable).with_name("prefect")
ALERT_VARIABLE = "FASHIONNET_ALERT_WEBHOOK"

# Per deployment name: (deployment paused?, {schedule key: active?}).
PauseState = dict[str, tuple[bool, dict[str, bool]]]


def read_spec(prefect_yaml: Path = PREFECT_YAML) -> dict[str, Any]:
    return yaml.safe_load(Path(prefect_yaml).read_text(encoding="utf-8")) or {}


def deployment_names(spec: dict[str, Any], flow_name: str) -> list[str]:
    return [f"{flow_name}/{deployment['name']}" for deployment in spec.get("deployments") or []]


def work_pools(spec: dict[str, Any]) -> set[str]:
    return {
        deployment["work_pool"]["name"]
        for deployment in spec.get("deployments") or []
        if (deployment.get("work_pool") or {}).get("name")
    }


def alert_url(environ: dict[str, str]) -> str | None:
    """The webhook URL of FASHIONNET_ALERT_WEBHOOK, None when unset or empty."""
    url = environ.get(ALERT_VARIABLE, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise FashionnetError(
            f"{ALERT_VARIABLE}={url!r} is not an http(s) URL; give the full address the "
            "alerts are POSTed to, e.g. https://hooks.example.com/..."
        )
    return url


def schedule_key(schedule: Any) -> str:
    """What identifies a schedule across a redeploy: its slug, else its definition."""
    return schedule.slug or schedule.schedule.model_dump_json()


def read_pauses(client: Any, names: Sequence[str]) -> PauseState:
    from prefect.exceptions import ObjectNotFound

    saved: PauseState = {}
    for name in names:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            continue  # new: it starts as prefect.yaml says
        saved[name] = (
            bool(deployment.paused),
            {schedule_key(s): s.active for s in deployment.schedules},
        )
    return saved


def restore_pauses(client: Any, saved: PauseState) -> list[str]:
    """Put back each saved state the deploy changed; one line per change."""
    lines = []
    for name, (paused, schedules) in saved.items():
        deployment = client.read_deployment_by_name(name)
        if paused and not deployment.paused:
            client.pause_deployment(deployment.id)
            lines.append(f"{name} stays paused, as it was before this deploy.")
        for schedule in deployment.schedules:
            active = schedules.get(schedule_key(schedule))
            if active is None or active == schedule.active:
                continue
            client.update_deployment_schedule(deployment.id, schedule.id, active=active)
            state = "active" if active else "paused"
            lines.append(f"Schedule {schedule.slug or schedule.id} of {name} stays {state}.")
    return lines


def prefect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PREFECT), *args], cwd=PROJECT_DIR, text=True, check=False)


def ensure_work_pools(spec: dict[str, Any]) -> None:
    for pool in sorted(work_pools(spec)):
        inspected = subprocess.run(
            [str(PREFECT), "work-pool", "inspect", pool], cwd=PROJECT_DIR, capture_output=True
        )
        if (
            inspected.returncode != 0
            and prefect("work-pool", "create", pool, "--type", "process").returncode
        ):
            raise FashionnetError(f"could not create the work pool {pool!r} (see above)")


def save_automations(url: str | None) -> list[str]:
    from fashionnet_flows import automations

    lines = []
    done = automations.save_automation(automations.zombie_automation())
    lines.append(
        f"Automation {automations.ZOMBIE_AUTOMATION!r} {done}: a run without heartbeats for "
        f"{automations.HEARTBEAT_GRACE.seconds} s ends Crashed."
    )
    if url is None:
        for name in (
            automations.FAILURE_ALERT,
            automations.REGRESSION_ALERT,
            automations.DRIFT_ALERT,
        ):
            if automations.delete_automation(name):
                lines.append(f"Removed the automation {name!r}.")
        lines.append(
            f"No alerts: {ALERT_VARIABLE} is not set "
            f"(make deploy {ALERT_VARIABLE}=<url> POSTs failures, regressions and drift there)."
        )
        return lines
    block_id = automations.save_webhook(url)
    for automation in (
        automations.failure_alert(block_id),
        automations.regression_alert(block_id),
        automations.drift_alert(block_id),
    ):
        done = automations.save_automation(automation)
        lines.append(f"Automation {automation.name!r} {done}: POSTs to {ALERT_VARIABLE}.")
    return lines


def deploy(extra_args: Sequence[str]) -> None:
    url = alert_url(dict(os.environ))  # a mistake in it stops the deploy before any change

    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from fashionnet_flows.pipeline import fashionnet_pipeline

    if not get_current_settings().api.url:
        raise FashionnetError(
            "no Prefect server configured; start one with `make server` and use `make deploy` "
            "(or set PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    spec = read_spec()
    names = deployment_names(spec, fashionnet_pipeline.name)
    ensure_work_pools(spec)
    with get_client(sync_client=True) as client:
        saved = read_pauses(client, names)
    done = prefect(
        "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML), *extra_args
    )
    if done.returncode:
        # Whatever it changed before failing, the pauses come back.
        with get_client(sync_client=True) as client:
            restore_pauses(client, saved)
        raise FashionnetError(f"prefect deploy failed on {PREFECT_YAML} (its output is above)")
    with get_client(sync_client=True) as client:
        lines = restore_pauses(client, saved)
    lines += save_automations(url)
    print("\n".join(lines))


def main() -> None:
    apply_environment_defaults(PROJECT_DIR)
    os.chdir(PROJECT_DIR)  # the build step records this folder as the runs' working directory
    try:
        deploy(sys.argv[1:])
    except FashionnetError as exc:
        sys.exit(f"fashionnet deploy: error: {exc}")


if __name__ == "__main__":
    main()
