"""A stop asked for from outside (Ctrl-C, SIGTERM) or by the run's time limit, seen by the long
loops between two steps.

Signals reach only the main thread, while training and prediction may run in worker threads
(Prefect's task runner, the chunk pool). The entry point that handles the signal calls
`request_stop`; the loops call `check` between minibatches and chunks, so a run stops within
one step and never in the middle of a file it is writing.

The time limit (`time_limit`) is kept the same way, at the same checks: a run past it stops
at its next step, as if asked to, rather than being interrupted by an exception raised into its
thread wherever it happens to be (inside a log handler holding its lock, a module being
imported, a garbage-collector callback), which could leave it hung or end it in a traceback.

Once the run is published (`commit`, at publishing's commit point), there is nothing left to
keep unpublished: the entry point that handles signals lets the run finish its last short steps
and then names the stop as one after publishing (one run per process: `fashionnet run`).
"""

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

_requested = threading.Event()
_committed = threading.Event()
_signal_number: list[int] = []
_time_limit: list[tuple[float, float]] = []  # (seconds, the time.monotonic() it ends at)


class Interrupted(Exception):
    """The run was asked to stop; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        super().__init__(f"interrupted by {signal.Signals(signal_number).name}")


class TimeLimitReached(Exception):
    """The run went past its time limit (`time_limit`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the run took longer than its time limit of {seconds:g} s")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Within the block, `check` raises `TimeLimitReached` once `seconds` have passed."""
    _time_limit[:] = [(seconds, time.monotonic() + seconds)]
    try:
        yield
    finally:
        _time_limit.clear()


def request_stop(signal_number: int = signal.SIGINT) -> None:
    """Ask every loop of this process to stop at its next check."""
    if not _requested.is_set():
        _signal_number[:] = [signal_number]
        _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise `Interrupted` if a stop was requested, `TimeLimitReached` past the time limit."""
    if _requested.is_set():
        raise Interrupted(_signal_number[0])
    if _time_limit and time.monotonic() > _time_limit[0][1]:
        raise TimeLimitReached(_time_limit[0][0])


def commit() -> None:
    """The run is published: a stop asked for from now on is too late to keep it unpublished."""
    _committed.set()


def committed() -> bool:
    return _committed.is_set()


def reset() -> None:
    """Forget a request and a commit (for a process that goes on, such as a test session)."""
    _requested.clear()
    _committed.clear()
    _signal_number.clear()
