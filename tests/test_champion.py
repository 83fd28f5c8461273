"""The champion and its gate: blessing.json in every run folder, blessed or not; a better model
is promoted, a worse one is not (and alerts, run after run), force_promote promotes and says
so, and a run stopped between the gate and the switch leaves the old champion intact."""

import json
import logging
import os

import pytest
from rich.console import Console
from synthetic import SMALL_OPTIONS, SMALL_TRAIN, write_synthetic_raw

from fashionnet import champion
from fashionnet.core.layout import Layout
from fashionnet.model.store import load_stored
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, run_pipeline
from fashionnet.report import publish
from fashionnet.report.terminal import render_runs

NO_FLOORS = {"champion_min_accuracy": 0.0, "champion_min_class_accuracy": 0.0}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    write_synthetic_raw(folder, n_train=600, n_test=200, seed=3)
    return folder


def run(project, raw, **options):
    context = Context(
        Layout(project),
        RunOptions(
            **{**SMALL_OPTIONS, "raw_dir": str(raw), "project_dir": str(project), **options}
        ),
        TrainConfig(**SMALL_TRAIN),
    )
    return run_pipeline(context)


def blessing_of(outcome) -> dict:
    return json.loads((outcome.run_dir / champion.BLESSING_NAME).read_text())


def champion_key(project) -> str | None:
    link = Layout(project).champion_link
    return link.resolve().name if link.is_symlink() else None


def test_the_first_model_is_blessed_and_a_worse_one_is_not(tmp_path, raw):
    trained = run(tmp_path, raw, **NO_FLOORS)
    first = blessing_of(trained)
    assert first["blessed"] and first["promoted"] and not first["forced"]
    assert first["champion_before"] is None and "the first model" in first["reason"]
    assert champion_key(tmp_path) == trained.model.model_key
    assert "## Champion" in (trained.run_dir / "report.md").read_text()
    assert "becomes the champion" in (trained.run_dir / "report.html").read_text()
    index = (tmp_path / "reports" / "index.html").read_text()
    assert f"{trained.model.model_id} (champion)" in index

    worse = run(tmp_path, raw, model_source="random", **NO_FLOORS)
    verdict = blessing_of(worse)
    assert not verdict["blessed"] and not verdict["promoted"]
    assert verdict["champion_before"]["model_id"] == trained.model.model_id
    assert verdict["champion_before"]["runs"] == [trained.report.run_id]
    [failed] = [check for check in verdict["checks"] if not check["passed"]]
    assert failed["name"] == "not_worse_than_champion"
    comparison = verdict["comparison"]
    assert comparison["images"] == 100 and comparison["difference"] < -0.01
    assert comparison["mcnemar_p_value"] < 0.05
    assert champion_key(tmp_path) == trained.model.model_key, "the champion stays"
    assert "The champion stays" in (worse.run_dir / "report.md").read_text()
    console = Console(width=250, record=True)
    render_runs(Layout(tmp_path).history_csv, console)
    listed = console.export_text()
    assert f"{trained.model.model_id} (champion)" in listed
    assert f"{worse.model.model_id} (champion)" not in listed
    assert worse.regression is not None and worse.regression.previous_run == trained.report.run_id

    # held to the champion, not to the last run: a second regressed run alerts again
    again = run(tmp_path, raw, model_source="random", **NO_FLOORS)
    assert again.regression is not None and again.regression.previous_run == trained.report.run_id


def test_the_floors_refuse_a_model_and_force_promote_promotes_it_anyway(tmp_path, raw):
    floors = {"champion_min_accuracy": 0.8, "champion_min_class_accuracy": 0.4}
    refused = run(tmp_path, raw, model_source="random", **floors)
    verdict = blessing_of(refused)
    assert not verdict["blessed"] and not verdict["promoted"] and champion_key(tmp_path) is None
    assert {c["name"] for c in verdict["checks"] if not c["passed"]} == {
        "validation_accuracy",
        "class_accuracy",
    }
    assert "floor" in verdict["reason"]

    forced = run(tmp_path, raw, model_source="random", force_promote=True, **floors)
    verdict = blessing_of(forced)
    assert not verdict["blessed"] and verdict["promoted"] and verdict["forced"]
    assert "force_promote" in verdict["reason"]
    assert champion_key(tmp_path) == forced.model.model_key

    better = run(tmp_path, raw, **NO_FLOORS)  # a trained model beats the forced random one
    verdict = blessing_of(better)
    assert verdict["blessed"] and verdict["promoted"]
    assert verdict["comparison"]["difference"] > 0
    assert champion_key(tmp_path) == better.model.model_key


