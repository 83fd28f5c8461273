"""The inbox: files dropped into a folder are scored once each, without a person.

`poll_inbox` takes the files of the inbox (`FASHIONNET_INBOX`, default data/inbox) that have
stopped changing (unmodified for `settle_seconds`), scores the ones whose sha256 the ledger does
not know as one batch, and moves each to `done/<batch id>/`, or, unreadable, to `failed/` beside
a `<name>.reason.txt`. Files that arrive meanwhile wait for the next poll.

Exactly once, whatever is killed where: the batch folder is built under `scores/.staging/`; the
ledger (`.ledger.json`, sha256 -> batch, status and reason, written atomically) is the commit
point; only then is the batch folder moved to scores/ and are the files moved out of the inbox. A
poll first finishes what a killed one committed (its staged folder and its files) and discards
what it did not (the files are scored again, into a new batch).

The inbox may be on another filesystem than the project (a mounted share, say), where a rename
between the two fails (EXDEV). So the batch is staged inside scores/ itself, where its switch
into place stays one rename; and a file that cannot be renamed to done/ or failed/ is copied
there under a temporary name, renamed into place, and only then removed from the inbox: killed
in between, the next poll finds the copy whole, the same bytes, and only removes the original;
killed during the copy, it finds a hidden temporary, removes it, and moves the file again.
"""

import contextlib
import errno
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fashionnet.core import atomic
from fashionnet.core.layout import Layout
from fashionnet.score.batch import SCORES_DIR, Mapper, ScoringModel, new_batch_id, score_batch
from fashionnet.score.inputs import file_sha256, printable

log = logging.getLogger(__name__)

INBOX_VARIABLE = "FASHIONNET_INBOX"
LEDGER_NAME = ".ledger.json"
STAGING_NAME = ".staging"
KEPT = {"done", "failed", LEDGER_NAME}


def inbox_dir(layout: Layout) -> Path:
    """FASHIONNET_INBOX, else data/inbox of the project."""
    named = os.environ.get(INBOX_VARIABLE, "").strip()
    return Path(named) if named else layout.data_dir / "inbox"


def read_ledger(inbox: Path) -> dict[str, dict[str, Any]]:
    path = inbox / LEDGER_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def write_ledger(inbox: Path, ledger: dict[str, dict[str, Any]]) -> None:
    atomic.write_text(inbox / LEDGER_NAME, json.dumps(ledger, indent=1, sort_keys=True) + "\n")


def stable_files(inbox: Path, settle_seconds: float, now: float | None = None) -> list[Path]:
    """The inbox's files (its top level) unmodified for `settle_seconds`, in name order."""
    now = time.time() if now is None else now
    return sorted(
        path
        for path in inbox.iterdir()
        if path.is_file()
        and path.name not in KEPT
        and not path.name.startswith(".")
        and now - path.stat().st_mtime >= settle_seconds
    )


def move_out(inbox: Path, path: Path, entry: dict[str, Any]) -> None:
    """Move a ledgered file to done/<batch>/ or failed/ (its reason written first); never over
    another file. A file already gone (removed by hand) has nothing left to move."""
    target_dir = (
        inbox / "done" / entry["batch"] if entry["status"] == "scored" else inbox / "failed"
    )
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_for(target_dir, path.name, entry["sha256"])
    if entry["status"] == "failed":
        atomic.write_text(target.with_name(target.name + ".reason.txt"), entry["reason"] + "\n")
    try:
        if os.path.lexists(target):  # these very bytes are there already (an interrupted move)
            path.unlink()
        else:
            move_file(path, target)
    except FileNotFoundError:
        log.warning("inbox: %s was removed before it was moved out", printable(path))


def target_for(folder: Path, name: str, sha256: str) -> Path:
    """Where a file moves in `folder`: its own name, else `<stem>-<sha256 prefix><suffix>`
    (numbered if need be), whichever is free or already holds the same bytes."""
    stem, suffix = os.path.splitext(name)
    others = (f"{stem}-{sha256[:8]}{f'-{n}' if n else ''}{suffix}" for n in itertools.count())
    for candidate in itertools.chain([name], others):
        target = folder / candidate
        if not os.path.lexists(target) or same_file_content(target, sha256):
            return target
    raise AssertionError("unreachable: the names never run out")


