"""Numerical differentiation: the slow, obviously-correct gradient that checks backpropagation."""

from collections.abc import Callable

import numpy as np


def numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-4
) -> np.ndarray:
    """d f / d x by central differences, (f(x + h) - f(x - h)) / 2h, for every element of x.

    `x` is nudged in place one element at a time (so `f` may read it through a closure,
    as the book's `loss_W = lambda W: net.loss(x, t)` does) and always restored.
    Use float64: with float32 the difference drowns in rounding error.
    """
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        try:
            x[index] = original + h
            f_plus = f(x)
            x[index] = original - h
            f_minus = f(x)
        finally:
            x[index] = original
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad
