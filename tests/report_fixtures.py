"""A small but complete run report, and its run folder, for the plots, report.md and terminal
tests."""

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashionnet.report import plots, publish
from fashionnet.report.metrics import Tally
from fashionnet.report.run_report import RunReport, galleries, reliability_tallies

LEARNING_CURVE_CSV = (
    "epoch,loss,minibatch_accuracy,validation_accuracy,learning_rate\n"
    "1,1.200000,0.600000,0.650000,0.1\n"
    "2,0.800000,0.750000,0.740000,0.1\n"
    "3,0.600000,0.800000,0.790000,0.01\n"
)
MANIFEST = {
    "run_id": "r1",
    "model": {
        "model_id": "5eed5eed",
        "model_key": "abc",
        "origin": "trained (models/abc)",
        "hyperparameters": {"hidden_size": 50, "epochs": 3},
    },
    "data": {
        "origin": "local folder",
        "sources": {
            "train": {
                "train-images-idx3-ubyte.gz": "a" * 64,
                "train-labels-idx1-ubyte.gz": "b" * 64,
            },
            "test": {"t10k-images-idx3-ubyte.gz": "c" * 64, "t10k-labels-idx1-ubyte.gz": "d" * 64},
        },
        "fingerprints": {"train": "1" * 16, "test": "2" * 16},
    },
}


def make_predictions(n: int, seed: int) -> pd.DataFrame:
    """Predictions about 80% right, with distinct confidences (above 0.1, as 10 classes give),
    in the columns of the predictions file."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    guesses = rng.integers(0, 10, n).astype(np.uint8)
    predicted = np.where(rng.random(n) < 0.8, labels, guesses).astype(np.uint8)
    second = ((predicted + rng.integers(1, 10, n)) % 10).astype(np.uint8)  # never `predicted`
    confidence = (0.1 + 0.9 * rng.permutation(n) / n).astype(np.float32)
    # the true class got the confidence when predicted, else some smaller probability
    true_probability = np.where(labels == predicted, confidence, rng.random(n) * confidence / 2)
    return pd.DataFrame(
        {
            "index": np.arange(n, dtype=np.int32),
            "label": labels,
            "predicted": predicted,
            "second": second,
            "confidence": confidence,
            "true_log_prob": np.log(true_probability).astype(np.float32),
        }
    )


def tally_of(predictions: pd.DataFrame) -> Tally:
    columns = ("label", "predicted", "second", "confidence", "true_log_prob")
    return Tally.of_predictions(*(predictions[name].to_numpy() for name in columns))


def make_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


# The figures of `make_report()`, in report order, with their captions.
EVERY_FIGURE = {
    "per_class_accuracy.png": "Accuracy per class",
    "confusion_train.png": "Confusion matrix (train)",
    "confusion_test.png": "Confusion matrix (test)",
    "reliability.png": "Reliability diagram of the calibrated model (validation and test)",
    "learning_curve.png": "Learning curve",
    "misclassified_test.png": "Most confidently wrong test images",
    "samples.png": "Test images by class",
}
# Each split's (rows, seed): the test split is always make_predictions(200, 2).
SPLIT_PREDICTIONS = {"train": (600, 1), "validation": (150, 4), "test": (200, 2)}


def make_report(
    *,
    with_curve: bool = True,
    with_galleries: bool = True,
    splits: tuple[str, ...] = ("train", "test"),
) -> RunReport:
    """The report of 600 train, (150 validation) and 200 test predictions (learning curve and
    galleries optional)."""
    predictions = {split: make_predictions(*SPLIT_PREDICTIONS[split]) for split in splits}
    tallies = {split: tally_of(frame) for split, frame in predictions.items()}
    misclassified = samples = None
    if with_galleries:
        images = make_images(200, 3)
        misclassified, samples = galleries(predictions["test"], lambda rows: images[rows])
    return RunReport(
        run_id="r1",
        model_id="5eed5eed",
        confusions={split: tally.confusion for split, tally in tallies.items()},
        manifest=MANIFEST,
        learning_curve=pd.read_csv(io.StringIO(LEARNING_CURVE_CSV)) if with_curve else None,
        misclassified=misclassified,
        samples=samples,
        probability_metrics={split: t.probability_metrics() for split, t in tallies.items()},
        calibration=reliability_tallies(tallies),
    )


def make_run(tmp_path: Path, **report_options: bool) -> Path:
    """The run folder of `make_report(**report_options)` under tmp_path/runs."""
    return publish.write_run(tmp_path / "runs", make_report(**report_options))


def write_placeholder_figures(
    run_dir: Path, report: RunReport, cache: Path | None = None
) -> list[Path]:
    """Each figure of `report` in `run_dir` as a 1 x 1 PNG, in place of
    `plots.write_run_figures`, for tests of what surrounds the figures (test_plots.py draws
    them; that takes a second or more a run)."""
    image = io.BytesIO()
    Image.new("L", (1, 1)).save(image, format="PNG")
    paths = [Path(run_dir) / name for name in report.figures]
    for path in paths:
        path.write_bytes(image.getvalue())
    return paths


@contextlib.contextmanager
def placeholder_figures() -> Iterator[None]:
    """A block in which run folders get placeholder figures."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "write_run_figures", write_placeholder_figures)
        yield
