"""Temperature scaling: one number that makes the model's confidence mean what it says.

The network's softmax is overconfident (a confidence of 0.99 is right 97% of the time). Dividing
the scores by one temperature T > 1 before the softmax softens every probability alike, so the
predicted class and the accuracy never change, only the confidence. T is fitted on the
validation split's log loss, never on test: the scores of the validation images are computed a
block at a time and kept (10 floats per image, 400 kB for 10,000 images), and the log loss
as a function of log T, smooth and with one minimum, is minimised by a bounded search.

A model is its weights and its temperature: `calibrated_model_id` gives the same weights at
another temperature another id, so every file predicted with one temperature is made again
with another.
"""

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

# Imported with the module, before any stage allocates: imported when a new model is calibrated,
# after training, it raised the model stage's peak memory at ten times the data by ~90 MB.
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from fashionnet.core.threads import blas_threads_for_training
from fashionnet.data.parquet import SplitFile, row_group_batches
from fashionnet.model.two_layer_net import Params, scores

# Images scored at a time when fitting the temperature.
SCORE_BLOCK_ROWS = 2_000

# The search interval of T: far beyond any temperature a trained network needs, and bounded so
# that a degenerate model (all scores equal) still gives a number.
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Stored rounded, so the temperature read back from meta.json is exactly the one predicted with.
TEMPERATURE_DIGITS = 6


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it was fitted on (meta.json's "calibration")."""

    temperature: float
    weights_id: str  # the weights it belongs to (`weights.model_id`)
    model_id: str  # `calibrated_model_id(weights_id, temperature)`
    validation_fingerprint: str  # the validation split it was fitted on
    validation_images: int
    raw_validation_log_loss: float  # at T = 1
    validation_log_loss: float  # at the fitted T

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, recorded: Any) -> "Calibration":
        """The calibration meta.json records; ValueError says what in it does not fit."""
        if not isinstance(recorded, Mapping):
            raise ValueError("is not a JSON object")
        values = {}
        for entry in fields(cls):
            if entry.name not in recorded:
                raise ValueError(f"has no {entry.name}")
            value = recorded[entry.name]
            numeric = entry.type is float and isinstance(value, int)  # JSON writes 2.0 as 2
            if isinstance(value, bool) or not (isinstance(value, entry.type) or numeric):
                raise ValueError(f"has {entry.name} {value!r}, not a {entry.type.__name__}")
            values[entry.name] = float(value) if numeric else value
        if not (math.isfinite(values["temperature"]) and values["temperature"] > 0):
            raise ValueError(f"has temperature {values['temperature']!r}, not a positive number")
        return cls(**values)


def calibrated_model_id(weights_id: str, temperature: float) -> str:
    """16 hex digits naming the weights at this temperature: another T, another model."""
    blob = f"{weights_id}/T={temperature:.{TEMPERATURE_DIGITS}f}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def split_scores(params: Params, split: SplitFile) -> tuple[np.ndarray, np.ndarray]:
    """The scores (float32, (n, classes)) and labels of a split, SCORE_BLOCK_ROWS images at a
    time: memory holds one block's pixels and every image's scores.

    A product's last bits depend on the shape of its batch and on BLAS's thread count, and the
    temperature and the model id must depend on neither: the blocks have a fixed size whatever
    the file's row groups, and BLAS keeps training's fixed thread count (`core.threads`)."""
    logits = np.empty((split.num_rows, params["b2"].shape[0]), np.float32)
    labels = np.empty(split.num_rows, np.int64)
    block = np.empty((SCORE_BLOCK_ROWS, split.num_features), np.float32)
    start = filled = 0  # the block holds rows start .. start + filled
    with blas_threads_for_training():
        for part in row_group_batches(split.path, range(split.num_row_groups)):
            labels[start + filled : start + filled + len(part.label)] = part.label
            taken = 0
            while taken < len(part.label):
                rows = min(SCORE_BLOCK_ROWS - filled, len(part.label) - taken)
                block[filled : filled + rows] = part.x[taken : taken + rows]
                filled, taken = filled + rows, taken + rows
                if filled == SCORE_BLOCK_ROWS:
                    logits[start : start + filled] = scores(params, block)
                    start, filled = start + filled, 0
        if filled:
            logits[start : start + filled] = scores(params, block[:filled])
    return logits, labels


def mean_log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """The mean -log p(true class) of softmax(logits / temperature), by log-sum-exp."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    true = scaled[np.arange(len(scaled)), labels]
    return float(np.mean(logsumexp(scaled, axis=1) - true))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature within TEMPERATURE_BOUNDS that minimises the log loss (searched over
    log T, where the loss is better shaped), rounded to TEMPERATURE_DIGITS decimals; 1.0 for no
    images."""
    if len(labels) == 0:
        return 1.0
    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: mean_log_loss(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return round(math.exp(found.x), TEMPERATURE_DIGITS)


def calibrate(params: Params, weights_id: str, validation: SplitFile) -> Calibration:
    """Fit the temperature of these weights on the validation split."""
    logits, labels = split_scores(params, validation)
    temperature = fit_temperature(logits, labels)
    return Calibration(
        temperature=temperature,
        weights_id=weights_id,
        model_id=calibrated_model_id(weights_id, temperature),
        validation_fingerprint=validation.fingerprint,
        validation_images=len(labels),
        raw_validation_log_loss=round(mean_log_loss(logits, labels, 1.0), 6),
        validation_log_loss=round(mean_log_loss(logits, labels, temperature), 6),
    )
