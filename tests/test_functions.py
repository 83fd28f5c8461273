"""relu, softmax, log_softmax and cross_entropy_error: hand-computed values and properties."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fashionnet.model.functions import (
    cross_entropy_error,
    cross_entropy_gradient,
    log_softmax,
    relu,
    softmax,
)

# Rows of moderate logits, where float64 sums are exact enough to compare tightly.
logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 5), st.integers(1, 12)),
    elements=st.floats(-50, 50, allow_nan=False),
)


def test_relu_zeroes_negatives_and_keeps_dtype():
    x = np.array([-2.0, -0.0, 0.5, 3.0], dtype=np.float32)
    out = relu(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 3.0])
    assert out.dtype == np.float32


def test_softmax_hand_computed():
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(3.0)])), [0.25, 0.75])


def test_softmax_does_not_overflow_on_huge_inputs():
    np.testing.assert_array_equal(softmax(np.array([1000.0, 1000.0])), [0.5, 0.5])
    probabilities = softmax(np.array([[1e30, 0.0, -1e30]], dtype=np.float32))
    np.testing.assert_array_equal(probabilities, [[1.0, 0.0, 0.0]])


def test_softmax_keeps_float32():
    assert softmax(np.zeros((2, 3), dtype=np.float32)).dtype == np.float32


@given(logit_rows)
def test_softmax_rows_are_probabilities(x):
    probabilities = softmax(x)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)


@given(logit_rows, st.floats(-1e3, 1e3, allow_nan=False))
def test_softmax_ignores_a_constant_added_to_a_row(x, shift):
    shifts = shift * np.arange(len(x))[:, None]  # a different constant for every row
    np.testing.assert_allclose(softmax(x + shifts), softmax(x), rtol=1e-9, atol=1e-15)


@given(logit_rows)
def test_softmax_of_one_row_equals_that_row_of_the_batch(x):
    for i, row in enumerate(x):
        np.testing.assert_array_equal(softmax(row), softmax(x)[i])


def test_log_softmax_is_the_log_of_softmax_where_both_are_finite():
    x = np.array([[0.0, np.log(3.0)], [2.0, -1.0]])
    np.testing.assert_allclose(log_softmax(x), np.log(softmax(x)), rtol=1e-12)
    np.testing.assert_allclose(log_softmax(np.array([0.0, np.log(3.0)])), np.log([0.25, 0.75]))


def test_log_softmax_stays_finite_where_softmax_underflows():
    x = np.array([[1000.0, -1000.0, 0.0]], dtype=np.float32)
    assert softmax(x)[0, 1] == 0  # log(softmax) would be -inf here
    np.testing.assert_array_equal(log_softmax(x), [[0.0, -2000.0, -1000.0]])
    assert log_softmax(x).dtype == np.float32


def test_cross_entropy_hand_computed():
    scores = np.log([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])  # softmax gives these back
    expected = -(np.log(0.7) + np.log(0.25)) / 2
    assert cross_entropy_error(scores, np.array([1, 2])) == pytest.approx(expected, rel=1e-12)
    assert abs(expected - 0.8715) < 1e-4  # -(ln 0.7 + ln 0.25) / 2, by hand


def test_cross_entropy_one_hot_and_indices_agree():
    scores = np.random.default_rng(0).standard_normal((4, 10))
    labels = np.array([3, 0, 9, 3])
    one_hot = np.eye(10)[labels]
    assert cross_entropy_error(scores, one_hot) == cross_entropy_error(scores, labels)


def test_cross_entropy_treats_1d_input_as_a_batch_of_one():
    scores = np.log([0.2, 0.8])
    expected = -np.log(0.8)
    assert cross_entropy_error(scores, np.array(1)) == pytest.approx(expected, rel=1e-12)
    assert cross_entropy_error(scores, np.array([0, 1])) == pytest.approx(expected, rel=1e-12)


def direct_float64_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """-mean log p(true class) computed the long way in float64 with Python's own log-sum-exp:
    log p(true) = s_true - m - log(sum exp(s - m)), m the row maximum."""
    losses = []
    for row, label in zip(scores.astype(np.float64).tolist(), labels.tolist(), strict=True):
        top = max(row)
        log_sum = math.log(math.fsum(math.exp(value - top) for value in row))
        losses.append(-(row[label] - top - log_sum))
    return math.fsum(losses) / len(losses)


def test_cross_entropy_is_exact_at_extreme_logits_in_float32():
    scores = np.array(
        [
            [1000.0, -1000.0, 0.0],  # true class 1: p = e^-2000, far below float32's smallest
            [-1000.0, 1000.0, 999.0],  # true class 2: p = 1 / (1 + e), no underflow
            [55.0, 0.0, -55.0],  # true class 2: p = e^-110 underflows float32 too
        ],
        dtype=np.float32,
    )
    labels = np.array([1, 2, 2])
    assert softmax(scores)[0, 1] == 0 and softmax(scores)[2, 2] == 0
    expected = direct_float64_loss(scores, labels)
    assert expected == pytest.approx((2000 + (1 + math.log1p(math.exp(-1))) + 110) / 3, rel=1e-12)
    assert cross_entropy_error(scores, labels) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_of_a_certain_right_answer_is_zero():
    assert cross_entropy_error(np.array([[1000.0, -1000.0]]), np.array([0])) == 0.0


def test_label_smoothing_is_the_cross_entropy_against_the_mixed_targets():
    scores = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = np.array([0, 2])
    eps = 0.3
    targets = (1 - eps) * np.eye(3)[labels] + eps / 3
    expected = -np.mean(np.sum(targets * log_softmax(scores), axis=1))
    assert cross_entropy_error(scores, labels, eps) == pytest.approx(expected, rel=1e-12)
    gradient = cross_entropy_gradient(scores, labels, eps)
    np.testing.assert_allclose(gradient, (softmax(scores) - targets) / 2, rtol=1e-12)
