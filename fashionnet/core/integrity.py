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
import re
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


# A record's digest: sha256 in hex, either case (`sha256sum -c` accepts upper case too).
_DIGEST = re.compile(rb"[0-9a-fA-F]{64}")
# More than a record line holds: a huge or endless record is not read through.
_RECORD_BYTES = 4096


def _read_record(record: Path) -> tuple[str | None, str | None]:
    """The digest the record holds (lower case), or what is wrong with the record itself. Its
    kind is looked at before it is opened: a FIFO would block the run."""
    kind = kind_of(record)
    if kind != A_FILE:
        return None, f"{kind}, not a file"
    try:
        with open(record, "rb") as f:
            digest = f.read(_RECORD_BYTES).partition(b" ")[0]
    except OSError as error:
        return None, f"unreadable: {error.strerror or error}"
    if not _DIGEST.fullmatch(digest):
        return None, "not a sha256 record"
    return digest.decode("ascii").lower(), None


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
    warning and is left to be replaced; a damaged record (not a file, not a sha256 record) is
    named as such and moved aside alone, the file left to be replaced; a file that does not
    match its record is damage, moved aside with it (`set_aside`).
    """
    if not os.path.lexists(path):
        if required:
            log.warning("%s is missing; making it again", path)
        return False
    record = record_of(path)
    if path.is_file() and not os.path.lexists(record):
        log.warning("%s has no checksum record (%s); making it again", path, record.name)
        return False
    if not path.is_file():
        set_aside(path, "a folder or special file, not a file")
        return False
    recorded, record_problem = _read_record(record)
    if record_problem is not None:  # the file may be intact, but nothing says so any more
        aside = atomic.move_aside(record)
        log.warning(
            "%s is damaged (%s); moved it to %s; making %s again",
            record,
            record_problem,
            aside,
            path.name,
        )
        return False
    try:
        actual = sha256_file(path)
    except OSError as error:
        set_aside(path, f"unreadable: {error.strerror or error}")
        return False
    if actual != recorded:
        set_aside(path, f"its sha256 does not match the one recorded in {record.name}")
        return False
    return True
