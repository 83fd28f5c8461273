"""The validate stage in a run: the card in the run folder and the report, cards reused when
current, anomalies that stop the run before training with nothing published, drift that warns
or stops, and the test accuracy without the test images copied from train."""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from synthetic import SMALL_OPTIONS, SMALL_TRAIN, write_synthetic_raw

from fashionnet.core import formats, integrity
from fashionnet.core.formats import NewerFormat
from fashionnet.core.layout import Layout
from fashionnet.data import idx
from fashionnet.data.catalog import SPLITS
from fashionnet.data.validate import (
    CSV_NAMES,
    DataAnomalies,
    DataDrifted,
    card_metadata,
    plan_cards,
    read_card,
    write_card,
)
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, fetch_and_prepare, run_pipeline
from fashionnet.predict import read_predictions

TRAIN_IMAGES, TRAIN_LABELS = SPLITS["train"]
TEST_IMAGES, TEST_LABELS = SPLITS["test"]


def context(raw, project, **options) -> Context:
    merged = {**SMALL_OPTIONS, "raw_dir": str(raw), **options}
    return Context(Layout(project), RunOptions(**merged), TrainConfig(**SMALL_TRAIN))


def rewrite(path, change) -> None:
    """Rewrite an IDX file with `change(array)` of its content."""
    read = idx.read_labels if "labels" in path.name else idx.read_images
    idx.write_idx(path, np.ascontiguousarray(change(read(path).copy())))


