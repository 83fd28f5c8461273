"""`fashionnet prune --keep N`: the oldest run folders go, the newest N and `latest` stay, and so
does every history row; it waits for a run in progress."""

import os
import threading
import time

import pandas as pd
import pytest
from filelock import FileLock
from typer.testing import CliRunner

from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.report import publish
from fashionnet_flows import cli

RUN_IDS = [f"2026112{day}T030000Z-aaaaaa" for day in range(1, 6)]  # oldest first
HISTORY = "a history.csv that prune never touches\n"


@pytest.fixture
def layout(tmp_path) -> Layout:
    """Five run folders, `latest` pointing at the oldest, a history and a build in progress."""
    layout = Layout(tmp_path)
    for run_id in RUN_IDS:
        (layout.runs_dir / run_id).mkdir(parents=True)
        (layout.runs_dir / run_id / "overall.csv").write_text("split\n")
    (layout.runs_dir / f".{RUN_IDS[-1]}0.tmp-x").mkdir()  # a run folder being built
    publish.publish_latest(layout.latest_link, layout.runs_dir / RUN_IDS[0])
    layout.history_csv.write_text(HISTORY)
    return layout


def listing(layout: Layout) -> list[str]:
    return sorted(path.name for path in layout.runs_dir.iterdir())


def prune(layout: Layout, *args: str):
    return CliRunner().invoke(cli.make_app(), ["prune", *args, "--project-dir", str(layout.root)])


def test_prune_keeps_the_newest_and_latest_and_the_history(layout):
    removed = publish.prune_runs(layout, 2, 0)
    assert [path.name for path in removed] == RUN_IDS[1:3]
    assert listing(layout) == sorted([RUN_IDS[0], *RUN_IDS[3:], f".{RUN_IDS[-1]}0.tmp-x"])
    assert layout.history_csv.read_text() == HISTORY
    assert publish.prune_runs(layout, 2, 0) == []


def published(layout: Layout, *run_ids: str) -> None:
    """Run folders published in this order: a row each in the history, latest on the last."""
    overall = pd.DataFrame(
        {"split": ["test"], "samples": [10], "accuracy": [0.5], "model_id": ["m"]}
    )
    for run_id in run_ids:
        (layout.runs_dir / run_id).mkdir(parents=True)
        rows = publish.history_rows(run_id, "2026-11-21T03:00:00+00:00", overall, {})
        with publish.history_appended(layout.history_csv, rows):
            pass
    publish.publish_latest(layout.latest_link, layout.runs_dir / run_ids[-1])


def test_prune_keeps_the_last_published_whatever_the_run_ids_say(tmp_path):
    """A run made while the clock was 10 years ahead, then two normal runs: the future-dated
    run id sorts last, but it was published first."""
    layout = Layout(tmp_path)
    future, second_newest, newest = (
        "20361121T030000Z-ffffff",
        "20261122T030000Z-aaaaaa",
        "20261123T030000Z-bbbbbb",
    )
    published(layout, future, second_newest, newest)
    removed = publish.prune_runs(layout, 2, 0)
    assert removed == [layout.runs_dir / future]
    assert listing(layout) == [second_newest, newest]


def test_folders_the_history_does_not_name_count_as_published_first(tmp_path):
    layout = Layout(tmp_path)
    (layout.runs_dir / "20361121T030000Z-000000").mkdir(parents=True)  # its rows lost
    published(layout, "20261122T030000Z-aaaaaa", "20261123T030000Z-bbbbbb")
    removed = publish.prune_runs(layout, 2, 0)
    assert removed == [layout.runs_dir / "20361121T030000Z-000000"]


def test_a_latest_that_loops_is_no_run_and_prune_goes_on(layout):
    layout.latest_link.unlink()
    os.symlink(layout.latest_link.name, layout.latest_link)  # latest -> latest
    removed = publish.prune_runs(layout, 2, 0)
    assert [path.name for path in removed] == RUN_IDS[:3]


def test_prune_says_what_it_removed(layout):
    result = prune(layout, "--keep", "3")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"removed {layout.runs_dir / RUN_IDS[1]}",
        "removed 1 run folders; kept the 3 last published",
    ]


@pytest.mark.parametrize("keep", ["0", "-2"])
def test_keeping_nothing_is_refused_in_one_line(layout, keep):
    result = prune(layout, "--keep", keep)
    assert result.exit_code == 1
    assert result.output == f"fashionnet: error: --keep {keep}: keep at least 1 run folder\n"
    assert len(listing(layout)) == len(RUN_IDS) + 1
    with pytest.raises(FashionnetError, match="keep at least 1"):
        publish.prune_runs(layout, 0, 0)


def test_prune_waits_for_the_run_in_progress(layout):
    lock = FileLock(layout.lock_file)
    lock.acquire()
    pruning = threading.Thread(target=prune, args=(layout, "--keep", "1"))
    pruning.start()
    time.sleep(1.0)
    assert len(listing(layout)) == len(RUN_IDS) + 1, "nothing removed while a run holds the lock"
    lock.release()
    pruning.join(30)
    assert listing(layout) == sorted([RUN_IDS[0], RUN_IDS[-1], f".{RUN_IDS[-1]}0.tmp-x"])


def test_help_says_the_history_stays():
    result = CliRunner().invoke(cli.make_app(), ["prune", "--help"])
    assert "history.csv keeps every run's rows" in " ".join(result.output.split())
