"""Trained models on disk, keyed by what produced them, so a rerun skips training.

A model folder `models/<train key>/` holds `weights.npz`, `meta.json` and
`learning_curve.csv`. The train key is a digest of the hyperparameters and the
data checksums: the same configuration on the same data finds its model again.
"""

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionnet import atomic
from fashionnet.errors import FashionnetError
from fashionnet.train import TrainConfig, TrainResult, write_learning_curve
from fashionnet.weights import load_params, model_id, save_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredModel:
    folder: Path
    params: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @property
    def weights_path(self) -> Path:
        return self.folder / "weights.npz"

    @property
    def learning_curve_path(self) -> Path:
        return self.folder / "learning_curve.csv"


def train_key(config: TrainConfig, data_sha256: Mapping[str, str]) -> str:
    """A digest of everything that determines the trained weights."""
    identity = {"config": dataclasses.asdict(config), "data": dict(sorted(data_sha256.items()))}
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_stored(models_dir: Path, key: str) -> StoredModel | None:
    """The model trained earlier under `key`, or None when there is none (or it is damaged)."""
    folder = models_dir / key
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        params = load_params(folder / "weights.npz")
    except (FashionnetError, ValueError) as exc:
        log.warning("ignoring stored model %s and training again: %s", folder, exc)
        return None
    if model_id(params) != meta.get("model_id"):
        log.warning("stored model %s does not match its meta.json; training again", folder)
        return None
    return StoredModel(folder, params, meta)


def store_trained(
    models_dir: Path,
    key: str,
    result: TrainResult,
    config: TrainConfig,
    data_sha256: Mapping[str, str],
) -> StoredModel:
    """Save weights, learning curve and metadata; meta.json is written last, so its presence
    means the folder is complete."""
    folder = models_dir / key
    last = result.curve[-1] if result.curve else None
    meta = {
        "model_id": model_id(result.params),
        "train_key": key,
        "hyperparameters": dataclasses.asdict(config),
        "data_sha256": dict(sorted(data_sha256.items())),
        "train_seconds": round(result.seconds, 3),
        "train_accuracy": None if last is None else last.train_accuracy,
        "test_accuracy": None if last is None else last.test_accuracy,
    }
    # The weights file carries only what is reproducible, so equal weights give equal bytes.
    save_params(
        folder / "weights.npz",
        result.params,
        metadata={k: v for k, v in meta.items() if k != "train_seconds"},
    )
    write_learning_curve(folder / "learning_curve.csv", result.curve)
    atomic.write_text(folder / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return StoredModel(folder, result.params, meta)
