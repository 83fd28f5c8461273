"""Ctrl-C and SIGTERM on `fashionnet run`: one line, the shell's exit code, within 10 s, and
nothing left behind: no process (the temporary Prefect server included), no file but hidden
temporaries. SIGKILL, which no code of the run sees: its temporary server ends all the same.

Each run starts its own temporary Prefect server, as a user's `fashionnet run` does (no
PREFECT_API_URL): that server is what a Ctrl-C at the terminal used to kill under the run.
"""

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import typer
from cli_runs import LiveRun, leftovers, snapshot
from synthetic import write_synthetic_raw

from fashionnet.core.atomic import TEMP_MARKER
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions

pytestmark = pytest.mark.prefect

# Enough epochs that training is still going when the signal comes.
LONG_TRAINING = (
    "--no-verify",
    "--row-group-size",
    "100",
    "--chunk-size",
    "200",
    "--hidden-size",
    "32",
    "--epochs",
    "100000",
    "--validation-size",
    "100",
)
STOP_SECONDS = 10


def own_server_env(prefect_home: Path) -> dict[str, str]:
    """The user's environment: no Prefect server to talk to, a Prefect home of the run's own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PREFECT_API_URL", "FASHIONNET_RAW_DIR")
    }
    env["PREFECT_HOME"] = str(prefect_home)
    return env


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def temporary_servers(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if "fashionnet_flows.temporary_server" in " ".join(p.cmdline())]


def training_run(tmp_path: Path) -> tuple[LiveRun, Path]:
    """`fashionnet run` with a temporary server of its own, once it is training."""
    raw, project = tmp_path / "raw", tmp_path / "project"
    write_synthetic_raw(raw, n_train=600, n_test=100, seed=1)
    run = LiveRun(
        "--raw-dir",
        str(raw),
        "--project-dir",
        str(project),
        *LONG_TRAINING,
        env=own_server_env(tmp_path / "prefect-home"),
        cwd=tmp_path,
    )
    run.wait_for_line(r"epoch \d+/", timeout=180)
    return run, project


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("signal_number", "to_group", "exit_code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_during_training_stops_the_run_cleanly(
    tmp_path, signal_number, to_group, exit_code
):
    run, project = training_run(tmp_path)
    try:
        started = descendants(run.process.pid)
        assert temporary_servers(started), "a temporary server"
        before = snapshot(project)
        signalled = time.monotonic()
        # Ctrl-C at a terminal signals the whole foreground process group; a supervisor's
        # SIGTERM goes to the process alone.
        if to_group:
            os.killpg(run.process.pid, signal_number)
        else:
            run.process.send_signal(signal_number)
        returncode = run.finish(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if run.process.poll() is None:
            run.kill()

    assert returncode == exit_code, run.output
    assert run.lines[-1] == "fashionnet: interrupted", run.output
    assert "Traceback" not in run.output, run.output
    assert took < STOP_SECONDS, f"stopped {took:.1f} s after the signal"
    assert not [p for p in started if alive(p)], "a process of the run is still running"
    after = snapshot(project)
    new = [name for name in after if name not in before]
    assert all(TEMP_MARKER in Path(name).name for name in new), new
    assert all(after[name] == before[name] for name in before if name in after)
    assert not (project / "reports" / "latest").exists()
    assert all(TEMP_MARKER in path.name for path in leftovers(project))


def test_the_temporary_server_ends_when_the_run_is_killed(tmp_path):
    """SIGKILL to the run alone (not its process group): the server, in a session of its own,
    is sent SIGTERM by the kernel when its parent is gone."""
    run, _ = training_run(tmp_path)
    try:
        [server] = temporary_servers(descendants(run.process.pid))
        run.process.kill()
        run.finish(timeout=30)
        deadline = time.monotonic() + STOP_SECONDS
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        outlived = alive(server)
    finally:
        if run.process.poll() is None:
            run.kill()
    if outlived:
        server.kill()
    assert not outlived, "the temporary server outlived the killed run"


def test_a_signal_once_the_run_is_published_is_kept_and_then_named(monkeypatch, capsys):
    """Ctrl-C or SIGTERM after the commit point: no stop request, no forced stop (the grace
    timer's repeat included); once the run has finished, `fashionnet run` prints its summary,
    then says the run was interrupted after publishing, with the first signal's exit code."""
    from fashionnet.core import interrupts
    from fashionnet_flows import cli

    monkeypatch.setattr(cli._forcible, "is_set", lambda: True)  # where a stop would be forced
    monkeypatch.setattr(cli, "_signals_after_publishing", [])

    def published_run(options, train):
        interrupts.commit()
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            cli.on_stop_signal(number, None)  # would raise KeyboardInterrupt the second time
        assert not interrupts.stop_requested() and cli._grace_timers == []
        return {"accuracy": {"test": 0.9}, "run_dir": "reports/runs/r1"}

    monkeypatch.setattr(cli, "start_pipeline", published_run)
    values = {**RunOptions().model_dump(), **TrainConfig().model_dump()}
    try:
        with pytest.raises(typer.Exit) as ended:
            cli.run(**values)
    finally:
        interrupts.reset()
    assert ended.value.exit_code == 128 + signal.SIGTERM
    out, err = capsys.readouterr()
    assert "reports: reports/runs/r1" in out
    assert err.strip() == "fashionnet: interrupted after the run was published (kept)"
