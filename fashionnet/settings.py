"""The environment this project runs in, in one place: Prefect, TensorFlow and cache folders.

Each entry point (the CLI, `make serve`, the tests, the benchmark) applies these defaults before
it imports Prefect or TensorFlow; a value the user set always wins. The Makefile's long-running
targets run their command through this module, so they get the same environment:

    python -m fashionnet.settings COMMAND [ARGS...]   the defaults, then exec COMMAND
    python -m fashionnet.settings                     NAME=value lines: what COMMAND would get

The project folder is the current working directory. Standard library only, so it can run
before Prefect or TensorFlow is imported.
"""

import os
import sys
from pathlib import Path

RAW_DIR_VARIABLE = "FASHIONNET_RAW_DIR"

# TensorFlow's C++ start-up chatter drowns our output, and its oneDNN kernels change results in
# the last bits with the order of computation; both are off unless the user turns them on.
TENSORFLOW_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def environment_defaults(project_dir: Path) -> dict[str, str]:
    """Every variable this project sets for itself, with its value for `project_dir`."""
    return {
        # Prefect's database and profiles belong to this project, not to the user's ~/.prefect.
        "PREFECT_HOME": str(project_dir / ".prefect"),
        # No telemetry: the machines this runs on may be offline, and nothing should leave them.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The library logs through `fashionnet` (no Prefect import); Prefect shows those records
        # in the run's logs, and drops them quietly outside a flow run (tests, benchmarks).
        "PREFECT_LOGGING_EXTRA_LOGGERS": "fashionnet",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        **TENSORFLOW_DEFAULTS,
        # Downloads and caches stay in the project folder, where `make clean` finds them.
        "KERAS_HOME": str(project_dir / ".cache" / "keras"),
        "MPLCONFIGDIR": str(project_dir / ".cache" / "matplotlib"),
    }


def apply_environment_defaults(project_dir: Path) -> None:
    """Set each default in os.environ, unless the user set that variable already."""
    for name, value in environment_defaults(project_dir).items():
        os.environ.setdefault(name, value)


def quiet_tensorflow() -> None:
    """The TensorFlow defaults alone, for code that imports TensorFlow lazily."""
    for name, value in TENSORFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)


def raw_dir_from_environment() -> Path | None:
    """The folder FASHIONNET_RAW_DIR names (the four .gz files), or None when unset or empty."""
    folder = os.environ.get(RAW_DIR_VARIABLE)
    return Path(folder) if folder else None


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
        sys.exit(f"fashionnet.settings: cannot run {command[0]}: {error.strerror}")


if __name__ == "__main__":
    main()
