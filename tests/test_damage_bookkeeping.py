"""Damaged bookkeeping and a machine that refuses to write, through the real `fashionnet run`.

Each case damages a copy of the finished project (`finished_project`), runs again, and then, for
a failed run, does what its one error line asks and runs once more. The cases run side by side.

- Bookkeeping (history.csv, reports/latest) never blocks a run: the damaged file is moved aside,
  a warning names both files, and the run publishes as an undamaged run would.
- A project folder that is a file, read-only, not writable, or on a full disk: exit 1 with one
  line naming the path, the problem and what to do, no traceback, nothing written (no history
  row, no run folder, `latest` unchanged, no temporary); after the fix the run succeeds.
- Every successful run's report CSVs are byte-identical to the undamaged run's.
"""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runs import (
    FASHIONNET,
    SMALL,
    Baseline,
    copy_project,
    error_line,
    leftovers,
    report_csvs,
    run_fashionnet,
    snapshot,
    summary,
)
from synthetic import small_run

from fashionnet.core.layout import Layout
from fashionnet.data.catalog import RAW_FILES, SPLITS
from fashionnet.report.columns import HISTORY_COLUMNS
from fashionnet.report.publish import read_history

HEADER = ",".join(HISTORY_COLUMNS) + "\n"


def contents(path: Path) -> dict[str, bytes]:
    """A file's bytes, or every file's bytes under a folder: what a damaged thing held."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))}


def new_run_dir(result: subprocess.CompletedProcess) -> Path:
    """The run folder a successful `fashionnet run` names on its last line."""
    return Path(result.stdout.strip().splitlines()[-1].removeprefix("reports: "))


def assert_published_like_the_undamaged_run(
    result: subprocess.CompletedProcess, project: Path, baseline: Baseline, history_rows: int
) -> None:
    """Exit 0, `latest` is the new run folder, the history ends with its rows (and has
    `history_rows` rows before them), the report CSVs are the undamaged run's."""
    assert result.returncode == 0, summary(result)
    assert "Traceback" not in result.stdout + result.stderr, summary(result)
    layout, run_dir = Layout(project), new_run_dir(result)
    assert layout.latest_link.is_symlink() and layout.latest_link.resolve() == run_dir
    run_ids = read_history(layout.history_csv)["run_id"].tolist()
    splits = 3  # a history row per split: train, validation, test
    assert run_ids == run_ids[:history_rows] + [run_dir.name] * splits
    assert len(run_ids) == history_rows + splits
    assert report_csvs(run_dir) == report_csvs(Layout(baseline.project).latest_link)


def side_by_side(run_case, cases, tmp_path_factory, baseline: Baseline, env: dict[str, str]):
    """`run_case(case, baseline, root, env)` for every case, a few at a time: name -> outcome."""
    root = tmp_path_factory.mktemp(run_case.__name__)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.name: pool.submit(run_case, case, baseline, root, env) for case in cases}
    return {name: future.result() for name, future in futures.items()}


# --- bookkeeping: moved aside, named in a warning, made anew ----------------------------------


@dataclass(frozen=True)
class Bookkeeping:
    name: str
    damage: Callable[[Layout], None]
    moved: str | None  # what is moved aside (under reports/): history.csv, latest or nothing
    warning: str  # the warning up to "moved it to"; {path} is reports/<moved>
    history_kept: Callable[[int], int]  # how many of the history's N earlier rows stay


def history_rows_of(layout: Layout) -> str:
    return layout.history_csv.read_text().split("\n", 1)[1]


def latest_replaced_by_a_copy(layout: Layout) -> None:
    """As a copy or a sync tool that does not keep links leaves it (a file in its place is
    tested in test_reports.py)."""
    run_dir = layout.latest_link.resolve()
    layout.latest_link.unlink()
    shutil.copytree(run_dir, layout.latest_link)


