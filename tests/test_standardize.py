"""Input standardization: the statistics, and folding them into W1, b1 changes no prediction."""

import numpy as np
import pytest

from fashionnet.model.standardize import SCALE_FLOOR, Standardization
from fashionnet.model.two_layer_net import TwoLayerNet, predict


@pytest.fixture
def pixels() -> np.ndarray:
    """Image-like inputs: a border that is always 0, a few pixels of very different spread."""
    rng = np.random.default_rng(5)
    x = np.zeros((400, 12), dtype=np.float32)
    x[:, 1:6] = rng.random((400, 5), dtype=np.float32)
    x[:, 6:11] = rng.random((400, 5), dtype=np.float32) * 0.1 + 0.9
    return x


def test_mean_and_scale_match_numpy_in_float64(pixels):
    fitted = Standardization.fit(pixels)
    reference = pixels.astype(np.float64)
    np.testing.assert_allclose(fitted.mean, reference.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(fitted.scale, reference.std(axis=0) + SCALE_FLOOR, atol=1e-6)
    assert fitted.mean.dtype == fitted.scale.dtype == np.float32
    assert fitted.scale[0] == SCALE_FLOOR  # a constant pixel keeps the floor, never 0


@pytest.mark.parametrize("part_rows", [1, 7, 100, 400])
def test_one_streaming_pass_matches_numpy_on_the_whole_array(pixels, part_rows):
    parts = (pixels[start : start + part_rows] for start in range(0, len(pixels), part_rows))
    streamed = Standardization.fit_stream(parts)
    reference = pixels.astype(np.float64)
    np.testing.assert_allclose(streamed.mean, reference.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        streamed.scale, reference.std(axis=0) + SCALE_FLOOR, rtol=1e-6, atol=1e-7
    )


def test_a_stream_without_rows_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        Standardization.fit_stream([])


def test_apply_gives_mean_zero_and_leaves_its_input_alone(pixels):
    before = pixels.copy()
    fitted = Standardization.fit(pixels)
    standardized = fitted.apply(pixels)
    np.testing.assert_array_equal(pixels, before)
    assert standardized.dtype == np.float32
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-5)
    # Widely varying pixels come out near unit spread; the floor holds narrow ones below it.
    spread = standardized.std(axis=0)
    assert np.all(spread[1:6] > 0.8) and np.all(spread[6:11] < 0.5) and np.all(spread < 1)


def test_folded_parameters_predict_on_raw_inputs_what_the_trained_ones_do_on_standardized(
    pixels,
):
    fitted = Standardization.fit(pixels)
    params = TwoLayerNet(12, 7, 10, weight_init="he", seed=2).params
    params["b1"] += 0.3  # a non-zero bias, so the fold's bias term is exercised
    folded = fitted.fold(params)

    np.testing.assert_allclose(
        predict(folded, pixels), predict(params, fitted.apply(pixels)), rtol=1e-5, atol=1e-6
    )
    assert folded["W2"] is params["W2"] and folded["b2"] is params["b2"]
    assert all(folded[name].dtype == np.float32 for name in folded)


def test_apply_into_an_array_gives_the_same_bits(pixels):
    fitted = Standardization.fit(pixels)
    out = np.empty_like(pixels)
    assert fitted.apply(pixels, out=out) is out
    np.testing.assert_array_equal(out, fitted.apply(pixels))
