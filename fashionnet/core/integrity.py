"""Checksum records of derived files: a file is reused only while its content matches the record.

A stage that writes a file it will reuse later (data/parquet, data/predictions, a model folder)
wraps the write in `sealing(path)`, which records the file's sha256 in `<file>.sha256` (the
format of `sha256sum`, so `sha256sum -c` checks it too) once the file is complete. Before it
counts the file as up to date, the stage asks `verified(path)`. A damaged file (its content
changed, unreadable, a folder in its place) is moved aside with a warning naming where it went,
and the stage makes it again. The old record is removed before a file is replaced, so an
interruption between the file and its record leaves a file without a record: made again, never
trusted with the wrong content.
"""

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from fashionnet.core import atomic
from fashionnet.core.paths import A_FILE, kind_of

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".sha256"
_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks: the one checksum of every file fashionnet
    checks (raw downloads, checksum records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def record_of(path: Path) -> Path:
    """Where the checksum of `path` is recorded: `<name>.sha256` beside it."""
    return path.with_name(path.name + RECORD_SUFFIX)


def seal(path: Path) -> None:
    """Record the sha256 of the complete file at `path`."""
    atomic.write_text(record_of(path), f"{sha256_file(path)}  {path.name}\n")


@contextlib.contextmanager
def sealing(path: Path) -> Iterator[None]:
    """Around the atomic write of `path`: its old record goes first, the new one is written once
    the file is complete. A folder where the file or its record belongs is set aside first (an
    atomic write does not replace a folder)."""
    record = record_of(path)
    if any(os.path.lexists(p) and not p.is_file() for p in (path, record)):
        set_aside(path, "a folder or special file where the file or its record belongs")
    record.unlink(missing_ok=True)
    yield
    seal(path)


def _damage(path: Path, record: Path) -> str | None:
    """What is wrong with the existing `path` given its record, or None when they agree."""
    if not path.is_file():
        return "a folder or special file, not a file"
    record_kind = kind_of(record)
    if record_kind != A_FILE:  # looked at before it is opened: a FIFO would block the run
        return f"its checksum record {record.name} is {record_kind}, not a file"
    try:
        recorded = record.read_text(encoding="ascii", errors="replace").partition(" ")[0]
        actual = sha256_file(path)
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    if actual != recorded:
        return f"its sha256 does not match the one recorded in {record.name}"
    return None


def set_aside(path: Path, problem: str) -> None:
    """Move the damaged `path` and its record out of the way, saying what and where."""
    moved = [atomic.move_aside(p) for p in (path, record_of(path)) if os.path.lexists(p)]
    where = f"moved to {moved[0]}" + (" (its checksum record beside it)" if moved[1:] else "")
    log.warning("%s is damaged (%s); %s; making it again", path, problem, where)


def verified(path: Path, *, required: bool = False) -> bool:
    """Whether `path` is a file whose content matches its record.

    When it is not: a missing file is simply not there (a record left behind is replaced when
    the file is written again), but is named if it is `required` (e.g. a companion of a model's
    meta.json); a file without a record (what an interrupted write leaves) gets a
    warning and is left to be replaced; anything else is damage, moved aside (`set_aside`).
    """
    if not os.path.lexists(path):
        if required:
            log.warning("%s is missing; making it again", path)
        return False
    record = record_of(path)
    if path.is_file() and not os.path.lexists(record):
        log.warning("%s has no checksum record (%s); making it again", path, record.name)
        return False
    problem = _damage(path, record)
    if problem is not None:
        set_aside(path, problem)
        return False
    return True
