"""Optimizers: how a gradient turns into a parameter update (the book's chapter 6).

Each `update(params, grads)` changes the arrays in `params` in place. Their state
(velocities, moments) is float32 like the parameters, and `lr` may be changed between
updates, which is how learning-rate schedules drive them.
"""

import math

import numpy as np

from fashionnet.errors import FashionnetError

Arrays = dict[str, np.ndarray]


class SGD:
    """Stochastic gradient descent: W <- W - lr * dW."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def update(self, params: Arrays, grads: Arrays) -> None:
        for name, grad in grads.items():
            params[name] -= self.lr * grad


class Momentum:
    """SGD with a velocity that keeps rolling downhill: v <- momentum v - lr dW; W <- W + v."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        for name, grad in grads.items():
            velocity = self.velocity.setdefault(name, np.zeros_like(params[name]))
            velocity *= self.momentum
            velocity -= self.lr * grad
            params[name] += velocity


class Adam:
    """Adam (Kingma & Ba 2015): steps scaled by running averages of the gradient and its square.

    The bias correction of both averages is folded into the step size, as in the paper's
    section 2 and in Keras, so the update is lr_t * m / (sqrt(v) + eps).
    """

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.steps = 0
        self.m: Arrays = {}
        self.v: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        self.steps += 1
        # math, not numpy: a numpy float64 scalar would turn float32 arrays into float64.
        lr_t = self.lr * math.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        for name, grad in grads.items():
            m = self.m.setdefault(name, np.zeros_like(params[name]))
            v = self.v.setdefault(name, np.zeros_like(params[name]))
            m += (1 - self.beta1) * (grad - m)
            v += (1 - self.beta2) * (grad * grad - v)
            params[name] -= lr_t * m / (np.sqrt(v) + self.eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, lr: float) -> SGD | Momentum | Adam:
    """The optimizer called `name` (sgd, momentum or adam) with learning rate `lr`."""
    if name not in OPTIMIZERS:
        raise FashionnetError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr=lr)