BOOKKEEPING = [
    Bookkeeping(
        "history.csv is binary garbage",
        lambda layout: layout.history_csv.write_bytes(bytes(range(255, -1, -1)) * 40),
        "history.csv",
        "{path} has lines that cannot be read (line 1: its header is not UTF-8 text",
        history_kept=lambda rows: 0,
    ),
    Bookkeeping(
        "history.csv has another header",
        lambda layout: layout.history_csv.write_text("when,what\n" + history_rows_of(layout)),
        "history.csv",
        "{path} has lines that cannot be read (line 1: its header 'when,what' is not "
        "'format_version,finished_at,",
        history_kept=lambda rows: rows,  # the rows are still this layout's
    ),
    Bookkeeping(
        "history.csv has a malformed row",
        lambda layout: layout.history_csv.write_text(
            layout.history_csv.read_text() + "1,2026-11-28T01:00:00+00:00,r9,test\n"
        ),
        "history.csv",
        "{path} has lines that cannot be read (line 5: 4 fields, expected 13)",
        history_kept=lambda rows: rows,
    ),
    Bookkeeping(
        "history.csv without format versions",
        lambda layout: layout.history_csv.write_text(
            HEADER.removeprefix("format_version,")
            + "".join(row.removeprefix("1,") for row in history_rows_of(layout).splitlines(True))
        ),
        "history.csv",
        "{path} has lines that cannot be read (line 1: its header 'finished_at,run_id,split,",
        history_kept=lambda rows: 0,
    ),
    Bookkeeping(
        "history.csv with a row of an older format version",
        lambda layout: layout.history_csv.write_text(
            HEADER + history_rows_of(layout).replace("1,", "0,", 1)
        ),
        "history.csv",
        "{path} has lines that cannot be read (line 2: history format 0 is older than this "
        "fashionnet's 1)",
        history_kept=lambda rows: rows - 1,
    ),
    Bookkeeping(
        "reports/latest is a folder",
        latest_replaced_by_a_copy,
        "latest",
        "{path} is a folder, not a link to a run",
        history_kept=lambda rows: rows,
    ),
]


@dataclass(frozen=True)
class BookkeepingOutcome:
    project: Path
    damaged: dict[str, bytes]  # what the damaged file or folder held
    runs_before: subprocess.CompletedProcess  # `fashionnet runs` on the damaged project
    result: subprocess.CompletedProcess


