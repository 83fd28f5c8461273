"""Run folders, the `latest` link and `history.csv`: the files people read after a run.

A run folder `runs/<run id>/` holds everything rendered from one `RunReport`: overall.csv,
per_class.csv, confusion_<split>.csv, learning_curve.csv (trained models), manifest.json, the
figures and report.md. It is built in a hidden sibling `.<run id>.tmp-<random>` and renamed
into place in one step, so a run folder either exists whole or not at all;
`fashionnet.core.atomic.sweep_stale_temps` removes what a crash leaves. CSVs are formatted by
`schema.csv_text`: identical inputs give byte-identical files.

Publishing is all or nothing (`publish_run`), and the bookkeeping never blocks a run: a
history.csv that cannot be read whole (a row without the current format version is a bad row
like any other), or a `latest` that is not a link, is moved aside
(`fashionnet.core.atomic.move_aside`) with a warning naming both files, and made anew. Only a
history.csv a newer fashionnet wrote stops the run (`formats.NewerFormat`): it is not this one's
to replace. manifest.json carries its format version too (read back by `RunReport.read`).
"""

import contextlib
import csv
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.core import atomic, formats
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.model.train import curve_csv
from fashionnet.report import html, markdown, plots, trend
from fashionnet.report.columns import CONFUSION_INDEX, HISTORY_COLUMNS, csv_text
from fashionnet.report.run_report import EVALUATION_SPLIT, MANIFEST_NAME, RunReport

log = logging.getLogger(__name__)

HISTORY_HEADER = ",".join(HISTORY_COLUMNS)
NUMBER_COLUMNS = {formats.VERSION_FIELD: int, "samples": int, "accuracy": float}
# Lines named one by one when rows are skipped; beyond these, only their count.
NAMED_LINES = 5


