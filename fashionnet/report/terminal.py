"""Reports in the terminal (rich): one run's figures, or the list of past runs.

The tables show the same text as report.md (`report_markdown.overall_rows`, `per_class_rows`)
of the same `RunReport`, so the terminal and the file never disagree.
"""

import json
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fashionnet.champion import current_champion
from fashionnet.core.layout import Layout
from fashionnet.report.markdown import REPORT_NAME, overall_rows, per_class_rows
from fashionnet.report.publish import read_history_file
from fashionnet.report.run_report import RunReport


def text_table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    *,
    text_columns: int = 1,
    trailing_text_columns: int = 0,
) -> Table:
    """A rich table: the first `text_columns` and the last `trailing_text_columns` columns are
    text, the others right-aligned numbers.

    The first column (class names, times) always shows whole: folded letter by letter it would
    be unreadable. In narrow terminals the other text cells (ids) fold onto more lines.
    """
    table = Table(title=title, title_justify="left")
    for position, name in enumerate(header):
        if position == 0:
            widest = max((len(row[0]) for row in rows), default=len(name))
            table.add_column(name, no_wrap=True, min_width=widest)
        elif position < text_columns or position >= len(header) - trailing_text_columns:
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*map(Text, row))  # plain text: a "[" in an id or a file is not markup
    return table


def render_report(run_dir: Path, console: Console | None = None) -> None:
    """Print a run folder's headline figures (accuracy per split) and its per-class table."""
    console = console or Console()
    run_dir = Path(run_dir)
    report = RunReport.read(run_dir)
    # `latest` is a symlink: show the run it points at.
    console.print(f"[bold]Run {run_dir.resolve().name}[/bold]  model {report.model_id}")
    console.print(text_table("Accuracy", *overall_rows(report.overall)))
    console.print(text_table("Per class", *per_class_rows(report.per_class)))
    if (run_dir / REPORT_NAME).is_file():
        console.print(f"Figures and details: {run_dir / REPORT_NAME}")


def render_runs(history_csv: Path, console: Console | None = None) -> None:
    """Print past runs from history.csv, oldest first, with their accuracy per split.

    What cannot be read (a bad row, or the whole file) is skipped, and said so after the table.
    """
    console = console or Console()
    history = read_history_file(history_csv)
    if history.table.empty and history.damage is None:
        console.print(f"No runs yet ({history_csv} is empty or missing): run `fashionnet run`.")
        return
    if not history.table.empty:
        console.print(runs_table(history.table, history_csv.parent / "runs"))
    if history.damage is not None:
        console.print(
            Text(
                f"Skipped what cannot be read in {history_csv} ({history.damage}); "
                "the next `fashionnet run` moves the file aside and starts a new one.",
                style="yellow",
            )
        )


def runs_table(history: pd.DataFrame, runs_dir: Path) -> Table:
    """One row per run of `history` (history.csv's rows): its time, ids, accuracy per split,
    what started it and the parameters it changed (from its manifest under `runs_dir`); the
    runs whose model is the champion say so."""
    splits = list(history["split"].unique())
    # runs_dir is <project>/reports/runs: the champion is the project's models/champion
    champion_model = current_champion(Layout(runs_dir.parent.parent))
    champion_id = champion_model.model_id if champion_model else None
    header = [
        "finished at",
        "run id",
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
        origin = [first["trigger"] or "-", overrides_text(runs_dir / str(run_id))]
        model = first["model_id"] + (" (champion)" if first["model_id"] == champion_id else "")
        rows.append([first["finished_at"], run_id, model, *cells, *origin])
    return text_table("Runs", header, rows, text_columns=3, trailing_text_columns=2)


def overrides_text(run_dir: Path) -> str:
    """`name=value ...` of the flow parameters a run changed, from its manifest.json; "-" when
    it changed none, or its folder (pruned, or older than the record) does not say."""
    try:
        origin = json.loads((run_dir / "manifest.json").read_text()).get("prefect") or {}
    except (OSError, ValueError, AttributeError):
        return "-"
    overrides = origin.get("overrides") or {}
    return " ".join(f"{name}={value}" for name, value in overrides.items()) or "-"