def fashionnet_runs(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [FASHIONNET, "runs", "--project-dir", str(project)]
    wide = {**env, "COLUMNS": "200"}
    return subprocess.run(command, env=wide, capture_output=True, text=True, check=False)


def run_bookkeeping(
    case: Bookkeeping, baseline: Baseline, root: Path, env: dict[str, str]
) -> BookkeepingOutcome:
    case_dir = root / case.name.replace(" ", "-").replace("/", "-")
    project = copy_project(baseline, case_dir)
    case.damage(Layout(project))
    damaged = contents(project / "reports" / case.moved) if case.moved else {}
    runs_before = fashionnet_runs(project, env)
    result = run_fashionnet(
        "--raw-dir", str(case_dir / "raw"), "--project-dir", str(project), *SMALL, env=env
    )
    return BookkeepingOutcome(project, damaged, runs_before, result)


@pytest.fixture(scope="module")
def bookkeeping_outcomes(tmp_path_factory, finished_project, cli_env):
    return side_by_side(run_bookkeeping, BOOKKEEPING, tmp_path_factory, finished_project, cli_env)


@pytest.mark.parametrize("case", BOOKKEEPING, ids=[case.name for case in BOOKKEEPING])
def test_damaged_bookkeeping_is_moved_aside_and_the_run_publishes(
    case, bookkeeping_outcomes, finished_project
):
    outcome = bookkeeping_outcomes[case.name]
    reports_dir = outcome.project / "reports"
    history_rows = len(read_history(Layout(finished_project.project).history_csv))
    assert_published_like_the_undamaged_run(
        outcome.result, outcome.project, finished_project, case.history_kept(history_rows)
    )
    warnings = [
        line
        for line in outcome.result.stderr.splitlines()
        if "moved it to" in line or "the file as it was in" in line
    ]
    if case.moved is None:
        assert warnings == [] and not list(reports_dir.glob("*.damaged-*"))
        return
    [aside] = reports_dir.glob(f"{case.moved}.damaged-*")
    assert contents(aside) == outcome.damaged, "the damaged file is kept as it was"
    [warning] = warnings
    assert case.warning.format(path=reports_dir / case.moved) in warning
    assert str(aside) in warning
    runs = {p.name for p in (reports_dir / "runs").iterdir()}
    earlier = Layout(finished_project.project).latest_link.resolve().name
    assert runs == {earlier, new_run_dir(outcome.result).name}, "one new run folder"


def test_fashionnet_runs_shows_what_it_can_read_and_names_what_it_skipped(bookkeeping_outcomes):
    """`fashionnet runs` on the damaged projects, before the run moved their history aside."""
    notes = {}
    for name in ("history.csv has a malformed row", "history.csv is binary garbage"):
        runs = bookkeeping_outcomes[name].runs_before
        assert runs.returncode == 0 and "Traceback" not in runs.stderr, summary(runs)
        skipped = f"Skipped what cannot be read in {bookkeeping_outcomes[name].project}/reports/"
        notes[name] = " ".join(runs.stdout.split()).replace(skipped, "SKIPPED ")  # may wrap
    malformed, garbage = notes.values()
    assert "test accuracy" in malformed, "the runs it could read are listed"
    assert "SKIPPED history.csv (line 5: 4 fields, expected 13)" in malformed
    assert garbage.startswith(
        "SKIPPED history.csv (line 1: its header is not UTF-8 text; line 2: not UTF-8 text;"
    )


def test_a_history_of_a_newer_fashionnet_stops_the_run_in_one_line_and_stays(
    finished_project, cli_env, tmp_path
):
    """Not damage: a newer fashionnet's file, neither misread nor replaced. The line names it
    and what to do; moving it aside, as the line says, lets the run publish."""
    project = copy_project(finished_project, tmp_path)
    layout = Layout(project)
    newer = HEADER.replace("\n", ",region\n") + "".join(
        "2" + row.removeprefix("1")[:-1] + ",eu\n"
        for row in history_rows_of(layout).splitlines(True)
    )
    layout.history_csv.write_text(newer)
    before = snapshot(project)
    args = ("--raw-dir", str(tmp_path / "raw"), "--project-dir", str(project), *SMALL)

    result = run_fashionnet(*args, env=cli_env)

    assert error_line(result) == (
        f"{layout.history_csv}: written by a newer fashionnet (history format 2; this one reads "
        "up to 1): upgrade fashionnet, or move the file aside"
    )
    assert snapshot(project) == before, "no history row, no run folder, latest as it was"
    layout.history_csv.rename(layout.history_csv.with_name("history-newer.csv"))
    assert_published_like_the_undamaged_run(
        run_fashionnet(*args, env=cli_env), project, finished_project, history_rows=0
    )


# --- the machine refuses to write: one line, nothing written, then the fix -------------------


class Unavailable(Exception):
    """This machine cannot set the fault up (no mount, no way to drop root's rights)."""


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Unavailable(f"mount {' '.join(args)}: {result.stderr.strip() or result.returncode}")


def unmount(folder: Path) -> None:
    # Lazy: after a flow run in this process fails on a full disk, the file pyarrow was writing
    # stays open (its writer does not close it when the footer cannot be written, and Prefect
    # keeps the exception, so it is never collected): the mount stays busy.
    subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=True)