def same_file_content(path: Path, sha256: str) -> bool:
    """Whether `path` is a regular file (not a link) holding the bytes of that sha256."""
    return path.is_file() and not path.is_symlink() and file_sha256(path) == sha256


def move_file(source: Path, target: Path) -> None:
    """`source` to the free name `target`: one rename on the same filesystem; across
    filesystems (EXDEV) a copy written whole under `target` (atomic), then `source` removed,
    so the file is in one place or both, never in none."""
    try:
        os.rename(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    with atomic.atomic_path(target) as copy:
        shutil.copy2(source, copy)
    source.unlink()


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: another poll's staged batch (it holds a lock)
        folder.rmdir()


@dataclass(frozen=True)
class PollResult:
    batch_id: str | None
    scored: int  # files scored by this poll
    failed: int  # files this poll found unreadable
    finished: int  # files of an earlier, interrupted poll moved out
    drift: pd.DataFrame | None = None  # the batch's drift.csv (None: no batch, or no reference)
    drifted: list[str] = field(default_factory=list)  # its drifted lines (none: no drift)


def poll_inbox(
    layout: Layout,
    model: Callable[[], ScoringModel],
    *,
    map_chunks: Mapper,
    settle_seconds: float = 10.0,
    chunk_size: int = 1000,
    inbox: Path | None = None,
    after_commit: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PollResult:
    """One pass over the inbox (hold a lock around it: one poll at a time). `model()` gives the
    model to score with, asked only when there is something new (an empty inbox needs no
    champion); `after_commit` is called between the ledger write and the moves (tests stop
    there); `progress` hears of the images scored, as `score_batch`'s does."""
    inbox = inbox or inbox_dir(layout)
    inbox.mkdir(parents=True, exist_ok=True)
    scores_dir = layout.root / SCORES_DIR
    ledger = read_ledger(inbox)
    staging = scores_dir / STAGING_NAME  # beside the batches: the switch is one rename
    committed = {entry["batch"] for entry in ledger.values()}
    if staging.is_dir():  # what a killed poll left: finish the committed, drop the rest
        for folder in staging.iterdir():
            if folder.name in committed:
                os.rename(folder, scores_dir / folder.name)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        remove_if_empty(staging)
    # A poll killed while copying a file out (across filesystems) or writing the ledger left a
    # temporary: the file itself is still in the inbox (removed only after its copy is whole).
    for half_ledger in inbox.glob(f".{LEDGER_NAME}{atomic.TEMP_MARKER}*"):
        half_ledger.unlink(missing_ok=True)
    for folder in ("done", "failed"):
        for stale in atomic.sweep_stale_temps(inbox / folder):
            log.info("inbox: removed %s, left by an interrupted poll", printable(stale))
    files = stable_files(inbox, settle_seconds)
    hashes = {path: file_sha256(path) for path in files}
    finished = 0
    for path, sha in hashes.items():
        if sha in ledger:  # scored before (or the same content again): move it out, once
            move_out(inbox, path, ledger[sha])
            finished += 1
    new = [path for path, sha in hashes.items() if sha not in ledger]
    if not new:
        return PollResult(None, 0, 0, finished)
    batch_id = new_batch_id()
    result = score_batch(
        new,
        model(),
        staging,
        map_chunks=map_chunks,
        batch_id=batch_id,
        chunk_size=chunk_size,
        progress=progress,
    )
    reasons = {row.input: row.reason for row in result.failures.itertuples()}
    for path in new:
        name = printable(path)
        failed = name in reasons
        ledger[hashes[path]] = {
            "batch": batch_id,
            "name": name,
            "sha256": hashes[path],
            "status": "failed" if failed else "scored",
            "reason": reasons.get(name, ""),
        }
    write_ledger(inbox, ledger)  # the commit point
    if after_commit is not None:
        after_commit()
    os.rename(result.folder, scores_dir / batch_id)
    remove_if_empty(staging)
    for path in new:
        move_out(inbox, path, ledger[hashes[path]])
    failed = sum(1 for path in new if printable(path) in reasons)
    log.info("inbox: batch %s scored %d files, %d failed", batch_id, len(new) - failed, failed)
    for line in result.drifted:
        log.warning("data drift: %s", line)
    return PollResult(batch_id, len(new) - failed, failed, finished, result.drift, result.drifted)
