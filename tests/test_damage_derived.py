"""Damaged derived files and unusable weights through the real `fashionnet run`.

Every case damages its own copy of a finished project (side by side, to keep the suite short)
and runs `fashionnet run` again with the same options.
- A damaged file the pipeline derived (Parquet, predictions, a stored model's files) is named
  in a warning that says where the damaged copy went; the stage makes it again and the run's
  report CSVs are byte-identical to the undamaged run's.
- Weights that cannot be used stop the run with one `fashionnet: error:` line, nothing written,
  reports/latest and history.csv as they were; the run after the fix the line asks for succeeds.
The library-level checks are in test_integrity.py, test_prepare.py, test_predict.py,
test_model_source.py and test_weights.py.
"""

import json
import os
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_runs import (
    SMALL,
    Baseline,
    copy_project,
    error_line,
    one_file,
    report_csvs,
    run_fashionnet,
    snapshot,
    summary,
)

from fashionnet.core.integrity import record_of, seal, verified
from fashionnet.core.layout import Layout
from fashionnet.core.threads import CONCURRENT_CHUNKS
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.predict import chunk_bytes

PARQUET_TEST = "data/parquet/test.parquet"
PREDICTIONS_TEST = "data/predictions/test.parquet"
PREDICTIONS_TRAIN = "data/predictions/train.parquet"
MISMATCH = "its sha256 does not match the one recorded"
RETRAIN = "retrain the model or point to a good weights file"


def overwritten(size: int) -> Callable[[Path], None]:
    """`size` bytes in the middle of a file changed: its footer or header still reads fine."""

    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + size] = bytes(range(size))
        path.write_bytes(data)

    return damage


