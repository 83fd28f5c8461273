"""The run report: built once, its galleries picked from predictions, its manifest complete."""

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
from report_fixtures import EVERY_FIGURE, make_images, make_predictions, make_report

from fashionnet.core.layout import Layout
from fashionnet.data.parquet import SplitFile, open_split
from fashionnet.data.prepare import write_split
from fashionnet.model.source import calibrated, obtain_model
from fashionnet.model.train import TrainConfig
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import save_params
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, predict_splits
from fashionnet.report import publish
from fashionnet.report.columns import OVERALL_COLUMNS
from fashionnet.report.run_report import (
    MISCLASSIFIED_SHOWN,
    SAMPLES_PER_CLASS,
    build_manifest,
    build_report,
    galleries,
    most_confident_errors,
    read_run_csv,
    sample_positions,
)


def test_most_confident_errors_hand_example():
    labels = np.array([0, 1, 2, 3, 4, 5])
    predicted = np.array([0, 2, 2, 0, 1, 4])
    confidence = np.array([0.99, 0.5, 0.98, 0.7, 0.7, 0.9], dtype=np.float32)
    # wrong: positions 1 (0.5), 3 (0.7), 4 (0.7), 5 (0.9); ties keep row order
    np.testing.assert_array_equal(
        most_confident_errors(labels, predicted, confidence, 3), [5, 3, 4]
    )
    np.testing.assert_array_equal(
        most_confident_errors(labels, predicted, confidence, 10), [5, 3, 4, 1]
    )
    assert len(most_confident_errors(labels, labels, confidence, 5)) == 0


def test_sample_positions_takes_the_first_of_each_class():
    labels = np.array([3, 0, 3, 3, 1, 0, 3])
    positions = sample_positions(labels, 2)
    assert len(positions) == 10
    assert [p.tolist() for p in positions[:4]] == [[1, 5], [4], [], [0, 2]]


def test_galleries_match_images_by_the_index_column_not_by_position():
    predictions = make_predictions(200, 2)
    images = make_images(200, 3)
    shuffled = predictions.iloc[::-1].reset_index(drop=True)
    asked = []

    def images_of(rows):
        asked.append(rows)
        return images[rows]

    wrong, samples = galleries(shuffled, images_of)
    columns = [predictions[name].to_numpy() for name in ("label", "predicted", "confidence")]
    expected_wrong = most_confident_errors(*columns, MISCLASSIFIED_SHOWN)
    np.testing.assert_array_equal(wrong.images, images[expected_wrong])
    np.testing.assert_array_equal(wrong.labels, columns[0][expected_wrong])
    np.testing.assert_array_equal(wrong.confidence, columns[2][expected_wrong])
    assert (wrong.labels != wrong.predicted).all()
    expected_samples = np.concatenate(sample_positions(columns[0], SAMPLES_PER_CLASS))
    np.testing.assert_array_equal(samples.images, images[expected_samples])
    # only the images shown are asked for, in one read
    assert len(asked) == 1 and len(asked[0]) == len(expected_wrong) + len(expected_samples)


def test_figures_follow_the_data_the_report_has():
    assert make_report().figures == EVERY_FIGURE
    sparse = dataclasses.replace(
        make_report(with_curve=False, with_galleries=False), calibration=None
    )
    assert list(sparse.figures) == [
        "per_class_accuracy.png",
        "confusion_train.png",
        "confusion_test.png",
    ]


def test_every_split_has_its_confusion_figure_and_csv_in_split_order():
    report = make_report(splits=("train", "validation", "test"))
    assert [name for name in report.figures if name.startswith("confusion_")] == [
        "confusion_train.png",
        "confusion_validation.png",
        "confusion_test.png",
    ]
    assert report.figures["confusion_validation.png"] == "Confusion matrix (validation)"
    assert report.data_files[:5] == [
        "overall.csv",
        "per_class.csv",
        "confusion_train.csv",
        "confusion_validation.csv",
        "confusion_test.csv",
    ]
    assert report.overall["split"].tolist() == ["train", "validation", "test"]
    assert report.overall[["top2_accuracy", "log_loss", "ece"]].notna().all().all()


def test_data_files_name_every_csv_and_the_manifest():
    assert make_report().data_files == [
        "overall.csv",
        "per_class.csv",
        "confusion_train.csv",
        "confusion_test.csv",
        "learning_curve.csv",
        "manifest.json",
    ]


