"""A temporary Prefect server that one `fashionnet run` owns: started for it, stopped with it.

The run binds a free port on 127.0.0.1 and hands the listening socket to a child process that
serves Prefect's API on it (the app Prefect's own temporary server runs: no UI, the services of
an ephemeral server). Holding the socket from the start, no other program can take the port
between the choice and the serving. The child runs in a session of its own, so Ctrl-C at the
terminal reaches the run alone and the server lives until the run has sent its last logs; and it
is asked to stop (SIGTERM) when the run's process ends, even killed with SIGKILL.

    python -m fashionnet_flows.temporary_server FD RUN_PID   the child: serve on socket FD
    python -m fashionnet_flows.temporary_server template     `make setup`: the database template

Prefect's task run recorder logs a write of task run events that the server's stop cancels as an
error with a traceback, though it keeps the events for its last write (Prefect's event persister
logs the same at debug level): a run stopped as its last events arrived ended with that
traceback. The server drops those records (`not_a_cancelled_write`).

Its SQLite database (`prefect.db` in PREFECT_HOME, the project's `.prefect/`) is looked at
before it starts (`heal_database`): a damaged one would end the server at start with a
traceback, every run, so it is moved aside and the server makes a new one. A new database
starts as a copy of the installation's template (`start_from_template`), an empty database that
Prefect's migrations made once, at `make setup`: run on each new project, they took about 7 s of
its first run.

Standard library only on the run's side: the server starts while the run imports Prefect.
"""

import asyncio
import contextlib
import ctypes
import importlib.metadata
import logging
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from fashionnet.core.atomic import atomic_path, move_aside
from fashionnet.core.errors import FashionnetError
from fashionnet.core.paths import A_FILE, clear_way, kind_of
from fashionnet.core.settings import DATABASE_URL_VARIABLES, environment_defaults

log = logging.getLogger("fashionnet.temporary_server")

# What Prefect's own temporary server runs with: no UI, only an ephemeral server's services.
SERVER_ENVIRONMENT = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
PREFECT_APP = "prefect.server.api.server:create_app"
TASK_RUN_RECORDER_LOGGER = "prefect.server.services.task_run_recorder"
# How long the server gets to stop by itself before it is killed.
STOP_SECONDS = 5.0
# How often the wait for the server looks at the run's stop requests.
POLL_SECONDS = 0.1
# Linux's prctl option: the signal this process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


# The URL of a SQLite database file, as Prefect's driver for it spells it; SQLite's own files
# beside the database: its write-ahead log and the index of it.
SQLITE_URL_PREFIX = "sqlite+aiosqlite:///"
SQLITE_COMPANIONS = ("-wal", "-shm")
# What SQLite calls a file that is not a database, or one that is damaged inside.
SQLITE_DAMAGE = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
# The longest path SQLite opens (MAX_PATHNAME of its Unix layer, in bytes): a database deeper
# down ends the server at start with "unable to open database file".
SQLITE_MAX_PATH = 512


def database_file(connection_url: str) -> Path | None:
    """The SQLite file of Prefect's database URL; None for another database (Postgres, or
    SQLite in memory), which is not the run's to heal."""
    if not connection_url.startswith(SQLITE_URL_PREFIX):
        return None
    name = connection_url.removeprefix(SQLITE_URL_PREFIX).partition("?")[0]
    return None if not name or name.startswith("file:") or ":memory:" in name else Path(name)


def sqlite_damage(database: Path) -> str | None:
    """What is wrong inside the SQLite file `database`, or None when SQLite finds it sound
    (its quick check: a few ms a MB). A database another server holds locked is not damage."""
    try:
        uri = f"{database.absolute().as_uri()}?mode=ro"  # read-only: nothing of it changed here
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as error:
        # Anything else (locked by another run's server, unreadable) is left for the server
        # to meet and name.
        return str(error) if error.sqlite_errorname in SQLITE_DAMAGE else None
    return None if problems == ["ok"] else problems[0]


def heal_database(database: Path) -> None:
    """Move the server's database aside, its SQLite companions with it, when it is damaged (not
    SQLite's, cut short, damaged inside) or not a file, with a warning: the server makes a new,
    empty one (the runs the Prefect UI showed stay in the copy). Nothing is opened before its
    kind is known. A path too long for SQLite is one line (a FashionnetError)."""
    if len(os.fsencode(database)) > SQLITE_MAX_PATH:
        raise FashionnetError(
            f"{database}: too long a path for the temporary Prefect server's SQLite database "
            f"({len(os.fsencode(database))} bytes; SQLite opens at most {SQLITE_MAX_PATH}): use "
            "a project folder with a shorter path, or set PREFECT_HOME to one"
        )
    kind = kind_of(database)
    if kind is None:
        return
    if kind != A_FILE:
        clear_way(database, A_FILE)
        return
    problem = sqlite_damage(database)
    if problem is None:
        return
    aside = move_aside(database)
    for suffix in SQLITE_COMPANIONS:
        companion = database.with_name(database.name + suffix)
        if os.path.lexists(companion):
            os.rename(companion, aside.with_name(aside.name + suffix))
    log.warning(
        "%s is damaged (%s); moved it to %s; the temporary Prefect server makes a new one",
        database,
        problem,
        aside,
    )


def database_template() -> Path:
    """Where `make setup` leaves the empty database of the installed Prefect version."""
    version = importlib.metadata.version("prefect")
    return Path(sys.prefix) / "share" / "fashionnet" / f"prefect-{version}.db"


