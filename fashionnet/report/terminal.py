"""Reports in the terminal (rich), and for scripts (CSV, JSON): one run's figures, or the list of
past runs.

The tables show the same text as report.md (`report_markdown.overall_rows`, `per_class_rows`)
of the same `RunReport`, so the terminal and the file never disagree. A table wider than the
terminal (80 columns when the output is piped) is shown as several, each with the first column
again: a figure or an id is never cut. CSV and JSON give the values as the run's files hold them.
"""

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fashionnet.champion import current_champion
from fashionnet.core.layout import Layout
from fashionnet.core.paths import A_FILE, kind_of
from fashionnet.report.columns import OVERALL_COLUMNS, PER_CLASS_COLUMNS, csv_text
from fashionnet.report.markdown import REPORT_NAME, overall_rows, per_class_rows
from fashionnet.report.publish import read_history_file
from fashionnet.report.run_report import MANIFEST_NAME, RunReport, read_run_csv, run_folder

# The columns of the CSV of one run: overall.csv's rows (no class) then per_class.csv's, under
# one header; the others in the order the files have them.
REPORT_CSV_LEADING = ["split", "class_name", "label"]
INTEGER_COLUMNS = ["label", "samples", "correct"]


def table_chrome(columns: int) -> int:
    """The characters a rich table (its default box) adds to its columns' contents: a space on
    each side of every cell, a border after each column, and the left edge."""
    return 3 * columns + 1


def longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def fitted_tables(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    text: Collection[int] = (0,),
    wrapping: Collection[int] = (),
) -> list[Table]:
    """`rows` under `header` as one table `width` characters wide at most, or as several, each
    with the first column again and as many of the next as fit.

    Columns in `text` are left-aligned, the others (figures) right-aligned. A cell is never cut
    nor wrapped, except in the `wrapping` columns (free text), which wrap between words; a
    header wraps between words when its column is narrower.
    """
    columns = range(len(header))
    full = [max(cell_len(line[i]) for line in [header, *rows]) for i in columns]
    need = [
        max(
            longest_word(header[i]),
            *(longest_word(row[i]) if i in wrapping else cell_len(row[i]) for row in rows),
        )
        for i in columns
    ]

    def fits(group: list[int]) -> bool:
        return sum(need[i] for i in group) + table_chrome(len(group)) <= width

    groups = [[0]]
    for i in columns[1:]:
        if len(groups[-1]) > 1 and not fits([*groups[-1], i]):
            groups.append([0])
        groups[-1].append(i)

    tables = []
    for number, group in enumerate(groups):
        widths = dict.fromkeys(group, 0)
        spare = width - table_chrome(len(group)) - sum(need[i] for i in group)
        # The room left goes first to the columns it makes whole (their header on one line).
        for i in sorted(group, key=lambda i: full[i] - need[i]):
            widths[i] = need[i] + min(max(spare, 0), full[i] - need[i])
            spare -= widths[i] - need[i]
        table = Table(title=title if number == 0 else f"{title} (continued)", title_justify="left")
        for i in group:
            table.add_column(header[i], width=widths[i], justify="left" if i in text else "right")
        for row in rows:
            table.add_row(*(Text(row[i]) for i in group))  # a "[" in an id is not markup
        tables.append(table)
    return tables


def render_report(run_dir: Path, console: Console | None = None) -> None:
    """Print a run folder's headline figures (accuracy per split) and its per-class table."""
    console = console or Console()
    run_dir = Path(run_dir)
    report = RunReport.read(run_dir)
    # `latest` is a symlink: show the run it points at.
    console.print(Text(f"Run {run_dir.resolve().name}  model {report.model_id}", style="bold"))
    for title, (header, rows) in [
        ("Accuracy", overall_rows(report.overall)),
        ("Per class", per_class_rows(report.per_class)),
    ]:
        console.print(*fitted_tables(title, header, rows, console.width))
    if (run_dir / REPORT_NAME).is_file():
        console.print(Text(f"Figures and details: {run_dir / REPORT_NAME}"))


def report_csv(run_dir: Path) -> str:
    """overall.csv's rows (`class_name` empty) then per_class.csv's, under one header, their
    values as the files hold them."""
    overall, per_class = report_files(run_dir)
    table = pd.concat([overall, per_class], ignore_index=True)
    table = table[REPORT_CSV_LEADING + [c for c in table if c not in REPORT_CSV_LEADING]]
    return csv_text(table.astype(dict.fromkeys(INTEGER_COLUMNS, "Int64")))


def report_json(run_dir: Path) -> str:
    """The run id, and the rows of overall.csv and per_class.csv as objects."""
    overall, per_class = report_files(run_dir)
    document = {
        "run_id": Path(run_dir).resolve().name,
        "overall": json_records(overall),
        "per_class": json_records(per_class),
    }
    return json.dumps(document, indent=2) + "\n"


