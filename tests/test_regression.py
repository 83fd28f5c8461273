"""An accuracy regression: a run's test accuracy more than the tolerance below the champion's
last run on the same data (history.csv). A pure comparison, tested without Prefect; the flow's event
is tested in test_flow.py."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fashionnet.core.layout import Layout
from fashionnet.report import publish
from fashionnet.report.columns import HISTORY_COLUMNS
from fashionnet.report.metrics import overall_table
from fashionnet.report.run_report import RunReport

FINGERPRINTS = {"train": "1" * 16, "test": "2" * 16}


def history_of(*runs: tuple) -> pd.DataFrame:
    """history.csv's table of (run id, test fingerprint, test accuracy[, model id]) runs, in
    that order (model "m" unless given)."""
    rows = [
        (
            1,
            "t",
            run_id,
            split,
            100,
            accuracy,
            model_id[0] if model_id else "m",
            fingerprint,
            "",
            "cli",
            "",
            "",
            "",
        )
        for run_id, fingerprint, accuracy, *model_id in runs
        for split in ("train", "test")
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def test_a_drop_beyond_the_tolerance_on_the_same_data_is_a_regression():
    history = history_of(("r1", "d1", 0.80), ("r2", "d1", 0.90), ("r3", "d2", 0.99))
    regression = publish.accuracy_regression(history, "r4", "d1", 0.88, 0.01, "m")
    assert regression == publish.Regression(
        test_accuracy=0.88, previous_test_accuracy=0.90, tolerance=0.01, previous_run="r2"
    )


@pytest.mark.parametrize(
    ("fingerprint", "accuracy", "tolerance"),
    [
        ("d1", 0.895, 0.01),  # within the tolerance
        ("d1", 0.95, 0.01),  # better
        ("d1", 0.80, 0.2),  # a wider tolerance
        ("d9", 0.10, 0.01),  # other data: nothing to compare with
        ("", 0.10, 0.01),  # no fingerprint recorded
    ],
)
def test_no_regression(fingerprint, accuracy, tolerance):
    history = history_of(("r1", "d1", 0.90), ("r2", "", 0.99))
    assert publish.accuracy_regression(history, "r3", fingerprint, accuracy, tolerance, "m") is None


def test_a_run_is_not_compared_with_itself():
    history = history_of(("r1", "d1", 0.90), ("r2", "d1", 0.50))
    assert publish.accuracy_regression(history, "r2", "d1", 0.50, 0.01, "m").previous_run == "r1"
    only = history_of(("r1", "d1", 0.9))
    assert publish.accuracy_regression(only, "r1", "d1", 0.5, 0, "m") is None


def test_only_the_champions_runs_are_the_baseline():
    history = history_of(("r1", "d1", 0.90, "champ"), ("r2", "d1", 0.50, "worse"))
    regression = publish.accuracy_regression(history, "r3", "d1", 0.50, 0.01, "champ")
    assert regression.previous_run == "r1", "a regressed run never becomes the baseline"
    assert publish.accuracy_regression(history, "r3", "d1", 0.50, 0.01, "none") is None


def test_regression_of_a_published_report_reads_the_history(tmp_path):
    layout = Layout(tmp_path)
    good = np.eye(10, dtype=np.int64) * 90 + 1  # 90% right
    confusions = {
        "r1": {"train": good, "test": good},
        "r2": {"train": good, "test": good + np.eye(10, dtype=np.int64) * -10 + 1},  # worse
    }
    blessings = {"r1": {"champion_before": None}, "r2": {"champion_before": {"model_id": "m"}}}
    for run_id, matrices in confusions.items():
        report = RunReport(
            run_id=run_id,
            model_id="m",
            confusions=matrices,
            manifest={"data": {"fingerprints": FINGERPRINTS}},
        )
        publish.publish_run(layout, publish.write_run(layout.runs_dir, report), report)
    r2 = dataclasses.replace(RunReport.read(layout.runs_dir / "r2"), blessing=blessings["r2"])
    regression = publish.regression_of(layout, r2, 0.01)
    accuracy = overall_table(confusions["r2"], "m").set_index("split").loc["test", "accuracy"]
    assert regression.previous_run == "r1" and regression.test_accuracy == pytest.approx(accuracy)
    assert regression.previous_test_accuracy > accuracy + 0.01
    r1 = dataclasses.replace(RunReport.read(layout.runs_dir / "r1"), blessing=blessings["r1"])
    assert publish.regression_of(layout, r1, 0.01) is None  # the first model: no champion
