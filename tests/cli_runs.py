"""Drive the real `fashionnet` command in a subprocess and inspect what it leaves behind.

The end-to-end reliability tests go through the entry point a user types. They talk to the
session's Prefect test server (`api_env`), which saves each run the ~5 s of starting a
temporary server; the new-user test runs without it, exactly as `fashionnet run` would.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from synthetic import write_synthetic_raw

from fashionnet.core.atomic import TEMP_MARKER

FASHIONNET = str(Path(sys.executable).with_name("fashionnet"))

# Small synthetic data trains and predicts in about a second.
SMALL = (
    "--no-verify",
    "--row-group-size",
    "100",
    "--chunk-size",
    "200",
    "--validation-size",
    "100",
    "--hidden-size",
    "32",
    "--epochs",
    "2",
)
OUTPUT_FOLDERS = ("data", "models", "reports")
ERROR_PREFIX = "fashionnet: error: "


# The finished project every damage test starts from: synthetic data of these sizes, SMALL run.
N_TRAIN, N_TEST = 600, 250


@dataclass(frozen=True)
class Baseline:
    """A finished project (`reports/latest` and all) and the raw folder it was made from."""

    raw: Path
    project: Path


def make_baseline(root: Path, env: dict[str, str]) -> Baseline:
    raw, project = root / "raw", root / "project"
    write_synthetic_raw(raw, n_train=N_TRAIN, n_test=N_TEST, seed=1)
    result = run_fashionnet("--raw-dir", str(raw), "--project-dir", str(project), *SMALL, env=env)
    assert result.returncode == 0, summary(result)
    return Baseline(raw, project)


def copy_project(baseline: Baseline, case: Path) -> Path:
    """A copy of the finished project (and its raw folder) under `case`; returns the project."""
    shutil.copytree(baseline.project, case / "project", symlinks=True)  # keeps reports/latest
    shutil.copytree(baseline.raw, case / "raw")
    return case / "project"


def api_env() -> dict[str, str]:
    """The environment for a subprocess run against the current Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k != "FASHIONNET_RAW_DIR"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def run_fashionnet(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 240):
    """`fashionnet run ARGS` to completion; returns the CompletedProcess (text)."""
    return subprocess.run(
        [FASHIONNET, "run", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def summary(result: subprocess.CompletedProcess) -> str:
    """What a failed assertion should show: exit code and the tail of the output."""
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
    return f"exit {result.returncode}\n{tail}"


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `fashionnet: error:` line of a failed run, checked to be the only one."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, summary(result)
    assert "Traceback" not in output, summary(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(lines) == 1, summary(result)
    return lines[0].removeprefix(ERROR_PREFIX)


def one_file(project: Path, pattern: str) -> Path:
    """The one file of `project` matching `pattern`, models/champion aside (a link to the
    blessed model's own folder)."""
    (path,) = (found for found in project.glob(pattern) if not found.parent.is_symlink())
    return path


def snapshot(project: Path) -> dict[str, str]:
    """Every file, folder and link under the project's output folders, with its content hash."""
    state = {}
    for top in OUTPUT_FOLDERS:
        for path in sorted((project / top).rglob("*")):
            name = str(path.relative_to(project))
            if path.is_symlink():
                state[name] = f"link to {os.readlink(path)}"
            elif path.is_dir():
                state[name] = "folder"
            else:
                state[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def leftovers(project: Path) -> list[Path]:
    """Temporaries under the output folders: ours (`.<name>.tmp-*`) or a downloader's (`tmp*`)."""
    return [
        path
        for top in OUTPUT_FOLDERS
        for path in (project / top).rglob("*")
        if TEMP_MARKER in path.name or path.name.startswith("tmp")
    ]


def report_csvs(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run_dir.glob("*.csv"))}


class LiveRun:
    """`fashionnet run` in the background, its output collected line by line, killable."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path | None = None):
        self.process = subprocess.Popen(
            [FASHIONNET, "run", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so a kill takes any child with it
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _wait(self, found, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if hit := found():
                return hit
            if self.process.poll() is not None:
                self._reader.join(5)
                if hit := found():  # it may have printed the line just before exiting
                    return hit
                raise AssertionError(
                    f"exited ({self.process.returncode}) before {what}:\n" + self.output
                )
            time.sleep(0.005)
        raise AssertionError(f"no {what} within {timeout} s:\n{self.output}")

    def wait_for_line(self, pattern: str, timeout: float = 120) -> str:
        regex = re.compile(pattern)
        return self._wait(
            lambda: next((line for line in self.lines if regex.search(line)), None),
            f"line matching {pattern!r}",
            timeout,
        )

    def wait_for_path(self, folder: Path, glob: str, timeout: float = 120) -> Path:
        return self._wait(
            lambda: next(iter(folder.glob(glob)), None) if folder.is_dir() else None,
            f"{folder}/{glob}",
            timeout,
        )

    def kill(self) -> None:
        """SIGKILL the run and anything it started; no cleanup code of it gets to run."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._reader.join(5)
        assert self.process.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 240) -> int:
        self.process.wait(timeout)
        self._reader.join(5)
        return self.process.returncode
