"""The run report: built once, its galleries picked from predictions, its manifest complete."""

import numpy as np
from report_fixtures import make_images, make_predictions, make_report

from fashionnet.dataset import SplitFile
from fashionnet.run_report import (
    FIGURES,
    MISCLASSIFIED_SHOWN,
    SAMPLES_PER_CLASS,
    build_manifest,
    galleries,
    most_confident_errors,
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
    assert list(make_report().figures) == list(FIGURES)
    assert list(make_report(with_curve=False, with_galleries=False).figures) == [
        "per_class_accuracy.png",
        "confusion_test.png",
        "confusion_train.png",
    ]


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
