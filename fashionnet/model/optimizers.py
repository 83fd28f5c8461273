"""Optimizers: how a gradient turns into a parameter update (the book's chapter 6).

Each `update(params, grads)` changes the arrays in `params` in place. Their state
(velocities, moments) is float32 like the parameters, and `lr` may be changed between
updates, which is how learning-rate schedules drive them.

The arithmetic is element-wise, so a step can also be taken a part at a time: `start_step`
once, then `apply` to each part of each array (a slice of the parameter with the same slice of
its gradient and of its `state`), in any order and on any thread. Every element goes through
the same operations either way, so the result is the same to the bit; training updates W1 a
block at a time, in the job that has just computed the block's gradient.
"""

import math

import numpy as np

from fashionnet.core.errors import FashionnetError

Arrays = dict[str, np.ndarray]


class Optimizer:
    """An update rule: `start_step` once per step, then `apply` to each array (or each part of
    one) with its gradient and its `state` (or the same part of each)."""

    lr: float

    def state(self, name: str, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        """The optimizer's arrays for the parameter `name`, shaped and laid out like its
        gradient, made at the first call (none by default)."""
        return ()

    def start_step(self) -> None:
        """What a step computes once for every array (nothing by default)."""

    def apply(self, param: np.ndarray, grad: np.ndarray, *state: np.ndarray) -> None:
        raise NotImplementedError

    def update(self, params: Arrays, grads: Arrays) -> None:
        """One step of every parameter in `grads`, in place."""
        self.start_step()
        for name, grad in grads.items():
            self.apply(params[name], grad, *self.state(name, grad))


class SGD(Optimizer):
    """Stochastic gradient descent: W <- W - lr * dW."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def apply(self, param: np.ndarray, grad: np.ndarray, *state: np.ndarray) -> None:
        param -= self.lr * grad


class Momentum(Optimizer):
    """SGD with a velocity that keeps rolling downhill: v <- momentum v - lr dW; W <- W + v."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity: Arrays = {}

    def state(self, name: str, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        if name not in self.velocity:
            self.velocity[name] = np.zeros_like(grad)
        return (self.velocity[name],)

    def apply(self, param: np.ndarray, grad: np.ndarray, *state: np.ndarray) -> None:
        (velocity,) = state
        velocity *= self.momentum
        velocity -= self.lr * grad
        param += velocity


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): steps scaled by running averages of the gradient and its square.

    The bias correction of both averages is folded into the step size, as in the paper's
    section 2 and in Keras, so the update is lr_t * m / (sqrt(v) + eps).

    The averages are kept as m / (1 - beta1) and v / (1 - beta2), with those constants folded
    into the step size and epsilon: the same update in 10 passes over the arrays instead of 12.
    """

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.steps = 0
        self.m: Arrays = {}  # m / (1 - beta1)
        self.v: Arrays = {}  # v / (1 - beta2)
        self._step_size = self._eps = 0.0

    def state(self, name: str, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        if name not in self.m:
            self.m[name], self.v[name] = np.zeros_like(grad), np.zeros_like(grad)
        return self.m[name], self.v[name]

    def start_step(self) -> None:
        self.steps += 1
        # math, not numpy: a numpy float64 scalar would turn float32 arrays into float64.
        lr_t = self.lr * math.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        # lr_t m / (sqrt(v) + eps) with m and v as kept (m = (1 - beta1) kept_m, likewise v).
        root = math.sqrt(1 - self.beta2)
        self._step_size = lr_t * (1 - self.beta1) / root
        self._eps = self.eps / root

    def apply(self, param: np.ndarray, grad: np.ndarray, *state: np.ndarray) -> None:
        m, v = state
        # In place, the step computed in the gradient's memory once m has taken the gradient:
        # allocating temporaries the size of W1 on every step cost three times as much as the
        # arithmetic, and a scratch array of W1's size besides m, v, W1 and its gradient made
        # training's update of W1 take 20% longer (more memory for the same passes).
        m *= self.beta1
        m += grad
        v *= self.beta2
        step = np.multiply(grad, grad, out=grad)
        v += step
        np.sqrt(v, out=step)
        step += self._eps
        np.divide(m, step, out=step)
        step *= self._step_size
        param -= step


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, lr: float) -> Optimizer:
    """The optimizer called `name` (sgd, momentum or adam) with learning rate `lr`."""
    if name not in OPTIMIZERS:
        raise FashionnetError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr=lr)
