"""The whole pipeline under Prefect, on a small synthetic dataset and on the real one."""

import json
import os

import pandas as pd
import pytest
from rich.console import Console
from synthetic import small_run, write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.model.optimizers import OPTIMIZERS, Momentum
from fashionnet.report.columns import HISTORY_COLUMNS
from fashionnet.report.terminal import render_runs


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    write_synthetic_raw(folder, n_train=600, n_test=250, seed=1)
    return folder


def run_pipeline(project, raw, **options):
    from fashionnet_flows.pipeline import fashionnet_pipeline

    return fashionnet_pipeline(**small_run(raw, project, **options))


def read_csvs(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.csv"))}


def test_pipeline_writes_reports_and_skips_up_to_date_stages(
    prefect_harness, synthetic_raw, tmp_path
):
    layout = Layout(tmp_path)
    first = run_pipeline(tmp_path, synthetic_raw)

    run_dir = layout.runs_dir / first["run_id"]
    assert layout.latest_link.resolve() == run_dir.resolve()
    overall = pd.read_csv(run_dir / "overall.csv")
    assert list(overall["split"]) == ["train", "validation", "test"]
    assert list(overall["samples"]) == [500, 100, 250]  # 100 training images held out
    assert overall["accuracy"].min() > 0.5, "a trained net learns the synthetic classes"
    assert set(overall["model_id"]) == {first["model_id"]}

    per_class = pd.read_csv(run_dir / "per_class.csv")
    assert len(per_class) == 30
    assert list(per_class["class_name"][:10]) == list(CLASS_NAMES)
    for split, samples in (("train", 500), ("validation", 100), ("test", 250)):
        confusion = pd.read_csv(run_dir / f"confusion_{split}.csv", index_col=0)
        assert confusion.shape == (10, 10)
        assert list(confusion.columns) == list(CLASS_NAMES)
        assert confusion.to_numpy().sum() == samples
        correct = overall.set_index("split").loc[split, "correct"]
        assert confusion.to_numpy().trace() == correct

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["model_id"] == first["model_id"]
    assert set(manifest["data"]["sources"]) == {"train", "validation", "test"}
    assert manifest["data"]["split_rule"]["validation_size"] == 100
    # models/ holds the model's folder and the champion link to it, in no set order.
    stored = [path.name for path in layout.models_dir.iterdir() if path != layout.champion_link]
    assert stored == [manifest["model"]["model_key"]]
    predictions = pd.read_parquet(layout.predictions("test"))
    assert len(predictions) == 250
    assert (run_dir / "learning_curve.csv").is_file()

    outputs = [layout.parquet("train"), layout.predictions("test")]
    weights = list(layout.models_dir.glob("*/weights.npz"))
    mtimes = [os.stat(p).st_mtime_ns for p in outputs + weights]

    second = run_pipeline(tmp_path, synthetic_raw)

    assert second["run_id"] != first["run_id"]
    assert [os.stat(p).st_mtime_ns for p in outputs + weights] == mtimes, (
        "up-to-date stages skipped"
    )
    assert read_csvs(layout.runs_dir / second["run_id"]) == read_csvs(run_dir)
    assert layout.latest_link.resolve() == (layout.runs_dir / second["run_id"]).resolve()
    history = pd.read_csv(layout.history_csv)
    assert list(history["run_id"]) == [first["run_id"]] * 3 + [second["run_id"]] * 3
    assert list(history.columns) == HISTORY_COLUMNS


def test_random_init_is_near_chance(prefect_harness, synthetic_raw, tmp_path):
    summary = run_pipeline(tmp_path, synthetic_raw, model_source="random")
    assert summary["accuracy"]["test"] < 0.3
    manifest = json.loads((tmp_path / "reports" / "latest" / "manifest.json").read_text())
    assert "untrained" in manifest["model"]["origin"]


def test_given_weights_file_is_used(prefect_harness, synthetic_raw, tmp_path):
    trained = run_pipeline(tmp_path, synthetic_raw)
    weights = next((tmp_path / "models").glob("*/weights.npz"))
    again = run_pipeline(
        tmp_path / "other", synthetic_raw, model_source="file", weights_file=str(weights)
    )
    assert again["model_id"] == trained["model_id"]
    assert again["accuracy"] == trained["accuracy"]


def test_a_newly_registered_optimizer_is_accepted_by_the_flow(
    prefect_harness, synthetic_raw, tmp_path, monkeypatch
):
    monkeypatch.setitem(OPTIMIZERS, "nesterov", Momentum)
    summary = run_pipeline(tmp_path, synthetic_raw, train={"optimizer": "nesterov"})
    manifest = json.loads((tmp_path / "reports" / "latest" / "manifest.json").read_text())
    assert manifest["model"]["hyperparameters"]["optimizer"] == "nesterov"
    assert summary["accuracy"]["test"] > 0.5


def test_real_data_default_run(real_default_run):
    project, summary = real_default_run

    run_dir = project / "reports" / "latest"
    overall = pd.read_csv(run_dir / "overall.csv").set_index("split")
    assert overall.loc["test", "accuracy"] >= 0.88
    assert summary["accuracy"]["test"] == pytest.approx(overall.loc["test", "accuracy"], abs=1e-6)
    assert len(pd.read_csv(run_dir / "per_class.csv")) == 30
    for split, samples in (("train", 50_000), ("validation", 10_000), ("test", 10_000)):
        confusion = pd.read_csv(run_dir / f"confusion_{split}.csv", index_col=0)
        assert confusion.to_numpy().sum() == samples


def test_a_worse_run_on_the_same_data_publishes_and_emits_a_regression_event(
    prefect_harness, synthetic_raw, tmp_path, monkeypatch
):
    import fashionnet_flows.pipeline

    emitted, emit_event = [], fashionnet_flows.pipeline.emit_event

    def recording_emit_event(**event):
        """Prefect's emit_event, keeping what it sent."""
        emitted.append(emit_event(**event))
        return emitted[-1]

    monkeypatch.setattr(fashionnet_flows.pipeline, "emit_event", recording_emit_event)
    layout = Layout(tmp_path)
    trained = run_pipeline(tmp_path, synthetic_raw)
    assert trained["regression"] is None and emitted == []

    untrained = run_pipeline(tmp_path, synthetic_raw, model_source="random")

    assert layout.latest_link.resolve().name == untrained["run_id"], "published all the same"
    expected = {
        "test_accuracy": pytest.approx(untrained["accuracy"]["test"]),
        "previous_test_accuracy": pytest.approx(trained["accuracy"]["test"], abs=1e-6),
        "tolerance": 0.01,
        "previous_run": trained["run_id"],
    }
    assert untrained["regression"] == expected
    [event] = emitted
    assert event.event == "fashionnet.accuracy.regressed"
    assert event.resource.id == f"fashionnet.run.{untrained['run_id']}"
    assert event.payload == expected


def test_the_manifest_names_the_flow_run_and_the_changed_parameters(
    prefect_harness, synthetic_raw, tmp_path
):
    summary = run_pipeline(tmp_path, synthetic_raw, lock_timeout=7.0)
    run_dir = Layout(tmp_path).runs_dir / summary["run_id"]
    origin = json.loads((run_dir / "manifest.json").read_text())["prefect"]
    assert set(origin) == {
        "flow_run_id",
        "flow_run_name",
        "deployment",
        "trigger",
        "overrides",
        "code_version",
    }
    assert origin["trigger"] == "cli" and origin["deployment"] is None
    assert origin["overrides"]["lock_timeout"] == 7.0 and origin["overrides"]["epochs"] == 3
    assert "chunk_size" in origin["overrides"] and "seed" not in origin["overrides"]
    history = pd.read_csv(Layout(tmp_path).history_csv, dtype=str)
    assert set(history["flow_run_id"]) == {origin["flow_run_id"]}
    assert set(history["trigger"]) == {"cli"}

    console = Console(record=True, width=400)
    render_runs(Layout(tmp_path).history_csv, console)
    [row] = [line for line in console.export_text().splitlines() if summary["run_id"] in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert "cli" in cells and "lock_timeout=7.0" in cells[-2].split()


def test_a_run_past_its_time_limit_ends_timed_out_at_its_next_step(
    prefect_harness, synthetic_raw, tmp_path, monkeypatch
):
    """FASHIONNET_FLOW_TIMEOUT_SECONDS is read when the run starts, and kept at its steps."""
    from fashionnet_flows.pipeline import fashionnet_pipeline

    monkeypatch.setenv("FASHIONNET_FLOW_TIMEOUT_SECONDS", "0.001")
    state = fashionnet_pipeline(**small_run(synthetic_raw, tmp_path), return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    assert "the run took longer than its time limit of 0.001 s" in state.message
    assert not os.path.lexists(Layout(tmp_path).latest_link), "nothing published"
