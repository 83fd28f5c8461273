"""The server-side watchers of the deployed pipeline: Prefect automations and webhook blocks.

`make deploy` (flows/deploy.py) saves them by name, so deploying again updates them in place:

- ZOMBIE_AUTOMATION marks a flow run `Crashed` when its heartbeats stop (the process running it
  died: power cut, OOM kill, SIGKILL) instead of leaving it `Running` for ever; `Crashed`
  releases the deployment's concurrency slot, so the next run starts. Any other event of the
  run (a final state above all) counts as a sign of life, so a run that ended is left alone.
- The alerts (ALERTS), once an alert URL was given, each POST one JSON body to it through the
  webhook block WEBHOOK_BLOCK: a run of a fashionnet deployment that ends in a FAILED-type state
  (`Failed`, `TimedOut`) or a CRASHED-type one; a run of it still not started when Prefect marks
  it `Late`; the work pool left without a live worker; the event REGRESSION_EVENT the flow emits
  when a run's test accuracy drops, and DRIFT_EVENT when a split drifted from the training
  split or a batch the inbox flow scored drifted from the training data; and, only when asked
  for, a run stopped on request (`Cancelled`, STOP_ALERT).
- SUCCESS_PING, when a ping URL was given: each completed deployment run calls it (through the
  block PING_BLOCK), for a dead-man's switch that raises the alarm when the pings stop.

The server evaluates them; nothing here runs while the pipeline runs.
"""

from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import CallWebhook, ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

# Emitted by the flows; the resource is `fashionnet.run.<run folder name>`, or for a batch the
# inbox flow scored, `fashionnet.batch.<batch id>`.
from fashionnet_flows.pipeline import DRIFT_EVENT, REGRESSION_EVENT

# Flow runs emit a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (prefect.yaml sets
# 30); three missed ones mean the process is gone. Prefect's minimum frequency is 30 s.
HEARTBEAT_GRACE = timedelta(seconds=90)
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
FLOW_RUN_EVENTS = "prefect.flow-run.*"  # heartbeats and every state change
LATE_EVENT = "prefect.flow-run.Late"
COMPLETED_EVENT = "prefect.flow-run.Completed"
POOL_NOT_READY_EVENT = "prefect.work-pool.not-ready"
# The tag prefect.yaml gives the deployments (and `make serve` its served copy): their flow runs
# carry it, `make run` flow runs do not.
DEPLOYMENT_TAG = "fashionnet"

ZOMBIE_AUTOMATION = "fashionnet: crash flow runs whose heartbeats stopped"
FAILURE_ALERT = "fashionnet: alert when a deployment run fails or crashes"
LATE_ALERT = "fashionnet: alert when a scheduled run has not started"
POOL_ALERT = "fashionnet: alert when the work pool has no live worker"
REGRESSION_ALERT = "fashionnet: alert when test accuracy regresses"
DRIFT_ALERT = "fashionnet: alert when the data drift from the training split"
STOP_ALERT = "fashionnet: alert when a deployment run is stopped on request"
SUCCESS_PING = "fashionnet: ping the success URL after each completed run"
# What each alert is about, as `make deploy` lists the active ones.
ALERT_KINDS = {
    FAILURE_ALERT: "failed or crashed runs (Failed, TimedOut, Crashed)",
    LATE_ALERT: "scheduled runs not started (Late)",
    POOL_ALERT: "a work pool without a live worker",
    REGRESSION_ALERT: "test accuracy regressions",
    DRIFT_ALERT: "data drifted from the training split",
    STOP_ALERT: "runs stopped on request (Cancelled)",
}
WEBHOOK_BLOCK = "fashionnet-alerts"
PING_BLOCK = "fashionnet-success-ping"
ZOMBIE_MESSAGE = (
    f"No heartbeat for {HEARTBEAT_GRACE.seconds} s: the process running this flow run stopped."
)

# Jinja templates the server renders into the POSTed JSON body (`tojson` quotes and escapes;
# `ui_url` is the page of the object in the UI, from the server's PREFECT_UI_URL).
RUN_FIELDS = """
  "deployment": {{ (flow.name ~ "/" ~ deployment.name if deployment else none) | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "flow_run_name": {{ flow_run.name | tojson }},
  "flow_run_url": {{ flow_run | ui_url | tojson }},"""
