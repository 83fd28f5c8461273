"""report.md: a `RunReport` summarised for people.

Headline accuracy per split with its 95% interval, top-2 accuracy, log loss and calibration
error, the weakest test classes and what they are mistaken for, the per-class table, the data
card (`data_card`), the figures (linked by relative path), then the model, its
hyperparameters and the data's source checksums recorded in the manifest.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.core import atomic
from fashionnet.report.data_card import (
    DataReport,
    card_sentences,
    drift_rows,
    duplicate_rows,
    split_rows,
)
from fashionnet.report.metrics import accuracy_by_class, weakest_classes
from fashionnet.report.run_report import EVALUATION_SPLIT, RunReport

REPORT_NAME = "report.md"


def images(count: int) -> str:
    return f"{count:,} image" if count == 1 else f"{count:,} images"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# What the headline's columns mean, said under the table.
METRICS_LEGEND = (
    "Accuracy is that of the final weights on each split; its 95% interval is the Wilson score "
    "interval. Top-2 accuracy counts an image right when its class is one of the two most "
    "probable. Log loss is the mean of -ln p(true class). ECE, the expected calibration error, "
    "is the mean gap between accuracy and confidence over 15 confidence bins, weighted by their "
    "images (0 is perfectly calibrated). Probabilities are calibrated by one temperature fitted "
    "on the validation split's log loss; the raw log loss and ECE are the network's own."
)


def interval(low: float, high: float) -> str:
    return f"[{low:.2%}, {high:.2%}]"


def number(value: float, spec: str) -> str:
    """`value` formatted by `spec`, or "-" where it is unknown (a run folder from before it)."""
    return "-" if pd.isna(value) else format(value, spec)


def overall_rows(overall: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The headline figures as text: a header and one row per split."""
    header = [
        "split",
        "accuracy",
        "correct",
        "images",
        "95% interval",
        "top-2 accuracy",
        "log loss",
        "ECE",
        "raw log loss",
        "raw ECE",
    ]
    rows = [
        [
            row.split,
            f"{row.accuracy:.2%}",
            f"{row.correct:,}",
            f"{row.samples:,}",
            interval(row.ci_low, row.ci_high),
            number(row.top2_accuracy, ".2%"),
            number(row.log_loss, ".4f"),
            number(row.ece, ".4f"),
            number(row.raw_log_loss, ".4f"),
            number(row.raw_ece, ".4f"),
        ]
        for row in overall.itertuples()
    ]
    return header, rows


def temperature_phrase(manifest: Mapping[str, Any]) -> str:
    """What the model's calibration is, in a few words ("" for a run folder from before it)."""
    calibration = manifest.get("model", {}).get("calibration")
    if not calibration:
        return ""
    return (
        f" at temperature {calibration['temperature']:.4f} (fitted on "
        f"{calibration['validation_images']:,} validation images: their log loss "
        f"{calibration['raw_validation_log_loss']:.4f} -> {calibration['validation_log_loss']:.4f})"
    )


def model_line(report: RunReport) -> str:
    """The model id (a digest of its weights and temperature), its temperature and, if stored,
    its model key (its folder)."""
    key = report.manifest.get("model", {}).get("model_key")
    stored = f", stored in `models/{key}/`" if key else ""
    return f"Model `{report.model_id}`{temperature_phrase(report.manifest)}{stored}."


def headline_table(report: RunReport) -> pd.DataFrame:
    """overall.csv's rows, and the evaluation split's deduplicated row after them when some of
    its images are copies of training images (the data card's)."""
    if report.data is None or report.data.deduplicated is None:
        return report.overall
    return pd.concat([report.overall, report.data.deduplicated], ignore_index=True)


def headline_section(report: RunReport) -> str:
    table = markdown_table(*overall_rows(headline_table(report)))
    return "\n\n".join([table, METRICS_LEGEND, model_line(report)])


def weakest_rows(confusion: np.ndarray) -> list[tuple[str, str]]:
    """The weakest classes as text: (class name, what to say of it), weakest first."""
    rows = []
    for weak in weakest_classes(confusion):
        mistaken = (
            f"most often taken for {weak.confused_with} ({images(weak.confused_count)})"
            if weak.confused_with
            else "never mistaken for another class"
        )
        rows.append((weak.class_name, f"{weak.accuracy:.2%} right; {mistaken}."))
    return rows


def weakest_section(confusion: np.ndarray | None) -> str:
    if confusion is None:
        return ""
    lines = ["## Weakest test classes", ""]
    for rank, (name, said) in enumerate(weakest_rows(confusion), 1):
        lines.append(f"{rank}. **{name}**: {said}")
    return "\n".join(lines)