def folder_instead(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


@dataclass(frozen=True)
class Heal:
    """Damage the run repairs: the file it names, what it says is wrong."""

    name: str
    file: str  # a glob pattern, relative to the project, matching one file
    damage: Callable[[Path], None]
    problem: str  # in the warning, after "<file> is damaged (" (IN_PLACE: after "<file> ")


HEALS = [
    Heal("Parquet bytes overwritten", PARQUET_TEST, overwritten(64), MISMATCH),
    Heal("Parquet is a folder", PARQUET_TEST, folder_instead, "a folder or special file"),
    Heal("predictions bytes overwritten", PREDICTIONS_TEST, overwritten(256), MISMATCH),
    Heal("weights.npz bytes overwritten", "models/*/weights.npz", overwritten(64), MISMATCH),
    Heal(
        "meta.json not an object",
        "models/*/meta.json",
        lambda path: path.write_text("[1, 2, 3]"),
        MISMATCH,
    ),
]
# Not damaged, only not to be trusted: made again in place, nothing to move aside. A file
# without its checksum record is what a run interrupted between the two leaves.
IN_PLACE = [
    Heal(
        "learning_curve.csv deleted",
        "models/*/learning_curve.csv",
        Path.unlink,
        "is missing; making it again",
    ),
    Heal(
        "predictions without their checksum record",
        PREDICTIONS_TRAIN,
        lambda path: record_of(path).unlink(),
        "has no checksum record (train.parquet.sha256); making it again",
    ),
]


# Intact (sealed again), but without the format version this fashionnet writes: made again in
# place, as a file of a format it does not read. {path} is the file, {folder} its folder.
def without_format_version(path: Path) -> None:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        metadata = dict(table.schema.metadata)
        del metadata[b"fashionnet.format"]
        pq.write_table(table.replace_schema_metadata(metadata), path, row_group_size=100)
    else:
        meta = json.loads(path.read_text())
        del meta["format_version"]
        path.write_text(json.dumps(meta))
    seal(path)


UNVERSIONED = [
    Heal(
        "Parquet without a format version",
        PARQUET_TEST,
        without_format_version,
        "rebuilding {path} from the raw files: {path}: no split format version",
    ),
    Heal(
        "meta.json without a format version",
        "models/*/meta.json",
        without_format_version,
        "ignoring stored model {folder} and making it again: meta.json: no model format version",
    ),
]


def huge_weights(case: Path) -> Path:
    """Finite weights whose products overflow float32: every probability NaN."""
    params = TwoLayerNet(784, 32, 10, seed=0).params
    path = case / "huge.npz"
    np.savez(path, **{**params, "W1": np.full((784, 32), 1e30), "W2": np.full((32, 10), 1e30)})
    return path


def empty_hidden_layer(case: Path) -> Path:
    path = case / "empty.npz"
    np.savez(path, W1=np.zeros((784, 0)), b1=np.zeros(0), W2=np.zeros((0, 10)), b2=np.ones(10))
    return path


def wide_weights(case: Path) -> Path:
    """4096 hidden units: 13.0 MB of float32 weights, which every chunk job reads, and a chunk of
    200 rows takes 7.2 MB more (`predict.chunk_bytes`)."""
    path = case / "wide.npz"
    np.savez(path, **TwoLayerNet(784, 4096, 10, weight_init="he", seed=0).params)
    return path


WIDE_WEIGHTS_BYTES = (784 * 4096 + 4096 + 4096 * 10 + 10) * 4
# A machine with 17.5 MB of memory available per chunk that runs at once, as psutil reports it
# to `fashionnet run`: imported at start-up from PYTHONPATH, it makes the case without needing
# gigabytes.
SMALL_MACHINE_AVAILABLE = CONCURRENT_CHUNKS * 17_500_000
SMALL_MACHINE = f"""
import psutil

_measured = psutil.virtual_memory


def virtual_memory():
    return _measured()._replace(available={SMALL_MACHINE_AVAILABLE})


psutil.virtual_memory = virtual_memory
"""


def on_a_small_machine(case: Path, env: dict[str, str]) -> dict[str, str]:
    folder = case / "small-machine"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SMALL_MACHINE)
    paths = [str(folder), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


@dataclass(frozen=True)
class Outcome:
    case: Path
    project: Path
    result: subprocess.CompletedProcess
    before: dict[str, str]  # snapshot before the run
    after: dict[str, str]
    file: Path | None = None  # for a Heal: the damaged file
    fixed: subprocess.CompletedProcess | None = None  # for a refusal: the run after the fix


def options(case: Path, project: Path, *extra: str) -> tuple[str, ...]:
    return ("--raw-dir", str(case / "raw"), "--project-dir", str(project), *SMALL, *extra)


def run_heal(heal: Heal, baseline: Baseline, root: Path, env: dict[str, str]) -> Outcome:
    case = root / heal.name.replace(" ", "-")
    project = copy_project(baseline, case)
    path = one_file(project, heal.file)
    heal.damage(path)
    before = snapshot(project)
    result = run_fashionnet(*options(case, project), env=env)
    return Outcome(case, project, result, before, snapshot(project), file=path)


def file_weights(path: Path) -> tuple[str, ...]:
    return ("--model-source", "file", "--weights-file", str(path))


def run_unusable(
    weights: Callable[[Path], Path], name: str, baseline: Baseline, root: Path, env: dict[str, str]
) -> Outcome:
    """Refused weights; then the fix the line asks for: the project's own trained model."""
    case = root / name
    project = copy_project(baseline, case)
    before = snapshot(project)
    result = run_fashionnet(*options(case, project, *file_weights(weights(case))), env=env)
    after = snapshot(project)
    fixed = run_fashionnet(*options(case, project), env=env)
    return Outcome(case, project, result, before, after, fixed=fixed)


def run_too_wide(baseline: Baseline, root: Path, env: dict[str, str]) -> Outcome:
    """Weights too wide for the machine's memory; then the smaller chunks the line asks for."""
    case = root / "too-wide"
    project = copy_project(baseline, case)
    small = on_a_small_machine(case, env)
    wide = file_weights(wide_weights(case))
    before = snapshot(project)
    result = run_fashionnet(*options(case, project, *wide), env=small)
    after = snapshot(project)
    fitting = re.search(r"--chunk-size (\d+) or less", result.stderr)
    rows = fitting.group(1) if fitting else "1"
    smaller = ("--chunk-size", rows, "--row-group-size", rows)
    fixed = run_fashionnet(*options(case, project, *wide, *smaller), env=small)
    return Outcome(case, project, result, before, after, fixed=fixed)


def run_wide_on_a_large_machine(baseline: Baseline, root: Path, env: dict[str, str]) -> Outcome:
    """The reference for the fixed run: the same weights where the memory suffices."""
    case = root / "wide-enough-memory"
    project = copy_project(baseline, case)
    result = run_fashionnet(*options(case, project, *file_weights(wide_weights(case))), env=env)
    return Outcome(case, project, result, {}, {})


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, finished_project, cli_env) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("damaged")
    runs = {heal.name: (run_heal, heal) for heal in [*HEALS, *IN_PLACE, *UNVERSIONED]}
    runs["huge weights"] = (run_unusable, huge_weights, "huge-weights")
    runs["hidden size 0"] = (run_unusable, empty_hidden_layer, "hidden-size-0")
    runs["too wide for memory"] = (run_too_wide,)
    runs["reference"] = (run_wide_on_a_large_machine,)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(function, *arguments, finished_project, root, cli_env)
            for name, (function, *arguments) in runs.items()
        }
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def undamaged(finished_project) -> dict[str, bytes]:
    return report_csvs(Layout(finished_project.project).latest_link)


