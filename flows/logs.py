"""Logging for flow runs: the library's progress shows; a user-fixable error, or a stop the user
asked for, is shown as its message, not a traceback."""

import logging

from fashionnet.core import interrupts
from fashionnet.core.errors import is_user_fixable


class UserErrorFilter(logging.Filter):
    """Drop the traceback of records about a user-fixable error (a FashionnetError, or a full
    disk, a read-only mount...: `errors.MACHINE_ERRORS`), a stop request (Ctrl-C, SIGTERM) or
    the run's time limit; the message already says it all. After a stop request, the task runs
    it ended (every prediction chunk under way or queued) say nothing: the flow run's final
    state says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            interrupts.stop_requested()
            and record.name.startswith("prefect.task_runs")
            and record.levelno >= logging.ERROR
        ):
            return False
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (
            is_user_fixable(error)
            or isinstance(error, (interrupts.Interrupted, interrupts.TimeLimitReached))
        ):
            record.exc_info = None
            record.exc_text = None
        return True


def configure_run_logging() -> None:
    """Show the library's progress (INFO) in the run's logs, and a user-fixable error as its
    message alone, on the handlers that print and ship flow and task run logs."""
    logging.getLogger("fashionnet").setLevel(logging.INFO)  # the root logger's WARNING hides it
    user_errors = UserErrorFilter()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, UserErrorFilter) for f in handler.filters):
                handler.addFilter(user_errors)