def test_manifest_records_sources_fingerprints_model_and_packages():
    splits = {
        "train": SplitFile("train.parquet", 10, (10,), {"a.gz": "1" * 64, "b.gz": "2" * 64}),
        "test": SplitFile("test.parquet", 5, (5,), {"c.gz": "3" * 64, "d.gz": "4" * 64}),
    }
    model = {"model_id": "m", "model_key": "k", "source": "train"}
    manifest = build_manifest(
        run_id="r1",
        started_at="t",
        data_origin="local folder x",
        splits=splits,
        model=model,
        stage_seconds={"predict": 1.5},
    )
    assert manifest["data"]["sources"] == {name: s.sources for name, s in splits.items()}
    assert manifest["data"]["fingerprints"] == {name: s.fingerprint for name, s in splits.items()}
    assert manifest["model"] == model and manifest["stage_seconds"] == {"predict": 1.5}
    assert {"numpy", "pandas", "pyarrow", "prefect", "fashionnet"} <= set(manifest["packages"])


def recomputed_from_predictions(path) -> dict[str, float]:
    """top2_accuracy, log_loss and ece, calibrated and raw, from a predictions Parquet alone, by
    their definitions, row by row in float64: nothing from fashionnet.report.metrics."""
    frame = pq.read_table(path).to_pandas()
    label, predicted, second = (frame[name].to_numpy() for name in ("label", "predicted", "second"))
    right = label == predicted
    recomputed = {"top2_accuracy": float(np.mean(right | (label == second)))}
    for prefix in ("", "raw_"):
        confidence = frame[prefix + "confidence"].to_numpy().astype(np.float64)
        ece = 0.0
        for b in range(15):  # 15 equal-width bins over [0, 1]; 1.0 belongs to the last
            in_bin = (confidence >= b / 15) & ((confidence < (b + 1) / 15) | (b == 14))
            if in_bin.any():
                gap = abs(right[in_bin].mean() - confidence[in_bin].mean())
                ece += in_bin.mean() * gap
        log_prob = frame[prefix + "true_log_prob"].to_numpy().astype(np.float64)
        recomputed[prefix + "log_loss"] = float(-np.mean(log_prob))
        recomputed[prefix + "ece"] = ece
    return recomputed


def test_overall_csv_is_recomputed_from_the_predictions_files_alone(tmp_path):
    layout = Layout(tmp_path / "project")
    rng = np.random.default_rng(0)
    splits = {}
    for split, rows in (("train", 300), ("validation", 120), ("test", 250)):
        path = layout.root / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = rng.integers(0, 10, rows).astype(np.uint8)
        images = rng.integers(0, 256, (rows, 28, 28)).astype(np.uint8)
        write_split(images, labels, path, sources={split: "synthetic"}, row_group_size=40)
        splits[split] = open_split(path)
    weights = tmp_path / "weights.npz"  # He weights: confidences spread over many bins
    save_params(weights, TwoLayerNet(784, 32, 10, weight_init="he", seed=0).params)
    model = obtain_model("file", TrainConfig(), splits, layout.models_dir, weights)
    model = calibrated(model, splits["validation"], layout.models_dir)
    assert model.temperature != 1.0 and model.model_id != model.calibration.weights_id
    context = Context(layout, RunOptions(chunk_size=80), TrainConfig())
    tallies = predict_splits(context, splits, model)
    report = build_report(
        run_id="r1",
        started_at="2026-11-29T00:00:00+00:00",
        data_origin="synthetic",
        splits=splits,
        model=model,
        tallies=tallies,
        layout=layout,
        stage_seconds={},
    )
    run_dir = publish.write_run(layout.runs_dir, report)
    overall = read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS).set_index("split")
    assert overall.index.tolist() == ["train", "validation", "test"]
    for split in splits:
        predictions = layout.predictions(split)
        assert pq.ParquetFile(predictions).num_row_groups > 1  # predicted in several chunks
        recomputed = recomputed_from_predictions(predictions)
        for column, value in recomputed.items():
            assert overall.loc[split, column] == pytest.approx(value, abs=1e-6), (split, column)
        assert overall.loc[split, "raw_ece"] > 0.01  # a case where the ECE says something
    # fitted on validation: calibration lowers its log loss
    assert overall.loc["validation", "log_loss"] < overall.loc["validation", "raw_log_loss"]
    assert "reliability.png" in report.figures and (run_dir / "reliability.png").is_file()
