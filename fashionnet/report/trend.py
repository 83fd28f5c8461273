"""The project's trend across runs: reports/history.png and reports/index.html.

Both are rendered from history.csv (one row per published run and split) each time a run is
published. history.png plots each split's accuracy, one point per run, and marks where the
model changed between consecutive runs; index.html lists every run, newest first, with a
relative link to its report.html, and embeds history.png so it is self-contained.
"""

import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from fashionnet import champion
from fashionnet.core import atomic
from fashionnet.core.layout import Layout
from fashionnet.report.html import REPORT_HTML_NAME
from fashionnet.report.html_page import figure, link, page, paragraph, png_data_uri, table
from fashionnet.report.plots import save_png

TREND_NAME = "history.png"
INDEX_NAME = "index.html"
TREND_CAPTION = (
    "Accuracy per split, one point per run: hollow for a run started by hand (a deployment run "
    "or `fashionnet run`), filled otherwise; a dotted line marks a run whose model differs from "
    "the run before."
)
# history.csv's triggers of a run started by hand (fashionnet.report.run_report.TRIGGERS); a run
# published outside a flow run (the benchmark's) has none and is drawn filled.
BY_HAND = ("deployment-manual", "cli")


def splits_of(history: pd.DataFrame) -> list[str]:
    """The splits in history.csv, in the order they first appear (train before test)."""
    return list(dict.fromkeys(history["split"]))


def runs_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run, oldest first: run_id, finished_at (naive UTC), model_id, trigger,
    model_changed (its model differs from the run before) and one accuracy column per split."""
    history = history.drop_duplicates(["run_id", "split"], keep="last")
    accuracy = history.pivot(index="run_id", columns="split", values="accuracy")
    runs = history.groupby("run_id", sort=False)[["finished_at", "model_id", "trigger"]].first()
    runs = runs.join(accuracy[splits_of(history)])
    finished = pd.to_datetime(runs["finished_at"], utc=True, format="ISO8601")
    runs["finished_at"] = finished.dt.tz_convert(None)
    runs = runs.sort_values("finished_at", kind="stable").reset_index()
    previous = runs["model_id"].shift()
    runs["model_changed"] = previous.notna() & (runs["model_id"] != previous)
    return runs


def plot_history(runs: pd.DataFrame, splits: list[str], path: Path) -> None:
    """Accuracy per split over time (a `runs_table`), model changes as dotted lines."""
    figure = Figure(figsize=(10, 4.5))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.92)  # as plots.py's figures
    ax = figure.add_subplot()
    by_hand = runs["trigger"].isin(BY_HAND)
    for split in splits:
        [line] = ax.plot(runs["finished_at"], runs[split], label=split)
        for hand, fill in ((False, line.get_color()), (True, "white")):
            chosen = runs[by_hand == hand]
            ax.plot(
                chosen["finished_at"],
                chosen[split],
                linestyle="none",
                marker="o",
                color=line.get_color(),
                markerfacecolor=fill,
            )
    for count, when in enumerate(runs.loc[runs["model_changed"], "finished_at"]):
        label = "model changed" if count == 0 else "_nolegend_"
        ax.axvline(when, color="grey", linestyle=":", zorder=1, label=label)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("run finished (UTC)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per run")
    ax.grid(alpha=0.3)
    if splits:  # a history of runs without accuracies has no line to name
        ax.legend()
    save_png(figure, path)


def run_cell(layout: Layout, run_id: str) -> str:
    """The run id, linked to its report.html relative to index.html when that file exists
    (a run folder pruned or deleted since has none)."""
    report = layout.runs_dir / run_id / REPORT_HTML_NAME
    if not report.is_file():
        return run_id
    return link(quote(Path(os.path.relpath(report, layout.reports_dir)).as_posix()), run_id)


def model_text(model_id: str, changed: bool, champion_model: "champion.Champion | None") -> str:
    """A run's model id, said to be new since the run before, and to be the champion."""
    notes = ["changed"] if changed else []
    if champion_model is not None and model_id == champion_model.model_id:
        notes.append("champion")
    return f"{model_id} ({', '.join(notes)})" if notes else model_id


def render_index(layout: Layout, runs: pd.DataFrame, splits: list[str], trend_src: str) -> str:
    """index.html: the trend picture, then every run of a `runs_table`, newest first."""
    header = [
        "run",
        "finished (UTC)",
        "model",
        "started by",
        *(f"{split} accuracy" for split in splits),
    ]
    champion_model = champion.current_champion(layout)
    rows = [
        [
            run_cell(layout, run.run_id),
            f"{run.finished_at:%Y-%m-%d %H:%M:%S}",
            model_text(run.model_id, run.model_changed, champion_model),
            run.trigger,
            *("" if pd.isna(run[split]) else f"{run[split]:.2%}" for split in splits),
        ]
        for _, run in runs.iloc[::-1].iterrows()
    ]
    count = paragraph(f"Every published run, newest first ({len(runs)}).")
    return page(
        "fashionnet runs", "\n".join([figure(trend_src, TREND_CAPTION), count, table(header, rows)])
    )


def write_trend(layout: Layout, history: pd.DataFrame) -> tuple[Path, Path]:
    """Write reports/history.png and reports/index.html from `history`
    (`reports.read_history`); returns their paths."""
    runs, splits = runs_table(history), splits_of(history)
    trend = layout.reports_dir / TREND_NAME
    plot_history(runs, splits, trend)
    index = layout.reports_dir / INDEX_NAME
    atomic.write_text(index, render_index(layout, runs, splits, png_data_uri(trend)))
    return trend, index
