"""flows/temporary_server.py: the database of `fashionnet run`'s temporary Prefect server is
looked at before the server starts, and a damaged one moved aside (the run with it:
test_reliability_cli.py); a new one starts as a copy of the installation's template."""

import contextlib
import importlib.util
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet_flows import temporary_server
from fashionnet_flows.temporary_server import (
    ServerEnded,
    TemporaryServer,
    database_file,
    database_template,
    heal_database,
    start_from_template,
)


@pytest.fixture
def sound(tmp_path):
    """A SQLite database in WAL mode, as Prefect keeps it, with its write-ahead log."""
    database = tmp_path / "prefect.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE flow_run (id INTEGER PRIMARY KEY, name TEXT)")
        connection.executemany(
            "INSERT INTO flow_run (name) VALUES (?)", [(f"run {i}" * 50,) for i in range(2000)]
        )
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database


def test_a_sound_database_is_left_alone(sound, caplog):
    before = sound.read_bytes()
    with caplog.at_level(logging.WARNING):
        heal_database(sound)
    assert sound.read_bytes() == before and caplog.messages == []
    assert not list(sound.parent.glob("*.damaged-*"))


def test_no_database_yet_is_left_to_the_server(tmp_path, caplog):
    heal_database(tmp_path / "prefect.db")
    assert list(tmp_path.iterdir()) == [] and caplog.messages == []


def garbage(database):
    database.write_bytes(os.urandom(50_000))


def cut_short(database):
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])