def as_unprivileged() -> tuple[str, ...]:
    """A command prefix under which file permissions apply: root ignores them unless it drops
    the capabilities that override them."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        raise Unavailable("running as root, and no setpriv to drop its override of permissions")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


@dataclass(frozen=True)
class Refusal:
    """A copy of the finished project made unwritable in some way."""

    name: str
    # Sets the fault up in the copied project (undone by `undo` at the end); returns the folder
    # to give --project-dir and the command prefix to run it under.
    set_up: Callable[[Path, contextlib.ExitStack], tuple[Path, tuple[str, ...]]]
    expect: str  # the error line; {folder} is the folder given to --project-dir
    fix: Callable[[Path], None]  # what the line asks for
    failed_task: str = ""  # the task the error stops, when it is not found before the run


def a_file_in_its_place(project: Path, undo) -> tuple[Path, tuple[str, ...]]:
    given = project.with_name("project-file")
    given.write_text("notes\n")
    return given, ()


def read_only_mount(project: Path, undo) -> tuple[Path, tuple[str, ...]]:
    given = project.with_name("read-only")
    given.mkdir()
    mount("--bind", str(project), str(given))
    undo.callback(unmount, given)
    mount("-o", "remount,bind,ro", str(given))
    return given, ()


def not_writable(folder_of: Callable[[Path], Path]):
    def set_up(project: Path, undo) -> tuple[Path, tuple[str, ...]]:
        prefix = as_unprivileged()
        folder = folder_of(project)
        folder.chmod(0o555)
        undo.callback(folder.chmod, 0o755)
        return project, prefix

    return set_up


def full_disk(*, leave_kib: int, remove: str = ""):
    """The project on a 30 MiB tmpfs filled but for `leave_kib` (after emptying the folder
    `remove`, so the run has it to write again)."""

    def set_up(project: Path, undo) -> tuple[Path, tuple[str, ...]]:
        disk = project.with_name("disk")
        disk.mkdir()
        mount("-t", "tmpfs", "-o", "size=30m", "tmpfs", str(disk))
        undo.callback(unmount, disk)
        given = Path(shutil.copytree(project, disk / "project", symlinks=True))
        for path in (given / remove).glob("*") if remove else ():
            path.unlink()
        free = os.statvfs(disk)
        (disk / "filler").write_bytes(bytes(free.f_bavail * free.f_frsize - leave_kib * 1024))
        return given, ()

    return set_up


def free_the_disk(given: Path) -> None:
    (given.parent / "filler").unlink()


def remount_read_write(given: Path) -> None:
    mount("-o", "remount,bind,rw", str(given))


def make_writable(folder_of: Callable[[Path], Path]) -> Callable[[Path], None]:
    return lambda given: folder_of(given).chmod(0o755)


NO_SPACE = "{folder}: no space left on device; free some space on that disk, then run again"
NO_ACCESS = "permission denied; give this user write access to it, or use another project folder"
REFUSALS = [
    Refusal(
        "project folder is a file",
        a_file_in_its_place,
        "{folder}: a file, not a folder; give --project-dir a folder, or move the file aside",
        lambda given: given.rename(given.with_name("notes.txt")),
    ),
    Refusal(
        "project folder on a read-only mount",
        read_only_mount,
        "{folder}: read-only file system; "
        "mount it read-write, or use a project folder on a writable disk",
        remount_read_write,
    ),
    Refusal(
        "project folder not writable",
        not_writable(lambda project: project),
        "{folder}: " + NO_ACCESS,
        make_writable(lambda project: project),
    ),
    Refusal(
        "reports folder not writable (the run gets as far as publishing)",
        not_writable(lambda project: project / "reports"),
        "{folder}/reports: " + NO_ACCESS,
        make_writable(lambda project: project / "reports"),
        failed_task="publish-report",
    ),
    Refusal(
        "disk full when preparing",
        full_disk(leave_kib=0, remove="data/parquet"),
        NO_SPACE,
        free_the_disk,
        failed_task="prepare",
    ),
    Refusal(
        "disk full when writing the run folder",
        full_disk(leave_kib=100),
        NO_SPACE,
        free_the_disk,
        failed_task="write-report",
    ),
]


@dataclass(frozen=True)
class RefusalOutcome:
    given: Path  # the folder given to --project-dir
    failed: subprocess.CompletedProcess
    before: dict[str, str]  # what was there before the failed run
    after: dict[str, str]
    left: list[Path]  # temporaries the failed run left
    fixed_ok: str | None  # None, or why the run after the fix is not as an undamaged run


def state(given: Path) -> dict[str, str]:
    return snapshot(given) if given.is_dir() else {"file": given.read_text()}


def run_refusal(
    case: Refusal, baseline: Baseline, root: Path, env: dict[str, str]
) -> RefusalOutcome | str:
    """The failed run, then the fix and the run after it; or why this machine cannot try."""
    case_dir = root / case.name.split(" (")[0].replace(" ", "-")
    project = copy_project(baseline, case_dir)

    def run(given: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        args = ("--raw-dir", str(case_dir / "raw"), "--project-dir", str(given), *SMALL)
        if not prefix:
            return run_fashionnet(*args, env=env)
        command = [*prefix, FASHIONNET, "run", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    with contextlib.ExitStack() as undo:
        try:
            given, prefix = case.set_up(project, undo)
        except Unavailable as reason:
            return str(reason)
        history_rows = len(read_history(Layout(given).history_csv)) if given.is_dir() else 0
        before = state(given)
        failed = run(given, prefix)
        after, left = state(given), leftovers(given) if given.is_dir() else []
        case.fix(given)
        fixed = run(given)
        try:  # checked here, before the disk is unmounted
            assert_published_like_the_undamaged_run(fixed, given, baseline, history_rows)
            fixed_ok = None
        except AssertionError as error:
            fixed_ok = str(error)
    return RefusalOutcome(given, failed, before, after, left, fixed_ok)


@pytest.fixture(scope="module")
def refusal_outcomes(tmp_path_factory, finished_project, cli_env):
    return side_by_side(run_refusal, REFUSALS, tmp_path_factory, finished_project, cli_env)


@pytest.mark.parametrize("case", REFUSALS, ids=[case.name for case in REFUSALS])
def test_a_project_folder_that_cannot_be_written_is_one_line_and_the_fix_runs(
    case, refusal_outcomes
):
    outcome = refusal_outcomes[case.name]
    if isinstance(outcome, str):
        pytest.skip(outcome)
    assert error_line(outcome.failed) == case.expect.format(folder=outcome.given)
    if case.failed_task:
        failed = [line for line in outcome.failed.stderr.splitlines() if "in state Failed" in line]
        assert f"Task run '{case.failed_task}-" in outcome.failed.stderr, f"stopped at {failed}"
    else:
        assert "Task run" not in outcome.failed.stderr, "found before the run started"
    assert outcome.after == outcome.before, "nothing written: no history row, no run folder"
    assert outcome.left == [], "no temporary left"
    assert outcome.fixed_ok is None, outcome.fixed_ok


@pytest.mark.parametrize(
    "name", ["project folder on a read-only mount", "disk full when preparing"]
)
def test_the_flow_run_fails_with_the_same_one_line(
    name, finished_project, prefect_harness, tmp_path
):
    """As a deployment runs it: the flow checks the folder itself, and its state says the line."""
    from fashionnet_flows.pipeline import fashionnet_pipeline

    case = next(case for case in REFUSALS if case.name == name)
    project = copy_project(finished_project, tmp_path)
    with contextlib.ExitStack() as undo:
        try:
            given, _ = case.set_up(project, undo)
        except Unavailable as reason:
            pytest.skip(str(reason))
        before = snapshot(given)
        state = fashionnet_pipeline(**small_run(tmp_path / "raw", given), return_state=True)
        assert state.is_failed()
        assert state.message.endswith(f"FashionnetError: {case.expect.format(folder=given)}")
        assert snapshot(given) == before


# --- swapped raw files: named for what they are, even unverified ----------------------------


def test_swapped_train_and_test_files_are_named_even_with_no_verify(
    finished_project, real_raw_dir, cli_env, tmp_path
):
    project = copy_project(finished_project, tmp_path)
    raw = tmp_path / "swapped"
    raw.mkdir()
    (train_images, train_labels), (test_images, test_labels) = SPLITS["train"], SPLITS["test"]
    swap = {
        train_images: test_images,
        test_images: train_images,
        train_labels: test_labels,
        test_labels: train_labels,
    }
    for name, really in swap.items():
        (raw / name).symlink_to(real_raw_dir / really)
    before = snapshot(project)

    result = run_fashionnet(
        "--raw-dir", str(raw), "--project-dir", str(project), *SMALL, env=cli_env
    )

    assert error_line(result) == (
        "; ".join(f"{raw / name} is the canonical {swap[name]}, not {name}" for name in RAW_FILES)
        + " (by their published sha256): give each file its own name"
    )
    assert snapshot(project) == before
