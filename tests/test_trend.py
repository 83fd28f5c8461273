"""reports/history.png and reports/index.html: every run, newest first, and the trend."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from fashionnet.core.layout import Layout
from fashionnet.report.columns import HISTORY_COLUMNS
from fashionnet.report.trend import runs_table, splits_of, write_trend

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# run id, finished at, model id, train and test accuracy (None: the run had no such split)
RUNS = [
    ("20261126T030000Z-aaaaaa", "2026-11-26T03:00:05+00:00", "m1", 0.81, 0.80),
    ("20261127T030000Z-bbbbbb", "2026-11-27T03:00:04+00:00", "m1", 0.82, 0.81),
    ("20261127T101200Z-cccccc", "2026-11-27T10:12:09+00:00", "m2", 0.88, None),
    ("20261128T030000Z-dddddd", "2026-11-28T03:00:06+00:00", "m2", 0.89, 0.87),
    ("20261129T030000Z-eeeeee", "2026-11-29T03:00:02+00:00", "m1", 0.83, 0.82),
]


def history_of(runs) -> pd.DataFrame:
    """history.csv's rows of `runs`, shuffled: the order of the file must not matter."""
    rows = [
        (1, finished, run_id, split, 100, accuracy, model, "f" * 16, "", "schedule", "", "", "")
        for run_id, finished, model, *accuracies in runs
        for split, accuracy in zip(("train", "test"), accuracies, strict=True)
        if accuracy is not None
    ]
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return history.sample(frac=1, random_state=0).sort_values("split", ascending=False)


def test_one_row_per_run_oldest_first_with_model_changes():
    history = history_of(RUNS)
    runs = runs_table(history)
    assert splits_of(history) == ["train", "test"]
    assert runs["run_id"].tolist() == [run[0] for run in RUNS]
    assert runs["model_changed"].tolist() == [False, False, True, False, True]
    assert runs["train"].tolist() == [run[3] for run in RUNS]
    assert np.isnan(runs["test"].iloc[2])
    assert str(runs["finished_at"].iloc[0]) == "2026-11-26 03:00:05"


@pytest.fixture
def layout(tmp_path) -> Layout:
    """A project whose runs have a report.html, except the first (published before it existed)."""
    layout = Layout(tmp_path)
    for run_id, *_ in RUNS[1:]:
        (layout.runs_dir / run_id).mkdir(parents=True)
        (layout.runs_dir / run_id / "report.html").write_text("<!DOCTYPE html>")
    return layout


def test_index_lists_every_run_newest_first_linked_to_its_report(layout):
    trend, index = write_trend(layout, history_of(RUNS))
    assert (trend, index) == (layout.reports_dir / "history.png", layout.reports_dir / "index.html")
    assert sorted(path.name for path in layout.reports_dir.iterdir()) == [
        "history.png",
        "index.html",
        "runs",
    ]  # and no temporary left behind
    page = index.read_text()
    rows = re.findall(r"<tr><td>(.*?)</td>", page)
    newest_first = [run[0] for run in reversed(RUNS)]
    linked = [f'<a href="runs/{run_id}/report.html">{run_id}</a>' for run_id in newest_first[:-1]]
    assert rows == [*linked, newest_first[-1]]
    assert "<td>m2 (changed)</td>" in page and "<td>m1 (changed)</td>" in page
    assert "<td>88.00%</td><td></td></tr>" in page  # the run without a test split
    [src] = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(src) == trend.read_bytes()
    assert trend.read_bytes().startswith(PNG_SIGNATURE)


def test_a_single_run_has_a_trend_too(layout):
    trend, index = write_trend(layout, history_of(RUNS[:1]))
    assert trend.read_bytes().startswith(PNG_SIGNATURE)
    assert "Every published run, newest first (1)." in index.read_text()