def test_a_run_stopped_between_the_gate_and_the_switch_leaves_the_old_champion(tmp_path, raw):
    trained = run(tmp_path, raw, **NO_FLOORS)
    layout = Layout(tmp_path)

    def stopped(report, run_dir):
        assert (run_dir / champion.BLESSING_NAME).is_file()  # the gate has spoken
        raise KeyboardInterrupt

    context = Context(
        layout,
        RunOptions(
            **{**SMALL_OPTIONS, "raw_dir": str(raw), "project_dir": str(tmp_path)},
            model_source="random",
            force_promote=True,
        ),
        TrainConfig(**SMALL_TRAIN),
    )
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(context, before_publish=stopped)
    assert champion_key(tmp_path) == trained.model.model_key
    assert load_stored(layout.models_dir, trained.model.model_key) is not None, "intact"
    assert champion.current_champion(layout).model_id == trained.model.model_id
    assert layout.latest_link.resolve() == trained.run_dir.resolve()


def test_a_run_killed_after_publishing_before_the_switch_is_promoted_by_the_next_run(
    tmp_path, raw, monkeypatch
):
    """`latest` is the commit point: the champion switch a killed run did not reach is made
    when the next run finishes that run's publishing from its journal."""
    trained = run(tmp_path, raw, **NO_FLOORS)
    layout = Layout(tmp_path)

    def killed(layout, blessing):
        raise SystemExit("killed")  # after the swap of `latest`, as a SIGKILL there

    monkeypatch.setattr(champion, "promote", killed)
    with pytest.raises(SystemExit):
        run(tmp_path, raw, model_source="random", force_promote=True, **NO_FLOORS)
    monkeypatch.undo()
    forced = json.loads((layout.latest_link / champion.BLESSING_NAME).read_text())
    assert forced["promoted"] and champion_key(tmp_path) == trained.model.model_key
    publish.finish_interrupted_publishing(layout)
    assert champion_key(tmp_path) == forced["candidate"]["model_key"]


# What stands at models/champion, made by each; what the warning calls it.
NOT_A_LINK_TO_A_MODEL = {
    "a file": lambda link: link.write_text("notes\n"),
    "a folder": os.mkdir,
    "a FIFO (named pipe)": os.mkfifo,
    "a broken symbolic link": lambda link: link.symlink_to("gone"),
    "a symbolic link loop": lambda link: link.symlink_to("champion"),
}


@pytest.mark.timeout(30)  # a FIFO opened would wait for a writer for ever
@pytest.mark.parametrize("kind", NOT_A_LINK_TO_A_MODEL)
def test_what_is_not_a_link_to_a_model_folder_is_moved_aside_and_named(tmp_path, caplog, kind):
    layout = Layout(tmp_path)
    layout.models_dir.mkdir()
    NOT_A_LINK_TO_A_MODEL[kind](layout.champion_link)
    with caplog.at_level(logging.WARNING):
        champion.clear_champion_link(layout)
    [aside] = layout.models_dir.glob("champion.damaged-*")
    assert caplog.messages == [
        f"{layout.champion_link} is {kind}, not a link to a model folder; moved it to {aside}"
    ]
    assert not os.path.lexists(layout.champion_link)
    assert champion.current_champion(layout) is None


def test_a_link_to_a_model_folder_is_left_alone(tmp_path, caplog):
    layout = Layout(tmp_path)
    (layout.models_dir / "model-a").mkdir(parents=True)
    layout.champion_link.symlink_to("model-a")
    champion.clear_champion_link(layout)
    assert os.readlink(layout.champion_link) == "model-a" and caplog.messages == []
