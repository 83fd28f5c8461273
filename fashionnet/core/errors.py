"""The one exception type for problems a user can fix, and the operating-system errors that are
such problems: a full disk, a read-only mount, a folder this user may not write."""

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from fashionnet.core.atomic import TEMP_MARKER


class FashionnetError(Exception):
    """A user-fixable problem: the message names the file or option and what to do.

    Entry points print the message alone (no traceback) and exit non-zero.
    """


# What to do about each error of the machine rather than of fashionnet. Any other OSError (a
# file missing that fashionnet itself should have made, say) is a bug and keeps its traceback.
MACHINE_ERRORS = {
    errno.ENOSPC: "free some space on that disk, then run again",
    errno.EDQUOT: "free some space within your disk quota, then run again",
    errno.EROFS: "mount it read-write, or use a project folder on a writable disk",
    errno.EACCES: "give this user write access to it, or use another project folder",
    errno.EPERM: "give this user write access to it, or use another project folder",
    errno.ENOTDIR: "a file stands where a folder should be: move it aside, then run again",
}


def is_user_fixable(error: BaseException) -> bool:
    """A FashionnetError, or an OSError of the machine (MACHINE_ERRORS)."""
    if isinstance(error, OSError):
        return error.errno in MACHINE_ERRORS
    return isinstance(error, FashionnetError)


@contextlib.contextmanager
def machine_errors_named(folder: Path) -> Iterator[None]:
    """Turn an OSError of the machine raised in the block into a FashionnetError of one line,
    `<path>: <problem>; <what to do>`.

    The path is the file the error names; the folder of a temporary (its name means nothing to
    a person); else `folder`: a write that runs out of space names no file (the disk is full,
    not the file), and every file a run writes is under `folder`.
    """
    try:
        yield
    except OSError as error:
        if not is_user_fixable(error):
            raise
        path = Path(error.filename) if error.filename is not None else folder
        if TEMP_MARKER in path.name:
            path = path.parent
        problem = os.strerror(error.errno).lower()
        raise FashionnetError(f"{path}: {problem}; {MACHINE_ERRORS[error.errno]}") from error
