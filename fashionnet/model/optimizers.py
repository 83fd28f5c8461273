"""Optimizers: how a gradient turns into a parameter update (the book's chapter 6).

Each `update(params, grads)` changes the arrays in `params` in place. Their state
(velocities, moments) is float32 like the parameters, and `lr` may be changed between
updates, which is how learning-rate schedules drive them.
"""

import math

import numpy as np

from fashionnet.core.errors import FashionnetError

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
        self.scratch: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        self.steps += 1
        # math, not numpy: a numpy float64 scalar would turn float32 arrays into float64.
        lr_t = self.lr * math.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        for name, grad in grads.items():
            if name not in self.m:
                self.m[name], self.v[name] = np.zeros_like(grad), np.zeros_like(grad)
                self.scratch[name] = np.empty_like(grad)
            m, v, scratch = self.m[name], self.v[name], self.scratch[name]
            # In place through one scratch array: allocating temporaries the size of W1 on
            # every step cost three times as much as the arithmetic.
            m *= self.beta1
            m += np.multiply(grad, 1 - self.beta1, out=scratch)
            v *= self.beta2
            np.multiply(grad, grad, out=scratch)
            v += np.multiply(scratch, 1 - self.beta2, out=scratch)
            np.sqrt(v, out=scratch)
            scratch += self.eps
            np.divide(m, scratch, out=scratch)
            params[name] -= np.multiply(scratch, lr_t, out=scratch)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, lr: float) -> SGD | Momentum | Adam:
    """The optimizer called `name` (sgd, momentum or adam) with learning rate `lr`."""
    if name not in OPTIMIZERS:
        raise FashionnetError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr=lr)
