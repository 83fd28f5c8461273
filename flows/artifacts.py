"""Prefect artifacts of a run: what the UI's Artifacts page shows, versioned across runs.

Three keys; every run adds a new version under each, so the page shows the latest run and
keeps the earlier ones:

- `fashionnet-prediction-progress`: share of the prediction chunks done, updated as they finish;
- `fashionnet-per-class-accuracy`: the per-class table of the run's report.md;
- `fashionnet-report`: the run's report.md, headed by where its files are.

Tables and text are rendered from the run's `RunReport` by `fashionnet.report_markdown`, as
report.md is, so the UI shows exactly what report.md says.
"""

from pathlib import Path

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from fashionnet.report_markdown import per_class_rows, render_report_md
from fashionnet.run_report import RunReport

PROGRESS_KEY = "fashionnet-prediction-progress"
PER_CLASS_KEY = "fashionnet-per-class-accuracy"
REPORT_KEY = "fashionnet-report"


class ChunkProgress:
    """The progress artifact of one run's prediction chunks, created at 0%."""

    def __init__(self) -> None:
        self.artifact_id = create_progress_artifact(
            0.0, key=PROGRESS_KEY, description="prediction chunks: planning"
        )
        self.updated = False

    def update(self, done: int, total: int) -> None:
        """`done` of `total` chunks finished; no chunk at all means the predictions were current."""
        if total:
            percent, text = 100.0 * done / total, f"prediction chunks: {done} of {total} done"
        else:
            percent, text = 100.0, "prediction chunks: none needed, predictions up to date"
        update_progress_artifact(self.artifact_id, percent, description=text)
        self.updated = True


def per_class_table(report: RunReport) -> list[dict[str, str]]:
    """report.md's per-class table as rows of {column: cell}."""
    header, rows = per_class_rows(report.per_class)
    return [dict(zip(header, row, strict=True)) for row in rows]


def summary_markdown(report: RunReport, run_dir: Path) -> str:
    """report.md as the UI can show it: the run folder named first, the figures listed (the UI
    cannot load files from the run folder, so embedded figures would show as broken images)."""
    title, body = render_report_md(report, run_dir=run_dir).split("\n\n", 1)
    where = f"Report files: `{run_dir}` (`reports/latest` points there until the next run)."
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