def new_run_id(now: datetime | None = None) -> str:
    """`20261128T010203Z-1a2b3c`: UTC time (so ids sort chronologically) plus 6 random hex."""
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:  # a naive time is taken to be UTC already
        now = now.replace(tzinfo=UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def confusion_frame(confusion: np.ndarray) -> pd.DataFrame:
    """Counts labelled by class name: rows (`true_class`) true, columns predicted."""
    names = pd.Index(CLASS_NAMES, name=CONFUSION_INDEX)
    return pd.DataFrame(np.asarray(confusion, dtype=np.int64), index=names, columns=CLASS_NAMES)


def write_run(runs_dir: Path, report: RunReport) -> Path:
    """Render `report` into the run folder `runs_dir/<run id>`, all at once; return its path."""
    runs_dir = Path(runs_dir)
    final = runs_dir / report.run_id
    if final.exists():
        raise FashionnetError(f"run folder {final} already exists; start a new run (new run id)")
    runs_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{report.run_id}{atomic.TEMP_MARKER}", dir=runs_dir))
    try:
        atomic.write_text(building / "overall.csv", csv_text(report.overall))
        atomic.write_text(building / "per_class.csv", csv_text(report.per_class))
        for split, confusion in report.confusions.items():
            table = confusion_frame(confusion)
            atomic.write_text(building / f"confusion_{split}.csv", csv_text(table, index=True))
        if report.learning_curve is not None:
            atomic.write_text(building / "learning_curve.csv", curve_csv(report.learning_curve))
        atomic.write_text(building / MANIFEST_NAME, manifest_text(report.manifest))
        plots.write_run_figures(building, report)
        markdown.write_report_md(building, report)
        html.write_report_html(building, report)
        os.chmod(building, 0o755)  # mkdtemp makes it owner-only; a report is for everyone
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("wrote run folder %s", final)
    return final


def manifest_text(manifest: Mapping[str, Any]) -> str:
    manifest = {formats.VERSION_FIELD: formats.CURRENT[formats.MANIFEST], **manifest}
    return json.dumps(manifest, sort_keys=True, indent=2) + "\n"


def publish_latest(latest_link: Path, run_dir: Path) -> None:
    """Point `latest_link` at `run_dir` in one atomic swap (a relative symlink).

    Something else in its place (a folder or file copied over the link) is moved aside, never
    replaced: it may hold what a person put there.
    """
    if os.path.lexists(latest_link) and not latest_link.is_symlink():
        kind = "a folder" if latest_link.is_dir() else "a file"
        aside = atomic.move_aside(latest_link)
        log.warning("%s is %s, not a link to a run; moved it to %s", latest_link, kind, aside)
    atomic.replace_symlink(latest_link, run_dir)
    log.info("%s -> %s", latest_link, run_dir)


def publish_run(layout: Layout, run_dir: Path, report: RunReport) -> None:
    """Make a complete run folder the project's `reports/latest` and add it to the history, all
    or nothing.

    The new history.csv is written beside the old one first; `latest` is swapped; only then does
    the new history take its name. A failure before the swap changes neither, so history.csv
    never has rows of a run that `latest` did not point at.
    """
    with history_appended(layout.history_csv, report_rows(report)):
        publish_latest(layout.latest_link, run_dir)
    write_trend_of_history(layout)


# What a run repeats of another when it has the same data, model and code (its results follow).
REPEATED_COLUMNS = ["split", "samples", "accuracy", "model_id", "data_fingerprint", "code_version"]


def unchanged_since(layout: Layout, report: RunReport) -> str | None:
    """The run `reports/latest` points at when `report`, a scheduled run, repeats it: each
    split's data fingerprint, the model, the code version and so the results are the same.
    None for a run started by hand (it always writes its report), when there is nothing to
    repeat, or when the code version is unknown or has uncommitted changes."""
    origin = report.manifest.get("prefect") or {}
    code_version = origin.get("code_version")
    if (
        origin.get("trigger") != "schedule"
        or not code_version
        or code_version.endswith("-dirty")
        or not layout.latest_link.is_symlink()
    ):
        return None
    previous = layout.latest_link.resolve().name
    history = read_history(layout.history_csv)
    rows = history[history["run_id"] == previous]

    def repeated(table: pd.DataFrame) -> str:
        return csv_text(table[REPEATED_COLUMNS].sort_values("split"))

    return previous if len(rows) and repeated(rows) == repeated(report_rows(report)) else None


def record_unchanged(layout: Layout, report: RunReport, previous: str) -> Path:
    """The short record of a run that repeats the run `previous`: history rows saying so, and a
    run folder holding its manifest.json alone (with "unchanged_since"), instead of a copy of
    the report; `reports/latest` stays on `previous`. Returns the record's folder."""
    final = layout.runs_dir / report.run_id
    building = Path(
        tempfile.mkdtemp(prefix=f".{report.run_id}{atomic.TEMP_MARKER}", dir=layout.runs_dir)
    )
    try:
        manifest = {**report.manifest, "unchanged_since": previous}
        atomic.write_text(building / MANIFEST_NAME, manifest_text(manifest))
        os.chmod(building, 0o755)
        with history_appended(layout.history_csv, report_rows(report, unchanged_since=previous)):
            os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info(
        "run %s repeats run %s (same data, model and code): recorded in %s and %s, no copy",
        report.run_id,
        previous,
        final,
        layout.history_csv,
    )
    write_trend_of_history(layout)
    return final


def write_trend_of_history(layout: Layout) -> None:
    """Redraw reports/history.png and reports/index.html from history.csv.

    The run is published by now, so a failure here is a warning, not a failed run: both files
    are drawn again from the whole history by the next run.
    """
    try:
        trend.write_trend(layout, read_history(layout.history_csv))
    except Exception as error:  # noqa: BLE001 (any failure: the published run stands)
        log.warning("could not redraw the trend in %s (%s): the next run will", layout, error)


@contextlib.contextmanager
def removed_unless_published(latest_link: Path, run_dir: Path) -> Iterator[None]:
    """Remove the run folder `run_dir` when the block fails before `latest_link` points at it:
    a failed run leaves no run folder behind (and a published one is never removed)."""
    try:
        yield
    except BaseException:
        if latest_link.resolve() != run_dir.resolve():
            shutil.rmtree(run_dir, ignore_errors=True)
            log.info("removed %s: the run failed before it was published", run_dir)
        raise


def report_rows(report: RunReport, unchanged_since: str = "") -> pd.DataFrame:
    """history.csv's rows of a run, finishing now."""
    origin = report.manifest.get("prefect") or {}
    return history_rows(
        report.run_id,
        datetime.now(UTC).isoformat(timespec="seconds"),
        report.overall,
        report.manifest.get("data", {}).get("fingerprints", {}),
        flow_run_id=origin.get("flow_run_id") or "",
        trigger=origin.get("trigger") or "",
        deployment=origin.get("deployment") or "",
        code_version=origin.get("code_version") or "",
        unchanged_since=unchanged_since,
    )


def history_rows(
    run_id: str,
    finished_at: str,
    overall: pd.DataFrame,
    fingerprints: Mapping[str, str],
    *,
    flow_run_id: str = "",
    trigger: str = "",
    deployment: str = "",
    code_version: str = "",
    unchanged_since: str = "",
) -> pd.DataFrame:
    """history.csv's rows of one run: one per split of `overall`.

    `fingerprints` maps each split to its data fingerprint (`dataset.split_fingerprint`);
    `flow_run_id`, `trigger`, `deployment` and `code_version` come from the manifest's "prefect"
    (empty outside a flow run); `unchanged_since` names the run this one repeats.
    """
    return pd.DataFrame(
        {
            formats.VERSION_FIELD: formats.CURRENT[formats.HISTORY],
            "finished_at": finished_at,
            "run_id": run_id,
            "split": overall["split"],
            "samples": overall["samples"],
            "accuracy": overall["accuracy"],
            "model_id": overall["model_id"],
            "data_fingerprint": [fingerprints.get(split, "") for split in overall["split"]],
            "flow_run_id": flow_run_id,
            "trigger": trigger,
            "deployment": deployment,
            "code_version": code_version,
            "unchanged_since": unchanged_since,
        },
        columns=HISTORY_COLUMNS,
    )


@contextlib.contextmanager
def history_appended(history_csv: Path, rows: pd.DataFrame) -> Iterator[None]:
    """Add `rows` to history.csv (created with its header if absent) when the block succeeds.

    The whole file is written to a temporary before the block and renamed after it, so a crash
    never leaves half a row; callers hold the project's run lock, so no two runs append at once.
    A history.csv that cannot be read whole (not UTF-8, another header, a bad row, a folder)
    is moved aside with a warning naming both files, and a new one starts with `rows`: the
    bookkeeping never stops a run. One a newer fashionnet wrote raises `formats.NewerFormat`.
    """
    history_csv = Path(history_csv)
    history = read_history_file(history_csv)
    kept = history.row_lines
    if history.damage is not None:
        aside = atomic.move_aside(history_csv)
        log.warning(
            "%s cannot be read (%s); moved it to %s and started a new one with this run's rows",
            history_csv,
            history.damage,
            aside,
        )
        kept = []
    new_rows = csv_text(rows).split("\n", 1)[1]
    with atomic.atomic_path(history_csv) as staged:
        staged.write_text("".join([HISTORY_HEADER + "\n", *kept, new_rows]), encoding="utf-8")
        yield
    log.info("appended %d rows to %s", len(rows), history_csv)


@dataclass(frozen=True)
class HistoryFile:
    """history.csv as read: the rows that parse, and what is wrong with the rest."""

    table: pd.DataFrame  # the good rows, with HISTORY_COLUMNS
    row_lines: list[str]  # their text, each ending in a newline, to write back as they were
    unreadable: str | None = None  # why the file as a whole cannot be read (nothing is read)
    bad_lines: dict[int, str] = field(default_factory=dict)  # line number -> what is wrong

    @property
    def damage(self) -> str | None:
        """What is wrong, in a few words (the first NAMED_LINES bad lines), or None if sound."""
        if self.unreadable is not None or not self.bad_lines:
            return self.unreadable
        named = [f"line {number}: {why}" for number, why in self.bad_lines.items()]
        more = len(named) - NAMED_LINES
        return "; ".join(named[:NAMED_LINES]) + (f"; and {more} more bad lines" if more > 0 else "")


def read_history_file(history_csv: Path) -> HistoryFile:
    """Read history.csv line by line, so one bad row costs that row alone.

    Every row must carry the current history format version: one without it (missing, older,
    garbled) is a bad line. A row of a newer fashionnet raises `formats.NewerFormat`, whatever
    header it came with, as long as the header begins with the version's column. A missing or
    empty file is an empty history.
    """
    history_csv = Path(history_csv)
    empty = pd.DataFrame(columns=HISTORY_COLUMNS)
    if not os.path.lexists(history_csv):
        return HistoryFile(empty, [])
    if not history_csv.is_file():
        return HistoryFile(empty, [], unreadable="it is not a file")
    header, *lines = history_csv.read_bytes().split(b"\n")
    if not header and not any(lines):
        return HistoryFile(empty, [])
    try:
        _check_header(history_csv, header, lines)
    except ValueError as problem:
        return HistoryFile(empty, [], unreadable=str(problem))
    rows, row_lines, bad_lines = [], [], {}
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue  # blank lines, and the end of the last row
        try:
            text = _text(line)
            rows.append(_history_row(history_csv, text))
            row_lines.append(text + "\n")
        except (ValueError, csv.Error) as error:
            bad_lines[number] = str(error)
    table = pd.DataFrame(rows, columns=HISTORY_COLUMNS).astype(NUMBER_COLUMNS)
    return HistoryFile(table, row_lines, bad_lines=bad_lines)


def read_history(history_csv: Path) -> pd.DataFrame:
    """history.csv's rows as a table (empty, with the right columns, before the first run)."""
    return read_history_file(history_csv).table


def _text(line: bytes) -> str:
    """A line as text; a Windows line end (from an editor) counts as a plain one."""
    try:
        return line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def _fields(text: str) -> list[str]:
    """The fields of one CSV line, at least one (csv.Error when it cannot be split)."""
    return next(csv.reader([text]), None) or [""]


def _check_header(history_csv: Path, header: bytes, lines: list[bytes]) -> None:
    """Return when the header is HISTORY_HEADER; ValueError says what is wrong with it.

    Another header that begins with the version's column is a newer fashionnet's when one of
    its rows says so: NewerFormat, rather than damage to move aside.
    """
    try:
        text = _text(header)
    except ValueError as error:
        raise ValueError(f"its header is {error}") from None
    if text == HISTORY_HEADER:
        return
    if text.split(",", 1)[0] == formats.VERSION_FIELD:
        for line in lines:
            with contextlib.suppress(ValueError, csv.Error):
                formats.check(history_csv, formats.HISTORY, _fields(_text(line))[0])
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ValueError(f"its header {shown!r} is not {HISTORY_HEADER!r}")


def _history_row(history_csv: Path, text: str) -> list:
    """One row's values; ValueError (or csv.Error) says what is wrong with the line, and
    NewerFormat is raised for a row of a newer fashionnet (its version is checked first)."""
    values = _fields(text)
    formats.check(history_csv, formats.HISTORY, values[0])
    if len(values) != len(HISTORY_COLUMNS):
        raise ValueError(f"{len(values)} fields, expected {len(HISTORY_COLUMNS)}")
    row = dict(zip(HISTORY_COLUMNS, values, strict=True))
    for name, kind in NUMBER_COLUMNS.items():
        try:
            row[name] = kind(row[name])
        except ValueError:
            raise ValueError(f"{name} {row[name][:20]!r} is not a number") from None
    return list(row.values())


@dataclass(frozen=True)
class Regression:
    """A run's test accuracy fell more than `tolerance` below the previous run's on the same
    data. The field names are the payload of the `fashionnet.accuracy.regressed` event."""

    test_accuracy: float
    previous_test_accuracy: float
    tolerance: float
    previous_run: str  # its run id


def accuracy_regression(
    history: pd.DataFrame, run_id: str, fingerprint: str, test_accuracy: float, tolerance: float
) -> Regression | None:
    """Compare a run with the last other run of `history` (history.csv's rows, in publishing
    order) evaluated on the same data (`fingerprint`, the evaluation split's): a Regression if
    `test_accuracy` is more than `tolerance` below that run's, else None (also with no such run).
    """
    earlier = history[
        (history["split"] == EVALUATION_SPLIT)
        & (history["data_fingerprint"] == fingerprint)
        & (history["run_id"] != run_id)
    ]
    if not fingerprint or earlier.empty:
        return None
    previous = earlier.iloc[-1]
    if float(previous["accuracy"]) - test_accuracy <= tolerance:
        return None
    return Regression(
        test_accuracy=float(test_accuracy),
        previous_test_accuracy=float(previous["accuracy"]),
        tolerance=float(tolerance),
        previous_run=str(previous["run_id"]),
    )


def regression_of(layout: Layout, report: RunReport, tolerance: float) -> Regression | None:
    """`accuracy_regression` of a report against the project's history.csv."""
    overall = report.overall.set_index("split")
    if EVALUATION_SPLIT not in overall.index:
        return None
    fingerprint = report.manifest.get("data", {}).get("fingerprints", {}).get(EVALUATION_SPLIT, "")
    return accuracy_regression(
        read_history(layout.history_csv),
        report.run_id,
        fingerprint,
        float(overall.loc[EVALUATION_SPLIT, "accuracy"]),
        tolerance,
    )


def prune_runs(layout: Layout, keep: int, lock_timeout: float) -> list[Path]:
    """Delete the run folders under runs/ beyond the `keep` newest (run ids sort by time), never
    the one `latest` points at; returns what was removed, oldest first. history.csv keeps every
    row; index.html is redrawn, so no link leads to a removed folder. Holds the project's run
    lock (waiting up to `lock_timeout` s), so no run is being published meanwhile."""
    if keep < 1:
        raise FashionnetError(f"--keep {keep}: keep at least 1 run folder")
    with run_lock(layout.lock_file, lock_timeout):
        removed = _prune(layout, keep)
        if removed:
            write_trend_of_history(layout)
        return removed


def _prune(layout: Layout, keep: int) -> list[Path]:
    if not layout.runs_dir.is_dir():
        return []
    runs = sorted(
        path
        for path in layout.runs_dir.iterdir()
        if path.is_dir() and not path.is_symlink() and not path.name.startswith(".")
    )
    latest = layout.latest_link.resolve() if layout.latest_link.is_symlink() else None
    removed = [path for path in runs[:-keep] if path.resolve() != latest]
    for path in removed:
        # Hidden first, then deleted: an interruption leaves a temporary the next run sweeps,
        # never half a run folder.
        doomed = path.with_name(f".{path.name}{atomic.TEMP_MARKER}pruned")
        os.rename(path, doomed)
        shutil.rmtree(doomed)
        log.info("removed run folder %s", path)
    return removed
