"""A small but complete run report, and its run folder, for the plots, report.md and terminal
tests."""

import io
from pathlib import Path

import numpy as np
import pandas as pd

from fashionnet import reports
from fashionnet.metrics import confusion_matrix
from fashionnet.run_report import RunReport, galleries

LEARNING_CURVE_CSV = (
    "epoch,loss,train_accuracy,test_accuracy,learning_rate\n"
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
    """Predictions about 80% right, with distinct confidences."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    guesses = rng.integers(0, 10, n).astype(np.uint8)
    predicted = np.where(rng.random(n) < 0.8, labels, guesses).astype(np.uint8)
    return pd.DataFrame(
        {
            "index": np.arange(n, dtype=np.int32),
            "label": labels,
            "predicted": predicted,
            "confidence": rng.permutation(n).astype(np.float32) / n,
        }
    )


def make_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def make_report(*, with_curve: bool = True, with_galleries: bool = True) -> RunReport:
    """The report of 600 train and 200 test predictions (learning curve and galleries optional)."""
    predictions = {"train": make_predictions(600, 1), "test": make_predictions(200, 2)}
    confusions = {
        split: confusion_matrix(frame["label"], frame["predicted"])
        for split, frame in predictions.items()
    }
    misclassified = samples = None
    if with_galleries:
        images = make_images(200, 3)
        misclassified, samples = galleries(predictions["test"], lambda rows: images[rows])
    return RunReport(
        run_id="r1",
        model_id="5eed5eed",
        confusions=confusions,
        manifest=MANIFEST,
        learning_curve=pd.read_csv(io.StringIO(LEARNING_CURVE_CSV)) if with_curve else None,
        misclassified=misclassified,
        samples=samples,
    )


def make_run(tmp_path: Path, **report_options: bool) -> Path:
    """The run folder of `make_report(**report_options)` under tmp_path/runs."""
    return reports.write_run(tmp_path / "runs", make_report(**report_options))
