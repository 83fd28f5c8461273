import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import make_report, make_run, placeholder_figures
from rich.console import Console
from test_reports import GOOD_ROW, HEADER, append
from typer.testing import CliRunner

from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.report import publish
from fashionnet.report.columns import (
    HISTORY_COLUMNS,
    OVERALL_COLUMNS,
    PER_CLASS_COLUMNS,
    TEXT_COLUMNS,
)
from fashionnet.report.markdown import overall_rows, per_class_rows
from fashionnet.report.publish import read_history
from fashionnet.report.run_report import RunReport, read_run_csv
from fashionnet.report.terminal import render_report, render_runs, runs_rows
from fashionnet_flows import cli


@pytest.fixture
def run_dir(report_run_dir):
    return report_run_dir


def recording_console(width: int = 160) -> Console:
    return Console(record=True, width=width, file=io.StringIO(), color_system=None)


def row_cells(text: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is `first_cell`."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def test_render_report_figures_equal_overall_csv(run_dir):
    console = recording_console()
    render_report(run_dir, console)
    text = console.export_text()
    overall = read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS)
    assert "Run r1" in text and "5eed5eed" in text
    for row in overall.itertuples():
        cells = row_cells(text, row.split)
        assert float(cells[1].rstrip("%")) == pytest.approx(100 * row.accuracy, abs=0.005)
        assert int(cells[2].replace(",", "")) == row.correct
        assert int(cells[3].replace(",", "")) == row.samples


def test_render_report_per_class_table_equals_per_class_csv(run_dir):
    console = recording_console()
    render_report(run_dir, console)
    text = console.export_text()
    per_class = read_run_csv(run_dir, "per_class.csv", PER_CLASS_COLUMNS).set_index(
        ["split", "class_name"]
    )
    for name in CLASS_NAMES:
        cells = row_cells(text, name)
        assert len(cells) == 7, cells
        train, test = per_class.loc[("train", name)], per_class.loc[("test", name)]
        assert float(cells[1].rstrip("%")) == pytest.approx(100 * train.accuracy, abs=0.005)
        assert float(cells[2].rstrip("%")) == pytest.approx(100 * test.accuracy, abs=0.005)
        assert float(cells[3]) == pytest.approx(test.precision, abs=0.0005)
        assert cells[6] == f"[{100 * test.ci_low:.2f}%, {100 * test.ci_high:.2f}%]", cells


def test_render_report_through_the_latest_link_names_the_run(run_dir, tmp_path):
    latest = tmp_path / "latest"
    publish.publish_latest(latest, run_dir)
    console = recording_console()
    render_report(latest, console)
    assert "Run r1" in console.export_text()


def test_render_report_of_a_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(FashionnetError, match="latest does not exist; name a run"):
        render_report(tmp_path / "latest", recording_console())


def test_render_runs_lists_each_run_with_accuracy_per_split(tmp_path):
    overall = make_report().overall
    history = tmp_path / "history.csv"
    digests = {"train": "0" * 16, "test": "1" * 16}
    append(history, "run-a", "2026-11-28T01:00:00+00:00", overall, digests)
    append(history, "run-b", "2026-11-28T02:00:00+00:00", overall.iloc[:1], digests)
    console = recording_console()
    render_runs(history, console)
    text = console.export_text()
    first, second = row_cells(text, "run-a"), row_cells(text, "run-b")
    assert first[1:3] == ["2026-11-28T01:00:00+00:00", "5eed5eed"]
    assert second[1] == "2026-11-28T02:00:00+00:00"
    accuracy = dict(zip(overall["split"], overall["accuracy"], strict=True))
    assert float(first[3].rstrip("%")) == pytest.approx(100 * accuracy["train"], abs=0.005)
    assert float(first[4].rstrip("%")) == pytest.approx(100 * accuracy["test"], abs=0.005)
    assert second[4] == "-"  # run-b recorded no test split
    assert text.index("run-a") < text.index("run-b")


def test_render_runs_before_any_run(tmp_path):
    console = recording_console()
    render_runs(tmp_path / "history.csv", console)
    assert "No runs yet" in console.export_text()


def test_render_runs_shows_the_rows_it_can_read_and_names_the_lines_it_skipped(tmp_path):
    history = tmp_path / "history.csv"
    markup = GOOD_ROW.replace("T03:", "T04:").replace("r0", "[/bold]")  # text, not markup
    history.write_text(HEADER + GOOD_ROW + "1,x,r1,test,1,0.5,m,f,extra\n" + markup)
    console = recording_console()
    render_runs(history, console)
    table = console.export_text()
    text = " ".join(table.split())  # the note may wrap
    assert row_cells(table, "r0")[1] == "2026-11-01T03:00:00+00:00"
    assert row_cells(table, "[/bold]")[1] == "2026-11-01T04:00:00+00:00"
    assert f"Skipped what cannot be read in {history} (line 3: 9 fields, expected 13)" in text
    assert "the next `fashionnet run` keeps its readable rows and copies the file aside" in text


