"""fashionnet/core/settings.py: the project's environment, set where the user has not set it."""

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fashionnet.core import paths, settings
from fashionnet.core.errors import FashionnetError
from fashionnet.core.settings import (
    DATABASE_URL_VARIABLES,
    FLOW_TIMEOUT_VARIABLE,
    RAW_DIR_VARIABLE,
    apply_environment_defaults,
    check_environment,
    clear_own_prefect_home,
    environment_defaults,
    flow_timed_out,
    flow_timeout_seconds,
    quiet_tensorflow,
    raw_dir_from_environment,
)

PROJECT_VARIABLES = {
    *environment_defaults(Path("project")),
    RAW_DIR_VARIABLE,
    FLOW_TIMEOUT_VARIABLE,
    "PREFECT_API_URL",
    "PREFECT_LOGGING_LEVEL",
    *DATABASE_URL_VARIABLES,
}


@pytest.fixture
def environ(monkeypatch) -> dict[str, str]:
    """os.environ for this test alone: a copy without any of the project's variables."""
    copy = {name: value for name, value in os.environ.items() if name not in PROJECT_VARIABLES}
    monkeypatch.setattr(os, "environ", copy)
    return copy


def test_the_defaults_for_a_project_folder(tmp_path):
    assert environment_defaults(tmp_path) == {
        "PREFECT_HOME": str(tmp_path / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "fashionnet",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "KERAS_HOME": str(tmp_path / ".cache" / "keras"),
        "MPLCONFIGDIR": str(tmp_path / ".cache" / "matplotlib"),
    }


def test_every_folder_is_inside_the_project_folder(tmp_path):
    folders = [value for value in environment_defaults(tmp_path).values() if "/" in value]
    assert len(folders) == 3
    assert all(Path(folder).is_relative_to(tmp_path) for folder in folders), folders


def test_applied_defaults_keep_what_the_user_set(environ, tmp_path):
    environ["PREFECT_HOME"] = "/home/me/prefect"
    environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    apply_environment_defaults(tmp_path)
    assert environ["PREFECT_HOME"] == "/home/me/prefect"
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert environ["MPLCONFIGDIR"] == str(tmp_path / ".cache" / "matplotlib")
    assert environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_quiet_tensorflow_sets_the_tensorflow_variables_alone(environ):
    before = dict(environ)
    environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    quiet_tensorflow()
    added = {name: value for name, value in environ.items() if name not in before}
    assert added == {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", ""), ("/data/fashion-mnist", "/data/fashion-mnist")],
    ids=["unset", "empty", "set"],
)
def test_raw_dir_from_environment(environ, value, expected):
    if value is not None:
        environ[RAW_DIR_VARIABLE] = value
    assert raw_dir_from_environment() == expected


@pytest.mark.parametrize(("value", "expected"), [(None, 7200.0), ("", 7200.0), ("90.5", 90.5)])
def test_flow_timeout_seconds(environ, value, expected):
    if value is not None:
        environ[FLOW_TIMEOUT_VARIABLE] = value
    assert flow_timeout_seconds() == expected


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "2h"])
def test_a_bad_flow_timeout_is_one_line_naming_the_variable(environ, value):
    environ[FLOW_TIMEOUT_VARIABLE] = value
    with pytest.raises(FashionnetError) as caught:
        flow_timeout_seconds()
    assert str(caught.value) == (
        f"FASHIONNET_FLOW_TIMEOUT_SECONDS={value}: not a positive number of seconds; fix it or "
        "unset it (default 7200)"
    )


@pytest.mark.parametrize(("value", "shown"), [("3", "3"), (None, "7200 (the default)")])
def test_a_flow_run_stopped_by_its_limit_names_the_limit_and_the_variable(environ, value, shown):
    if value is not None:
        environ[FLOW_TIMEOUT_VARIABLE] = value
    seconds = shown.split()[0]
    assert str(flow_timed_out()) == (
        f"FASHIONNET_FLOW_TIMEOUT_SECONDS={shown}: the run took longer than this limit of "
        f"{seconds} s and was stopped; raise FASHIONNET_FLOW_TIMEOUT_SECONDS for longer runs, or "
        "find the step that hangs in the run's log"
    )


# A variable read at start with a value that cannot be used -> its one line, after "NAME=value: ".
BAD_ENVIRONMENT = {
    "PREFECT_API_URL not a URL": (
        "PREFECT_API_URL",
        "not-a-url",
        "not an http(s) URL; set it to a Prefect server's API (e.g. http://127.0.0.1:4200/api), "
        "or unset it to run with a temporary server",
    ),
    "PREFECT_API_URL without a host": ("PREFECT_API_URL", "http:///api", "not an http(s) URL;"),
    "PREFECT_LOGGING_LEVEL not a level": (
        "PREFECT_LOGGING_LEVEL",
        "BOGUS",
        "not a log level; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL, or unset it",
    ),
    "server start-up time not a number": (
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "abc",
        "not a whole number of seconds above 0; give the seconds the temporary Prefect server "
        "may take to start (e.g. 90)",
    ),
    "server start-up time 0": (
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "0",
        "not a whole number of seconds above 0;",
    ),
    "flow time limit not a number": (
        "FASHIONNET_FLOW_TIMEOUT_SECONDS",
        "2h",
        "not a positive number of seconds;",
    ),
    "database URL garbage": (
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "garbage",
        "not a database URL of sqlite+aiosqlite or postgresql+asyncpg; give one (e.g. "
        "sqlite+aiosqlite:////path/to/prefect.db), or unset it to use prefect.db in PREFECT_HOME",
    ),
    "database URL of a driver Prefect lacks": (
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
        "sqlite:///prefect.db",
        "not a database URL of sqlite+aiosqlite or postgresql+asyncpg;",
    ),
}


