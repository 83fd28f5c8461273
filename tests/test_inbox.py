"""The inbox: files dropped while a poll runs, a poll killed with SIGKILL midway and started
again: every file scored exactly once, none lost; unreadable files go to failed/ with a reason.
An inbox on another filesystem than the project (renames between them fail with EXDEV): the same,
also when a poll is killed between copying a file out and removing it."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionnet.core.layout import Layout
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import save_params
from fashionnet.pipeline import map_in_threads
from fashionnet.score.batch import SCORES_DIR, scoring_model
from fashionnet.score.inbox import LEDGER_NAME, poll_inbox, stable_files

# One poll in its own process that stops once it is scoring, says so, and waits to be killed.
POLL = """
import sys, time
from pathlib import Path
from fashionnet.core.layout import Layout
from fashionnet.pipeline import map_in_threads
from fashionnet.score.batch import scoring_model
from fashionnet.score.inbox import poll_inbox

project, inbox, weights, scoring = map(Path, sys.argv[1:5])

def slow(step, jobs):
    scoring.touch()
    time.sleep(600)

layout = Layout(project)
poll_inbox(layout, lambda: scoring_model(layout, str(weights)), map_chunks=slow, settle_seconds=0,
           chunk_size=2, inbox=inbox)
"""


def drop(inbox: Path, names: range) -> None:
    rng = np.random.default_rng(names.start)
    for i in names:
        pixels = np.full((40, 30), 230, np.uint8)
        pixels[5:35, 5:25] = rng.integers(0, 90, (30, 20))
        Image.fromarray(pixels).save(inbox / f"photo{i:03d}.png")


def batches(project: Path) -> list[Path]:
    """The batch folders in scores/ (not the hidden ones a poll builds them in)."""
    scores = project / SCORES_DIR
    return [p for p in scores.iterdir() if not p.name.startswith(".")] if scores.is_dir() else []


def scored_counts(project: Path) -> pd.Series:
    """How many times each sha256 appears across every batch's predictions and failures."""
    frames = []
    for folder in batches(project):
        frames.append(pd.read_csv(folder / "predictions.csv")["sha256"])
        frames.append(pd.read_csv(folder / "failed.csv")["sha256"])
    return pd.concat(frames).value_counts()


def test_killed_polls_and_late_files_score_every_file_exactly_once(tmp_path):
    project, inbox = tmp_path / "project", tmp_path / "inbox"
    inbox.mkdir()
    weights = tmp_path / "weights.npz"
    save_params(weights, TwoLayerNet(784, 16, 10, weight_init="he", seed=0).params)
    drop(inbox, range(0, 24))
    (inbox / "broken.png").write_text("not a picture")
    originals = {p.name: p.read_bytes() for p in inbox.iterdir()}
    scoring = tmp_path / "scoring"
    command = [sys.executable, "-c", POLL, *map(str, (project, inbox, weights, scoring))]
    layout = Layout(project)

    def model():
        return scoring_model(layout, str(weights))

    for late in (range(24, 27), range(27, 30)):
        scoring.unlink(missing_ok=True)
        process = subprocess.Popen(command)
        deadline = time.monotonic() + 60
        while not scoring.exists():  # until this poll is scoring
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        drop(inbox, late)  # dropped while a poll is running
        originals.update(
            {f"photo{i:03d}.png": (inbox / f"photo{i:03d}.png").read_bytes() for i in late}
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert batches(project) == [], "killed midway: nothing committed"

    def killed_after_commit():
        raise KeyboardInterrupt  # the ledger is written; nothing is moved yet

    with pytest.raises(KeyboardInterrupt):
        poll_inbox(
            layout,
            model,
            map_chunks=map_in_threads,
            settle_seconds=0,
            inbox=inbox,
            after_commit=killed_after_commit,
        )
    for _ in range(2):  # finishes the committed batch, then finds nothing left
        poll_inbox(layout, model, map_chunks=map_in_threads, settle_seconds=0, inbox=inbox)

    assert stable_files(inbox, 0) == [], "every file moved out of the inbox"
    counts = scored_counts(project)
    assert len(counts) == len(originals) and (counts == 1).all(), counts[counts != 1]
    moved = {
        p.name: p.read_bytes()
        for p in inbox.rglob("*")
        if p.is_file() and p.parent != inbox and not p.name.endswith(".reason.txt")
    }
    assert moved == originals, "none lost, none changed"
    assert (inbox / "failed" / "broken.png.reason.txt").read_text().startswith("not an image")
    assert (inbox / LEDGER_NAME).is_file()
    done = list((inbox / "done").iterdir())
    assert {folder.name for folder in done} <= {p.name for p in batches(project)}


def moved_out(inbox: Path) -> dict[str, bytes]:
    """The files under done/ and failed/ (not the reasons), by name, with their bytes."""
    return {
        p.name: p.read_bytes()
        for p in inbox.rglob("*")
        if p.is_file() and p.parent != inbox and not p.name.endswith(".reason.txt")
    }


def separate_filesystems(monkeypatch, *mounts: Path) -> None:
    """os.rename and os.replace between two of `mounts` (the innermost holding each path) fail
    with EXDEV, as the kernel's do between filesystems."""

    def mount_of(path) -> Path | None:
        path = Path(os.path.abspath(path))
        holding = [mount for mount in mounts if path == mount or mount in path.parents]
        return max(holding, key=lambda mount: len(mount.parts), default=None)

    def across(real):
        def move(source, target, *args, **kwargs):
            if mount_of(source) != mount_of(target):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))
            return real(source, target, *args, **kwargs)

        return move

    monkeypatch.setattr(os, "rename", across(os.rename))
    monkeypatch.setattr(os, "replace", across(os.replace))