STATE_PAYLOAD = (
    """{
  "alert": "flow run {{ flow_run.state.name }}","""
    + RUN_FIELDS
    + """
  "state": {{ flow_run.state.name | tojson }},
  "state_type": {{ flow_run.state.type.value | tojson }},
  "message": {{ flow_run.state.message | tojson }},
  "parameters": {{ flow_run.parameters | tojson }}
}"""
)
LATE_PAYLOAD = (
    """{
  "alert": "flow run Late: not started","""
    + RUN_FIELDS
    + """
  "state": "Late",
  "expected_start_time": {{ flow_run.expected_start_time | string | tojson }}
}"""
)
POOL_PAYLOAD = """{
  "alert": "work pool has no live worker",
  "work_pool": {{ event.resource.name | tojson }},
  "work_pool_url": {{ work_pool | ui_url | tojson }},
  "occurred": {{ event.occurred | string | tojson }}
}"""
REGRESSION_PAYLOAD = (
    """{
  "alert": "test accuracy regressed","""
    + RUN_FIELDS
    + """
  "run": {{ event.resource.id | tojson }},
  "test_accuracy": {{ event.payload.test_accuracy | tojson }},
  "previous_test_accuracy": {{ event.payload.previous_test_accuracy | tojson }},
  "tolerance": {{ event.payload.tolerance | tojson }},
  "previous_run": {{ event.payload.previous_run | tojson }}
}"""
)
PING_PAYLOAD = (
    """{
  "alert": "flow run Completed","""
    + RUN_FIELDS
    + """
  "state": "Completed"
}"""
)


DRIFT_PAYLOAD = (
    """{
  "alert": "data drifted from the training split","""
    + RUN_FIELDS
    + """
  "run": {{ event.resource.id | tojson }},
  "splits": {{ event.payload.splits | tojson }},
  "summary": {{ event.payload.summary | tojson }}
}"""
)


def zombie_automation() -> Automation:
    """Proactive: for each flow run, no other event of it within HEARTBEAT_GRACE of a
    heartbeat -> Crashed (Prefect's "detect zombie flows" recipe). Any state change counts,
    `TimedOut` and the other final states included, so a run that ended is never touched."""
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="A flow run whose process died stops sending heartbeats; end it as Crashed.",
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={FLOW_RUN_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=HEARTBEAT_GRACE,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=ZOMBIE_MESSAGE)],
    )


