"""Retention left to run for months: `fashionnet prune` redraws reports/index.html, and the
example timer runs it weekly with the documented number of run folders."""

import re
from pathlib import Path

import pandas as pd
from test_operations_systemd import service_section

from fashionnet.core.layout import Layout
from fashionnet.report import publish
from fashionnet.report.html import REPORT_HTML_NAME
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
