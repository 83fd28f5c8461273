"""The naive way to predict, the baseline the benchmark compares the predict stage against.

pandas reads the whole Parquet, pixel column included (one NumPy array per image), the
images are stacked into one float64 array and the weights cast to float64, then a single
`predict` call covers everything. Memory and time grow with the data, all at once.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fashionnet.model.two_layer_net import predict
from fashionnet.model.weights import load_params


def read_float64(parquet_paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """All images as one float64 (n, 784) array, and their labels."""
    frame = pd.concat([pd.read_parquet(path) for path in parquet_paths], ignore_index=True)
    return np.stack(frame["pixels"].to_numpy()).astype(np.float64), frame["label"].to_numpy()


def predict_all(weights_path: Path, parquet_paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class of every image, in one call, and the true labels."""
    params = {name: array.astype(np.float64) for name, array in load_params(weights_path).items()}
    x, labels = read_float64(parquet_paths)
    return predict(params, x).argmax(axis=1), labels
