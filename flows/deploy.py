"""`make deploy`: apply prefect.yaml to the server without undoing an operator's pause, then save
the automations that watch the runs (flows/automations.py).

    PREFECT_API_URL=http://127.0.0.1:4200/api \
        .venv/bin/python -m fashionnet_flows.deploy [--params NAME=JSON]... [prefect deploy args]

1. creates the process work pool of prefect.yaml if missing;
2. notes, for each deployment of prefect.yaml already on the server, whether it and each of its
   schedules are paused: `prefect deploy` makes every schedule what prefect.yaml says (active),
   so a schedule paused in the UI or with `prefect deployment schedule pause` would silently
   start again;
3. runs `prefect deploy --name NAME` for each deployment of prefect.yaml (the pipeline's
   `daily`, the inbox's `inbox`), each with its own parameters: prefect.yaml's, with the fields
   of `--params NAME=JSON` replacing them (one `prefect deploy --all` would ignore every option
   given to it, the version too); other arguments are passed on to each;
4. pauses again what was paused (a deployment new to the server keeps prefect.yaml's state);
   each deployment's version is the git commit of this checkout (`-dirty` with local changes);
5. saves the zombie-run automation and the alerts (flows/automations.py), then says which
   alerts are active. Alerts stay on the server from one deploy to the next until removed on
   purpose: FASHIONNET_ALERT_WEBHOOK=<url> sets where they are POSTed (and switches them on),
   FASHIONNET_ALERTS=off (`make deploy ALERTS=off`) removes them all, FASHIONNET_ALERT_STOPS=on|off
   adds or removes the alert on runs stopped on request, FASHIONNET_SUCCESS_PING=<url>|off the
   ping after each completed run. Unset, each keeps what the server has.
Every step is idempotent: deploying twice leaves one of each.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
ALERTS_VARIABLE = "FASHIONNET_ALERTS"
STOPS_VARIABLE = "FASHIONNET_ALERT_STOPS"
PING_VARIABLE = "FASHIONNET_SUCCESS_PING"

# Per deployment name: (deployment paused?, {schedule key: active?}).
PauseState = dict[str, tuple[bool, dict[str, bool]]]


def read_spec(prefect_yaml: Path = PREFECT_YAML) -> dict[str, Any]:
    return yaml.safe_load(Path(prefect_yaml).read_text(encoding="utf-8")) or {}


def deployment_names(spec: dict[str, Any]) -> dict[str, str]:
    """Each deployment's name in prefect.yaml -> its full name on the server, `<flow>/<name>`
    (the flow's name is its entrypoint's)."""
    from prefect.flows import load_flow_from_entrypoint

    return {
        deployment["name"]: (
            f"{load_flow_from_entrypoint(deployment['entrypoint']).name}/{deployment['name']}"
        )
        for deployment in spec.get("deployments") or []
    }


def parameters_by_deployment(given: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """`--params NAME=JSON` arguments as {NAME: JSON}, each checked: a deployment of
    prefect.yaml, and a JSON object."""
    chosen = {}
    for argument in given:
        name, _, text = argument.partition("=")
        if name not in names:
            raise FashionnetError(
                f"--params {argument[:60]}: prefect.yaml has no deployment {name!r}; name one "
                f"of {', '.join(names)}, as --params NAME='{{\"field\": value}}'"
            )
        try:
            parameters = json.loads(text)
        except json.JSONDecodeError as error:
            raise FashionnetError(f"--params {name}=...: not JSON ({error})") from None
        if not isinstance(parameters, dict):
            raise FashionnetError(f"--params {name}=...: give a JSON object of parameters")
        chosen[name] = json.dumps(parameters)
    return chosen


def work_pools(spec: dict[str, Any]) -> set[str]:
    return {
        deployment["work_pool"]["name"]
        for deployment in spec.get("deployments") or []
        if (deployment.get("work_pool") or {}).get("name")
    }


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


def ensure_work_pools(client: Any, spec: dict[str, Any]) -> None:
    """Make each work pool prefect.yaml names that the server does not have, as `prefect
    work-pool create --type process` would (through the client: each `prefect` command costs
    seconds of start-up)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.workers.process import ProcessWorker
    from pydantic import ValidationError

    def refused(pool: str, reason: str) -> FashionnetError:
        return FashionnetError(
            f"{PREFECT_YAML}: could not create the work pool {pool!r} ({reason}); fix the work "
            "pool's name there"
        )

    for pool in sorted(work_pools(spec)):
        try:
            client.read_work_pool(pool)
            continue
        except ObjectNotFound:
            pass
        template = ProcessWorker.get_default_base_job_template()
        try:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
        except ValidationError as error:  # Prefect's own check of the name
            raise refused(pool, error.errors()[0]["msg"]) from None
        except PrefectHTTPStatusError as error:  # the server's
            response = error.response
            raise refused(pool, f"HTTP {response.status_code}: {response.text.strip()}") from None
        print(f"Created work pool {pool!r} (type process).")


