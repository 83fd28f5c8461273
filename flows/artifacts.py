"""Prefect artifacts of a run: what the UI's Artifacts page shows, versioned across runs.

Three keys for the pipeline, and one for the inbox flow; every run adds a new version under
each, so the page shows the latest run and keeps the earlier ones:

- `fashionnet-prediction-progress`: share of the prediction chunks done, updated as they finish;
- `fashionnet-scoring-progress`: share of an inbox batch's images scored (flows/inbox.py);
- `fashionnet-per-class-accuracy`: the per-class table of the run's report.md;
- `fashionnet-report`: the run's report.md, headed by where its files are.

Tables and text are rendered from the run's `RunReport` by `fashionnet.report.markdown`, as
report.md is, so the UI shows what report.md says. The UI cannot reach the run folder, so the
summary differs from report.md in two places: the key figures are inside it, as small data:
URI images (the UI's markdown renders those, checked in a real browser by
tests/test_browser.py), and files are named by absolute path, as text, since links to them
would not work from the UI.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from fashionnet.report.html import REPORT_HTML_NAME
from fashionnet.report.html_page import png_data_uri
from fashionnet.report.markdown import (
    figures_section,
    files_section,
    per_class_rows,
    render_report_md,
)
from fashionnet.report.run_report import EVALUATION_SPLIT, RunReport

PROGRESS_KEY = "fashionnet-prediction-progress"
SCORING_PROGRESS_KEY = "fashionnet-scoring-progress"
PER_CLASS_KEY = "fashionnet-per-class-accuracy"
REPORT_KEY = "fashionnet-report"
# The figures the summary shows; the others are named by path. Narrowed to the width of the
# UI's artifact page: every version of the artifact is stored whole in the server's database.
SUMMARY_FIGURES = ("per_class_accuracy.png", f"confusion_{EVALUATION_SPLIT}.png")
SUMMARY_FIGURE_WIDTH = 720


class ChunkProgress:
    """A progress artifact of one run, created at 0%: by default its prediction chunks."""

    def __init__(
        self,
        key: str = PROGRESS_KEY,
        what: str = "prediction chunks",
        when_none: str = "none needed, predictions up to date",
    ) -> None:
        self.what, self.when_none = what, when_none
        self.artifact_id = create_progress_artifact(0.0, key=key, description=f"{what}: planning")

    def update(self, done: int, total: int) -> None:
        """`done` of `total` finished; none at all is said as `when_none`."""
        if total:
            percent, text = 100.0 * done / total, f"{self.what}: {done:,} of {total:,} done"
        else:
            percent, text = 100.0, f"{self.what}: {self.when_none}"
        update_progress_artifact(self.artifact_id, percent, description=text)


def per_class_table(report: RunReport) -> list[dict[str, str]]:
    """report.md's per-class table as rows of {column: cell}."""
    header, rows = per_class_rows(report.per_class)
    return [dict(zip(header, row, strict=True)) for row in rows]


def summary_figures_section(figures: Mapping[str, str], run_dir: Path) -> str:
    """The key figures as data: URI images, the others named by absolute path."""
    shown = [
        f"![{caption}]({png_data_uri(run_dir / name, SUMMARY_FIGURE_WIDTH)})"
        for name, caption in figures.items()
        if name in SUMMARY_FIGURES
    ]
    others = [
        f"- {caption}: `{run_dir / name}`"
        for name, caption in figures.items()
        if name not in SUMMARY_FIGURES
    ]
    return "\n\n".join(["## Figures", *shown, *(["\n".join(others)] if others else [])])


def summary_files_section(data_files: Sequence[str], run_dir: Path) -> str:
    return "## Files\n\n" + "\n".join(f"- `{run_dir / name}`" for name in data_files)


def summary_markdown(report: RunReport, run_dir: Path) -> str:
    """report.md as the UI can show it: the run folder named first, the key figures inside,
    the other figures and the files named by absolute path."""
    figures, files = report.figures, report.data_files
    # report.md's own sections, with the two that only work beside the files swapped.
    markdown = (
        render_report_md(report, run_dir=run_dir)
        .replace(figures_section(figures, run_dir), summary_figures_section(figures, run_dir), 1)
        .replace(files_section(files), summary_files_section(files, run_dir), 1)
    )
    title, body = markdown.split("\n\n", 1)
    where = (
        f"Report files: `{run_dir}` (`reports/latest` points there until the next run). "
        f"The whole report, every figure in it, opens in a browser from "
        f"`{run_dir / REPORT_HTML_NAME}`."
    )
    return f"{title}\n\n{where}\n\n{body}"


def publish_run_artifacts(report: RunReport, run_dir: Path) -> None:
    """The per-class table and the summary of the published run folder `run_dir`."""
    create_table_artifact(
        per_class_table(report),
        key=PER_CLASS_KEY,
        description=f"Accuracy per class, run {report.run_id}",
    )
    create_markdown_artifact(
        summary_markdown(report, Path(run_dir)),
        key=REPORT_KEY,
        description=f"Summary of run {report.run_id}",
    )
