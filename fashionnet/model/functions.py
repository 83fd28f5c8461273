"""The network's building blocks as plain functions: ReLU, softmax, log-softmax, cross-entropy
and its gradient.

Each works on one sample (1-D) or a batch (2-D, one sample per row) and keeps the
input's float dtype, so float32 stays float32 on the hot path.
"""

import numpy as np


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


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) along the last axis, exact for any finite scores.

    log-sum-exp with the row maximum taken out: log softmax(x) = (x - c) - log sum exp(x - c).
    Unlike log(softmax(x)) it never takes log(0), so a very wrong answer costs its true
    (large, finite) loss instead of -log(0) = inf.
    """
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def cross_entropy_error(scores: np.ndarray, t: np.ndarray, label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of softmax(scores) against the targets, by log-sum-exp (no clipping).

    `scores` are the network's outputs before softmax (logits), one row per sample (a 1-D
    `scores` is a batch of one). `t` holds the true classes, as indices or as one-hot rows.
    The target of a sample is its one-hot row, or with label smoothing eps the mixture
    (1 - eps) * one_hot + eps / classes (`cross_entropy_gradient` is its derivative).
    """
    scores = scores.reshape(-1, scores.shape[-1])
    t = np.asarray(t)
    if t.size == scores.size:  # one-hot rows: turn them into class indices
        t = t.argmax(axis=-1)
    t = t.reshape(-1)
    batch_size = scores.shape[0]
    log_probs = log_softmax(scores)
    # Summed in float64: a float32 sum over a large batch would lose the last digits.
    loss = -np.sum(log_probs[np.arange(batch_size), t], dtype=np.float64)
    if label_smoothing:
        loss *= 1 - label_smoothing
        loss -= label_smoothing / scores.shape[1] * np.sum(log_probs, dtype=np.float64)
    return float(loss / batch_size)


def cross_entropy_gradient(
    scores: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> np.ndarray:
    """The derivative of `cross_entropy_error` (class indices `labels`) with respect to the
    scores: softmax followed by cross-entropy has the simple one (softmax - target) / n."""
    batch_size, classes = scores.shape
    grad = softmax(scores) / batch_size
    grad[np.arange(batch_size), labels] -= (1 - label_smoothing) / batch_size
    if label_smoothing:
        grad -= label_smoothing / classes / batch_size
    return grad