@dataclass(frozen=True)
class AlertRequest:
    """What `make deploy` was asked to change about the alerts; None: keep what the server has."""

    webhook: str | None = None  # FASHIONNET_ALERT_WEBHOOK: where alerts are POSTed
    alerts: bool | None = None  # FASHIONNET_ALERTS (make deploy ALERTS=on|off)
    stops: bool | None = None  # FASHIONNET_ALERT_STOPS: alert on runs stopped on request too
    ping: str | None = None  # FASHIONNET_SUCCESS_PING: a URL, or "off"


def on_off(environ: dict[str, str], name: str) -> bool | None:
    value = environ.get(name, "").strip().lower()
    if not value:
        return None
    if value not in {"on", "off"}:
        raise FashionnetError(f"{name}={value!r}: say on or off (or leave it unset to keep it)")
    return value == "on"


def http_url(environ: dict[str, str], name: str) -> str | None:
    """The http(s) URL in the variable `name`, None when unset or empty."""
    url = environ.get(name, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise FashionnetError(
            f"{name}={url!r} is not an http(s) URL; give the full address, "
            "e.g. https://hooks.example.com/..."
        )
    return url


def alert_request(environ: dict[str, str]) -> AlertRequest:
    """The alert settings of the environment (a mistake in one stops the deploy before any
    change)."""
    ping = environ.get(PING_VARIABLE, "").strip()
    return AlertRequest(
        webhook=http_url(environ, ALERT_VARIABLE),
        alerts=on_off(environ, ALERTS_VARIABLE),
        stops=on_off(environ, STOPS_VARIABLE),
        ping="off" if ping.lower() == "off" else http_url(environ, PING_VARIABLE),
    )


def save_automations(request: AlertRequest, pools: list[str]) -> list[str]:
    """Save the zombie automation and the alerts; alerts already on the server stay as they are
    (updated where this version's definitions differ) unless the request changes them. One line
    per change, then the alerts now active."""
    from fashionnet_flows import automations as a

    lines = []
    done = a.save_automation(a.zombie_automation())
    lines.append(
        f"Automation {a.ZOMBIE_AUTOMATION!r} {done}: a run without heartbeats for "
        f"{a.HEARTBEAT_GRACE.seconds} s ends Crashed."
    )
    if request.alerts is False:
        names = [*a.ALERT_KINDS, a.SUCCESS_PING]
        removed = [name for name in names if a.delete_automation(name)]
        for block in (a.WEBHOOK_BLOCK, a.PING_BLOCK):
            a.delete_webhook(block)
        lines += [f"Removed the automation {name!r} ({ALERTS_VARIABLE}=off)." for name in removed]
        return [*lines, "Alerts: none (switched off)."]

    if request.webhook is not None:
        block_id = a.save_webhook(a.WEBHOOK_BLOCK, request.webhook)
    else:
        block_id = a.webhook_id(a.WEBHOOK_BLOCK)
    active = []
    if block_id is None:
        if request.alerts:
            raise FashionnetError(
                f"{ALERTS_VARIABLE}=on, but no alert URL is known yet: "
                f"give it once with {ALERT_VARIABLE}=<url>"
            )
    else:
        stops = request.stops if request.stops is not None else a.exists(a.STOP_ALERT)
        wanted = [
            a.failure_alert(block_id),
            a.late_alert(block_id),
            a.pool_alert(block_id, pools),
            a.regression_alert(block_id),
            a.drift_alert(block_id),
        ]
        if stops:
            wanted.append(a.stop_alert(block_id))
        elif a.delete_automation(a.STOP_ALERT):
            lines.append(f"Removed the automation {a.STOP_ALERT!r} ({STOPS_VARIABLE}=off).")
        for automation in wanted:
            lines.append(f"Automation {automation.name!r} {a.save_automation(automation)}.")
        active = [a.ALERT_KINDS[automation.name] for automation in wanted]

    if request.ping == "off":
        if a.delete_automation(a.SUCCESS_PING):
            lines.append(f"Removed the automation {a.SUCCESS_PING!r} ({PING_VARIABLE}=off).")
        a.delete_webhook(a.PING_BLOCK)
        ping_id = None
    elif request.ping is not None:
        ping_id = a.save_webhook(a.PING_BLOCK, request.ping)
    else:
        ping_id = a.webhook_id(a.PING_BLOCK)
    if ping_id is not None:
        done = a.save_automation(a.success_ping(ping_id))
        lines.append(f"Automation {a.SUCCESS_PING!r} {done}.")

    if active:
        lines.append(f"Alerts active, POSTed to the URL of {ALERT_VARIABLE}: {', '.join(active)}.")
    else:
        lines.append(
            f"Alerts: none ({ALERT_VARIABLE} was never given: make deploy "
            f"{ALERT_VARIABLE}=<url> POSTs failures, late runs, regressions and drift there)."
        )
    lines.append(
        "Success ping: after each completed run."
        if ping_id is not None
        else f"Success ping: none ({PING_VARIABLE}=<url> calls a dead-man's switch)."
    )
    return lines


def deploy(extra_args: Sequence[str], given_parameters: Sequence[str] = ()) -> None:
    request = alert_request(dict(os.environ))  # a mistake stops the deploy before any change
    spec = read_spec()
    names = deployment_names(spec)
    parameters: Mapping[str, str] = parameters_by_deployment(given_parameters, list(names))

    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from fashionnet_flows.cli import check_server_answers
    from fashionnet_flows.pipeline import code_version

    if not (api_url := get_current_settings().api.url):
        raise FashionnetError(
            "no Prefect server configured; start one with `make server` and use `make deploy` "
            "(or set PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    check_server_answers(api_url, "start it with `make server`, or point PREFECT_API_URL at it")
    with get_client(sync_client=True) as client:
        ensure_work_pools(client, spec)
        saved = read_pauses(client, list(names.values()))
    version = code_version()
    versioned = ["--version", version] if version else []
    for name in names:
        given = ["--params", parameters[name]] if name in parameters else []
        done = prefect(
            "--no-prompt",
            "deploy",
            "--name",
            name,
            "--prefect-file",
            str(PREFECT_YAML),
            *versioned,
            *given,
            *extra_args,
        )
        if done.returncode:
            # Whatever it changed before failing, the pauses come back.
            with get_client(sync_client=True) as client:
                restore_pauses(client, saved)
            raise FashionnetError(
                f"prefect deploy of {name!r} failed on {PREFECT_YAML} (its output is above)"
            )
    with get_client(sync_client=True) as client:
        lines = restore_pauses(client, saved)
    lines.append(f"Deployed code version {version or 'unknown (not a git checkout)'}.")
    lines += save_automations(request, sorted(work_pools(spec)))
    print("\n".join(lines))


def main() -> None:
    apply_environment_defaults(PROJECT_DIR)
    os.chdir(PROJECT_DIR)  # the build step records this folder as the runs' working directory
    parser = argparse.ArgumentParser(prog="fashionnet_flows.deploy", allow_abbrev=False)
    parser.add_argument("--params", action="append", default=[], metavar="NAME=JSON")
    known, extra_args = parser.parse_known_args()
    try:
        deploy(extra_args, known.params)
    except FashionnetError as exc:
        sys.exit(f"fashionnet deploy: error: {exc}")


if __name__ == "__main__":
    main()
