"""Damaged inputs through the real `fashionnet run`: one clear line each, and nothing changes.

A baseline run on small synthetic data leaves a project with `reports/latest`. Every fault then
runs in its own copy of that project (side by side, to keep the suite short) and must exit 1
with exactly one `fashionnet: error:` line that names the file, the problem and what to do, no
traceback anywhere in the output, and the project's data/, models/ and reports/ byte for byte
as they were. The library-level checks behind these messages are in test_idx.py,
test_dataset.py and test_weights.py; this file proves the user sees them. (Labels outside the
classes are the validate stage's anomalies: test_validate_run.py.)
"""

import os
import pickle
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
from cli_runs import (
    N_TEST,
    SMALL,
    Baseline,
    copy_project,
    error_line,
    run_fashionnet,
    snapshot,
    summary,
)

from fashionnet.data.idx import read_images, read_labels, write_idx
from fashionnet.model.two_layer_net import TwoLayerNet

TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
REPLACE = "replace it with the canonical file"
RETRAIN = "retrain the model or point to a good weights file"


class TouchOnUnpickle:
    """Unpickling this creates `marker`: if the marker exists, something ran pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@dataclass(frozen=True)
class Fault:
    name: str
    damage: Callable[[Path], list[str]]  # damages the case folder; returns extra CLI options
    expect: tuple[str, ...]  # in the error line; "{case}" is the case folder


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def raw_fault(name: str, damage: Callable[[Path], None], *expect: str) -> Fault:
    def apply(case: Path) -> list[str]:
        damage(case / "raw")
        return []

    return Fault(name, apply, expect)


def weights_fault(name: str, arrays: Callable[[Path], dict], *expect: str) -> Fault:
    def apply(case: Path) -> list[str]:
        path = case / "weights.npz"
        np.savez(path, **arrays(case))  # np.savez pickles object arrays: that is the point
        return ["--model-source", "file", "--weights-file", str(path)]

    return Fault(name, apply, ("weights file {case}/weights.npz", *expect, RETRAIN))


def good_params(**changes) -> Callable[[Path], dict]:
    def arrays(case: Path) -> dict:
        params = dict(TwoLayerNet(784, 32, 10, weight_init="he", seed=0).params)
        for name, change in changes.items():
            params[name] = change(params[name].copy(), case)
        return {name: array for name, array in params.items() if array is not None}

    return arrays


def with_value(index, value):
    def change(array, case):
        array[index] = value
        return array

    return change


def raw_dir_fault(name: str, named: Callable[[Path], str], *expect: str) -> Fault:
    """The raw folder given is not usable: the run stops, never using data/raw or a mirror."""
    return Fault(name, lambda case: ["--raw-dir", named(case)], expect)


def file_in_place_of_a_folder(case: Path) -> str:
    (case / "raw.txt").write_text("not a folder")
    return str(case / "raw.txt")


def folder_without(name: str) -> Callable[[Path], str]:
    def named(case: Path) -> str:
        (case / "raw" / name).unlink()
        return str(case / "raw")

    return named


NAMED_RAW = "(--raw-dir / FASHIONNET_RAW_DIR)"


def pickle_file(case: Path) -> list[str]:
    path = case / "weights.npz"
    path.write_bytes(pickle.dumps(TouchOnUnpickle(case / "unpickled")))
    return ["--model-source", "file", "--weights-file", str(path)]


FAULTS = [
    raw_fault(
        "truncated gzip",
        lambda raw: truncate(raw / TRAIN_LABELS),
        f"{{case}}/raw/{TRAIN_LABELS}: not a complete gzip file",
        REPLACE,
    ),
    raw_fault(
        "not gzip",
        lambda raw: (raw / TEST_IMAGES).write_bytes(b"<html>503 Service Unavailable</html>\n"),
        f"{{case}}/raw/{TEST_IMAGES}: not a complete gzip file",
        REPLACE,
    ),
    raw_fault(
        "wrong IDX magic",
        lambda raw: write_idx(raw / TEST_LABELS, read_images(raw / TEST_IMAGES)),
        f"{{case}}/raw/{TEST_LABELS}: magic number 2051, expected 2049",
        REPLACE,
    ),
    raw_fault(
        "wrong dimensions",
        lambda raw: write_idx(raw / TEST_IMAGES, np.zeros((N_TEST, 28, 27), np.uint8)),
        f"{{case}}/raw/{TEST_IMAGES}: images are 28x27, expected 28x28",
        REPLACE,
    ),
    raw_fault(
        "image and label counts differ",
        lambda raw: write_idx(raw / TEST_LABELS, read_labels(raw / TEST_LABELS)[:-1].copy()),
        f"{{case}}/raw/{TEST_IMAGES} has {N_TEST} images",
        f"{{case}}/raw/{TEST_LABELS} has {N_TEST - 1} labels",
        "use the images and labels files of the same split",
    ),
    weights_fault("weights missing a key", good_params(b2=lambda a, case: None), "lacks b2"),
    weights_fault(
        "weights of the wrong shape",
        good_params(W1=lambda a, case: a[:783]),
        "has W1 of shape (783, 32), expected (784, 32)",
    ),
    weights_fault(
        "weights with NaN or Inf",
        good_params(W2=with_value((0, 0), np.nan), b2=with_value(1, np.inf)),
        "has NaN or Inf in W2",
    ),
    weights_fault(
        "weights with an object array",
        good_params(
            b2=lambda a, case: np.array([TouchOnUnpickle(case / "unpickled")], dtype=object)
        ),
        "an array that cannot be read safely (b2 holds Python objects, which only pickle reads)",
    ),
    Fault(
        "weights file that is a pickle, not .npz",
        pickle_file,
        ("weights file {case}/weights.npz is not a NumPy .npz archive", RETRAIN),
    ),
    raw_dir_fault(
        "raw folder mistyped",
        lambda case: str(case / "rwa"),
        f"raw folder {{case}}/rwa {NAMED_RAW} does not exist",
    ),
    raw_dir_fault(
        "raw folder is a file",
        file_in_place_of_a_folder,
        f"raw folder {{case}}/raw.txt {NAMED_RAW} is not a folder",
    ),
    raw_dir_fault(
        "raw folder lacks a file",
        folder_without(TEST_LABELS),
        f"raw folder {{case}}/raw {NAMED_RAW} lacks {TEST_LABELS}",
    ),
    raw_dir_fault("raw folder empty name", lambda case: "", "--raw-dir (raw_dir) is empty"),
]


@dataclass(frozen=True)
class Outcome:
    case: Path
    result: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def env(cli_env):
    return cli_env


@pytest.fixture(scope="module")
def baseline(finished_project) -> Baseline:
    return finished_project


def run_fault(fault: Fault, baseline: Baseline, root: Path, env: dict[str, str]) -> Outcome:
    case = root / fault.name.replace(" ", "-")
    project = copy_project(baseline, case)
    options = fault.damage(case)
    before = snapshot(project)
    result = run_fashionnet(
        "--raw-dir", str(case / "raw"), "--project-dir", str(project), *SMALL, *options, env=env
    )
    return Outcome(case, result, before, snapshot(project))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, baseline, env) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {f.name: pool.submit(run_fault, f, baseline, root, env) for f in FAULTS}
    return {name: future.result() for name, future in futures.items()}


def test_the_pickle_payload_is_live(tmp_path):
    """Without this, the 'never unpickled' checks below could pass for the wrong reason."""
    pickle.loads(pickle.dumps(TouchOnUnpickle(tmp_path / "unpickled")))  # the test's own bytes
    assert (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault_is_one_clear_line_and_changes_nothing(fault, outcomes):
    outcome = outcomes[fault.name]
    message = error_line(outcome.result)  # exit 1, no traceback, exactly one error line
    for words in fault.expect:
        assert words.format(case=outcome.case) in message
    assert outcome.after == outcome.before, "nothing written, reports/latest unchanged"
    assert "downloading" not in outcome.result.stderr, "no mirror was tried"
    assert not (outcome.case / "unpickled").exists(), "nothing was ever unpickled"


def test_new_user_with_a_damaged_download(baseline, real_raw_dir, tmp_path):
    """`fashionnet run` as typed in a fresh shell: temporary Prefect server, no test settings."""
    raw = tmp_path / "fashion-mnist"
    raw.mkdir()
    for source in real_raw_dir.glob("*.gz"):
        (raw / source.name).symlink_to(source)
    damaged = raw / TEST_LABELS
    damaged.unlink()
    damaged.write_bytes(Path(real_raw_dir, TEST_LABELS).read_bytes()[:3000])  # cut short
    project = copy_project(baseline, tmp_path)
    before = snapshot(project)
    # No test settings but the Prefect home (a fresh one only adds its database set-up time).
    fresh_shell = {
        name: value
        for name, value in os.environ.items()
        if name == "PREFECT_HOME"
        or not name.startswith(("PREFECT_", "FASHIONNET_", "MPLCONFIGDIR", "KERAS_", "TF_"))
    }

    result = run_fashionnet(env={**fresh_shell, "FASHIONNET_RAW_DIR": str(raw)}, cwd=project)

    message = error_line(result)
    assert message.startswith(f"{damaged} is not the canonical {TEST_LABELS} (sha256 ")
    assert message.endswith("replace it with the canonical file or remove it")
    assert snapshot(project) == before
    assert "Starting temporary server on http://127.0.0.1:" in result.stderr


def test_a_temporary_server_too_slow_to_start_is_one_line_and_leaves_no_process(tmp_path):
    """As on a loaded machine: the server does not answer within its start-up time."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PREFECT_API_URL", "FASHIONNET_RAW_DIR")
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # marks this run's processes
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "1"

    result = run_fashionnet("--project-dir", str(tmp_path / "project"), env=env, cwd=tmp_path)

    message = error_line(result)
    assert message.startswith("the temporary Prefect server did not start within 1 s (")
    assert "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in message
    assert not processes_with(env["PREFECT_HOME"]), "the server that was starting is stopped"


