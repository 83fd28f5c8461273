"""report.html: what report.md says, on one page that needs nothing but itself."""

import base64
import dataclasses
import html
import re
import shutil

import pytest
from report_fixtures import EVERY_FIGURE, MANIFEST, make_report

from fashionnet.report.html import render_report_html, write_report_html
from fashionnet.report.markdown import METRICS_LEGEND, overall_rows, per_class_rows

IMAGE = re.compile(r'<img src="([^"]*)" alt="([^"]*)">')
HREF = re.compile(r'href="([^"]*)"')
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)]+)\)")
CELL = re.compile(r"<td>(.*?)</td>")


@pytest.fixture(scope="module")
def run_dir(report_run_dir, tmp_path_factory):
    run_dir = shutil.copytree(report_run_dir, tmp_path_factory.mktemp("run") / "r1")
    (run_dir / "report.html").unlink()
    write_report_html(run_dir, make_report())
    return run_dir


def test_every_figure_is_the_run_folders_png_inside_the_page(run_dir):
    images = IMAGE.findall((run_dir / "report.html").read_text())
    assert [caption for _, caption in images] == list(EVERY_FIGURE.values())
    for (src, _), name in zip(images, EVERY_FIGURE, strict=True):
        prefix, encoded = src.split(",", 1)
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(encoded) == (run_dir / name).read_bytes(), name


def test_the_page_has_report_mds_tables_and_links(run_dir):
    report = make_report()
    page = (run_dir / "report.html").read_text()
    cells = [html.unescape(cell) for cell in CELL.findall(page)]
    for rows in (overall_rows(report.overall)[1], per_class_rows(report.per_class)[1]):
        for row in rows:
            index = cells.index(row[0])
            assert cells[index : index + len(row)] == row
    for sha256 in ("a" * 64, "d" * 64):
        assert sha256 in cells
    assert "<li><strong>Sneaker</strong>: 68.75% right;" in page  # the weakest test class
    assert MANIFEST["model"]["origin"] in page
    assert html.escape(METRICS_LEGEND) in page
    assert HREF.findall(page) == MD_LINK.findall((run_dir / "report.md").read_text())


def test_the_page_is_self_contained_phone_ready_and_escapes_text():
    hostile = "<script>alert('x')</script> & \"quoted\""
    manifest = {**MANIFEST, "model": {**MANIFEST["model"], "origin": hostile}}
    report = dataclasses.replace(make_report(), run_id=hostile, manifest=manifest)
    page = render_report_html(report, dict.fromkeys(report.figures, "data:image/png;base64,"))
    assert "<script" not in page
    assert html.escape(hostile) in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "default-src 'none'" in page  # the browser itself refuses anything from elsewhere
    assert '<div class="scroll"><table>' in page and ".scroll { overflow-x: auto; }" in page
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert all(":" not in href and not href.startswith("/") for href in HREF.findall(page))