def make_database_template(template: Path) -> None:
    """Run Prefect's migrations on a new database and save it as `template` (in one rename,
    whole: SQLite's VACUUM INTO writes it without a write-ahead log beside it)."""
    with tempfile.TemporaryDirectory() as folder:
        migrated = Path(folder) / "prefect.db"
        env = {**os.environ, **environment_defaults(Path(folder))}
        for name in DATABASE_URL_VARIABLES:
            env[name] = SQLITE_URL_PREFIX + str(migrated)
        prefect = Path(sys.executable).with_name("prefect")
        subprocess.run(
            [prefect, "server", "database", "upgrade", "--yes"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )
        with atomic_path(template) as saved, contextlib.closing(sqlite3.connect(migrated)) as db:
            saved.unlink()  # VACUUM INTO writes a new file
            db.execute("VACUUM INTO ?", (str(saved),))


def start_from_template(database: Path) -> None:
    """A database that is not there yet starts as a copy of the template, when there is a sound
    one: a damaged template is moved aside like a damaged database (`heal_database`), and the
    server makes its own database (the next `make setup` makes the template again)."""
    if os.path.lexists(database):
        return
    template = database_template()
    heal_database(template)
    if not template.is_file():
        return
    with atomic_path(database) as copy:
        shutil.copyfile(template, copy)


class ServerDidNotStart(Exception):
    """The server did not answer in time, or ended before it answered (the reason: the text)."""


class ServerEnded(ServerDidNotStart):
    """The server ended before it answered: not slow, failed (its errors are on stderr)."""


class TemporaryServer:
    """The server process, started at construction and stopped at the end of a `with` block;
    `api_url` is its API's address."""

    def __init__(self) -> None:
        # Port 0: the kernel picks a free one. Listening already, so the health request made
        # while the server starts waits in the queue instead of being refused.
        with socket.create_server(("127.0.0.1", 0)) as listener:
            # Each accepted connection inherits it: no Nagle delay on the API's small replies.
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(fd), str(os.getpid())],
                pass_fds=[fd],
                stdin=subprocess.DEVNULL,
                env={**os.environ, **SERVER_ENVIRONMENT},
                start_new_session=True,  # out of the terminal's process group: Ctrl-C misses it
            )
        # Closed here, the socket is the child's alone: if it ends, a waiting request ends too.
        self.address = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.address}/api"

    def wait_until_ready(self, timeout: float, check: Callable[[], None]) -> None:
        """Return once GET /api/health answers 200; raise `ServerDidNotStart` when the server
        ends first or `timeout` seconds pass. `check` is called every POLL_SECONDS (it may
        raise to stop waiting)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self._health(deadline, check)
            if status == 200:
                return
            if self.process.poll() is not None:
                raise ServerEnded(f"it ended with exit code {self.process.returncode}")
            if time.monotonic() >= deadline:
                raise ServerDidNotStart(f"no answer from {self.api_url}/health")
            time.sleep(POLL_SECONDS)

    def _health(self, deadline: float, check: Callable[[], None]) -> int | None:
        """The status of one GET /api/health, or None when none came before the deadline."""
        request = f"GET /api/health HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=POLL_SECONDS)
        except OSError:  # refused: the server has ended
            return None
        with sock:
            sock.sendall(request.encode("ascii"))
            reply = b""
            while time.monotonic() < deadline:
                check()
                readable, _, _ = select.select([sock], [], [], POLL_SECONDS)
                if not readable:
                    continue
                try:
                    chunk = sock.recv(4096)
                except ConnectionError:
                    return None
                if not chunk:  # HTTP/1.0: the server closes after its reply
                    status_line = reply.split(b"\r\n", 1)[0].split()
                    return int(status_line[1]) if len(status_line) > 1 else None
                reply += chunk
        return None

    def stop(self) -> None:
        """Ask the server to stop; kill it after STOP_SECONDS."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def end_with_parent(parent_pid: int) -> bool:
    """Get SIGTERM when the run ends, however it ends; False if it has ended already.

    Linux sends the signal when the thread that started this process ends: the run starts it
    from its main thread, which ends with the run.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent_pid


def not_a_cancelled_write(record: logging.LogRecord) -> bool:
    """False for the task run recorder's record of a write cancelled by the server's stop: the
    events are put back and written by its last write (a failure of that one still shows)."""
    return record.exc_info is None or not isinstance(record.exc_info[1], asyncio.CancelledError)


def serve(fd: int) -> int:
    """Serve Prefect's API on the listening socket `fd` until SIGTERM; uvicorn's exit code."""
    import uvicorn

    logging.getLogger(TASK_RUN_RECORDER_LOGGER).addFilter(not_a_cancelled_write)

    config = uvicorn.Config(PREFECT_APP, factory=True, lifespan="on", log_level="error")
    server = uvicorn.Server(config)
    server.run(sockets=[socket.socket(fileno=fd)])
    return 0 if server.started else 3  # 3: uvicorn's code for a server that did not start


def main() -> None:
    if sys.argv[1:] == ["template"]:
        template = database_template()
        heal_database(template)  # a damaged one is made again
        if not template.is_file():
            print(f"Running Prefect's migrations once for new projects: {template}")
            make_database_template(template)
        return
    fd, parent_pid = map(int, sys.argv[1:3])
    if not end_with_parent(parent_pid):
        return
    sys.exit(serve(fd))


if __name__ == "__main__":
    main()
