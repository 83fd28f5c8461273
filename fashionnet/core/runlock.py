"""One run at a time per project folder: a second run waits for the first, then fails clearly."""

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from fashionnet.core import interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.paths import A_FILE, clear_way

log = logging.getLogger(__name__)

# While waiting for the lock, a stop request (Ctrl-C) is seen at least this often.
POLL_SECONDS = 0.5


@contextlib.contextmanager
def run_lock(lock_file: Path, timeout: float) -> Iterator[None]:
    """Hold the project's run lock; wait up to `timeout` seconds for another run to finish.
    Something other than a file at `lock_file` (a folder, a FIFO) is no lock anyone holds: it
    is moved aside with a warning (`paths.clear_way`), and the lock file made anew."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    clear_way(lock_file, A_FILE)
    lock = FileLock(lock_file, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning(
            "another run is using %s; waiting up to %.0f s", lock_file.parent.parent, timeout
        )
        deadline = time.monotonic() + timeout
        while True:
            interrupts.check()
            try:
                lock.acquire(timeout=max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
                break
            except Timeout:
                if time.monotonic() >= deadline:
                    raise FashionnetError(
                        f"another fashionnet run still holds {lock_file} after {timeout:.0f} s: "
                        "wait for it to finish, or raise --lock-timeout"
                    ) from None
    try:
        log.debug("run lock taken by pid %d", os.getpid())
        yield
    finally:
        lock.release()
