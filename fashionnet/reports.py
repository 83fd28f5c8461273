"""Run folders, the `latest` link and `history.csv`: the files people read after a run.

A run folder `runs/<run id>/` holds overall.csv, per_class.csv, confusion_<split>.csv and
manifest.json (plus any extra files, such as learning_curve.csv). It is built in a hidden
sibling `.<run id>.tmp-<random>` and renamed into place in one step, so a run folder either
exists whole or not at all; `fashionnet.atomic.sweep_stale_temps` removes what a crash leaves.
CSVs are formatted deterministically: identical inputs give byte-identical files.
"""

import hashlib
import io
import json
import logging
import os
import platform
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from fashionnet import atomic
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import CLASS_NAMES
from fashionnet.metrics import overall_table, per_class_table

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "finished_at",
    "run_id",
    "split",
    "samples",
    "accuracy",
    "model_id",
    "data_sha256",
]
TEXT_COLUMNS = ["finished_at", "run_id", "split", "model_id", "data_sha256", "class_name"]
VERSIONED_PACKAGES = ("numpy", "pandas", "pyarrow", "prefect", "fashionnet")
SPLIT_DIGEST_CHARS = 16


def new_run_id(now: datetime | None = None) -> str:
    """`20261128T010203Z-1a2b3c`: UTC time (so ids sort chronologically) plus 6 random hex."""
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:  # a naive time is taken to be UTC already
        now = now.replace(tzinfo=UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def csv_text(table: pd.DataFrame, *, index: bool = False) -> str:
    """The one CSV formatting every report file uses (fixed float digits, `\\n` line ends)."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=index, float_format="%.6f", lineterminator="\n")
    return buffer.getvalue()


def confusion_frame(confusion: np.ndarray) -> pd.DataFrame:
    """Counts labelled by class name: rows (`true_class`) true, columns predicted."""
    names = pd.Index(CLASS_NAMES, name="true_class")
    return pd.DataFrame(np.asarray(confusion, dtype=np.int64), index=names, columns=CLASS_NAMES)


def write_run(
    runs_dir: Path,
    run_id: str,
    *,
    confusions: Mapping[str, np.ndarray],
    model_id: str,
    manifest: Mapping,
    extra_files: Mapping[str, Path] | None = None,
    finish: Callable[[Path], object] | None = None,
) -> Path:
    """Write the run folder `runs_dir/<run_id>` all at once and return its path.

    extra_files maps a file name in the run folder to the file copied there. `finish`, if
    given, is called with the folder being built once everything else is in it, to add
    files derived from them (figures, report.md) before the folder appears.
    """
    runs_dir = Path(runs_dir)
    final = runs_dir / run_id
    if final.exists():
        raise FashionnetError(f"run folder {final} already exists; start a new run (new run id)")
    extra_files = dict(extra_files or {})
    for name, source in extra_files.items():
        if Path(name).name != name:
            raise ValueError(f"extra file name {name!r} must be a plain file name")
        if not Path(source).is_file():
            raise FashionnetError(f"{source} is missing; rerun the stage that writes {name}")

    runs_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{run_id}{atomic.TEMP_MARKER}", dir=runs_dir))
    try:
        atomic.write_text(building / "overall.csv", csv_text(overall_table(confusions, model_id)))
        atomic.write_text(building / "per_class.csv", csv_text(per_class_table(confusions)))
        for split, confusion in confusions.items():
            table = confusion_frame(confusion)
            atomic.write_text(building / f"confusion_{split}.csv", csv_text(table, index=True))
        manifest_text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
        atomic.write_text(building / "manifest.json", manifest_text)
        for name, source in extra_files.items():
            atomic.write_bytes(building / name, Path(source).read_bytes())
        if finish is not None:
            finish(building)
        os.chmod(building, 0o755)  # mkdtemp makes it owner-only; a report is for everyone
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("wrote run folder %s", final)
    return final


def read_run_csv(run_dir: Path, name: str) -> pd.DataFrame:
    """One CSV of a run folder, with its text columns kept as text."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise FashionnetError(f"{path} is missing; run the pipeline to write a complete run folder")
    # A hex id or digest made only of digits must not be read as a number.
    return pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))


def read_overall(run_dir: Path) -> pd.DataFrame:
    """A run's overall.csv: one row per split."""
    return read_run_csv(run_dir, "overall.csv")


def read_per_class(run_dir: Path) -> pd.DataFrame:
    """A run's per_class.csv: one row per split and class."""
    return read_run_csv(run_dir, "per_class.csv")


def read_confusion(run_dir: Path, split: str) -> np.ndarray:
    """The int64 (10, 10) counts of a run's `confusion_<split>.csv`."""
    frame = read_run_csv(run_dir, f"confusion_{split}.csv")
    if list(frame.columns) != ["true_class", *CLASS_NAMES] or (
        frame["true_class"].tolist() != list(CLASS_NAMES)
    ):
        raise FashionnetError(
            f"{Path(run_dir) / f'confusion_{split}.csv'} is not a confusion matrix CSV; "
            "delete its run folder"
        )
    return frame[list(CLASS_NAMES)].to_numpy(dtype=np.int64)


def publish_latest(latest_link: Path, run_dir: Path) -> None:
    """Point `latest_link` at `run_dir` in one atomic swap (a relative symlink)."""
    atomic.replace_symlink(latest_link, run_dir)
    log.info("%s -> %s", latest_link, run_dir)


def split_digest(sources: Mapping[str, str]) -> str:
    """A short fingerprint of one split's data from its sources (file name -> sha256).

    It is the first 16 hex digits of the sha256 of the sources' sha256 digests joined by
    newlines in file-name order (images before labels, for both the canonical names and
    the `keras:` ones), so it changes whenever the image or the label file does.
    """
    if not sources:
        raise ValueError("a split digest needs at least one source sha256")
    combined = "\n".join(sources[name] for name in sorted(sources))
    return hashlib.sha256(combined.encode("ascii")).hexdigest()[:SPLIT_DIGEST_CHARS]


def append_history(
    history_csv: Path,
    run_id: str,
    finished_at: str,
    overall: pd.DataFrame,
    data_sha256: Mapping[str, str],
) -> None:
    """Add one row per split of `overall` to history.csv (created with its header if absent).

    data_sha256 maps each split to its `split_digest`.
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
            "data_sha256": [data_sha256[split] for split in overall["split"]],
        },
        columns=HISTORY_COLUMNS,
    )
    existing = history_csv.read_text(encoding="utf-8") if history_csv.exists() else ""
    if existing:
        header = existing.split("\n", 1)[0]
        if header != ",".join(HISTORY_COLUMNS):
            raise FashionnetError(
                f"{history_csv} has header {header!r}, not {','.join(HISTORY_COLUMNS)!r}; "
                "move it aside and rerun"
            )
        if not existing.endswith("\n"):
            existing += "\n"
        new_rows = csv_text(rows).split("\n", 1)[1]
    else:
        new_rows = csv_text(rows)
    atomic.write_text(history_csv, existing + new_rows)
    log.info("appended %d rows to %s", len(rows), history_csv)


def read_history(history_csv: Path) -> pd.DataFrame:
    """history.csv as a table (empty, with the right columns, before the first run)."""
    history_csv = Path(history_csv)
    if not history_csv.exists():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.read_csv(history_csv, dtype=dict.fromkeys(TEXT_COLUMNS, str))


def package_versions() -> dict[str, str]:
    """Versions of the packages behind a run, for the manifest (no package is imported)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
