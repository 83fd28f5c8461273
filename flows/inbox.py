"""The inbox flow: score what arrived in FASHIONNET_INBOX with the champion, every few minutes.

The library does the work (`fashionnet.score.inbox.poll_inbox`: stable files only, exactly once
by the sha256 ledger, moved to done/<batch>/ or failed/); the flow adds a summary artifact and
ends Failed when some files could not be scored, after they are moved and recorded, so the
failure alert of flows/automations.py (every flow run of a deployment tagged `fashionnet`) posts
them to the webhook. It is not yet in prefect.yaml (`make deploy` gives every deployment the
daily flow's parameters); deploy it by hand, every 5 minutes:

    prefect deploy flows/inbox.py:score_inbox --name inbox --pool fashionnet --interval 300
"""

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from fashionnet.core import threads
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.pipeline import map_in_threads
from fashionnet.score.batch import scoring_model
from fashionnet.score.inbox import inbox_dir, poll_inbox
from fashionnet_flows.logs import configure_run_logging

POLL_LOCK = ".poll.lock"


@flow(name="fashionnet-inbox")
def score_inbox(
    project_dir: str = ".", settle_seconds: float = 10.0, lock_timeout: float = 600.0
) -> dict[str, Any]:
    """Score the files that stopped changing in the inbox (FASHIONNET_INBOX, default
    data/inbox) with the champion model.

    Args:
        project_dir: folder holding models/ (the champion) and scores/ (the batch folders).
        settle_seconds: a file is taken once it has not changed for this long.
        lock_timeout: seconds to wait for the poll before (one poll at a time).
    """
    configure_run_logging()
    layout = Layout(Path(project_dir).resolve())
    inbox = inbox_dir(layout)
    inbox.mkdir(parents=True, exist_ok=True)
    with run_lock(inbox / POLL_LOCK, lock_timeout), threads.blas_threads_for_chunks(True):
        result = poll_inbox(
            layout,
            lambda: scoring_model(layout, None),
            map_chunks=map_in_threads,
            settle_seconds=settle_seconds,
            inbox=inbox,
        )
    summary = (
        f"Inbox {inbox}: batch {result.batch_id or '(none)'}, {result.scored} files scored, "
        f"{result.failed} failed, {result.finished} finished from an interrupted poll."
    )
    create_markdown_artifact(summary, key="fashionnet-inbox", description="The last inbox poll")
    if result.failed:
        raise FashionnetError(
            f"{inbox / 'failed'}: {result.failed} files could not be scored; their reasons are "
            "beside them (<name>.reason.txt) and in the batch's failed.csv"
        )
    return {"batch_id": result.batch_id, "scored": result.scored, "finished": result.finished}


if __name__ == "__main__":
    score_inbox()
