"""report.html: report.md's content as one self-contained page, figures inside.

Rendered from the same `RunReport` as report.md, with report_markdown's rows and sentences, so
the two say the same; the figures are the run folder's PNGs as data URIs, so the file can be
mailed, attached or opened from anywhere (its links to the data files are relative, and work
while it stays in its run folder).
"""

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from fashionnet.core import atomic
from fashionnet.report.data_card import (
    DataReport,
    card_sentences,
    drift_rows,
    duplicate_rows,
    split_rows,
)
from fashionnet.report.html_page import figure, link, page, paragraph, png_data_uri, section, table
from fashionnet.report.markdown import (
    METRICS_LEGEND,
    blessing_lines,
    headline_table,
    overall_rows,
    per_class_rows,
    source_rows,
    temperature_phrase,
    weakest_rows,
)
from fashionnet.report.run_report import EVALUATION_SPLIT, RunReport

REPORT_HTML_NAME = "report.html"


def model_paragraph(report: RunReport) -> str:
    key = report.manifest.get("model", {}).get("model_key")
    stored = f", stored in <code>models/{escape(key)}/</code>" if key else ""
    calibrated = escape(temperature_phrase(report.manifest))
    return f"<p>Model <code>{escape(report.model_id)}</code>{calibrated}{stored}.</p>"


def blessing_html(blessing: Mapping[str, Any] | None) -> str:
    said, rows = blessing_lines(blessing)
    if not said:
        return ""
    parts = [paragraph(" ".join(said).replace("`", ""))]
    return section("Champion", *parts, table(("check", "result", "detail"), rows) if rows else "")


def weakest_html(confusion: np.ndarray | None) -> str:
    if confusion is None:
        return ""
    items = [
        f"<li><strong>{escape(name)}</strong>: {escape(said)}</li>"
        for name, said in weakest_rows(confusion)
    ]
    return section("Weakest test classes", "<ol>" + "".join(items) + "</ol>")


def data_card_html(data: DataReport | None) -> str:
    if data is None:
        return ""
    return section(
        "Data card",
        paragraph(" ".join(card_sentences(data, EVALUATION_SPLIT))),
        table(*split_rows(data.validation)),
        "<h3>Drift from train</h3>",
        table(*drift_rows(data.validation)),
        "<h3>Duplicates</h3>",
        table(*duplicate_rows(data.validation)),
    )


def figures_html(figures: Mapping[str, str], sources: Mapping[str, str]) -> str:
    """The figures (file name -> caption), each shown from `sources[file name]`."""
    shown = [figure(sources[name], caption) for name, caption in figures.items()]
    return section("Figures", *shown) if shown else ""


def model_html(manifest: Mapping[str, Any]) -> str:
    model = manifest.get("model", {})
    parts = [paragraph(f"Origin: {model['origin']}.")] if "origin" in model else []
    if hyperparameters := model.get("hyperparameters", {}):
        parts.append(table(("hyperparameter", "value"), sorted(hyperparameters.items())))
    return section("Model", *parts) if parts else ""


def data_html(manifest: Mapping[str, Any], splits: Sequence[str]) -> str:
    checksums = source_rows(manifest, splits)
    if not checksums:
        return ""
    data = manifest["data"]
    parts = [paragraph(f"From {data['origin']}.")] if "origin" in data else []
    return section("Data", *parts, table(("split", "file", "sha256"), checksums))


def files_html(data_files: Sequence[str]) -> str:
    return section("Files", "<p>" + ", ".join(link(name, name) for name in data_files) + "</p>")


def render_report_html(report: RunReport, figure_sources: Mapping[str, str]) -> str:
    """report.html of `report`; `figure_sources` maps each of `report.figures` to its image URL."""
    body = [
        table(*overall_rows(headline_table(report))),
        paragraph(METRICS_LEGEND),
        model_paragraph(report),
        blessing_html(report.blessing),
        weakest_html(report.confusions.get(EVALUATION_SPLIT)),
        section("Per class", table(*per_class_rows(report.per_class))),
        data_card_html(report.data),
        figures_html(report.figures, figure_sources),
        model_html(report.manifest),
        data_html(report.manifest, list(report.confusions)),
        files_html(report.data_files),
    ]
    return page(f"fashionnet run {report.run_id}", "\n".join(part for part in body if part))


def write_report_html(run_dir: Path, report: RunReport) -> Path:
    """Write `report.html` into a run folder whose figures are drawn; return its path."""
    run_dir = Path(run_dir)
    sources = {name: png_data_uri(run_dir / name) for name in report.figures}
    path = run_dir / REPORT_HTML_NAME
    atomic.write_text(path, render_report_html(report, sources))
    return path
