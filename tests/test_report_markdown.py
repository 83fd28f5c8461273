import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import EVERY_FIGURE, MANIFEST, make_report

from fashionnet.report.markdown import METRICS_LEGEND, render_report_md
from fashionnet.report.run_report import RunReport

LINK = re.compile(r"\]\(([^)]+)\)")
EMBEDDED = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def links(markdown: str) -> list[str]:
    return LINK.findall(markdown)


@pytest.fixture
def run_dir(report_run_dir):
    return report_run_dir


def test_report_md_links_are_relative_and_every_target_is_in_the_run_folder(run_dir):
    markdown = (run_dir / "report.md").read_text()
    assert markdown == render_report_md(make_report())
    for target in links(markdown):
        assert not Path(target).is_absolute() and (run_dir / target).is_file(), target
    assert "[learning_curve.csv](learning_curve.csv)" in markdown
    assert "![Confusion matrix (test)](confusion_test.png)" in markdown


def test_every_figure_is_embedded_in_order_when_the_report_has_its_data():
    assert EMBEDDED.findall(render_report_md(make_report())) == list(EVERY_FIGURE)
    sparse = render_report_md(make_report(with_curve=False, with_galleries=False))
    assert EMBEDDED.findall(sparse) == [
        "per_class_accuracy.png",
        "confusion_train.png",
        "confusion_test.png",
        "reliability.png",
    ]
    assert "learning_curve.csv" not in sparse


def test_figures_are_listed_as_files_for_viewers_outside_the_run_folder(tmp_path):
    markdown = render_report_md(make_report(), run_dir=tmp_path)
    assert not EMBEDDED.findall(markdown)
    assert f"In the run folder `{tmp_path}`:" in markdown
    for name, caption in EVERY_FIGURE.items():
        assert f"- `{name}`: {caption}" in markdown


def test_headline_figures_equal_overall_csv():
    report = make_report()
    markdown = render_report_md(report)
    for row in report.overall.itertuples():
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {row.split} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert float(cells[1].rstrip("%")) == pytest.approx(100 * row.accuracy, abs=0.005)
        assert int(cells[2].replace(",", "")) == row.correct
        assert int(cells[3].replace(",", "")) == row.samples
        assert cells[4] == f"[{row.ci_low:.2%}, {row.ci_high:.2%}]"
        assert float(cells[5].rstrip("%")) == pytest.approx(100 * row.top2_accuracy, abs=0.005)
        assert float(cells[6]) == pytest.approx(row.log_loss, abs=0.00005)
        assert float(cells[7]) == pytest.approx(row.ece, abs=0.00005)
    header = (
        "| split | accuracy | correct | images | 95% interval | top-2 accuracy | log loss | ECE |"
    )
    assert header in markdown
    assert METRICS_LEGEND in markdown and "Wilson" in METRICS_LEGEND
    assert "Model `5eed5eed`, stored in `models/abc/`." in markdown


def test_metrics_a_run_folder_did_not_record_show_as_unknown():
    report = dataclasses.replace(make_report(), probability_metrics={})
    line = next(
        line for line in render_report_md(report).splitlines() if line.startswith("| test |")
    )
    assert line.endswith("| - | - | - |")


def test_per_class_table_lists_every_class_with_both_splits():
    report = make_report()
    markdown = render_report_md(report)
    header = (
        "| class | train accuracy | test accuracy | test precision | test recall | test f1 "
        "| test 95% interval |"
    )
    assert header in markdown
    per_class = report.per_class
    for row in per_class[per_class["split"] == "test"].itertuples():
        line = next(
            line for line in markdown.splitlines() if line.startswith(f"| {row.class_name} |")
        )
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert float(cells[2].rstrip("%")) == pytest.approx(100 * row.accuracy, abs=0.005)
        assert float(cells[5]) == pytest.approx(row.f1, abs=0.0005)
        assert cells[6] == f"[{row.ci_low:.2%}, {row.ci_high:.2%}]"


def test_weakest_test_classes_with_their_main_confusion():
    confusion = np.eye(10, dtype=np.int64) * 10
    confusion[6, 6], confusion[6, 0] = 4, 6  # Shirt: 40% right, 6 called T-shirt/top
    confusion[2, 2], confusion[2, 4] = 7, 3  # Pullover: 70% right, 3 called Coat
    confusion[4, 4], confusion[4, 2] = 9, 1  # Coat: 90% right, 1 called Pullover
    report = RunReport("r1", "m", {"train": confusion, "test": confusion}, manifest={})
    markdown = render_report_md(report)
    assert (
        "## Weakest test classes\n\n"
        "1. **Shirt**: 40.00% right; most often taken for T-shirt/top (6 images).\n"
        "2. **Pullover**: 70.00% right; most often taken for Coat (3 images).\n"
        "3. **Coat**: 90.00% right; most often taken for Pullover (1 image)."
    ) in markdown
    assert "## Model" not in markdown and "## Data" not in markdown  # nothing in the manifest
    assert "Model `m`." in markdown  # no model key: a user's weights file


def test_model_and_data_sections_come_from_the_manifest():
    markdown = render_report_md(make_report())
    assert markdown.startswith("# fashionnet run r1\n")
    assert "Origin: trained (models/abc)." in markdown
    assert "| hidden_size | `50` |" in markdown and "| epochs | `3` |" in markdown
    for split, sources in MANIFEST["data"]["sources"].items():
        for name, sha256 in sources.items():
            assert f"| {split} | `{name}` | `{sha256}` |" in markdown


def test_a_report_read_back_from_its_folder_renders_the_same_tables(run_dir):
    original = make_report()
    read = RunReport.read(run_dir)
    # the galleries and the reliability bins live only in their PNGs (and the predictions
    # files), so their figures drop out of a re-render; every number of the tables stays
    expected = dataclasses.replace(original, misclassified=None, samples=None, calibration=None)
    assert render_report_md(read) == render_report_md(expected)
    assert set(read.probability_metrics) == {"train", "test"}
