"""What a user sees of the validate stage: `fashionnet run` on own IDX files with bad labels
stops with one line naming anomalies.csv and publishes nothing; the flow emits
`fashionnet.data.drifted` for a drifted split; `fashionnet card` and `fashionnet schema infer`."""

import json

import numpy as np
import pandas as pd
import pytest
from cli_runs import SMALL, copy_project, error_line, run_fashionnet
from synthetic import small_run, write_synthetic_raw
from typer.testing import CliRunner

from fashionnet.core.layout import Layout
from fashionnet.data import idx
from fashionnet.data.catalog import SPLITS
from fashionnet.data.schema import load_schema

TEST_IMAGES, TEST_LABELS = SPLITS["test"]


def published(project) -> tuple:
    layout = Layout(project)
    return layout.latest_link.resolve(), layout.history_csv.read_bytes()


def test_own_idx_files_with_a_label_of_12_stop_fashionnet_run_in_one_line(
    finished_project, cli_env, tmp_path
):
    project = copy_project(finished_project, tmp_path)
    labels_path = tmp_path / "raw" / TEST_LABELS
    labels = idx.read_labels(labels_path).copy()
    labels[[3, 30, 31]] = 12
    idx.write_idx(labels_path, labels)
    before = published(project)

    result = run_fashionnet(
        "--raw-dir", str(tmp_path / "raw"), "--project-dir", str(project), *SMALL, env=cli_env
    )

    message = error_line(result)  # exit 1, one line, no traceback
    anomalies_csv = Layout(project).validation_dir / "anomalies.csv"
    assert message.startswith(f"{anomalies_csv}: 1 data anomaly against the shipped schema")
    assert "test: label_outside_domain 12 (3; expected labels 0..9)" in message
    found = pd.read_csv(anomalies_csv)
    assert found[["split", "anomaly", "count"]].values.tolist() == [
        ["test", "label_outside_domain", 3]
    ]
    assert published(project) == before, "reports/latest and history.csv unchanged"


def test_the_flow_emits_the_drift_event_naming_each_drifted_statistic(
    prefect_harness, tmp_path, monkeypatch
):
    from fashionnet_flows import pipeline

    events = []
    monkeypatch.setattr(pipeline, "emit_event", lambda **event: events.append(event))
    raw = tmp_path / "raw"
    write_synthetic_raw(raw, n_train=2_500, n_test=2_000, seed=6)
    images = idx.read_images(raw / TEST_IMAGES)
    idx.write_idx(raw / TEST_IMAGES, np.ascontiguousarray(255 - images))  # inverted

    summary = pipeline.fashionnet_pipeline(**small_run(raw, tmp_path / "project"))

    [event] = [e for e in events if e["event"] == pipeline.DRIFT_EVENT]
    assert event["resource"] == {"prefect.resource.id": f"fashionnet.run.{summary['run_id']}"}
    payload = event["payload"]
    assert payload["splits"] == ["test"]
    assert payload["summary"] == summary["drifted"][0]
    drifted = {(s["feature"], s["statistic"]) for s in payload["statistics"]}
    assert ("brightness", "jensen_shannon") in drifted
    json.dumps(payload)  # what the webhook template reads


@pytest.fixture(scope="module")
def cli():
    from fashionnet_flows.cli import make_app

    app, runner = make_app(), CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_card_prints_a_splits_card(cli, finished_project):
    result = cli("card", "test", "--project-dir", str(finished_project.project))
    assert result.exit_code == 0, result.output
    assert "Data card of test: 250 images" in result.output
    for words in ("T-shirt/top", "brightness", "box_centre_column", "not a byte / 255"):
        assert words in result.output


def test_card_of_a_split_never_prepared_is_one_line(cli, tmp_path):
    result = cli("card", "test", "--project-dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("fashionnet: error: ") and result.output.count("\n") == 1


def test_schema_infer_writes_a_schema_the_run_accepts(cli, finished_project, tmp_path):
    out = tmp_path / "mine.schema.yaml"
    result = cli("schema", "infer", str(out), "--raw-dir", str(finished_project.raw))
    assert result.exit_code == 0, result.output
    schema = load_schema(out)
    assert schema.labels == tuple(range(10))
    assert str(finished_project.raw) in out.read_text()
