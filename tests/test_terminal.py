import io

import pytest
from report_fixtures import make_report
from rich.console import Console
from test_reports import GOOD_ROW, HEADER, append

from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.report import publish
from fashionnet.report.run_report import read_run_csv
from fashionnet.report.terminal import render_report, render_runs


@pytest.fixture
def run_dir(report_run_dir):
    return report_run_dir


def recording_console() -> Console:
    return Console(record=True, width=160, file=io.StringIO(), color_system=None)


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
    overall = read_run_csv(run_dir, "overall.csv")
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
    per_class = read_run_csv(run_dir, "per_class.csv").set_index(["split", "class_name"])
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
    with pytest.raises(FashionnetError, match="overall.csv is missing"):
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
    first = row_cells(text, "2026-11-28T01:00:00+00:00")
    second = row_cells(text, "2026-11-28T02:00:00+00:00")
    assert first[1:3] == ["run-a", "5eed5eed"] and second[1] == "run-b"
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
    history.write_text(HEADER + GOOD_ROW + "x,r1,test,1,0.5,m,f,extra\n" + markup)
    console = recording_console()
    render_runs(history, console)
    table = console.export_text()
    text = " ".join(table.split())  # the note may wrap
    assert row_cells(table, "2026-11-01T03:00:00+00:00")[1] == "r0"
    assert row_cells(table, "2026-11-01T04:00:00+00:00")[1] == "[/bold]"
    assert f"Skipped what cannot be read in {history} (line 3: 8 fields, expected 9)" in text
    assert "the next `fashionnet run` moves the file aside and starts a new one" in text


def test_render_runs_of_a_file_that_is_not_a_history_says_so_in_one_note(tmp_path):
    history = tmp_path / "history.csv"
    history.write_bytes(b"\x89PNG\r\n\x1a\n[/]")
    console = recording_console()
    render_runs(history, console)
    text = " ".join(console.export_text().split())
    assert text.startswith(f"Skipped what cannot be read in {history} (its header is not UTF-8")
    assert "No runs yet" not in text and "Runs" not in text
