"""The UI's summary artifact: report.md with the key figures inside and files as paths."""

import base64
import io
import re

import pytest
from PIL import Image
from report_fixtures import make_report

from fashionnet.report.markdown import per_class_section, weakest_section
from fashionnet_flows.artifacts import SUMMARY_FIGURE_WIDTH, SUMMARY_FIGURES, summary_markdown

MD_TARGET = re.compile(r"\]\(([^)]+)\)")
EMBEDDED = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([^)]+)\)")


@pytest.fixture
def run_dir(report_run_dir):
    return report_run_dir


def test_the_key_figures_are_inside_small_and_the_rest_named_by_path(run_dir):
    report = make_report()
    summary = summary_markdown(report, run_dir)
    embedded = EMBEDDED.findall(summary)
    assert [caption for caption, _ in embedded] == [report.figures[n] for n in SUMMARY_FIGURES]
    for _, encoded in embedded:
        data = base64.b64decode(encoded)
        assert len(data) < 40_000
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.width == SUMMARY_FIGURE_WIDTH
    others = [name for name in report.figures if name not in SUMMARY_FIGURES]
    for name in [*others, *report.data_files, "report.html"]:
        assert f"`{run_dir / name}`" in summary, name


def test_no_link_the_ui_could_not_follow_and_report_mds_text_kept(run_dir):
    report = make_report()
    summary = summary_markdown(report, run_dir)
    assert all(target.startswith("data:image/png;base64,") for target in MD_TARGET.findall(summary))
    assert weakest_section(report.confusions["test"]) in summary
    assert per_class_section(report.per_class) in summary
