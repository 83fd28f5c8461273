"""The model source switch: where the model a run predicts with comes from.

- `train`: learn it from the training split with a `TrainConfig`, validating each epoch on the
  validation split, or reuse the model stored for the same recipe, data and split rule
  (`model_store`). The test split is never read here: the predict stage scores it once;
- `random`: the untrained initialisation (the book's 0.01 * N(0, 1)), the ~10% baseline;
- `file`: a weights file the user gives (`weights.load_params` checks it).

Whatever its source, a model is then calibrated (`calibrated`): its temperature is fitted on the
validation split (`calibration`), recorded in its folder's meta.json and found there again.
"""

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fashionnet.data.parquet import SplitFile
from fashionnet.model.calibration import Calibration, calibrate
from fashionnet.model.store import (
    META_NAME,
    StoredModel,
    load_stored,
    model_key,
    read_meta,
    record_calibration,
    store_model,
)
from fashionnet.model.train import TrainConfig, TrainResult, curve_table, train
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import load_params, model_id
from fashionnet.options import ModelSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    """The model of a run, as the predict and report stages need it."""

    source: ModelSource
    weights_path: Path
    model_id: str  # digest of the weights, then (calibrated) of the weights and temperature
    model_key: str | None  # its folder under models/; None for a user's weights file
    origin: str  # where it came from, for people
    hyperparameters: dict[str, Any]
    learning_curve: pd.DataFrame | None = None
    calibration: Calibration | None = None  # None: not calibrated, temperature 1

    @property
    def temperature(self) -> float:
        """What the scores are divided by before the softmax."""
        return self.calibration.temperature if self.calibration else 1.0

    def describe(self) -> dict[str, Any]:
        """The model as the manifest records it."""
        return {
            "model_id": self.model_id,
            "model_key": self.model_key,
            "source": self.source,
            "origin": self.origin,
            "hyperparameters": self.hyperparameters,
            "temperature": self.temperature,
            "calibration": self.calibration.describe() if self.calibration else None,
        }


def obtain_model(
    source: ModelSource,
    config: TrainConfig,
    splits: Mapping[str, SplitFile],
    models_dir: Path,
    weights_file: str | Path | None = None,
) -> Model:
    """The model from `source`, stored under `models_dir` unless it is the user's file."""
    if source == "file":
        params = load_params(weights_file)
        log.info("using the weights in %s", weights_file)
        path = Path(weights_file).resolve()
        return Model(source, path, model_id(params), None, f"weights file {path}", {})
    if source == "random":
        stored = _untrained(config, models_dir)
        log.info("untrained model with random weights (expect about 10%% accuracy)")
        origin = f"random initialisation, untrained ({stored.folder})"
    else:
        stored = _trained(config, splits, models_dir)
        origin = f"trained ({stored.folder})"
    return Model(
        source,
        stored.weights_path,
        stored.model_id,
        stored.model_key,
        origin,
        stored.meta["hyperparameters"],
        stored.learning_curve,
    )


def _untrained(config: TrainConfig, models_dir: Path) -> StoredModel:
    hyperparameters = {
        "hidden_size": config.hidden_size,
        "weight_init": "std",
        "weight_init_std": config.weight_init_std,
        "seed": config.seed,
    }
    key = model_key({"source": "random", **hyperparameters}, {})
    stored = load_stored(models_dir, key)
    if stored is None:
        net = TwoLayerNet(
            hidden_size=config.hidden_size,
            weight_init_std=config.weight_init_std,
            weight_init="std",
            seed=config.seed,
        )
        meta = {"source": "random", "hyperparameters": hyperparameters}
        stored = store_model(models_dir, key, net.params, meta)
    return stored


def trained_key(
    config: TrainConfig, sources: Mapping[str, str], split_rule: Mapping[str, Any] | None
) -> str:
    """The model key of `config` trained on the data with these sources, divided into train
    and validation by `split_rule` (`SplitRule.describe`): another held-out set, another model."""
    return model_key({"source": "train", **config.model_dump(), "split_rule": split_rule}, sources)


def store_trained(
    models_dir: Path,
    config: TrainConfig,
    sources: Mapping[str, str],
    split_rule: Mapping[str, Any] | None,
    result: TrainResult,
) -> StoredModel:
    """Store a training result where `obtain_model("train", ...)` finds it again."""
    last = result.curve[-1]
    meta = {
        "source": "train",
        "hyperparameters": config.model_dump(),
        "sources": dict(sorted(sources.items())),
        "split_rule": split_rule,
        "train_seconds": round(result.seconds, 3),
        "final_minibatch_accuracy": last.minibatch_accuracy,
        "validation_accuracy": last.validation_accuracy,
    }
    key = trained_key(config, sources, split_rule)
    return store_model(models_dir, key, result.params, meta, curve_table(result.curve))


def _trained(config: TrainConfig, splits: Mapping[str, SplitFile], models_dir: Path) -> StoredModel:
    train_split, validation_split = splits["train"], splits.get("validation")
    if overrides := config.recipe_overrides():
        log.info(
            "the options given override the %r recipe: %s",
            config.recipe,
            ", ".join(
                f"{name}={mine!r} (its {theirs!r})" for name, (mine, theirs) in overrides.items()
            ),
        )
    # Cut from the same raw files as the validation split; the test split plays no part.
    sources, split_rule = train_split.sources, train_split.split_rule
    stored = load_stored(models_dir, trained_key(config, sources, split_rule))
    if stored is not None:
        log.info("model up to date, not training again: %s", stored.folder)
        return stored
    log.info("training: %s", config)
    result = train(config, train_split, validation_split)
    stored = store_trained(models_dir, config, sources, split_rule, result)
    log.info("trained in %.1f s, saved to %s", result.seconds, stored.folder)
    return stored


def recorded_calibration(folder: Path) -> Calibration | None:
    """The calibration a model folder's meta.json records, if any (none from a meta.json that
    cannot be read: the model is made again, and calibrated again, by the next run)."""
    try:
        recorded = read_meta(folder / META_NAME).get("calibration")
    except (OSError, ValueError):
        return None
    return Calibration.of(recorded) if recorded else None


def calibrated(model: Model, validation: SplitFile | None, models_dir: Path) -> Model:
    """`model` with its temperature fitted on `validation` (the one its folder records when it
    was fitted on the same weights and validation data); unchanged without a validation split.
    """
    if validation is None:
        return model
    folder = models_dir / model.model_key if model.model_key else None
    weights_id = model.calibration.weights_id if model.calibration else model.model_id
    found = recorded_calibration(folder) if folder else None
    if not (
        found
        and found.weights_id == weights_id
        and found.validation_fingerprint == validation.fingerprint
    ):
        found = calibrate(load_params(model.weights_path), weights_id, validation)
        log.info(
            "temperature %.4f fitted on %d validation images: log loss %.4f -> %.4f",
            found.temperature,
            found.validation_images,
            found.raw_validation_log_loss,
            found.validation_log_loss,
        )
        if folder:
            record_calibration(folder, found.describe())
    return dataclasses.replace(model, model_id=found.model_id, calibration=found)