# How the database is damaged -> what the warning says is wrong with it.
DAMAGE = {
    "garbage": (garbage, "damaged (file is not a database)"),
    "cut short": (cut_short, "damaged (database disk image is malformed)"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_database_is_moved_aside_with_its_log_and_named(sound, caplog, case):
    damage, problem = DAMAGE[case]
    damage(sound)
    wal = sound.with_name("prefect.db-wal")
    wal.write_bytes(b"the log of the damaged database")
    held = sound.read_bytes()
    with caplog.at_level(logging.WARNING):
        heal_database(sound)
    [aside] = sound.parent.glob("prefect.db.damaged-*[0-9Z]")
    assert caplog.messages == [
        f"{sound} is {problem}; moved it to {aside}; the temporary Prefect server makes a new one"
    ]
    assert aside.read_bytes() == held and not os.path.lexists(sound)
    assert aside.with_name(aside.name + "-wal").read_bytes() == b"the log of the damaged database"
    assert not os.path.lexists(wal), "the new database does not meet the old one's log"


@pytest.mark.timeout(30)  # a FIFO opened would wait for a writer for ever
@pytest.mark.parametrize(
    ("make", "kind"), [(os.mkdir, "a folder"), (os.mkfifo, "a FIFO (named pipe)")]
)
def test_what_is_not_a_file_is_moved_aside_never_opened(tmp_path, caplog, make, kind):
    database = tmp_path / "prefect.db"
    make(database)
    with caplog.at_level(logging.WARNING):
        heal_database(database)
    [aside] = tmp_path.glob("prefect.db.damaged-*")
    assert caplog.messages == [f"{database} is {kind}, not a file; moved it to {aside}"]
    assert not os.path.lexists(database)


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite+aiosqlite:////home/me/.prefect/prefect.db", "/home/me/.prefect/prefect.db"),
        ("sqlite+aiosqlite:///prefect.db?timeout=5", "prefect.db"),
        ("sqlite+aiosqlite:///file::memory:?cache=shared&uri=true", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("postgresql+asyncpg://prefect@db:5432/prefect", None),
        ("", None),
    ],
)
def test_only_a_sqlite_file_is_the_runs_to_heal(url, file):
    assert database_file(url) == (None if file is None else Path(file))


def test_a_database_path_too_long_for_sqlite_is_one_line(tmp_path):
    """A project folder of ~4,000 characters: SQLite opens no path beyond 512 bytes, and the
    server ended at start with a traceback; now the run stops before it, in one line."""
    database = tmp_path.joinpath(*["d" * 200] * 3, ".prefect", "prefect.db")
    with pytest.raises(FashionnetError) as caught:
        heal_database(database)
    assert str(caught.value) == (
        f"{database}: too long a path for the temporary Prefect server's SQLite database "
        f"({len(str(database))} bytes; SQLite opens at most 512): use a project folder with a "
        "shorter path, or set PREFECT_HOME to one"
    )


def test_a_server_that_ended_before_it_answered_is_not_called_slow():
    """What failed at start (its database, its settings) is not a busy machine: the run's line
    says the server ended (`ServerEnded`), not to raise the start-up time."""
    server = object.__new__(TemporaryServer)  # its process, without Prefect's app
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        server.port = probe.getsockname()[1]
    server.api_url = f"http://127.0.0.1:{server.port}/api"
    server.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    server.process.wait()
    with pytest.raises(ServerEnded, match="^it ended with exit code 3$"):
        server.wait_until_ready(60, check=lambda: None)


def sqlite_migration_heads() -> set[str]:
    """The revisions of Prefect's SQLite migrations that no later one follows (read from their
    files: importing Prefect's server and alembic would take seconds)."""
    prefect = Path(importlib.util.find_spec("prefect").origin).parent
    revisions, followed = set(), set()
    for script in (prefect / "server/database/_migrations/versions/sqlite").glob("*.py"):
        text = script.read_text()
        revisions |= set(re.findall(r'^revision = "(\w+)"', text, re.MULTILINE))
        followed |= set(re.findall(r'^down_revision = "(\w+)"', text, re.MULTILINE))
    return revisions - followed


def test_make_setup_leaves_a_template_at_the_head_of_prefects_migrations():
    template = database_template()
    assert template.is_file(), "make setup makes it"
    with contextlib.closing(sqlite3.connect(f"{template.as_uri()}?mode=ro", uri=True)) as db:
        revisions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
    assert set(revisions) == sqlite_migration_heads() and len(revisions) == 1
    assert not os.path.lexists(f"{template}-wal"), "whole in one file"


def test_only_a_database_not_there_yet_starts_from_the_template(sound, tmp_path, monkeypatch):
    monkeypatch.setattr(temporary_server, "database_template", lambda: sound)
    new = tmp_path / "new" / "prefect.db"
    start_from_template(new)
    assert new.read_bytes() == sound.read_bytes()

    existing = tmp_path / "existing.db"
    existing.write_bytes(b"the project's own")
    start_from_template(existing)
    assert existing.read_bytes() == b"the project's own"

    monkeypatch.setattr(temporary_server, "database_template", lambda: tmp_path / "none.db")
    start_from_template(tmp_path / "left" / "prefect.db")
    assert not (tmp_path / "left" / "prefect.db").exists(), "the server makes its own"


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_template_is_moved_aside_named_and_never_copied(
    sound, tmp_path, monkeypatch, caplog, case
):
    damage, problem = DAMAGE[case]
    damage(sound)
    monkeypatch.setattr(temporary_server, "database_template", lambda: sound)
    new = tmp_path / "new" / "prefect.db"
    with caplog.at_level(logging.WARNING):
        start_from_template(new)
    assert not os.path.lexists(new), "the server makes its own"
    [aside] = sound.parent.glob("prefect.db.damaged-*[0-9Z]")
    assert caplog.messages == [
        f"{sound} is {problem}; moved it to {aside}; the temporary Prefect server makes a new one"
    ]
    assert not os.path.lexists(sound), "make setup makes it again"


def test_a_write_the_servers_stop_cancels_is_written_last_and_leaves_no_traceback(
    caplog, monkeypatch
):
    """Prefect's task run recorder, stopped while it writes an event, puts the event back and
    writes it as it ends, but logs the cancelled write as an error with a traceback: the server
    drops that record (`not_a_cancelled_write`); a write that fails otherwise still shows."""
    import asyncio
    import datetime
    import uuid

    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.services import task_run_recorder

    written = []
    first_write_started = asyncio.Event()

    async def write(events):
        if not first_write_started.is_set():
            first_write_started.set()
            await asyncio.sleep(60)  # the write the server's stop cancels
        written.extend(event.id for event in events)

    monkeypatch.setattr(task_run_recorder, "record_bulk_task_run_events", write)
    recorder_log = logging.getLogger(temporary_server.TASK_RUN_RECORDER_LOGGER)
    monkeypatch.setattr(recorder_log, "filters", [temporary_server.not_a_cancelled_write])
    event = ReceivedEvent(
        id=uuid.uuid4(),
        occurred=datetime.datetime.now(datetime.UTC),
        event="prefect.task-run.Completed",
        resource={
            "prefect.resource.id": f"prefect.task-run.{uuid.uuid4()}",
            "prefect.orchestration": "client",
        },
    )

    class Message:
        data = event.model_dump_json()
        attributes = {}

    async def stopped_while_writing():
        async with task_run_recorder.consumer(write_batch_size=1, flush_every=60) as handle:
            handling = asyncio.create_task(handle(Message()))
            await first_write_started.wait()
            handling.cancel()  # what the service's stop does to its consumer
            with contextlib.suppress(asyncio.CancelledError):
                await handling

    with caplog.at_level(logging.DEBUG, logger=recorder_log.name):
        asyncio.run(stopped_while_writing())
    assert written == [event.id]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    failure = logging.LogRecord(recorder_log.name, logging.ERROR, __file__, 1, "x", None, None)
    try:
        raise OSError("disk full")
    except OSError:
        failure.exc_info = sys.exc_info()
    assert temporary_server.not_a_cancelled_write(failure)
