"""The network's building blocks as plain functions: ReLU, softmax and cross-entropy.

Each works on one sample (1-D) or a batch (2-D, one sample per row) and keeps the
input's float dtype, so float32 stays float32 on the hot path.
"""

import numpy as np

# Keeps log() finite when the true class gets probability 0 (the book's choice).
LOG_EPSILON = 1e-7


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x) element-wise."""
    return np.maximum(x, 0)


def softmax(x: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis.

    Subtracting each row's maximum first changes nothing mathematically
    (exp(a - c) / sum exp(a - c) = exp(a) / sum exp(a)) but keeps exp() from
    overflowing: softmax([1000, 1000]) is [0.5, 0.5], not nan.
    """
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def cross_entropy_error(y: np.ndarray, t: np.ndarray) -> float:
    """Mean of -log(probability given to the true class) over the batch.

    `y` holds probabilities, one row per sample (a 1-D `y` is a batch of one).
    `t` holds the true classes, either as indices or as one-hot rows.
    """
    y = y.reshape(-1, y.shape[-1])
    t = np.asarray(t)
    if t.size == y.size:  # one-hot rows: turn them into class indices
        t = t.argmax(axis=-1)
    t = t.reshape(-1)
    batch_size = y.shape[0]
    true_class_probability = y[np.arange(batch_size), t]
    return float(-np.sum(np.log(true_class_probability + LOG_EPSILON)) / batch_size)