def test_a_damaged_prefect_database_is_moved_aside_and_the_run_publishes(baseline, tmp_path):
    """The project's own `.prefect/prefect.db` garbage: the temporary server failed at start with
    a traceback, every run; now it is moved aside, named, and the server makes a new one."""
    project = copy_project(baseline, tmp_path)
    database = project / ".prefect" / "prefect.db"
    database.parent.mkdir()
    database.write_bytes(os.urandom(50_000))
    fresh_shell = {  # the project's own Prefect home: no test settings
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "FASHIONNET_"))
    }

    result = run_fashionnet(
        "--raw-dir", str(tmp_path / "raw"), *SMALL, env=fresh_shell, cwd=project
    )

    assert result.returncode == 0 and "Traceback" not in result.stderr, summary(result)
    [aside] = database.parent.glob("prefect.db.damaged-*")
    assert (
        f"{database} is damaged (file is not a database); moved it to {aside}; the temporary "
        "Prefect server makes a new one"
    ) in result.stderr.splitlines()


def processes_with(prefect_home: str) -> list[psutil.Process]:
    """The running processes whose environment has this PREFECT_HOME."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PREFECT_HOME") == prefect_home:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def a_port_nothing_listens_on() -> int:
    with socket.socket() as probe:  # a free port, given back at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A variable of the environment the run starts in -> its value ({port}: a port nothing listens
# on) and the one line, after "NAME=value: ".
ENVIRONMENT_FAULTS = {
    "PREFECT_API_URL not a URL": (
        "PREFECT_API_URL",
        "not-a-url",
        "not an http(s) URL; set it to a Prefect server's API (e.g. http://127.0.0.1:4200/api), "
        "or unset it to run with a temporary server",
    ),
    "PREFECT_API_URL pointing at nothing": (
        "PREFECT_API_URL",
        "http://127.0.0.1:{port}/api",
        "no Prefect server answers there ([Errno 111] Connection refused); start it (`make "
        "server` serves http://127.0.0.1:4200/api), or unset it to run with a temporary server",
    ),
    "PREFECT_LOGGING_LEVEL not a level": (
        "PREFECT_LOGGING_LEVEL",
        "BOGUS",
        "not a log level; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL, or unset it",
    ),
    "the server's start-up time not a number": (
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "abc",
        "not a whole number of seconds above 0; give the seconds the temporary Prefect server "
        "may take to start (e.g. 90)",
    ),
}


@pytest.mark.parametrize("case", ENVIRONMENT_FAULTS)
def test_a_bad_variable_is_one_line_and_changes_nothing(case, baseline, env, tmp_path):
    name, value, problem = ENVIRONMENT_FAULTS[case]
    value = value.format(port=a_port_nothing_listens_on())
    project = copy_project(baseline, tmp_path)
    before = snapshot(project)
    result = run_fashionnet(
        "--raw-dir",
        str(tmp_path / "raw"),
        "--project-dir",
        str(project),
        *SMALL,
        env={**env, name: value},
    )
    assert error_line(result) == f"{name}={value}: {problem}"
    assert snapshot(project) == before


def test_a_run_over_its_time_limit_is_one_line_naming_the_limit_and_the_variable(
    baseline, env, tmp_path
):
    """A new project, whose run takes longer than a second."""
    project = tmp_path / "project"
    result = run_fashionnet(
        "--raw-dir",
        str(baseline.raw),
        "--project-dir",
        str(project),
        *SMALL,
        env={**env, "FASHIONNET_FLOW_TIMEOUT_SECONDS": "1"},
    )
    assert error_line(result) == (
        "FASHIONNET_FLOW_TIMEOUT_SECONDS=1: the run took longer than this limit of 1 s and was "
        "stopped; raise FASHIONNET_FLOW_TIMEOUT_SECONDS for longer runs, or find the step that "
        "hangs in the run's log"
    )
    assert not os.path.lexists(project / "reports" / "latest"), "nothing published"
