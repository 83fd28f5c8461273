"""Output paths that come from parameters: made absolute, and kept where they were meant to go.

Every file a run writes lives under its project folder (see `Layout`), so the one output path a
user passes is the project folder itself (`--project-dir`, the flow's `project_dir`). Paths that
are only read (`--raw-dir`, `--weights-file`) may point anywhere and are never written to.

A relative output path must stay inside the folder it is relative to: one that `..` or a
symlink leads out of is refused, so a parameter typed into a schedule or the Prefect UI cannot
send the outputs somewhere unexpected. An absolute path is the user asking for that place
explicitly, and is taken as given.

`writable_folder` then proves the folder can be written before a run starts, so a read-only or
foreign project folder stops the run at once, with one line, instead of after the training.
"""

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from fashionnet.core.atomic import move_aside, temp_path_for
from fashionnet.core.errors import FashionnetError, machine_errors_named

log = logging.getLogger(__name__)

A_FILE = "a file"
A_FOLDER = "a folder"
# What else can stand at a path, by the file type bits of its mode.
_SPECIAL_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def kind_of(path: str | os.PathLike) -> str | None:
    """What stands at `path` (links followed), in the words a message uses: A_FILE, A_FOLDER, a
    FIFO, a socket, a device, a symbolic link loop or a broken symbolic link; None when nothing
    does (or a file stands where one of its folders should be). Only the inode is looked at,
    nothing is opened: a FIFO can block whoever opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else None
    except NotADirectoryError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        raise
    if stat.S_ISREG(mode):
        return A_FILE
    if stat.S_ISDIR(mode):
        return A_FOLDER
    return _SPECIAL_KINDS.get(stat.S_IFMT(mode), "a special file")


def clear_way(path: Path, wanted: str) -> None:
    """Make room for `path`, a file or folder (`wanted`: A_FILE or A_FOLDER) the pipeline makes
    and owns: whatever else stands there (a folder for a file, a file for a folder, a FIFO, a
    link loop or a broken link) is moved aside as `<name>.damaged-<UTC time>` with a warning, so
    the run goes on and the next one is not stopped the same way; a folder is made anew. Nothing
    is opened; what is missing is left to the stage that makes it."""
    kind = kind_of(path)
    if kind in (None, wanted):
        return
    with contextlib.suppress(FileNotFoundError):  # another run starting moved it first
        aside = move_aside(path)
        log.warning("%s is %s, not %s; moved it to %s", path, kind, wanted, aside)
    if wanted == A_FOLDER:
        path.mkdir(parents=True, exist_ok=True)


def resolve_output(path: str | os.PathLike, base: str | os.PathLike, *, option: str) -> Path:
    """`path` as an absolute path: taken as given when absolute, else inside `base`.

    `option` names the parameter in the error, e.g. "--project-dir".
    """
    given = Path(path)
    try:
        if given.is_absolute():
            return given.resolve()
        base = Path(base).resolve()
        resolved = (base / given).resolve()
    except RuntimeError:  # Python 3.11's word for ELOOP while resolving
        raise FashionnetError(
            f"{option} {path}: a symbolic link loop; give a folder, or fix the links"
        ) from None
    if not resolved.is_relative_to(base):
        raise FashionnetError(
            f"{option} {path} leads outside {base} (to {resolved}); "
            f"give an absolute path if you mean to write there"
        )
    return resolved


def writable_folder(folder: Path, *, option: str) -> Path:
    """`folder`, made if missing, once a file could be created in it; else a FashionnetError
    of one line (`option` names the parameter when a file stands in the folder's place)."""
    try:
        kind = kind_of(folder)
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
        raise FashionnetError(
            f"{option} {folder}: file name too long (a name may have 255 bytes, a path 4095); "
            "give a shorter path"
        ) from None
    if kind == A_FILE:
        raise FashionnetError(
            f"{folder}: a file, not a folder; give {option} a folder, or move the file aside"
        )
    if kind not in (None, A_FOLDER):
        raise FashionnetError(f"{folder}: {kind}, not a folder; give {option} a folder")
    with machine_errors_named(folder):
        folder.mkdir(parents=True, exist_ok=True)
        temp_path_for(folder / "write-check").unlink()  # hidden; swept if ever left
    return folder