def published_like(outcome: Outcome, expected: dict[str, bytes]) -> None:
    """A new run, published, whose report CSVs are byte for byte `expected`."""
    assert outcome.after["reports/latest"] != outcome.before["reports/latest"]
    assert report_csvs(Layout(outcome.project).latest_link) == expected


@pytest.mark.parametrize("heal", HEALS, ids=[heal.name for heal in HEALS])
def test_damaged_derived_file_is_moved_aside_named_and_made_again(heal, outcomes, undamaged):
    outcome = outcomes[heal.name]
    output = outcome.result.stdout + outcome.result.stderr
    assert outcome.result.returncode == 0, summary(outcome.result)
    assert "Traceback" not in output
    path = outcome.file
    (warning,) = [line for line in output.splitlines() if f"{path} is damaged (" in line]
    assert f"{path} is damaged ({heal.problem}" in warning
    aside = Path(re.search(r"moved to ([^\s;]+)", warning).group(1))
    assert aside.parent == path.parent and ".damaged-" in aside.name
    assert os.path.lexists(aside), "the damaged copy is kept for a person to look at"
    assert verified(path), "made again, with its checksum record"
    published_like(outcome, undamaged)


@pytest.mark.parametrize("heal", IN_PLACE, ids=[heal.name for heal in IN_PLACE])
def test_a_missing_or_unrecorded_file_is_named_and_made_again_in_place(heal, outcomes, undamaged):
    outcome = outcomes[heal.name]
    assert outcome.result.returncode == 0, summary(outcome.result)
    assert "Traceback" not in outcome.result.stdout + outcome.result.stderr
    assert f"{outcome.file} {heal.problem}" in outcome.result.stderr
    assert not list(outcome.file.parent.glob("*.damaged-*")), "nothing moved aside"
    assert verified(outcome.file)
    published_like(outcome, undamaged)


@pytest.mark.parametrize("heal", UNVERSIONED, ids=[heal.name for heal in UNVERSIONED])
def test_a_file_without_its_format_version_is_named_and_made_again_in_place(
    heal, outcomes, undamaged
):
    outcome = outcomes[heal.name]
    assert outcome.result.returncode == 0, summary(outcome.result)
    assert "Traceback" not in outcome.result.stdout + outcome.result.stderr
    path = outcome.file
    assert heal.problem.format(path=path, folder=path.parent) in outcome.result.stderr
    assert not list(path.parent.glob("*.damaged-*")), "intact: replaced, not moved aside"
    assert verified(path)
    published_like(outcome, undamaged)


REFUSALS = {
    "huge weights": "{case}/huge.npz gives class probabilities that are not finite (overflow)",
    "hidden size 0": "{case}/empty.npz has a hidden layer of size 0 (b1 is empty)",
}


@pytest.mark.parametrize("name", REFUSALS)
def test_unusable_weights_are_one_line_and_publish_nothing(name, outcomes, undamaged):
    outcome = outcomes[name]
    message = error_line(outcome.result)  # exit 1, no traceback, exactly one error line
    assert message == f"weights file {REFUSALS[name].format(case=outcome.case)}: {RETRAIN}"
    assert outcome.after == outcome.before, "nothing written; latest and history.csv as before"
    assert outcome.fixed.returncode == 0, summary(outcome.fixed)
    assert report_csvs(Layout(outcome.project).latest_link) == undamaged


def test_weights_too_wide_for_memory_are_one_line_with_the_chunk_size_to_use(outcomes):
    """Every chunk that runs at once counts, with its copy of the weights: 13.0 + 7.2 MB for
    each chunk of 200 rows, where 17.5 MB is free per chunk; 124 rows take 4.5 MB."""
    outcome = outcomes["too wide for memory"]
    message = error_line(outcome.result)
    need = CONCURRENT_CHUNKS * (WIDE_WEIGHTS_BYTES + chunk_bytes(200, 4096))
    assert (17_500_000 - WIDE_WEIGHTS_BYTES) // chunk_bytes(1, 4096) == 124
    assert message.startswith(
        f"predicting chunks of 200 rows, {CONCURRENT_CHUNKS} at once (one per CPU), with the 4096 "
        f"hidden units of {outcome.case}/wide.npz needs about {need / 1e6:,.1f} MB of memory, but "
        f"{SMALL_MACHINE_AVAILABLE / 1e6:,.1f} MB is available: use --chunk-size 124 or less"
    )
    assert outcome.after == outcome.before, "nothing written; latest and history.csv as before"
    assert outcome.fixed.returncode == 0, summary(outcome.fixed)
    reference = outcomes["reference"]
    assert reference.result.returncode == 0, summary(reference.result)
    assert report_csvs(Layout(outcome.project).latest_link) == report_csvs(
        Layout(reference.project).latest_link
    )