def test_an_inbox_on_other_filesystems_scores_every_file_once_even_when_killed(
    tmp_path, monkeypatch
):
    """The inbox, its done/ folder and the project each on a filesystem of its own; a poll
    interrupted after copying a file to done/ but before removing it from the inbox."""
    project, inbox = tmp_path / "project", tmp_path / "inbox"
    inbox.mkdir()
    separate_filesystems(monkeypatch, project, inbox, inbox / "done")
    weights = tmp_path / "weights.npz"
    save_params(weights, TwoLayerNet(784, 16, 10, weight_init="he", seed=0).params)
    drop(inbox, range(0, 6))
    (inbox / "broken.png").write_text("not a picture")
    originals = {p.name: p.read_bytes() for p in inbox.iterdir()}
    layout = Layout(project)

    def model():
        return scoring_model(layout, str(weights))

    real_unlink, removed = os.unlink, []

    def killed_on_the_third_removal(path, *args, **kwargs):
        if Path(path).parent == inbox and Path(path).name in originals:
            removed.append(path)
            if len(removed) == 3:  # copied to done/ whole, not yet removed from the inbox
                raise KeyboardInterrupt
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", killed_on_the_third_removal)
    with pytest.raises(KeyboardInterrupt):
        poll_inbox(layout, model, map_chunks=map_in_threads, settle_seconds=0, inbox=inbox)
    monkeypatch.setattr(os, "unlink", real_unlink)
    [batch] = batches(project)
    # broken.png renamed to failed/ (the inbox's filesystem), two copied to done/ and removed
    assert len(stable_files(inbox, 0)) == len(originals) - 3, "three moved out before the stop"
    # What a SIGKILL in the middle of a copy to done/, or of the ledger's write, leaves.
    half_copy = inbox / "done" / batch.name / ".0.png.tmp-killed"
    half_ledger = inbox / f".{LEDGER_NAME}.tmp-killed"
    for temporary in (half_copy, half_ledger):
        temporary.write_bytes(b"cut short")
    poll_inbox(layout, model, map_chunks=map_in_threads, settle_seconds=0, inbox=inbox)
    assert not half_copy.exists() and not half_ledger.exists(), "the killed poll's temporaries"

    assert stable_files(inbox, 0) == [], "every file moved out of the inbox"
    assert moved_out(inbox) == originals, "none lost, none copied twice, none changed"
    counts = scored_counts(project)
    assert len(counts) == len(originals) and (counts == 1).all(), counts[counts != 1]
    assert batches(project) == [batch] and sorted(os.listdir(project / SCORES_DIR)) == [
        batch.name
    ], "the batch switched into scores/, its staging folder gone"
    assert sorted(p.name for p in (inbox / "done" / batch.name).iterdir()) == sorted(
        name for name in originals if name != "broken.png"
    ), "no temporary left beside the copies"
    assert (inbox / "failed" / "broken.png.reason.txt").read_text().startswith("not an image")


def test_an_inbox_on_a_tmpfs(tmp_path):
    """The same on a real second filesystem, where this machine has one (/dev/shm)."""
    shm = Path("/dev/shm")
    if (
        not shm.is_dir()
        or not os.access(shm, os.W_OK)
        or shm.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.skip("no writable /dev/shm on a filesystem of its own")
    project = tmp_path / "project"
    weights = tmp_path / "weights.npz"
    save_params(weights, TwoLayerNet(784, 16, 10, weight_init="he", seed=0).params)
    layout = Layout(project)
    with tempfile.TemporaryDirectory(dir=shm, prefix="fashionnet-inbox-") as folder:
        inbox = Path(folder)
        drop(inbox, range(0, 3))
        originals = {p.name: p.read_bytes() for p in inbox.iterdir()}
        result = poll_inbox(
            layout,
            lambda: scoring_model(layout, str(weights)),
            map_chunks=map_in_threads,
            settle_seconds=0,
            inbox=inbox,
        )
        assert result.scored == len(originals)
        assert stable_files(inbox, 0) == [] and moved_out(inbox) == originals
        assert [p.name for p in batches(project)] == [result.batch_id]


def test_the_inbox_flow_scores_its_chunks_as_tasks_on_its_task_runner(
    prefect_harness, tmp_path, monkeypatch
):
    """As the pipeline maps its prediction chunks (flows/pipeline.py `chunk_mapper`): each chunk
    of the poll's batch is a task run of the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import fashionnet_flows.inbox as inbox_flow

    project, inbox = tmp_path / "project", tmp_path / "inbox"
    inbox.mkdir()
    weights = tmp_path / "weights.npz"
    save_params(weights, TwoLayerNet(784, 16, 10, weight_init="he", seed=0).params)
    monkeypatch.setenv("FASHIONNET_INBOX", str(inbox))
    monkeypatch.setattr(  # the model to score with, rather than a champion
        inbox_flow, "scoring_model", lambda layout, _: scoring_model(layout, str(weights))
    )
    drop(inbox, range(0, 3))

    state = inbox_flow.score_inbox(project_dir=str(project), settle_seconds=0, return_state=True)

    assert state.is_completed(), state.message
    assert state.result()["batch_id"] == batches(project)[0].name
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    chunks = [task for task in tasks if task.name.startswith("score-chunk")]
    assert len(chunks) == 1 and chunks[0].state.is_completed(), [t.name for t in tasks]
