"""report.md: one run folder summarised for people, built only from the files in that folder.

Headline accuracy per split, the weakest test classes and what they are mistaken for, the
per-class table, the figures (linked by relative path, only those present), then the model,
its hyperparameters and the data checksums recorded in manifest.json.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fashionnet import atomic
from fashionnet.metrics import accuracy_by_class, weakest_classes
from fashionnet.reports import read_confusion, read_overall, read_per_class

REPORT_NAME = "report.md"
EVALUATION_SPLIT = "test"

# Figures a run folder may hold, in the order the report shows them, with their captions.
FIGURES = {
    "per_class_accuracy.png": "Accuracy per class",
    "confusion_test.png": "Confusion matrix (test)",
    "confusion_train.png": "Confusion matrix (train)",
    "learning_curve.png": "Learning curve",
    "misclassified_test.png": "Most confidently wrong test images",
    "samples.png": "Test images by class",
}
DATA_FILES = (
    "overall.csv",
    "per_class.csv",
    "confusion_train.csv",
    "confusion_test.csv",
    "learning_curve.csv",
    "manifest.json",
)


def images(count: int) -> str:
    return f"{count:,} image" if count == 1 else f"{count:,} images"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def overall_rows(overall: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The headline figures as text: a header and one row per split."""
    header = ["split", "accuracy", "correct", "images"]
    rows = [
        [row.split, f"{row.accuracy:.2%}", f"{row.correct:,}", f"{row.samples:,}"]
        for row in overall.itertuples()
    ]
    return header, rows


def headline_section(overall: pd.DataFrame) -> str:
    model = f"Model `{overall['model_id'].iloc[0]}`." if len(overall) else ""
    return "\n\n".join([markdown_table(*overall_rows(overall)), model])


def weakest_section(run_dir: Path, splits: Sequence[str]) -> str:
    if EVALUATION_SPLIT not in splits:
        return ""
    lines = ["## Weakest test classes", ""]
    for rank, weak in enumerate(weakest_classes(read_confusion(run_dir, EVALUATION_SPLIT)), 1):
        confusion = (
            f"most often taken for {weak.confused_with} ({images(weak.confused_count)})"
            if weak.confused_with
            else "never mistaken for another class"
        )
        lines.append(f"{rank}. **{weak.class_name}**: {weak.accuracy:.2%} right; {confusion}.")
    return "\n".join(lines)


def per_class_rows(per_class: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per class as text: accuracy in every split, then precision, recall and f1 on test."""
    accuracy = accuracy_by_class(per_class)
    header = ["class", *(f"{split} accuracy" for split in accuracy.columns)]
    rows = [[name, *(f"{value:.2%}" for value in values)] for name, values in accuracy.iterrows()]
    evaluated = per_class[per_class["split"] == EVALUATION_SPLIT].sort_values("label")
    if len(evaluated):
        header += ["test precision", "test recall", "test f1"]
        for row, scores in zip(rows, evaluated.itertuples(), strict=True):
            row += [f"{scores.precision:.3f}", f"{scores.recall:.3f}", f"{scores.f1:.3f}"]
    return header, rows


def per_class_section(per_class: pd.DataFrame) -> str:
    return "## Per class\n\n" + markdown_table(*per_class_rows(per_class))


def figures_section(run_dir: Path, *, embed: bool = True) -> str:
    """The figures embedded by relative path, or (embed=False, for viewers that cannot reach
    the run folder) named as files in it."""
    present = {name: caption for name, caption in FIGURES.items() if (run_dir / name).is_file()}
    if not present:
        return ""
    if embed:
        return "## Figures\n\n" + "\n\n".join(f"![{c}]({n})" for n, c in present.items())
    listed = "\n".join(f"- `{name}`: {caption}" for name, caption in present.items())
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


def data_section(manifest: Mapping[str, Any]) -> str:
    data = manifest.get("data", {})
    checksums = data.get("sha256", {})
    if not checksums:
        return ""
    rows = [
        (split, f"`{name}`", f"`{sha256}`")
        for split, sources in checksums.items()
        for name, sha256 in sorted(sources.items())
    ]
    origin = f"From {data['origin']}.\n\n" if "origin" in data else ""
    return "## Data\n\n" + origin + markdown_table(("split", "file", "sha256"), rows)


def files_section(run_dir: Path) -> str:
    present = [f"[{name}]({name})" for name in DATA_FILES if (run_dir / name).is_file()]
    return "## Files\n\n" + ", ".join(present)


def render_report_md(run_dir: Path, *, embed_figures: bool = True) -> str:
    """The Markdown report of the run folder `run_dir`."""
    run_dir = Path(run_dir)
    overall = read_overall(run_dir)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    title = f"# fashionnet run {manifest['run_id']}" if "run_id" in manifest else "# fashionnet run"
    sections = [
        title,
        headline_section(overall),
        weakest_section(run_dir, overall["split"].tolist()),
        per_class_section(read_per_class(run_dir)),
        figures_section(run_dir, embed=embed_figures),
        model_section(manifest),
        data_section(manifest),
        files_section(run_dir),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def write_report_md(run_dir: Path) -> Path:
    """Write `report.md` into the run folder and return its path."""
    path = Path(run_dir) / REPORT_NAME
    atomic.write_text(path, render_report_md(run_dir))
    return path