@pytest.mark.parametrize("case", BAD_ENVIRONMENT)
def test_a_bad_variable_is_one_line_naming_it_and_its_value(environ, case):
    name, value, problem = BAD_ENVIRONMENT[case]
    environ[name] = value
    with pytest.raises(FashionnetError) as caught:
        check_environment()
    assert str(caught.value).startswith(f"{name}={value}: {problem}")


def test_good_values_and_unset_variables_pass(environ, tmp_path):
    check_environment()
    environ.update(
        PREFECT_API_URL="https://prefect.example.org/api",
        PREFECT_LOGGING_LEVEL="debug",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        FASHIONNET_FLOW_TIMEOUT_SECONDS="3600",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/prefect.db",
        PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect@db:5432/prefect",
        PREFECT_HOME=str(tmp_path / "home"),
    )
    check_environment()
    assert (tmp_path / "home").is_dir() and list((tmp_path / "home").iterdir()) == []
    environ["PREFECT_API_URL"] = ""  # empty: a temporary server, as unset
    check_environment()


def test_a_prefect_home_that_cannot_be_written_is_one_line_naming_the_variable(
    environ, tmp_path, monkeypatch
):
    """Before Prefect is imported: it makes its home at import, a traceback when it cannot."""
    (tmp_path / "file").write_text("notes\n")
    environ["PREFECT_HOME"] = str(tmp_path / "file")
    with pytest.raises(FashionnetError) as caught:
        check_environment()
    assert str(caught.value) == (
        f"PREFECT_HOME={tmp_path / 'file'}: a file, not a folder; give PREFECT_HOME a folder, "
        "or move the file aside"
    )
    environ["PREFECT_HOME"] = str(tmp_path / "read-only")

    def refused(path):  # as mkstemp fails in a folder this user may not write
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path) + ".tmp-x1")

    monkeypatch.setattr(paths, "temp_path_for", refused)
    with pytest.raises(FashionnetError) as caught:
        check_environment()
    assert str(caught.value) == (
        f"PREFECT_HOME={tmp_path / 'read-only'}: permission denied; give this user write access "
        "to it, or use another project folder"
    )


def test_a_prefect_home_on_a_full_disk_is_one_line_naming_the_variable(
    environ, tmp_path, monkeypatch
):
    """A full disk under Prefect's database failed the run in its middle with tens of tracebacks
    (the server's writes): it is named before the run, with the space it needs."""
    environ["PREFECT_HOME"] = str(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(settings.shutil, "disk_usage", lambda path: usage._replace(free=3_000_000))
    with pytest.raises(FashionnetError) as caught:
        check_environment()
    assert str(caught.value) == (
        f"PREFECT_HOME={tmp_path}: no space left on device (3.0 MB free; Prefect's database "
        "needs 32 MB for a run); free some space on that disk, then run again"
    )


def test_the_projects_own_prefect_home_is_made_again_where_a_file_stood(environ, tmp_path, caplog):
    home = tmp_path / ".prefect"
    home.write_text("notes\n")
    apply_environment_defaults(tmp_path)
    with caplog.at_level(logging.WARNING):
        clear_own_prefect_home(tmp_path)
    [aside] = tmp_path.glob(".prefect.damaged-*")
    assert caplog.messages == [f"{home} is a file, not a folder; moved it to {aside}"]
    assert home.is_dir() and aside.read_text() == "notes\n"
    check_environment()


def test_a_prefect_home_the_user_chose_is_not_moved(environ, tmp_path):
    (tmp_path / "mine").write_text("notes\n")
    environ["PREFECT_HOME"] = str(tmp_path / "mine")
    clear_own_prefect_home(tmp_path)
    assert (tmp_path / "mine").read_text() == "notes\n"
    with pytest.raises(FashionnetError, match="PREFECT_HOME=.*: a file, not a folder"):
        check_environment()


def settings_command(*command: str, cwd: Path, **variables: str) -> subprocess.Popen:
    """`python -m fashionnet.core.settings COMMAND` in `cwd`, none of the project's variables
    set."""
    env = {name: value for name, value in os.environ.items() if name not in PROJECT_VARIABLES}
    return subprocess.Popen(
        [sys.executable, "-m", "fashionnet.core.settings", *command],
        cwd=cwd,
        env={**env, **variables},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def test_a_command_gets_the_defaults_of_the_current_folder_and_the_user_wins(tmp_path):
    process = settings_command(
        "printenv", "PREFECT_HOME", "KERAS_HOME", cwd=tmp_path, KERAS_HOME="/my/keras"
    )
    assert finish(process) == (0, f"{tmp_path / '.prefect'}\n/my/keras\n", "")


def test_the_command_replaces_the_process_so_signals_reach_it(tmp_path):
    process = settings_command("sh", "-c", "echo $$; exit 3", cwd=tmp_path)
    assert finish(process) == (3, f"{process.pid}\n", "")


def test_a_missing_command_is_one_clear_line(tmp_path):
    process = settings_command("no-such-command", cwd=tmp_path)
    message = "fashionnet.core.settings: cannot run no-such-command: No such file or directory\n"
    assert finish(process) == (1, "", message)


def test_without_a_command_it_prints_what_a_command_would_get(tmp_path):
    returncode, stdout, _ = finish(settings_command(cwd=tmp_path, PREFECT_HOME="/my/prefect"))
    expected = {**environment_defaults(tmp_path), "PREFECT_HOME": "/my/prefect"}
    assert returncode == 0
    assert stdout.splitlines() == [f"{name}={value}" for name, value in expected.items()]
