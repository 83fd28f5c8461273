"""The server-side watchers of the deployed pipeline: Prefect automations and a webhook block.

`make deploy` (flows/deploy.py) saves them by name, so deploying again updates them in place:

- ZOMBIE_AUTOMATION marks a flow run `Crashed` when its heartbeats stop (the process running it
  died: power cut, OOM kill, SIGKILL) instead of leaving it `Running` for ever; `Crashed`
  releases the deployment's concurrency slot, so the next run starts.
- FAILURE_ALERT, REGRESSION_ALERT and DRIFT_ALERT, only when an alert URL is given: a `Failed`
  or `Crashed` run of a fashionnet deployment, the event REGRESSION_EVENT the flow emits when a
  run's test accuracy drops, and DRIFT_EVENT when a split drifted from the training split, each
  POST one JSON body to that URL through the webhook block WEBHOOK_BLOCK.

The server evaluates them; nothing here runs while the pipeline runs.
"""

from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import CallWebhook, ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture

# Emitted by the flow; its resource is `fashionnet.run.<run folder name>`.
from fashionnet_flows.pipeline import DRIFT_EVENT, REGRESSION_EVENT

# Flow runs emit a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (prefect.yaml sets
# 30); three missed ones mean the process is gone. Prefect's minimum frequency is 30 s.
HEARTBEAT_GRACE = timedelta(seconds=90)
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
FINAL_EVENTS = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled")}
CRASHED_EVENT = "prefect.flow-run.Crashed"
FAILED_EVENT = "prefect.flow-run.Failed"
# The tag prefect.yaml gives the deployments (and `make serve` its served copy): their flow runs
# carry it, `make run` flow runs do not.
DEPLOYMENT_TAG = "fashionnet"

ZOMBIE_AUTOMATION = "fashionnet: crash flow runs whose heartbeats stopped"
FAILURE_ALERT = "fashionnet: alert when a deployment run fails or crashes"
REGRESSION_ALERT = "fashionnet: alert when test accuracy regresses"
DRIFT_ALERT = "fashionnet: alert when the data drift from the training split"
WEBHOOK_BLOCK = "fashionnet-alerts"
ZOMBIE_MESSAGE = (
    f"No heartbeat for {HEARTBEAT_GRACE.seconds} s: the process running this flow run stopped."
)

# Jinja templates the server renders into the POSTed JSON body (`tojson` quotes and escapes).
FAILURE_PAYLOAD = """{
  "alert": "flow run {{ flow_run.state.name }}",
  "deployment": {{ (flow.name ~ "/" ~ deployment.name) | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "flow_run_name": {{ flow_run.name | tojson }},
  "state": {{ flow_run.state.name | tojson }},
  "message": {{ flow_run.state.message | tojson }},
  "parameters": {{ flow_run.parameters | tojson }}
}"""
REGRESSION_PAYLOAD = """{
  "alert": "test accuracy regressed",
  "deployment": {{ (flow.name ~ "/" ~ deployment.name if deployment else none) | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "flow_run_name": {{ flow_run.name | tojson }},
  "run": {{ event.resource.id | tojson }},
  "test_accuracy": {{ event.payload.test_accuracy | tojson }},
  "previous_test_accuracy": {{ event.payload.previous_test_accuracy | tojson }},
  "tolerance": {{ event.payload.tolerance | tojson }},
  "previous_run": {{ event.payload.previous_run | tojson }}
}"""


DRIFT_PAYLOAD = """{
  "alert": "data drifted from the training split",
  "deployment": {{ (flow.name ~ "/" ~ deployment.name if deployment else none) | tojson }},
  "flow_run_id": {{ flow_run.id | string | tojson }},
  "flow_run_name": {{ flow_run.name | tojson }},
  "run": {{ event.resource.id | tojson }},
  "splits": {{ event.payload.splits | tojson }},
  "summary": {{ event.payload.summary | tojson }}
}"""


def zombie_automation() -> Automation:
    """Proactive: for each flow run, no heartbeat or final state within HEARTBEAT_GRACE of a
    heartbeat -> Crashed (Prefect's "detect zombie flows" recipe)."""
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="A flow run whose process died stops sending heartbeats; end it as Crashed.",
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, CRASHED_EVENT, *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=HEARTBEAT_GRACE,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=ZOMBIE_MESSAGE)],
    )


def failure_alert(webhook_block_id: UUID) -> Automation:
    return Automation(
        name=FAILURE_ALERT,
        description="POST the deployment, flow run, state and error of a failed run.",
        trigger=EventTrigger(
            expect={FAILED_EVENT, CRASHED_EVENT},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": f"prefect.tag.{DEPLOYMENT_TAG}",
            },
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=FAILURE_PAYLOAD)],
    )


def regression_alert(webhook_block_id: UUID) -> Automation:
    return Automation(
        name=REGRESSION_ALERT,
        description="POST both test accuracies when a run is worse than the previous one.",
        trigger=EventTrigger(
            expect={REGRESSION_EVENT},
            match={"prefect.resource.id": "fashionnet.run.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=REGRESSION_PAYLOAD)],
    )


def drift_alert(webhook_block_id: UUID) -> Automation:
    return Automation(
        name=DRIFT_ALERT,
        description="POST the drifted splits and statistics when a run's data drifted.",
        trigger=EventTrigger(
            expect={DRIFT_EVENT},
            match={"prefect.resource.id": "fashionnet.run.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=DRIFT_PAYLOAD)],
    )


def save_webhook(url: str) -> UUID:
    """The webhook block WEBHOOK_BLOCK, POSTing JSON to `url` (created, or updated in place)."""
    block = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"})
    return block.save(WEBHOOK_BLOCK, overwrite=True)


def save_automation(automation: Automation) -> str:
    """Create the automation, or update the one of the same name; 'created' or 'updated'."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        for duplicate in existing[1:]:  # left by two deploys that raced: keep one
            client.delete_automation(duplicate.id)
    if existing:
        automation.id = existing[0].id
        automation.update()
        return "updated"
    automation.create()
    return "created"


def delete_automation(name: str) -> bool:
    """Remove the automations of that name; True when there was one."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        for automation in existing:
            client.delete_automation(automation.id)
    return bool(existing)
