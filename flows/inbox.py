"""The inbox flow: score what arrived in FASHIONNET_INBOX with the champion, every few minutes.

The library does the work (`fashionnet.score.inbox.poll_inbox`: stable files only, exactly once
by the sha256 ledger, moved to done/<batch>/ or failed/); the flow maps the batch's chunks as
tasks on its task runner (threads or Dask, `chunk_mapper`, as the pipeline's prediction chunks),
and adds the UI's artifacts (the progress of the batch's images, and a summary of the poll) and
the alerts of
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
from fashionnet.options import RunOptions, TaskRunner
from fashionnet.score.batch import scoring_model
from fashionnet.score.inbox import inbox_dir, poll_inbox
from fashionnet_flows.artifacts import SCORING_PROGRESS_KEY, ChunkProgress
from fashionnet_flows.logs import configure_run_logging
from fashionnet_flows.pipeline import announce_drift, chunk_mapper

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
    project_dir: str = ".",
    settle_seconds: float = 10.0,
    lock_timeout: float = 600.0,
    task_runner: TaskRunner = "threads",
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Score the files that stopped changing in the inbox (FASHIONNET_INBOX, default
    data/inbox) with the champion model.

    Args:
        project_dir: folder holding models/ (the champion) and scores/ (the batch folders).
        settle_seconds: a file is taken once it has not changed for this long.
        lock_timeout: seconds to wait for the poll before (one poll at a time).
        task_runner: where the scoring chunks run: 'threads' or 'dask'.
        dask_address: address of a running Dask scheduler (default: a local cluster).
    """
    configure_run_logging()
    layout = Layout(Path(project_dir).resolve())
    # Where the chunks run, in the pipeline's terms: the same runners, checked by the same rules.
    where = RunOptions(task_runner=task_runner, dask_address=dask_address)
    inbox = inbox_dir(layout)
    inbox.mkdir(parents=True, exist_ok=True)
    with (
        run_lock(inbox / POLL_LOCK, lock_timeout),
        threads.blas_threads_for_chunks(task_runner == "threads"),
        chunk_mapper(where) as map_chunks,
    ):
        result = poll_inbox(
            layout,
            lambda: scoring_model(layout, None),
            map_chunks=map_chunks,
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
