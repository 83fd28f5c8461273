"""relu, softmax and cross_entropy_error: hand-computed values and properties."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fashionnet.functions import LOG_EPSILON, cross_entropy_error, relu, softmax

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


def test_cross_entropy_hand_computed():
    y = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    expected = -(np.log(0.7 + LOG_EPSILON) + np.log(0.25 + LOG_EPSILON)) / 2
    assert cross_entropy_error(y, np.array([1, 2])) == expected
    assert abs(expected - 0.8715) < 1e-4  # -(ln 0.7 + ln 0.25) / 2, by hand


def test_cross_entropy_one_hot_and_indices_agree():
    y = softmax(np.random.default_rng(0).standard_normal((4, 10)))
    labels = np.array([3, 0, 9, 3])
    one_hot = np.eye(10)[labels]
    assert cross_entropy_error(y, one_hot) == cross_entropy_error(y, labels)


def test_cross_entropy_treats_1d_input_as_a_batch_of_one():
    y = np.array([0.2, 0.8])
    expected = -np.log(0.8 + LOG_EPSILON)
    assert cross_entropy_error(y, np.array(1)) == expected
    assert cross_entropy_error(y, np.array([0, 1])) == expected


def test_cross_entropy_stays_finite_when_the_true_class_gets_zero():
    assert cross_entropy_error(np.array([[1.0, 0.0]]), np.array([1])) == -np.log(LOG_EPSILON)
