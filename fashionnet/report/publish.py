"""Run folders, the `latest` link and `history.csv`: the files people read after a run.

A run folder `runs/<run id>/` holds everything rendered from one `RunReport`: overall.csv,
per_class.csv, confusion_<split>.csv, learning_curve.csv (trained models), manifest.json, the
figures and report.md. It is built in a hidden sibling `.<run id>.tmp-<random>` and renamed
into place in one step, so a run folder either exists whole or not at all;
`fashionnet.core.atomic.sweep_stale_temps` removes what a crash leaves. CSVs are formatted by
`columns.csv_text`: identical inputs give byte-identical files.

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

from fashionnet import champion
from fashionnet.core import atomic, formats, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.runlock import run_lock
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.model.train import curve_csv
from fashionnet.report import html, markdown
from fashionnet.report.columns import CONFUSION_INDEX, HISTORY_COLUMNS, csv_text
from fashionnet.report.run_report import EVALUATION_SPLIT, MANIFEST_NAME, RunReport

log = logging.getLogger(__name__)

HISTORY_HEADER = ",".join(HISTORY_COLUMNS)
NUMBER_COLUMNS = {formats.VERSION_FIELD: int, "samples": int, "accuracy": float}
# Lines named one by one when rows are skipped; beyond these, only their count.
NAMED_LINES = 5
# runs/<JOURNAL>: the run being published, written before its folder takes its name. The next
# run (under the run lock) finishes a run whose `latest` swap happened, and removes the folder
# of one that never got that far: a kill at any point leaves the previous state or the new one.
JOURNAL = ".publishing.json"


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


def write_run(runs_dir: Path, report: RunReport, figure_cache: Path | None = None) -> Path:
    """Render `report` into the run folder `runs_dir/<run id>`, all at once; return its path.
    `figure_cache`: where the last report's figures are kept (`plots.write_run_figures`)."""
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
        for name, text in (report.data.files() if report.data is not None else {}).items():
            atomic.write_text(building / name, text)
        atomic.write_text(building / MANIFEST_NAME, manifest_text(report.manifest))
        # matplotlib with it, imported only to draw: `fashionnet runs` and `fashionnet report`
        # read history through this module, and its import took a fifth of their time.
        from fashionnet.report import plots

        plots.write_run_figures(building, report, figure_cache)
        markdown.write_report_md(building, report)
        html.write_report_html(building, report)
        os.chmod(building, 0o755)  # mkdtemp makes it owner-only; a report is for everyone
        atomic.write_text(runs_dir / JOURNAL, json.dumps({"run_id": report.run_id}) + "\n")
        os.rename(building, final)
        atomic.fsync_dir(runs_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if not final.exists():
            with contextlib.suppress(FileNotFoundError):
                (runs_dir / JOURNAL).unlink()
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
    or nothing; its model becomes the champion when its blessing says so (`champion.promote`).

    The new history.csv is written beside the old one first; `latest` is swapped; only then does
    the new history take its name. A failure before the swap changes neither, so history.csv
    never has rows of a run that `latest` did not point at.
    """
    rows = report_rows(report)
    interrupts.check()  # a stop asked for while the report was written: nothing is published
    journal = {"run_id": report.run_id, "rows": csv_text(rows).split("\n", 1)[1]}
    atomic.write_text(layout.runs_dir / JOURNAL, json.dumps(journal) + "\n")
    with history_appended(layout.history_csv, journal["rows"]):
        publish_latest(layout.latest_link, run_dir)  # the commit point
        interrupts.commit()
        if report.blessing is not None:
            champion.promote(layout, report.blessing)
    _end_journal(layout)
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
    interrupts.check()  # a stop asked for meanwhile: nothing is recorded
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
    interrupts.commit()  # recorded in the history: the run is done
    log.info(
        "run %s repeats run %s (same data, model and code): recorded in %s and %s, no copy",
        report.run_id,
        previous,
        final,
        layout.history_csv,
    )
    write_trend_of_history(layout)
    return final


def _end_journal(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        (layout.runs_dir / JOURNAL).unlink()
        atomic.fsync_dir(layout.runs_dir)


def _points_at(latest_link: Path, run_dir: Path) -> bool:
    """Whether `latest_link` is a link to `run_dir` (read, not followed: a loop is just no)."""
    try:
        target = os.readlink(latest_link)
    except OSError:
        return False
    return os.path.normpath(latest_link.parent / target) == os.path.normpath(run_dir)


def finish_interrupted_publishing(layout: Layout) -> None:
    """Finish or undo the publishing a killed run left half done (its journal says which run):
    once `latest` points at the run, its history rows are added if missing and its model made the
    champion if its blessing says so; before that, its run folder is removed. Call it holding the
    run lock."""
    journal_path = layout.runs_dir / JOURNAL
    if not journal_path.is_file() or journal_path.is_symlink():
        return
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
        run_id, rows = str(journal["run_id"]), journal.get("rows")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        log.warning("%s cannot be read; removed it", journal_path)
        _end_journal(layout)
        return
    run_dir = layout.runs_dir / run_id
    if "/" in run_id or run_id.startswith("."):
        log.warning("%s names no run folder (%r); removed it", journal_path, run_id)
    elif isinstance(rows, str) and _points_at(layout.latest_link, run_dir):
        if run_id not in set(read_history(layout.history_csv)["run_id"]):
            with history_appended(layout.history_csv, rows):
                pass
            log.info(
                "added run %s to %s: it was interrupted after it was published",
                run_id,
                layout.history_csv,
            )
        champion.promote(layout, champion.read_blessing(run_dir) or {})  # the switch may be missing
    elif run_dir.is_dir() and not run_dir.is_symlink():
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("removed %s: its run was interrupted before it was published", run_dir)
    _end_journal(layout)


def write_trend_of_history(layout: Layout) -> None:
    """Redraw reports/history.png and reports/index.html from history.csv.

    The run is published by now, so a failure here is a warning, not a failed run: both files
    are drawn again from the whole history by the next run.
    """
    from fashionnet.report import trend  # matplotlib, only to draw (as in `write_run`)

    try:
        trend.write_trend(layout, read_history(layout.history_csv))
    except Exception as error:  # noqa: BLE001 (any failure: the published run stands)
        log.warning(
            "could not redraw %s and %s (%s); the next run draws them again",
            layout.reports_dir / trend.TREND_NAME,
            layout.reports_dir / trend.INDEX_NAME,
            error,
        )


@contextlib.contextmanager
def removed_unless_published(latest_link: Path, run_dir: Path) -> Iterator[None]:
    """Remove the run folder `run_dir` when the block fails before `latest_link` points at it:
    a failed run leaves no run folder behind (and a published one is never removed)."""
    try:
        yield
    except BaseException:
        if not _points_at(latest_link, run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (run_dir.parent / JOURNAL).unlink()
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
def history_appended(history_csv: Path, rows: pd.DataFrame | str) -> Iterator[None]:
    """Add `rows` to history.csv (created with its header if absent) when the block succeeds.

    The whole file is written to a temporary before the block and renamed after it, so a crash
    never leaves half a row; callers hold the project's run lock, so no two runs append at once.
    Lines that cannot be read (another header, a row not UTF-8, short, out of range) cost those
    lines alone: the file as it was is copied aside with a warning naming both files and the
    bad line numbers, and the new one keeps every readable row. Something that is not a file
    is moved aside and a new history starts with `rows`: the bookkeeping never stops a run.
    One a newer fashionnet wrote raises `formats.NewerFormat`.
    """
    history_csv = Path(history_csv)
    history = read_history_file(history_csv)
    if history.unreadable is not None:
        aside = atomic.move_aside(history_csv)
        log.warning(
            "%s cannot be read (%s); moved it to %s and started a new one with this run's rows",
            history_csv,
            history.unreadable,
            aside,
        )
    elif history.bad_lines:
        # The file as it was, bad lines at their line numbers, is kept beside the new one,
        # which keeps every row that reads: one bad line costs that line alone.
        aside = atomic.copy_aside(history_csv, history.content)
        log.warning(
            "%s has lines that cannot be read (%s); kept its %d readable rows, and the file as "
            "it was in %s",
            history_csv,
            history.damage,
            len(history.row_lines),
            aside,
        )
    kept = history.row_lines
    # Text is rows as csv_text wrote them, without the header (from the publishing journal).
    new_rows = rows if isinstance(rows, str) else csv_text(rows).split("\n", 1)[1]
    with atomic.atomic_path(history_csv) as staged:
        staged.write_text("".join([HISTORY_HEADER + "\n", *kept, new_rows]), encoding="utf-8")
        yield
    log.info("appended %d rows to %s", new_rows.count("\n"), history_csv)


@dataclass(frozen=True)
class HistoryFile:
    """history.csv as read: the rows that parse, and what is wrong with the rest."""

    table: pd.DataFrame  # the good rows, with HISTORY_COLUMNS
    row_lines: list[str]  # their text, each ending in a newline, to write back as they were
    unreadable: str | None = None  # why the file as a whole cannot be read (nothing is read)
    bad_lines: dict[int, str] = field(default_factory=dict)  # line number -> what is wrong
    content: bytes = b""  # the file as read, to keep aside when it has bad lines

    @property
    def damage(self) -> str | None:
        """What is wrong, in a few words (the first NAMED_LINES bad lines), or None if sound."""
        if self.unreadable is not None or not self.bad_lines:
            return self.unreadable
        named = [f"line {number}: {why}" for number, why in self.bad_lines.items()]
        more = len(named) - NAMED_LINES
        return "; ".join(named[:NAMED_LINES]) + (f"; and {more} more bad lines" if more > 0 else "")


def read_history_file(history_csv: Path) -> HistoryFile:
    """Read history.csv line by line, so one bad line costs that line alone (a bad header is
    line 1: the rows under it are still read, by the current layout).

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
    content = history_csv.read_bytes()
    header, *lines = content.split(b"\n")
    if not header and not any(lines):
        return HistoryFile(empty, [])
    rows, row_lines, bad_lines = [], [], {}
    try:
        _check_header(history_csv, header, lines)
        header_sound = True
    except ValueError as problem:
        bad_lines[1] = str(problem)
        header_sound = False
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue  # blank lines, and the end of the last row
        try:
            text = _text(line)
            rows.append(_history_row(history_csv, text))
            row_lines.append(text + "\n")
        except formats.NewerFormat:
            # Under this header, or another that begins with the version's column (which
            # _check_header has read), a newer row speaks for the file; under any other header
            # its first field is not a version, and the line is only bad.
            if header_sound:
                raise
            bad_lines[number] = "its first field is not a history format version"
        except (ValueError, csv.Error) as error:
            bad_lines[number] = str(error)
    table = pd.DataFrame(rows, columns=HISTORY_COLUMNS).astype(NUMBER_COLUMNS)
    return HistoryFile(table, row_lines, bad_lines=bad_lines, content=content)


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
    if row["samples"] < 0:
        raise ValueError(f"samples {row['samples']} is negative")
    if not 0.0 <= row["accuracy"] <= 1.0:  # also inf and NaN, which compare false
        raise ValueError(f"accuracy {row['accuracy']} is not between 0 and 1")
    return list(row.values())


@dataclass(frozen=True)
class Regression:
    """A run's test accuracy fell more than `tolerance` below the champion's (the model blessed
    before this run) on the same data. The field names are the payload of the
    `fashionnet.accuracy.regressed` event; `previous_*` are the champion's last run on the data."""

    test_accuracy: float
    previous_test_accuracy: float
    tolerance: float
    previous_run: str  # its run id


def accuracy_regression(
    history: pd.DataFrame,
    run_id: str,
    fingerprint: str,
    test_accuracy: float,
    tolerance: float,
    champion_model_id: str,
) -> Regression | None:
    """Compare a run with the last other run of `history` (history.csv's rows, in publishing
    order) of the champion's model on the same data (`fingerprint`, the evaluation split's): a
    Regression if `test_accuracy` is more than `tolerance` below that run's, else None (also
    with no such run). A regressed model never becomes the baseline: each run is held to the
    champion, so two regressed runs in a row both alert."""
    earlier = history[
        (history["split"] == EVALUATION_SPLIT)
        & (history["data_fingerprint"] == fingerprint)
        & (history["model_id"] == champion_model_id)
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
    """`accuracy_regression` of a report against the champion its blessing was judged against
    (none for the first model, or a run folder without a blessing)."""
    overall = report.overall.set_index("split")
    before = (report.blessing or {}).get("champion_before")
    if EVALUATION_SPLIT not in overall.index or not before:
        return None
    fingerprint = report.manifest.get("data", {}).get("fingerprints", {}).get(EVALUATION_SPLIT, "")
    return accuracy_regression(
        read_history(layout.history_csv),
        report.run_id,
        fingerprint,
        float(overall.loc[EVALUATION_SPLIT, "accuracy"]),
        tolerance,
        before["model_id"],
    )


def prune_runs(layout: Layout, keep: int, lock_timeout: float) -> list[Path]:
    """Delete the run folders under runs/ beyond the `keep` last published (`publishing_order`),
    never the one `latest` points at; returns what was removed, first published first.
    history.csv keeps every row; index.html is redrawn, so no link leads to a removed folder.
    Holds the project's run lock (waiting up to `lock_timeout` s), so no run is being published
    meanwhile."""
    if keep < 1:
        raise FashionnetError(f"--keep {keep}: keep at least 1 run folder")
    with run_lock(layout.lock_file, lock_timeout):
        removed = _prune(layout, keep)
        if removed:
            write_trend_of_history(layout)
        return removed


def publishing_order(layout: Layout) -> list[Path]:
    """The run folders under runs/, the first published first: in the order of their first
    rows in history.csv, which is the order runs were published in, whatever their names say
    (a run id holds the clock of its machine, which may be wrong). A folder no readable row
    names (its rows lost with a damaged history, say) counts as published before every one
    that is, in the order of their names."""
    if not layout.runs_dir.is_dir():
        return []
    folders = {
        path.name: path
        for path in layout.runs_dir.iterdir()
        if path.is_dir() and not path.is_symlink() and not path.name.startswith(".")
    }
    published = dict.fromkeys(read_history(layout.history_csv)["run_id"])  # first rows, in order
    unnamed = sorted(name for name in folders if name not in published)
    return [folders[name] for name in [*unnamed, *published] if name in folders]


def _prune(layout: Layout, keep: int) -> list[Path]:
    runs = publishing_order(layout)
    removed = [path for path in runs[:-keep] if not _points_at(layout.latest_link, path)]
    for path in removed:
        # Hidden first, then deleted: an interruption leaves a temporary the next run sweeps,
        # never half a run folder.
        doomed = path.with_name(f".{path.name}{atomic.TEMP_MARKER}pruned")
        os.rename(path, doomed)
        shutil.rmtree(doomed)
        log.info("removed run folder %s", path)
    return removed
