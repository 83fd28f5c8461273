"""A stop asked for from outside (Ctrl-C, SIGTERM), seen by the long loops between two steps.

Signals reach only the main thread, while training and prediction may run in worker threads
(Prefect's task runner, the chunk pool). The entry point that handles the signal calls
`request_stop`; the loops call `check` between minibatches and chunks, so a run stops within
one step and never in the middle of a file it is writing.

Once the run is published (`commit`, at publishing's commit point), there is nothing left to
keep unpublished: the entry point that handles signals lets the run finish its last short steps
and then names the stop as one after publishing (one run per process: `fashionnet run`).
"""

import signal
import threading

_requested = threading.Event()
_committed = threading.Event()
_signal_number: list[int] = []


class Interrupted(Exception):
    """The run was asked to stop; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        super().__init__(f"interrupted by {signal.Signals(signal_number).name}")


def request_stop(signal_number: int = signal.SIGINT) -> None:
    """Ask every loop of this process to stop at its next check."""
    if not _requested.is_set():
        _signal_number[:] = [signal_number]
        _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise `Interrupted` if a stop was requested."""
    if _requested.is_set():
        raise Interrupted(_signal_number[0])


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
