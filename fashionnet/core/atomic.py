"""Atomic file output: write to a temporary name in the same folder, then rename.

A reader sees either the old file or the whole new one, never a half-written file,
and a crash leaves at most a hidden temporary that `sweep_stale_temps` removes
(run it while holding the project's run lock, so no live write is swept).
"""

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_MARKER = ".tmp-"
DAMAGED_MARKER = ".damaged-"
FILE_MODE = 0o644


def temp_path_for(path: Path) -> Path:
    """A fresh temporary path beside `path` (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARKER}", dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; outputs are meant to be shared
    os.close(fd)
    return Path(name)


def remove(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove what stands at `path`: a folder with all it holds, or a file or a link (never
    what the link points to); nothing when it is gone already. `ignore_errors` is rmtree's."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that interrupted writes left anywhere under `folder`."""
    swept = []
    for stale in sorted(Path(folder).rglob(f".*{TEMP_MARKER}*"), reverse=True):
        remove(stale, ignore_errors=True)
        swept.append(stale)
    return swept


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` in one rename."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise IsADirectoryError(f"{path} exists and is not a regular file; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_symlink(link: str | os.PathLike, target: str | os.PathLike) -> None:
    """Point `link` at `target` atomically (a relative link, so the tree can move)."""
    link = Path(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(link)
    tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink()
        raise
    fsync_dir(link.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the renames in `folder` durable: without it, their order is not kept through a power
    loss, and a later step could survive while the rename it follows does not."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def aside_name(path: Path) -> Path:
    """A free name `<name>.damaged-<UTC time>` beside `path`, for a damaged copy of it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}{DAMAGED_MARKER}{stamp}")
    for attempt in itertools.count(1):
        if not aside.exists() and not aside.is_symlink():
            break
        aside = path.with_name(f"{path.name}{DAMAGED_MARKER}{stamp}-{attempt}")
    return aside


def move_aside(path: str | os.PathLike) -> Path:
    """Rename a damaged file or folder that we wrote to `<name>.damaged-<UTC time>` beside it,
    so the stage that made it can make it again while the damaged copy stays for a person to
    look at (`make clean` removes it). Returns the new name, for the warning that says so."""
    path = Path(path)
    aside = aside_name(path)
    os.rename(path, aside)
    fsync_dir(path.parent)
    return aside


def copy_aside(path: str | os.PathLike, content: bytes) -> Path:
    """Keep `content`, what the file at `path` held, as `<name>.damaged-<UTC time>` beside it,
    while `path` itself stays until it is replaced whole (so a crash between the two loses
    nothing). Returns the copy's name."""
    aside = aside_name(Path(path))
    write_bytes(aside, content)
    return aside
