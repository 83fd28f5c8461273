"""Run folders, the `latest` link and `history.csv`: the files people read after a run.

A run folder `runs/<run id>/` holds everything rendered from one `RunReport`: overall.csv,
per_class.csv, confusion_<split>.csv, learning_curve.csv (trained models), manifest.json, the
figures and report.md. It is built in a hidden sibling `.<run id>.tmp-<random>` and renamed
into place in one step, so a run folder either exists whole or not at all;
`fashionnet.atomic.sweep_stale_temps` removes what a crash leaves. CSVs are formatted by
`schema.csv_text`: identical inputs give byte-identical files.
"""

import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fashionnet import atomic, plots, report_markdown
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import CLASS_NAMES
from fashionnet.layout import Layout
from fashionnet.run_report import RunReport
from fashionnet.schema import (
    CONFUSION_INDEX,
    HISTORY_COLUMNS,
    LEGACY_HISTORY_COLUMNS,
    TEXT_COLUMNS,
    csv_text,
)
from fashionnet.train import curve_csv

log = logging.getLogger(__name__)


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
        manifest_text = json.dumps(report.manifest, sort_keys=True, indent=2) + "\n"
        atomic.write_text(building / "manifest.json", manifest_text)
        plots.write_run_figures(building, report)
        report_markdown.write_report_md(building, report)
        os.chmod(building, 0o755)  # mkdtemp makes it owner-only; a report is for everyone
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("wrote run folder %s", final)
    return final


def publish_latest(latest_link: Path, run_dir: Path) -> None:
    """Point `latest_link` at `run_dir` in one atomic swap (a relative symlink)."""
    atomic.replace_symlink(latest_link, run_dir)
    log.info("%s -> %s", latest_link, run_dir)


def publish_run(layout: Layout, run_dir: Path, report: RunReport) -> None:
    """Make a complete run folder the project's `reports/latest`, then add it to the history.

    Only a run that got this far is published: a failed run changes neither.
    """
    publish_latest(layout.latest_link, run_dir)
    fingerprints = report.manifest.get("data", {}).get("fingerprints", {})
    finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    append_history(layout.history_csv, report.run_id, finished_at, report.overall, fingerprints)


def append_history(
    history_csv: Path,
    run_id: str,
    finished_at: str,
    overall: pd.DataFrame,
    fingerprints: Mapping[str, str],
) -> None:
    """Add one row per split of `overall` to history.csv (created with its header if absent).

    `fingerprints` maps each split to its data fingerprint (`dataset.split_fingerprint`).
    The whole file is rewritten through a temporary, so a crash never leaves half a row;
    callers hold the project's run lock, so no two runs append at once.
    """
    history_csv = Path(history_csv)
    rows = pd.DataFrame(
        {
            "finished_at": finished_at,
            "run_id": run_id,
            "split": overall["split"],
            "samples": overall["samples"],
            "accuracy": overall["accuracy"],
            "model_id": overall["model_id"],
            "data_fingerprint": [fingerprints.get(split, "") for split in overall["split"]],
        },
        columns=HISTORY_COLUMNS,
    )
    existing = history_csv.read_text(encoding="utf-8") if history_csv.exists() else ""
    if existing:
        header, body = _current_header(existing, history_csv)
        if not body.endswith("\n") and body:
            body += "\n"
        new_text = header + "\n" + body + csv_text(rows).split("\n", 1)[1]
    else:
        new_text = csv_text(rows)
    atomic.write_text(history_csv, new_text)
    log.info("appended %d rows to %s", len(rows), history_csv)


def _current_header(text: str, history_csv: Path) -> tuple[str, str]:
    """history.csv's text split into its header, brought up to the current columns, and rows."""
    header, _, body = text.partition("\n")
    columns = [LEGACY_HISTORY_COLUMNS.get(name, name) for name in header.split(",")]
    if columns != HISTORY_COLUMNS:
        raise FashionnetError(
            f"{history_csv} has header {header!r}, not {','.join(HISTORY_COLUMNS)!r}; "
            "move it aside and rerun"
        )
    return ",".join(HISTORY_COLUMNS), body


def read_history(history_csv: Path) -> pd.DataFrame:
    """history.csv as a table (empty, with the right columns, before the first run)."""
    history_csv = Path(history_csv)
    if not history_csv.exists():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    text_columns = [*TEXT_COLUMNS, *LEGACY_HISTORY_COLUMNS]
    history = pd.read_csv(history_csv, dtype=dict.fromkeys(text_columns, str))
    return history.rename(columns=LEGACY_HISTORY_COLUMNS)
