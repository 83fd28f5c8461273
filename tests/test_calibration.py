"""Temperature scaling: fitted on the validation split's log loss, recorded with the model, a
new model id for another temperature."""

import numpy as np
import pytest

from fashionnet.data.parquet import open_split
from fashionnet.data.prepare import write_split
from fashionnet.model.calibration import (
    TEMPERATURE_BOUNDS,
    calibrated_model_id,
    fit_temperature,
    mean_log_loss,
    split_scores,
)
from fashionnet.model.two_layer_net import TwoLayerNet


def overconfident_scores(n: int, temperature: float, seed: int = 0):
    """Scores whose labels are drawn from softmax(scores / temperature): the best temperature
    to read them with is `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 10)).astype(np.float32)
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probabilities])
    return logits, labels


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    logits, labels = overconfident_scores(20_000, 1.7)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(1.7, rel=0.05)
    best = mean_log_loss(logits, labels, temperature)
    for other in (1.0, temperature * 0.9, temperature * 1.1):
        assert best <= mean_log_loss(logits, labels, other)


def test_the_temperature_stays_within_its_bounds_and_is_one_for_no_images():
    logits = np.zeros((50, 10), dtype=np.float32)  # every class equally likely, whatever T
    assert (
        TEMPERATURE_BOUNDS[0] <= fit_temperature(logits, np.zeros(50, int)) <= TEMPERATURE_BOUNDS[1]
    )
    assert fit_temperature(np.zeros((0, 10)), np.zeros(0, int)) == 1.0


def test_the_same_weights_at_another_temperature_are_another_model():
    assert calibrated_model_id("abc", 1.5) == calibrated_model_id("abc", 1.5)
    assert calibrated_model_id("abc", 1.5) != calibrated_model_id("abc", 1.6)
    assert calibrated_model_id("abc", 1.5) != calibrated_model_id("abd", 1.5)


def test_the_temperature_does_not_depend_on_how_the_split_is_stored_in_row_groups(tmp_path):
    """The products' last bits depend on a batch's shape: the scores are taken in blocks of
    fixed size, whatever the row groups of the file (`fashionnet run --row-group-size`)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1_500, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 1_500).astype(np.uint8)
    params = TwoLayerNet(784, 4096, 10, weight_init="he", seed=0).params
    found = []
    for rows in (55, 1_000):
        path = tmp_path / f"validation-{rows}.parquet"
        write_split(images, labels, path, sources={}, row_group_size=rows)
        found.append(split_scores(params, open_split(path))[0])
    assert found[0].tobytes() == found[1].tobytes()