def test_render_runs_of_a_file_that_is_not_a_history_says_so_in_one_note(tmp_path):
    history = tmp_path / "history.csv"
    history.write_bytes(b"\x89PNG\r\n\x1a\n[/]")
    console = recording_console()
    render_runs(history, console)
    text = " ".join(console.export_text().split())
    assert text.startswith(
        f"Skipped what cannot be read in {history} (line 1: its header is not UTF-8"
    )
    assert "No runs yet" not in text and "Runs" not in text


# --- every figure and id whole, however narrow the terminal, and piped ----------------------

NARROW = 80  # a default terminal, and the width rich takes when nothing tells it one


def cells_by_row(text: str) -> dict[str, list[str]]:
    """Each table row's cells after the first, by its first cell, over all the tables of `text`
    (a table too wide is shown as several, each with the first column again). A line whose first
    cell is empty continues the row above: its cells are joined to that row's."""
    found: dict[str, list[str]] = {}
    row: list[str] = []
    start = 0
    for line in text.splitlines():
        if "│" not in line:
            continue
        first, *cells = (cell.strip() for cell in line.strip().strip("│").split("│"))
        if first:
            row = found.setdefault(first, [])
            start = len(row)
            row += cells
        else:
            for offset, cell in enumerate(cells):
                row[start + offset] = f"{row[start + offset]} {cell}".strip()
    return found


