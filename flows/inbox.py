"""The inbox flow: score what arrived in FASHIONNET_INBOX with the champion, every few minutes.

The library does the work (`fashionnet.score.inbox.poll_inbox`: stable files only, exactly once
by the sha256 ledger, moved to done/<batch>/ or failed/); the flow adds the UI's artifacts (the
progress of the batch's images, and a summary of the poll) and the alerts of
flows/automations.py: a batch that drifted from the training data emits the event
`fashionnet.data.drifted` (resource `fashionnet.batch.<batch id>`), and a poll with files that
could not be scored ends Failed, after they are moved and recorded, so the failure alert (every
flow run of a deployment tagged `fashionnet`) posts them. prefect.yaml deploys it as
`fashionnet-inbox/inbox`, every 5 minutes (`make deploy`).
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
from fashionnet_flows.artifacts import SCORING_PROGRESS_KEY, ChunkProgress
from fashionnet_flows.logs import configure_run_logging
from fashionnet_flows.pipeline import announce_drift

POLL_LOCK = ".poll.lock"


class BatchProgress:
    """The progress artifact of the poll's batch, made when there is a batch to score."""

    def __init__(self) -> None:
        self.artifact: ChunkProgress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.artifact is None:
            self.artifact = ChunkProgress(SCORING_PROGRESS_KEY, "images scored", "none to score")
        self.artifact.update(done, total)


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
            progress=BatchProgress(),
        )
    summary = (
        f"Inbox {inbox}: batch {result.batch_id or '(none)'}, {result.scored} files scored, "
        f"{result.failed} failed, {result.finished} finished from an interrupted poll."
    )
    if result.drifted:
        summary += " Drift from the training data: " + "; ".join(result.drifted) + "."
        announce_drift(result.drift, f"fashionnet.batch.{result.batch_id}")
    create_markdown_artifact(summary, key="fashionnet-inbox", description="The last inbox poll")
    if result.failed:
        raise FashionnetError(
            f"{inbox / 'failed'}: {result.failed} files could not be scored; their reasons are "
            "beside them (<name>.reason.txt) and in the batch's failed.csv"
        )
    return {
        "batch_id": result.batch_id,
        "scored": result.scored,
        "finished": result.finished,
        "drifted": result.drifted,
    }


if __name__ == "__main__":
    score_inbox()
