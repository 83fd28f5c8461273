"""Retention left to run for months: a daily run that repeats the last one adds a short record,
not a copy; `fashionnet prune` redraws reports/index.html, and the example timer runs it weekly
with the documented number of run folders."""

import json
import re
import secrets
from pathlib import Path

import pandas as pd
from synthetic import SMALL_OPTIONS, SMALL_TRAIN, write_synthetic_raw
from test_operations_systemd import service_section

from fashionnet.core.layout import Layout
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, run_pipeline
from fashionnet.report import publish
from fashionnet.report.html import REPORT_HTML_NAME
from fashionnet.report.run_report import RunOrigin
from fashionnet.report.trend import INDEX_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_IDS = [f"2026112{day}T030000Z-aaaaaa" for day in range(1, 6)]  # oldest first


def linked_runs(layout: Layout) -> set[str]:
    index = (layout.reports_dir / INDEX_NAME).read_text()
    return set(re.findall(r'href="runs/([^/"]+)/' + REPORT_HTML_NAME, index))


def test_prune_redraws_the_index_without_links_to_the_removed_folders(tmp_path):
    layout = Layout(tmp_path)
    overall = pd.DataFrame(
        {"split": ["test"], "samples": [100], "accuracy": [0.9], "model_id": ["m"]}
    )
    for day, run_id in enumerate(RUN_IDS, start=1):
        folder = layout.runs_dir / run_id
        folder.mkdir(parents=True)
        (folder / REPORT_HTML_NAME).write_text("<html></html>")
        rows = publish.history_rows(run_id, f"2026-11-2{day}T03:00:00+00:00", overall, {})
        with publish.history_appended(layout.history_csv, rows):
            publish.publish_latest(layout.latest_link, folder)
    publish.write_trend_of_history(layout)
    assert linked_runs(layout) == set(RUN_IDS)

    removed = publish.prune_runs(layout, 2, 0)

    assert [path.name for path in removed] == RUN_IDS[:3]
    assert linked_runs(layout) == set(RUN_IDS[3:])
    assert all(run_id in (layout.reports_dir / INDEX_NAME).read_text() for run_id in RUN_IDS)


def test_the_prune_timer_runs_prune_weekly_keeping_the_documented_number():
    units = REPO_ROOT / "deploy" / "systemd"
    command = service_section(units / "fashionnet-prune.service")["ExecStart"]
    keep = int(re.search(r"prune --keep (\d+)", command).group(1))
    timer = (units / "fashionnet-prune.timer").read_text()
    assert "OnCalendar=weekly" in timer and "Persistent=true" in timer
    operations = (REPO_ROOT / "docs" / "OPERATIONS.md").read_text()
    assert f"fashionnet prune --keep {keep}" in operations


def scheduled_run(raw: Path, project: Path, code_version: str, trigger: str = "schedule"):
    """A daily run of the deployment, through the library (the flow adds only the origin)."""
    options = RunOptions(**{**SMALL_OPTIONS, "raw_dir": str(raw), "project_dir": str(project)})
    origin = RunOrigin(
        flow_run_id=f"flow-run-{secrets.token_hex(4)}",
        deployment="fashionnet/daily",
        trigger=trigger,
        code_version=code_version,
    )
    return run_pipeline(Context.create(options, TrainConfig(**SMALL_TRAIN)), origin=origin)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_daily_runs_on_unchanged_data_model_and_code_add_short_records_not_copies(tmp_path):
    raw, project = tmp_path / "raw", tmp_path / "project"
    raw.mkdir()
    write_synthetic_raw(raw, n_train=300, n_test=100, seed=4)
    layout = Layout(project)

    first = scheduled_run(raw, project, "0123456789ab")
    repeats = [scheduled_run(raw, project, "0123456789ab") for _ in range(2)]

    assert layout.latest_link.resolve() == first.run_dir.resolve(), "latest stays on the report"
    for repeat in repeats:
        assert [path.name for path in repeat.run_dir.iterdir()] == ["manifest.json"]
        assert folder_bytes(repeat.run_dir) < folder_bytes(first.run_dir) / 10
        manifest = json.loads((repeat.run_dir / "manifest.json").read_text())
        assert manifest["unchanged_since"] == first.report.run_id
        assert manifest["prefect"]["code_version"] == "0123456789ab"
    history = publish.read_history(layout.history_csv)
    assert list(history.groupby("run_id", sort=False)["unchanged_since"].first()) == [
        "",
        first.report.run_id,
        first.report.run_id,
    ]
    assert set(history["deployment"]) == {"fashionnet/daily"}
    assert set(history["code_version"]) == {"0123456789ab"}

    # Another code version, or a run started by hand: a full report again.
    changed = scheduled_run(raw, project, "ba9876543210")
    by_hand = scheduled_run(raw, project, "ba9876543210", trigger="deployment-manual")
    for run in (changed, by_hand):
        assert (run.run_dir / REPORT_HTML_NAME).exists()
    assert layout.latest_link.resolve() == by_hand.run_dir.resolve()