def assert_nothing_cut(text: str, width: int = NARROW) -> None:
    assert "…" not in text, text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width, text


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose reports/runs holds one run of three splits, reports/latest points at."""
    root = tmp_path_factory.mktemp("project")
    with placeholder_figures():  # these tests read the run's tables, not its figures
        run = make_run(root / "reports", splits=("train", "validation", "test"))
    publish.publish_latest(Layout(root).latest_link, run)
    return root


def report_at_80_columns(project) -> str:
    console = recording_console(NARROW)
    render_report(Layout(project).latest_link, console)
    return console.export_text()


def report_piped(project) -> str:
    """`fashionnet report` writing to a pipe, COLUMNS unset: rich takes 80 columns."""
    result = CliRunner().invoke(
        cli.make_app(), ["report", "--project-dir", str(project)], env={"COLUMNS": None}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("show", [report_at_80_columns, report_piped], ids=["80", "piped"])
def test_the_report_shows_every_figure_whole_at_80_columns_and_piped(project, show):
    text = show(project)
    assert_nothing_cut(text)
    found = cells_by_row(text)
    report = RunReport.read(Layout(project).latest_link)
    for _, rows in (overall_rows(report.overall), per_class_rows(report.per_class)):
        for row in rows:
            assert found[row[0]] == row[1:], text
    for row in read_run_csv(
        Layout(project).latest_link, "overall.csv", OVERALL_COLUMNS
    ).itertuples():
        shown = found[row.split]
        assert f"{row.accuracy:.2%}" in shown and f"{row.log_loss:.4f}" in shown, text


def test_runs_show_every_id_and_figure_whole_at_80_columns(tmp_path):
    history, runs_dir = tmp_path / "history.csv", tmp_path / "runs"
    overall = make_report(splits=("train", "validation", "test")).overall
    overrides = {"hidden_size": 256, "learning_rate": 0.0005, "regression_tolerance": 0.02}
    for hour, trigger in enumerate(["deployment-manual", "schedule", "cli"], start=1):
        run_id = f"20261128T{hour:02d}0000Z-{hour:06x}"
        finished_at = f"2026-11-28T{hour:02d}:00:09+00:00"
        append(history, run_id, finished_at, overall, trigger=trigger)
        (runs_dir / run_id).mkdir(parents=True)
        manifest = {"prefect": {"overrides": overrides}}
        (runs_dir / run_id / "manifest.json").write_text(json.dumps(manifest))
    console = recording_console(NARROW)
    render_runs(history, console)
    text = console.export_text()

    assert_nothing_cut(text)
    found = cells_by_row(text)
    _, rows = runs_rows(read_history(history), runs_dir)
    assert len(rows) == 3
    for row in rows:
        assert found[row[0]] == row[1:], text
        assert row[-1] == "hidden_size=256 learning_rate=0.0005 regression_tolerance=0.02"


def test_a_wide_terminal_shows_each_table_once_and_whole(project):
    console = recording_console(200)
    render_report(Layout(project).latest_link, console)
    text = console.export_text()
    assert "(continued)" not in text
    assert_nothing_cut(text, 200)


# --- csv and json: for scripts, the values as the files hold them ----------------------------


def invoke(*args: str):
    result = CliRunner().invoke(cli.make_app(), list(args))
    assert result.exit_code == 0, result.output
    return result


def file_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_report_csv_is_overall_csv_then_per_class_csv_cell_for_cell(project):
    output = invoke("report", "--project-dir", str(project), "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(output)))
    run_dir = Layout(project).latest_link
    overall, per_class = file_rows(run_dir / "overall.csv"), file_rows(run_dir / "per_class.csv")
    assert len(rows) == len(overall) + len(per_class)
    for row, expected in zip(rows, overall + per_class, strict=True):
        assert {name: row[name] for name in expected} == expected  # the same text: unrounded
    assert [row["class_name"] for row in rows[: len(overall)]] == [""] * len(overall)


def test_report_json_parses_and_equals_the_files(project):
    output = invoke("report", "--project-dir", str(project), "--format", "json").stdout
    document = json.loads(output)
    run_dir = Layout(project).latest_link
    assert document["run_id"] == run_dir.resolve().name
    for name, columns in (("overall", OVERALL_COLUMNS), ("per_class", PER_CLASS_COLUMNS)):
        expected = read_run_csv(run_dir, f"{name}.csv", columns)
        pd.testing.assert_frame_equal(pd.DataFrame(document[name]), expected)


@pytest.fixture
def history_project(tmp_path):
    """reports/history.csv with two runs, the second's folder pruned."""
    layout = Layout(tmp_path)
    overall = make_report().overall
    append(layout.history_csv, "run-a", "2026-11-28T01:00:00+00:00", overall)
    append(layout.history_csv, "run-b", "2026-11-28T02:00:00+00:00", overall, trigger="cli")
    (layout.runs_dir / "run-a").mkdir(parents=True)
    manifest = {"prefect": {"overrides": {"epochs": 3, "optimizer": "sgd"}}}
    (layout.runs_dir / "run-a" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_runs_csv_is_history_csv_cell_for_cell_with_the_overrides(history_project):
    output = invoke("runs", "--project-dir", str(history_project), "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(output)))
    expected = file_rows(Layout(history_project).history_csv)
    assert [{name: row[name] for name in HISTORY_COLUMNS} for row in rows] == expected
    overrides = {row["run_id"]: row["overrides"] for row in rows}
    assert overrides == {"run-a": "epochs=3 optimizer=sgd", "run-b": ""}


def test_runs_json_parses_and_equals_history_csv(history_project):
    output = invoke("runs", "--project-dir", str(history_project), "--format", "json").stdout
    records = json.loads(output)
    text_columns = dict.fromkeys(TEXT_COLUMNS, str)
    # An empty cell is empty text (the columns a run outside a deployment leaves empty).
    history_csv = Layout(history_project).history_csv
    history = pd.read_csv(history_csv, dtype=text_columns, keep_default_na=False)
    pd.testing.assert_frame_equal(pd.DataFrame(records)[HISTORY_COLUMNS], history)
    overrides = {record["run_id"]: record["overrides"] for record in records}
    assert overrides == {"run-a": {"epochs": 3, "optimizer": "sgd"}, "run-b": {}}


@pytest.mark.parametrize(
    ("output_format", "parse"),
    [("csv", lambda text: list(csv.DictReader(io.StringIO(text)))), ("json", json.loads)],
    ids=["csv", "json"],
)
def test_runs_for_scripts_name_what_they_skipped_on_stderr_alone(tmp_path, output_format, parse):
    history = Layout(tmp_path).history_csv
    history.parent.mkdir()
    history.write_text(HEADER + GOOD_ROW + "1,x,r1,test,1,0.5,m,f,extra\n")
    result = invoke("runs", "--project-dir", str(tmp_path), "--format", output_format)
    assert [row["run_id"] for row in parse(result.stdout)] == ["r0"]
    assert "(line 3: 9 fields, expected 13)" in result.stderr
    assert result.stderr.startswith(f"Skipped what cannot be read in {history}")


def test_an_unknown_format_is_refused():
    result = CliRunner().invoke(cli.make_app(), ["runs", "--format", "xml"])
    assert result.exit_code == 2 and "xml" in result.output


def fifo_instead(path) -> None:
    path.unlink()
    os.mkfifo(path)


def replace_text(old: str, new: str):
    def damage(path) -> None:
        path.write_text(path.read_text().replace(old, new, 1))

    return damage


# Damage to a file of the run folder `latest` points at -> what `fashionnet report` says of it
# ({path}: the file), after "fashionnet: error: ", in every format that reads the file.
EVERY_FORMAT = ("table", "csv", "json")
DAMAGED_RUN_FILES = {
    "binary overall.csv": (
        "overall.csv",
        lambda path: path.write_bytes(bytes(range(256)) * 4),
        "{path} cannot be read (",
    ),
    "empty overall.csv": (
        "overall.csv",
        lambda path: path.write_bytes(b""),
        "{path} cannot be read (No columns to parse from file); delete its run folder",
    ),
    "overall.csv without a column": (
        "overall.csv",
        replace_text("split,samples,", "samples,"),
        "{path} does not have the columns of overall.csv (split, samples,",
    ),
    "words for numbers in overall.csv": (
        "overall.csv",
        lambda path: path.write_text(re.sub(r"\n(\w+),\d+,", r"\n\1,many,", path.read_text())),
        "{path} has values of samples that are not numbers; delete its run folder",
    ),
    "per_class.csv not UTF-8": (
        "per_class.csv",
        lambda path: path.write_bytes(b"\xff\xfe" * 50),
        "{path} cannot be read ('utf-8' codec can't decode byte 0xff",
        ("csv", "json"),  # the table's per-class figures come from the confusion matrices
    ),
    "overall.csv a FIFO": (
        "overall.csv",
        fifo_instead,
        "{path} is a FIFO (named pipe), not a file; delete its run folder",
    ),
}
# Only the table reads these.
DAMAGED_FOR_THE_TABLE = {
    "manifest.json an array": (
        "manifest.json",
        lambda path: path.write_text("[]"),
        "{path} cannot be read (not a JSON object); delete its run folder",
    ),
    "empty confusion matrix": (
        "confusion_test.csv",
        lambda path: path.write_bytes(b""),
        "{path} cannot be read (No columns to parse from file); delete its run folder",
    ),
}


def damaged_project(project, tmp_path, name: str, damage) -> tuple[Path, Path]:
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    path = Layout(copy).latest_link / name
    damage(path)
    return copy, path


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    (line,) = result.output.splitlines()
    assert line.startswith("fashionnet: error: ")
    return line.removeprefix("fashionnet: error: ")


DAMAGED_CASES = [
    (case, output_format)
    for case, (_, _, _, *readers) in DAMAGED_RUN_FILES.items()
    for output_format in (readers[0] if readers else EVERY_FORMAT)
]


@pytest.mark.parametrize(("case", "output_format"), DAMAGED_CASES)
def test_a_damaged_run_folder_is_named_in_one_line(project, tmp_path, case, output_format):
    name, damage, expected, *_ = DAMAGED_RUN_FILES[case]
    copy, path = damaged_project(project, tmp_path, name, damage)
    args = ["report", "--project-dir", str(copy), "--format", output_format]
    result = CliRunner().invoke(cli.make_app(), args)
    assert one_error_line(result).startswith(expected.format(path=path))


@pytest.mark.parametrize("case", DAMAGED_FOR_THE_TABLE)
def test_a_damaged_file_the_table_reads_is_named_in_one_line(project, tmp_path, case):
    name, damage, expected = DAMAGED_FOR_THE_TABLE[case]
    copy, path = damaged_project(project, tmp_path, name, damage)
    result = CliRunner().invoke(cli.make_app(), ["report", "--project-dir", str(copy)])
    assert one_error_line(result) == expected.format(path=path)


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("latest", "is a symbolic link loop, not a run folder"),
        ("runs/gone", "is a broken symbolic link, not a run folder"),
    ],
    ids=["a loop", "a run folder that is gone"],
)
def test_a_latest_that_leads_to_no_run_folder_is_named_in_one_line(project, tmp_path, target, kind):
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    latest = Layout(copy).latest_link
    latest.unlink()
    latest.symlink_to(target)
    result = CliRunner().invoke(cli.make_app(), ["report", "--project-dir", str(copy)])
    assert one_error_line(result) == (
        f"{latest} {kind}; name a run that `fashionnet runs` lists, or run the pipeline"
    )


@pytest.mark.timeout(30)  # opened, it would wait for a writer for ever
def test_runs_never_open_a_manifest_that_is_a_fifo(history_project):
    fifo_instead(Layout(history_project).runs_dir / "run-a" / "manifest.json")
    result = invoke("runs", "--project-dir", str(history_project), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {row["run_id"]: row["overrides"] for row in rows} == {"run-a": "", "run-b": ""}