def per_class_rows(per_class: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per class as text: accuracy in every split, then on test precision, recall, f1 and the
    accuracy's 95% interval."""
    accuracy = accuracy_by_class(per_class)
    header = ["class", *(f"{split} accuracy" for split in accuracy.columns)]
    rows = [[name, *(f"{value:.2%}" for value in values)] for name, values in accuracy.iterrows()]
    evaluated = per_class[per_class["split"] == EVALUATION_SPLIT].sort_values("label")
    if len(evaluated):
        header += ["test precision", "test recall", "test f1", "test 95% interval"]
        for row, scores in zip(rows, evaluated.itertuples(), strict=True):
            row += [
                f"{scores.precision:.3f}",
                f"{scores.recall:.3f}",
                f"{scores.f1:.3f}",
                interval(scores.ci_low, scores.ci_high),
            ]
    return header, rows


def per_class_section(per_class: pd.DataFrame) -> str:
    return "## Per class\n\n" + markdown_table(*per_class_rows(per_class))


def data_card_section(data: DataReport | None) -> str:
    """The data card: each split's size, balance and properties, every drift statistic with
    its threshold, and the duplicates found."""
    if data is None:
        return ""
    parts = [
        "## Data card",
        " ".join(card_sentences(data, EVALUATION_SPLIT)),
        markdown_table(*split_rows(data.validation)),
        "### Drift from train",
        markdown_table(*drift_rows(data.validation)),
        "### Duplicates",
        markdown_table(*duplicate_rows(data.validation)),
    ]
    return "\n\n".join(parts)


def figures_section(figures: Mapping[str, str], run_dir: Path | None = None) -> str:
    """The figures embedded by relative path, or (given `run_dir`, for viewers that cannot
    reach the run folder) named as files in it."""
    if not figures:
        return ""
    if run_dir is None:
        return "## Figures\n\n" + "\n\n".join(f"![{c}]({n})" for n, c in figures.items())
    listed = "\n".join(f"- `{name}`: {caption}" for name, caption in figures.items())
    return f"## Figures\n\nIn the run folder `{run_dir}`:\n\n{listed}"


def model_section(manifest: Mapping[str, Any]) -> str:
    model = manifest.get("model", {})
    lines = ["## Model", ""]
    if "origin" in model:
        lines.append(f"Origin: {model['origin']}.")
    hyperparameters = model.get("hyperparameters", {})
    if hyperparameters:
        rows = sorted((name, f"`{value}`") for name, value in hyperparameters.items())
        lines += ["", markdown_table(("hyperparameter", "value"), rows)]
    return "\n".join(lines) if len(lines) > 2 else ""


def source_rows(manifest: Mapping[str, Any], splits: Sequence[str]) -> list[tuple[str, str, str]]:
    """The source checksums of each split, in the report's split order: (split, file, sha256)."""
    sources_by_split = manifest.get("data", {}).get("sources", {})
    return [
        (split, name, sha256)
        for split in splits
        for name, sha256 in sorted(sources_by_split.get(split, {}).items())
    ]


def data_section(manifest: Mapping[str, Any], splits: Sequence[str]) -> str:
    rows = [(split, f"`{name}`", f"`{sha}`") for split, name, sha in source_rows(manifest, splits)]
    if not rows:
        return ""
    data = manifest["data"]
    origin = f"From {data['origin']}.\n\n" if "origin" in data else ""
    return "## Data\n\n" + origin + markdown_table(("split", "file", "sha256"), rows)


def files_section(data_files: Sequence[str]) -> str:
    return "## Files\n\n" + ", ".join(f"[{name}]({name})" for name in data_files)


def blessing_lines(blessing: Mapping[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """The gate's verdict as sentences, and its checks as rows (check, result, detail)."""
    if blessing is None:
        return [], []
    before = blessing.get("champion_before")
    if blessing["promoted"]:
        outcome = "This run's model becomes the champion (`models/champion`)."
    elif before:
        outcome = f"The champion stays model `{before['model_id']}`."
    else:
        outcome = "There is no champion yet."
    said = [blessing["reason"][:1].upper() + blessing["reason"][1:] + ".", outcome]
    if before:
        runs = ", ".join(f"`{run}`" for run in before.get("runs", [])) or "none in history.csv"
        said.append(
            f"The champion before this run: model `{before['model_id']}`, from runs {runs}."
        )
    rows = [
        [check["name"], "pass" if check["passed"] else "FAIL", check["detail"]]
        for check in blessing["checks"]
    ]
    return said, rows


def blessing_section(blessing: Mapping[str, Any] | None) -> str:
    said, rows = blessing_lines(blessing)
    if not said:
        return ""
    table = markdown_table(("check", "result", "detail"), rows) if rows else ""
    return "\n\n".join(part for part in ["## Champion", " ".join(said), table] if part)


def render_report_md(report: RunReport, *, run_dir: Path | None = None) -> str:
    """report.md of `report`: figures embedded by relative path, or, given `run_dir`, listed
    as files there (for viewers that cannot open the run folder)."""
    sections = [
        f"# fashionnet run {report.run_id}",
        headline_section(report),
        blessing_section(report.blessing),
        weakest_section(report.confusions.get(EVALUATION_SPLIT)),
        per_class_section(report.per_class),
        data_card_section(report.data),
        figures_section(report.figures, run_dir),
        model_section(report.manifest),
        data_section(report.manifest, list(report.confusions)),
        files_section(report.data_files),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def write_report_md(run_dir: Path, report: RunReport) -> Path:
    """Write `report.md` into the run folder and return its path."""
    path = Path(run_dir) / REPORT_NAME
    atomic.write_text(path, render_report_md(report))
    return path