def report_files(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    run_dir = run_folder(run_dir)
    return (
        read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS),
        read_run_csv(run_dir, "per_class.csv", PER_CLASS_COLUMNS),
    )


def json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `table` as JSON objects: numbers as numbers, an empty cell as null."""
    return json.loads(table.to_json(orient="records", double_precision=15))


def render_runs(history_csv: Path, console: Console | None = None) -> None:
    """Print past runs from history.csv, oldest first, with their accuracy per split.

    What cannot be read (a bad row, or the whole file) is skipped, and said so after the table.
    """
    console = console or Console()
    history = read_history_file(history_csv)
    if history.table.empty and history.damage is None:
        console.print(
            Text(f"No runs yet ({history_csv} is empty or missing): run `fashionnet run`.")
        )
        return
    if not history.table.empty:
        header, rows = runs_rows(history.table, history_csv.parent / "runs")
        last = len(header) - 1  # overrides, after trigger: text like the time and the ids
        text = [0, 1, 2, last - 1, last]
        console.print(
            *fitted_tables("Runs", header, rows, console.width, text=text, wrapping=[last])
        )
    if note := skipped_note(history_csv, history.damage):
        console.print(Text(note, style="yellow"))


def runs_csv(history_csv: Path) -> str:
    """history.csv's rows that can be read, as the file holds them, each with the parameters its
    run changed (`overrides`: `name=value ...`)."""
    table, changed = runs_records(history_csv)
    text_of = {run_id: overrides_text(values) for run_id, values in changed.items()}
    return csv_text(table.assign(overrides=table["run_id"].map(text_of)))


def runs_json(history_csv: Path) -> str:
    """history.csv's rows that can be read as objects, each with the parameters its run changed
    (`overrides`: an object)."""
    table, changed = runs_records(history_csv)
    records = json_records(table)
    for record in records:
        record["overrides"] = changed[record["run_id"]]
    return json.dumps(records, indent=2) + "\n"


def runs_records(history_csv: Path) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """history.csv's good rows, and the parameters each of their runs changed."""
    table = read_history_file(history_csv).table
    runs_dir = Path(history_csv).parent / "runs"
    return table, {run_id: overrides(runs_dir / run_id) for run_id in table["run_id"]}


def skipped_history(history_csv: Path) -> str | None:
    """The note on what cannot be read in history.csv; None when it reads whole."""
    return skipped_note(history_csv, read_history_file(history_csv).damage)


def skipped_note(history_csv: Path, damage: str | None) -> str | None:
    if damage is None:
        return None
    return (
        f"Skipped what cannot be read in {history_csv} ({damage}); "
        "the next `fashionnet run` keeps its readable rows and copies the file aside."
    )


def runs_rows(history: pd.DataFrame, runs_dir: Path) -> tuple[list[str], list[list[str]]]:
    """One row per run of `history` (history.csv's rows) as text: its id (first, as the tables
    too narrow for all columns repeat it), time, model id, accuracy per split, what started it
    and the parameters it changed (from its manifest under `runs_dir`); the runs whose model is
    the champion say so."""
    splits = list(history["split"].unique())
    # runs_dir is <project>/reports/runs: the champion is the project's models/champion
    champion_model = current_champion(Layout(runs_dir.parent.parent))
    champion_id = champion_model.model_id if champion_model else None
    header = [
        "run id",
        "finished at",
        "model id",
        *(f"{split} accuracy" for split in splits),
        "trigger",
        "overrides",
    ]
    rows = []
    for run_id, run in history.groupby("run_id", sort=False):
        accuracy = dict(zip(run["split"], run["accuracy"], strict=True))
        cells = [f"{accuracy[split]:.2%}" if split in accuracy else "-" for split in splits]
        first = run.iloc[0]
        origin = [first["trigger"] or "-", overrides_text(overrides(runs_dir / str(run_id))) or "-"]
        model = first["model_id"] + (" (champion)" if first["model_id"] == champion_id else "")
        rows.append([str(run_id), first["finished_at"], model, *cells, *origin])
    return header, rows


def overrides(run_dir: Path) -> dict[str, Any]:
    """The flow parameters a run changed, from its manifest.json; none when its folder (pruned,
    or older than the record) does not say."""
    path = run_dir / MANIFEST_NAME
    if kind_of(path) != A_FILE:  # looked at first: opening a FIFO would wait for ever
        return {}
    try:
        origin = json.loads(path.read_text()).get("prefect") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return origin.get("overrides") or {}


def overrides_text(changed: dict[str, Any]) -> str:
    """`name=value ...`; empty when nothing changed."""
    return " ".join(f"{name}={value}" for name, value in changed.items())
