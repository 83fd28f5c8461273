import re
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import MANIFEST, make_run

from fashionnet import reports
from fashionnet.errors import FashionnetError
from fashionnet.report_markdown import FIGURES, render_report_md, write_report_md

LINK = re.compile(r"\]\(([^)]+)\)")


def links(markdown: str) -> list[str]:
    return LINK.findall(markdown)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run_dir = make_run(tmp_path)
    for name in ("per_class_accuracy.png", "confusion_test.png"):
        (run_dir / name).write_bytes(b"\x89PNG\r\n\x1a\n")  # links only need the file to exist
    return run_dir


def test_links_are_relative_and_only_to_existing_files(run_dir):
    markdown = render_report_md(run_dir)
    targets = links(markdown)
    assert "per_class_accuracy.png" in targets and "confusion_test.png" in targets
    assert "learning_curve.png" not in targets and "misclassified_test.png" not in targets
    for target in targets:
        assert not Path(target).is_absolute() and (run_dir / target).is_file(), target
    assert "![Confusion matrix (test)](confusion_test.png)" in markdown


def test_every_known_figure_is_embedded_when_present(run_dir):
    for name in FIGURES:
        (run_dir / name).write_bytes(b"png")
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", render_report_md(run_dir))
    assert embedded == list(FIGURES)


def test_headline_figures_equal_overall_csv(run_dir):
    markdown = render_report_md(run_dir)
    overall = reports.read_overall(run_dir)
    for row in overall.itertuples():
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {row.split} |"))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert float(cells[1].rstrip("%")) == pytest.approx(100 * row.accuracy, abs=0.005)
        assert int(cells[2].replace(",", "")) == row.correct
        assert int(cells[3].replace(",", "")) == row.samples
    assert "Model `5eed5eed`" in markdown


def test_per_class_table_lists_every_class_with_both_splits(run_dir):
    markdown = render_report_md(run_dir)
    per_class = reports.read_per_class(run_dir)
    header = "| class | train accuracy | test accuracy | test precision | test recall | test f1 |"
    assert header in markdown
    for row in per_class[per_class["split"] == "test"].itertuples():
        line = next(
            line for line in markdown.splitlines() if line.startswith(f"| {row.class_name} |")
        )
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert float(cells[2].rstrip("%")) == pytest.approx(100 * row.accuracy, abs=0.005)
        assert float(cells[5]) == pytest.approx(row.f1, abs=0.0005)


def test_weakest_test_classes_with_their_main_confusion(tmp_path):
    confusion = np.eye(10, dtype=np.int64) * 10
    confusion[6, 6], confusion[6, 0] = 4, 6  # Shirt: 40% right, 6 called T-shirt/top
    confusion[2, 2], confusion[2, 4] = 7, 3  # Pullover: 70% right, 3 called Coat
    confusion[4, 4], confusion[4, 2] = 9, 1  # Coat: 90% right, 1 called Pullover
    run_dir = reports.write_run(
        tmp_path,
        "r1",
        confusions={"train": confusion, "test": confusion},
        model_id="m",
        manifest={},
    )
    markdown = render_report_md(run_dir)
    assert (
        "## Weakest test classes\n\n"
        "1. **Shirt**: 40.00% right; most often taken for T-shirt/top (6 images).\n"
        "2. **Pullover**: 70.00% right; most often taken for Coat (3 images).\n"
        "3. **Coat**: 90.00% right; most often taken for Pullover (1 image)."
    ) in markdown
    assert "## Model" not in markdown and "## Data" not in markdown  # nothing in the manifest


def test_model_and_data_sections_come_from_the_manifest(run_dir):
    markdown = render_report_md(run_dir)
    assert markdown.startswith("# fashionnet run r1\n")
    assert "Origin: trained (models/abc)." in markdown
    assert "| hidden_size | `50` |" in markdown and "| epochs | `3` |" in markdown
    for split, sources in MANIFEST["data"]["sha256"].items():
        for name, sha256 in sources.items():
            assert f"| {split} | `{name}` | `{sha256}` |" in markdown


def test_write_report_md_inside_write_run(tmp_path):
    run_dir = make_run(tmp_path, finish=write_report_md)
    markdown = (run_dir / "report.md").read_text()
    assert markdown == render_report_md(run_dir)
    assert all((run_dir / target).is_file() for target in links(markdown))
    assert "[learning_curve.csv](learning_curve.csv)" in markdown


def test_missing_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(FashionnetError, match="overall.csv is missing"):
        render_report_md(tmp_path / "nope")