# Test images that are copies of raw training images (rows 0, 20, ..., 480 of the 600).
COPIED_ROWS = np.arange(0, 250, 10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small library run on synthetic data whose test split has 25 copies of raw training
    images; its outcome."""
    root = tmp_path_factory.mktemp("finished")
    raw = root / "raw"
    write_synthetic_raw(raw, n_train=600, n_test=250, seed=1)
    train_images, train_labels = (
        idx.read_images(raw / TRAIN_IMAGES),
        idx.read_labels(raw / TRAIN_LABELS),
    )

    def copied(values, of):
        values[COPIED_ROWS] = of[COPIED_ROWS * 2]
        return values

    rewrite(raw / TEST_IMAGES, lambda images: copied(images, train_images))
    rewrite(raw / TEST_LABELS, lambda labels: copied(labels, train_labels))
    return root, run_pipeline(context(raw, root / "project"))


def test_the_run_folder_and_the_report_hold_the_data_card(finished):
    root, outcome = finished
    layout = Layout(root / "project")
    for name in CSV_NAMES:
        assert (outcome.run_dir / name).read_bytes() == (layout.validation_dir / name).read_bytes()
        assert integrity.verified(layout.validation_dir / name)
    card = pd.read_csv(outcome.run_dir / "card.csv")
    images = card[card["statistic"] == "images"].set_index("split")["value"]
    assert images.to_dict() == {"train": 500, "validation": 100, "test": 250}
    drift = pd.read_csv(outcome.run_dir / "drift.csv")
    assert set(drift["split"]) == {"validation", "test"}
    assert drift["threshold"].notna().all() and drift["value"].notna().all()
    assert set(drift["verdict"]) == {"no verdict"}, "a few hundred images get no verdict"
    assert pd.read_csv(outcome.run_dir / "anomalies.csv").empty
    for figure in ("class_balance.png", "properties.png", "class_means.png"):
        assert (outcome.run_dir / figure).is_file()
    report_md = (outcome.run_dir / "report.md").read_text()
    assert "## Data card" in report_md and "### Drift from train" in report_md
    assert "| brightness | jensen_shannon | above 0.1 |" in report_md
    assert "Data card" in (outcome.run_dir / "report.html").read_text()
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["data"]["validation"]["anomalies"] == 0
    assert manifest["data"]["validation"]["images"]["test"] == 250
    assert "validate" in manifest["stage_seconds"]


def test_current_cards_are_reused_and_a_damaged_one_is_counted_again(finished):
    root, _ = finished
    ctx = context(root / "raw", root / "project")
    _, splits = fetch_and_prepare(ctx)
    plan = plan_cards(splits, ctx.layout, ctx.options.chunk_size)
    assert plan.jobs == [] and list(plan.current) == ["train", "validation", "test"]
    card = ctx.layout.card("test")
    card.write_bytes(card.read_bytes()[:-10] + b"0123456789")
    plan = plan_cards(splits, ctx.layout, ctx.options.chunk_size)
    assert list(plan.pending) == ["test"] and len(plan.jobs) == 2  # 250 rows, 100 per group
    assert list(card.parent.glob("test.npz.damaged-*")), "the damaged card is kept aside"


def test_a_card_of_a_newer_format_stops_the_run_and_an_older_one_is_counted_again(finished):
    root, _ = finished
    ctx = context(root / "raw", root / "project")
    _, splits = fetch_and_prepare(ctx)
    path = ctx.layout.card("validation")
    current = card_metadata(splits["validation"], aligned=True)
    card = read_card(path, current)
    for version, outcome in ((9, NewerFormat), (0, None)):
        write_card(path, card, {**current, formats.VERSION_FIELD: version})
        if outcome is None:
            assert read_card(path, current) is None
        else:
            with pytest.raises(outcome, match="written by a newer fashionnet"):
                read_card(path, current)
    write_card(path, card, current)  # as it was, for the other tests


@pytest.fixture
def copied(finished, tmp_path):
    """A copy of the finished project and its raw folder, to damage."""
    root, _ = finished
    shutil.copytree(root / "raw", tmp_path / "raw")
    shutil.copytree(root / "project", tmp_path / "project", symlinks=True)
    return tmp_path


def published(layout: Layout) -> tuple:
    return (
        layout.latest_link.resolve(),
        layout.history_csv.read_bytes(),
        sorted(layout.runs_dir.iterdir()),
        sorted(layout.models_dir.iterdir()),
    )


def test_own_idx_files_with_a_label_of_12_stop_the_run_before_training(copied):
    rewrite(
        copied / "raw" / TRAIN_LABELS, lambda labels: np.where(np.arange(600) % 50 == 7, 12, labels)
    )
    ctx = context(copied / "raw", copied / "project")
    ctx = Context(ctx.layout, ctx.options, TrainConfig(**{**SMALL_TRAIN, "hidden_size": 48}))
    before = published(ctx.layout)
    with pytest.raises(DataAnomalies) as raised:
        run_pipeline(ctx)
    anomalies_csv = ctx.layout.validation_dir / "anomalies.csv"
    message = str(raised.value)
    assert message.startswith(f"{anomalies_csv}: 2 data anomalies against the shipped schema")
    assert "label_outside_domain 12" in message and "\n" not in message
    found = pd.read_csv(anomalies_csv, dtype={"item": str})
    assert found[["split", "anomaly", "item", "count"]].values.tolist() == [
        ["train", "label_outside_domain", "12", 10],
        ["validation", "label_outside_domain", "12", 2],
    ]
    assert published(ctx.layout) == before, "nothing trained (a new recipe), nothing published"


@pytest.mark.parametrize("test_images", [0, 1])
def test_a_test_split_of_none_or_one_image_stops_the_run(copied, test_images):
    rewrite(copied / "raw" / TEST_IMAGES, lambda images: images[:test_images])
    rewrite(copied / "raw" / TEST_LABELS, lambda labels: labels[:test_images])
    ctx = context(copied / "raw", copied / "project")
    with pytest.raises(DataAnomalies, match="too_few_images"):
        run_pipeline(ctx)
    found = pd.read_csv(ctx.layout.validation_dir / "anomalies.csv")
    assert (found["anomaly"] == "class_too_small").sum() == 10 - test_images


@pytest.fixture(scope="module")
def drifted_raw(tmp_path_factory):
    """Synthetic data large enough for verdicts (2,400 train, 2,000 test), the test images at
    70% of their brightness."""
    raw = tmp_path_factory.mktemp("drifted") / "raw"
    write_synthetic_raw(raw, n_train=2_500, n_test=2_000, seed=3)
    rewrite(raw / TEST_IMAGES, lambda images: np.rint(images * 0.7).astype(np.uint8))
    return raw


def test_drift_warns_one_line_and_the_run_publishes(drifted_raw, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fashionnet.data.validate"):
        outcome = run_pipeline(context(drifted_raw, tmp_path / "project"))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data drift")]
    assert line.startswith("data drift: test drifted from train: brightness (Jensen-Shannon ")
    assert outcome.validation.drifted == [line.removeprefix("data drift: ")]
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["data"]["validation"]["drifted"] == ["test"]
    drift = pd.read_csv(outcome.run_dir / "drift.csv").set_index(["split", "feature", "statistic"])
    assert drift.loc[("test", "brightness", "jensen_shannon"), "verdict"] == "drifted"
    assert drift.loc[("validation", "brightness", "jensen_shannon"), "verdict"] == "no verdict"
    assert (
        "Drift beyond a threshold: test drifted from train"
        in (outcome.run_dir / "report.md").read_text()
    )


def test_drift_stops_the_run_when_asked(drifted_raw, tmp_path):
    ctx = context(drifted_raw, tmp_path / "project", on_drift="stop")
    with pytest.raises(DataDrifted) as raised:
        run_pipeline(ctx)
    message = str(raised.value)
    assert message.startswith(f"{ctx.layout.validation_dir / 'drift.csv'}: test drifted from train")
    assert "--on-drift warn" in message
    assert not ctx.layout.models_dir.exists() or not any(ctx.layout.models_dir.iterdir())
    assert not ctx.layout.latest_link.exists()


def test_test_images_copied_from_train_get_a_deduplicated_accuracy(finished):
    root, outcome = finished
    shared = outcome.validation.shared_with_training("test")
    # Some of the copied images went to the validation split, not train.
    assert 0 < len(shared) <= len(COPIED_ROWS) and set(shared) <= set(COPIED_ROWS.tolist())
    predictions = read_predictions(Layout(root / "project").predictions("test"))
    kept = predictions[~predictions["index"].isin(shared)]
    expected = float((kept["label"] == kept["predicted"]).mean())
    row = outcome.report.data.deduplicated.iloc[0]
    assert row.split == "test (deduplicated)" and row.samples == 250 - len(shared)
    assert row.accuracy == pytest.approx(expected)
    report_md = (outcome.run_dir / "report.md").read_text()
    assert f"| test (deduplicated) | {expected:.2%} |" in report_md
    assert f"{len(shared)} test images are copies of training images" in report_md
    pairs = pd.read_csv(outcome.run_dir / "duplicates.csv")
    across = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "test")]
    assert sorted(across["row_b"]) == sorted(shared) and across["labels_agree"].all()
    assert (outcome.run_dir / "duplicate_pairs.png").is_file()
