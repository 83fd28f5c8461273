"""The environment this project runs in, in one place: Prefect, TensorFlow and cache folders.

Each entry point (the CLI, `make serve`, the tests, the benchmark) applies these defaults before
it imports Prefect or TensorFlow; a value the user set always wins. The Makefile's long-running
targets run their command through this module, so they get the same environment:

    python -m fashionnet.core.settings COMMAND [ARGS...]   the defaults, then exec COMMAND
    python -m fashionnet.core.settings                     NAME=value lines: what COMMAND would get

The project folder is the current working directory. Standard library (and `fashionnet.core`)
only, so it can run before Prefect or TensorFlow is imported.
"""

import errno
import math
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from fashionnet.core.errors import MACHINE_ERRORS, FashionnetError
from fashionnet.core.paths import A_FOLDER, clear_way, writable_folder

RAW_DIR_VARIABLE = "FASHIONNET_RAW_DIR"
# The longest a flow run may take before it stops at its next step and ends TimedOut (a failure):
# a run that loops on must end some time. Read when the run starts.
FLOW_TIMEOUT_VARIABLE = "FASHIONNET_FLOW_TIMEOUT_SECONDS"
DEFAULT_FLOW_TIMEOUT_SECONDS = 7200.0
# How long `fashionnet run` waits for its temporary Prefect server to answer (Prefect's own
# setting; its default of 20 s is too short for a loaded 2-core machine).
SERVER_STARTUP_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# The Prefect server a run reports to (unset: a temporary server of the run's own), and
# Prefect's log level: read by Prefect at start, where a bad value is a traceback, or a wait.
API_URL_VARIABLE = "PREFECT_API_URL"
LOGGING_LEVEL_VARIABLE = "PREFECT_LOGGING_LEVEL"
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Prefect's home (its database, profiles and results; the project's `.prefect` by default), and
# the database its servers use instead of `prefect.db` there: under either name, the URL must
# name one of the two drivers Prefect has (async ones only).
PREFECT_HOME_VARIABLE = "PREFECT_HOME"
DATABASE_URL_VARIABLES = (
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# The free space PREFECT_HOME's disk must have for a run: a run adds a few MB to Prefect's
# database and its write-ahead log (which grows to about 4 MB between checkpoints). On a full
# disk the server's writes fail in the middle of the run, each failure a traceback.
PREFECT_HOME_FREE_BYTES = 32 * 10**6
EXAMPLE_API_URL = "http://127.0.0.1:4200/api"  # what `make server` serves

# TensorFlow's C++ start-up chatter drowns our output, and its oneDNN kernels change results in
# the last bits with the order of computation; both are off unless the user turns them on.
TENSORFLOW_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def environment_defaults(project_dir: Path) -> dict[str, str]:
    """Every variable this project sets for itself, with its value for `project_dir`."""
    return {
        # Prefect's database and profiles belong to this project, not to the user's ~/.prefect.
        PREFECT_HOME_VARIABLE: str(project_dir / ".prefect"),
        # No telemetry: the machines this runs on may be offline, and nothing should leave them.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The library logs through `fashionnet` (no Prefect import); Prefect shows those records
        # in the run's logs, and drops them quietly outside a flow run (tests, benchmarks).
        "PREFECT_LOGGING_EXTRA_LOGGERS": "fashionnet",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        # A slow start of `fashionnet run`'s temporary server on a busy machine is not a crash.
        SERVER_STARTUP_VARIABLE: "90",
        **TENSORFLOW_DEFAULTS,
        # Downloads and caches stay in the project folder, where `make clean` finds them.
        "KERAS_HOME": str(project_dir / ".cache" / "keras"),
        "MPLCONFIGDIR": str(project_dir / ".cache" / "matplotlib"),
    }


def apply_environment_defaults(project_dir: Path) -> None:
    """Set each default in os.environ, unless the user set that variable already."""
    for name, value in environment_defaults(project_dir).items():
        os.environ.setdefault(name, value)


def clear_own_prefect_home(project_dir: Path) -> None:
    """The project's own Prefect home (PREFECT_HOME as `environment_defaults` sets it) is the
    pipeline's: a file, a FIFO or a broken link in its place is moved aside and the folder made
    (`clear_way`). A home the user chose is only checked (`check_environment`)."""
    own_home = environment_defaults(project_dir)[PREFECT_HOME_VARIABLE]
    if os.environ.get(PREFECT_HOME_VARIABLE) == own_home:
        clear_way(Path(own_home), A_FOLDER)


def quiet_tensorflow() -> None:
    """The TensorFlow defaults alone, for code that imports TensorFlow lazily."""
    for name, value in TENSORFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)


def raw_dir_from_environment() -> str | None:
    """What FASHIONNET_RAW_DIR says (the folder of the four .gz files), or None when unset.

    An empty value is returned as it is: it names no folder, and the run refuses it rather
    than quietly looking elsewhere.
    """
    return os.environ.get(RAW_DIR_VARIABLE)


