"""Logging for flow runs: a user-fixable error is shown as its message, not a traceback."""

import logging

from fashionnet.errors import FashionnetError


class UserErrorFilter(logging.Filter):
    """Drop the traceback of records about a FashionnetError; the message already says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FashionnetError):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_tracebacks_of_user_errors() -> None:
    """Attach the filter to the handlers that print and ship flow and task run logs."""
    user_errors = UserErrorFilter()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, UserErrorFilter) for f in handler.filters):
                handler.addFilter(user_errors)