def deployment_runs_in(state_types: list[StateType]) -> EventTrigger:
    """As soon as a fashionnet deployment's flow run enters a state of one of these types."""
    return EventTrigger(
        expect={FLOW_RUN_EVENTS},
        match={
            "prefect.resource.id": "prefect.flow-run.*",
            "prefect.state-type": [state_type.value for state_type in state_types],
        },
        match_related={
            "prefect.resource.role": "tag",
            "prefect.resource.id": f"prefect.tag.{DEPLOYMENT_TAG}",
        },
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def deployment_event(event: str) -> EventTrigger:
    """As soon as a fashionnet deployment's flow run emits `event`."""
    return EventTrigger(
        expect={event},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={
            "prefect.resource.role": "tag",
            "prefect.resource.id": f"prefect.tag.{DEPLOYMENT_TAG}",
        },
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def webhook_call(block_id: UUID, payload: str) -> list[CallWebhook]:
    return [CallWebhook(block_document_id=block_id, payload=payload)]


def failure_alert(block_id: UUID) -> Automation:
    return Automation(
        name=FAILURE_ALERT,
        description="POST the deployment, flow run, state and error of a failed or crashed run "
        "(Failed, TimedOut, Crashed).",
        trigger=deployment_runs_in([StateType.FAILED, StateType.CRASHED]),
        actions=webhook_call(block_id, STATE_PAYLOAD),
    )


def stop_alert(block_id: UUID) -> Automation:
    return Automation(
        name=STOP_ALERT,
        description="POST the deployment, flow run and message of a run stopped on request.",
        trigger=deployment_runs_in([StateType.CANCELLED]),
        actions=webhook_call(block_id, STATE_PAYLOAD),
    )


def late_alert(block_id: UUID) -> Automation:
    """Prefect marks a scheduled run `Late` when no worker has taken it within
    PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS of its time (the server's setting)."""
    return Automation(
        name=LATE_ALERT,
        description="POST the deployment and flow run of a scheduled run no worker has started.",
        trigger=deployment_event(LATE_EVENT),
        actions=webhook_call(block_id, LATE_PAYLOAD),
    )


def pool_alert(block_id: UUID, pools: list[str]) -> Automation:
    """Prefect marks a work pool not ready when its last worker stops sending heartbeats."""
    return Automation(
        name=POOL_ALERT,
        description="POST the work pool's name when its last worker went offline.",
        trigger=EventTrigger(
            expect={POOL_NOT_READY_EVENT},
            match={"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": pools},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=webhook_call(block_id, POOL_PAYLOAD),
    )


def run_event(event: str) -> EventTrigger:
    """Each `event` a flow emits about one of its runs or scored batches (resource
    `fashionnet.run.<id>` or `fashionnet.batch.<id>`)."""
    return EventTrigger(
        expect={event},
        match={"prefect.resource.id": ["fashionnet.run.*", "fashionnet.batch.*"]},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def regression_alert(block_id: UUID) -> Automation:
    return Automation(
        name=REGRESSION_ALERT,
        description="POST both test accuracies when a run is worse than the previous one.",
        trigger=run_event(REGRESSION_EVENT),
        actions=webhook_call(block_id, REGRESSION_PAYLOAD),
    )


def drift_alert(block_id: UUID) -> Automation:
    return Automation(
        name=DRIFT_ALERT,
        description="POST the drifted splits and statistics when a run's data, or a scored "
        "batch, drifted.",
        trigger=run_event(DRIFT_EVENT),
        actions=webhook_call(block_id, DRIFT_PAYLOAD),
    )


def success_ping(block_id: UUID) -> Automation:
    return Automation(
        name=SUCCESS_PING,
        description="Call the success URL (a dead-man's switch) when a deployment run completes.",
        trigger=deployment_event(COMPLETED_EVENT),
        actions=webhook_call(block_id, PING_PAYLOAD),
    )


def save_webhook(name: str, url: str) -> UUID:
    """The webhook block `name`, POSTing JSON to `url` (created, or updated in place)."""
    block = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"})
    return block.save(name, overwrite=True)


def webhook_id(name: str) -> UUID | None:
    """The id of the webhook block `name` an earlier deploy saved, None when there is none."""
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_block_document_by_name(name, block_type_slug="webhook").id
        except ObjectNotFound:
            return None


def delete_webhook(name: str) -> bool:
    block_id = webhook_id(name)
    if block_id is not None:
        with get_client(sync_client=True) as client:
            client.delete_block_document(block_id)
    return block_id is not None


def exists(name: str) -> bool:
    with get_client(sync_client=True) as client:
        return bool(client.read_automations_by_name(name))


def save_automation(automation: Automation) -> str:
    """Create the automation, or update the one of the same name where its definition differs;
    'created', 'updated' or 'unchanged'.

    An unchanged one is left alone: updating an automation restarts its trigger, and the zombie
    automation would forget the runs whose grace it is timing. A run whose process died just
    before a `make deploy` would then stay Running for ever, holding its deployment's
    concurrency slot, so that no later run of it starts."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        for duplicate in existing[1:]:  # left by two deploys that raced: keep one
            client.delete_automation(duplicate.id)
    if not existing:
        automation.create()
        return "created"
    if definition(existing[0]) == definition(automation):
        return "unchanged"
    automation.id = existing[0].id
    automation.update()
    return "updated"


def definition(automation: AutomationCore) -> dict:
    """What an automation does, as JSON: its fields without the ids the server gave it."""
    fields = automation.model_dump(mode="json", include=set(AutomationCore.model_fields))
    fields["trigger"].pop("id", None)
    return fields


def delete_automation(name: str) -> bool:
    """Remove the automations of that name; True when there was one."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        for automation in existing:
            client.delete_automation(automation.id)
    return bool(existing)