def environment_error(name: str, value: str, problem: str, what_to_do: str) -> FashionnetError:
    """The one line for a variable with a value that cannot be used:
    `NAME=value: <problem>; <what to do>`."""
    return FashionnetError(f"{name}={value}: {problem}; {what_to_do}")


def flow_timeout_seconds() -> float:
    """FASHIONNET_FLOW_TIMEOUT_SECONDS (default 7200): a positive, finite number of seconds."""
    text = os.environ.get(FLOW_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_FLOW_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise environment_error(
            FLOW_TIMEOUT_VARIABLE,
            text,
            "not a positive number of seconds",
            f"fix it or unset it (default {DEFAULT_FLOW_TIMEOUT_SECONDS:.0f})",
        )
    return seconds


def flow_timed_out() -> FashionnetError:
    """The one line for a flow run stopped by its time limit (FASHIONNET_FLOW_TIMEOUT_SECONDS)."""
    seconds = flow_timeout_seconds()
    value = os.environ.get(FLOW_TIMEOUT_VARIABLE, "").strip() or f"{seconds:.0f} (the default)"
    return environment_error(
        FLOW_TIMEOUT_VARIABLE,
        value,
        f"the run took longer than this limit of {seconds:g} s and was stopped",
        f"raise {FLOW_TIMEOUT_VARIABLE} for longer runs, or find the step that hangs in the "
        "run's log",
    )


def check_environment() -> None:
    """The variables read at start whose bad values Prefect would meet as a traceback deep in
    its start-up (or as a wait), each checked before Prefect is imported and named in one line
    (`environment_error`). Whether a server answers at PREFECT_API_URL is known only by asking
    it: `fashionnet_flows.cli` does, once Prefect is imported."""
    flow_timeout_seconds()
    api_url = os.environ.get(API_URL_VARIABLE, "")
    parts = urlsplit(api_url.strip())
    if api_url.strip() and not (parts.scheme in ("http", "https") and parts.hostname):
        raise environment_error(
            API_URL_VARIABLE,
            api_url,
            "not an http(s) URL",
            f"set it to a Prefect server's API (e.g. {EXAMPLE_API_URL}), or unset it to "
            "run with a temporary server",
        )
    level = os.environ.get(LOGGING_LEVEL_VARIABLE)
    if level is not None and level.upper() not in LOGGING_LEVELS:
        raise environment_error(
            LOGGING_LEVEL_VARIABLE,
            level,
            "not a log level",
            f"use one of {', '.join(LOGGING_LEVELS)}, or unset it",
        )
    startup = os.environ.get(SERVER_STARTUP_VARIABLE)
    if startup is not None and not _positive_whole_number(startup):
        raise environment_error(
            SERVER_STARTUP_VARIABLE,
            startup,
            "not a whole number of seconds above 0",
            "give the seconds the temporary Prefect server may take to start (e.g. 90)",
        )
    for name in DATABASE_URL_VARIABLES:
        url = os.environ.get(name, "")
        if url.strip() and urlsplit(url.strip()).scheme not in DATABASE_DRIVERS:
            raise environment_error(
                name,
                url,
                f"not a database URL of {' or '.join(DATABASE_DRIVERS)}",
                "give one (e.g. sqlite+aiosqlite:////path/to/prefect.db), or unset it to use "
                f"prefect.db in {PREFECT_HOME_VARIABLE}",
            )
    if home := os.environ.get(PREFECT_HOME_VARIABLE):
        try:  # Prefect writes its home at import: a folder it cannot write is a traceback there
            writable_folder(Path(home).expanduser(), option=PREFECT_HOME_VARIABLE)
        except FashionnetError as error:  # `<folder>: <problem>; <what to do>`
            raise FashionnetError(f"{PREFECT_HOME_VARIABLE}={error}") from None
        free = shutil.disk_usage(Path(home).expanduser()).free
        if free < PREFECT_HOME_FREE_BYTES:
            raise environment_error(
                PREFECT_HOME_VARIABLE,
                home,
                f"{os.strerror(errno.ENOSPC).lower()} ({free / 1e6:.1f} MB free; Prefect's "
                f"database needs {PREFECT_HOME_FREE_BYTES / 1e6:.0f} MB for a run)",
                MACHINE_ERRORS[errno.ENOSPC],
            )


def _positive_whole_number(text: str) -> bool:
    return text.strip().isdigit() and int(text) > 0


def main() -> None:
    command = sys.argv[1:]
    project_dir = Path.cwd()
    apply_environment_defaults(project_dir)
    if not command:
        for name in environment_defaults(project_dir):
            print(f"{name}={os.environ[name]}")
        return
    try:
        # Replace this process, so signals (Ctrl-C, SIGTERM) reach the command itself.
        os.execvp(command[0], command)
    except OSError as error:
        sys.exit(f"fashionnet.core.settings: cannot run {command[0]}: {error.strerror}")


if __name__ == "__main__":
    main()
