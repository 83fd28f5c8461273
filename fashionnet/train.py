"""Minibatch training of TwoLayerNet: shuffle, backpropagate, update, log one line per epoch.

Everything is seeded (weights from `seed`, each epoch's shuffle from a second stream of
the same seed) and float32, so the same config and data give bit-identical weights on
the same machine and BLAS setup (another BLAS kernel or thread count rounds differently).
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from fashionnet import atomic
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import NUM_CLASSES
from fashionnet.functions import cross_entropy_error
from fashionnet.optimizers import OPTIMIZERS, make_optimizer
from fashionnet.standardize import Standardization
from fashionnet.two_layer_net import INITS, Params, TwoLayerNet, backprop, class_indices

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine", "step")
CURVE_COLUMNS = ("epoch", "loss", "train_accuracy", "test_accuracy", "learning_rate")
# The shuffle draws from its own stream of the seed, independent of the weight init.
SHUFFLE_STREAM = 1


def _whole(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


# option -> (is the value allowed?, what is allowed)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hidden_size": (lambda v: _whole(v) and v >= 1, "a positive integer"),
    "epochs": (lambda v: _whole(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _whole(v) and v >= 1, "a positive integer"),
    "learning_rate": (lambda v: _real(v) and v > 0, "a positive number"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "lr_schedule": (lambda v: v in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
    "init": (lambda v: v in INITS, f"one of {', '.join(INITS)}"),
    "weight_init_std": (lambda v: _real(v) and v > 0, "a positive number"),
    "weight_decay": (lambda v: _real(v) and v >= 0, "a number >= 0"),
    "standardize": (lambda v: isinstance(v, bool), "true or false"),
    "seed": (lambda v: _whole(v) and v >= 0, "an integer >= 0"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (together with the data)."""

    hidden_size: int = 512
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 0.002
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    init: str = "he"
    weight_init_std: float = 0.01  # used only by init="std"
    weight_decay: float = 0.0  # L2 strength lambda: adds lambda * W to each weight gradient
    standardize: bool = True  # train on standardized pixels, fold it into W1, b1 (standardize.py)
    seed: int = 0

    def __post_init__(self) -> None:
        for option, (allowed, description) in _RULES.items():
            value = getattr(self, option)
            if not allowed(value):
                raise FashionnetError(
                    f"invalid training option {option}={value!r}: use {description}"
                )


DEFAULT_CONFIG = TrainConfig()
# The book's recipe: plain SGD from small random weights, 100 hidden units, batch 100.
BOOK_CONFIG = TrainConfig(
    hidden_size=100,
    epochs=17,
    batch_size=100,
    learning_rate=0.1,
    optimizer="sgd",
    lr_schedule="constant",
    init="std",
    weight_init_std=0.01,
    standardize=False,
)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean cross-entropy over the epoch's minibatches (without the L2 term)
    train_accuracy: float  # on the epoch's minibatches, each before its update (as Keras reports)
    test_accuracy: float | None  # after the epoch; None without a test set
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    params: Params
    curve: list[EpochRecord]
    seconds: float


def scheduled_learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate during `epoch` (1-based).

    constant: always the base rate; cosine: from the base rate down a half cosine towards 0;
    step: the base rate, then / 10 from halfway and / 100 from three quarters of the epochs.
    """
    progress = (epoch - 1) / config.epochs
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    if config.lr_schedule == "step":
        return config.learning_rate * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    return config.learning_rate


def _checked_split(name: str, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x as C-contiguous float32 (n, features) and t as class indices (n,)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    labels = class_indices(t)
    if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
        raise FashionnetError(
            f"{name} data: need images (n, features) and n labels, got {x.shape} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise FashionnetError(f"{name} data: labels must lie in 0..{NUM_CLASSES - 1}")
    return x, labels


def train(
    config: TrainConfig,
    x_train: np.ndarray,
    t_train: np.ndarray,
    x_test: np.ndarray | None = None,
    t_test: np.ndarray | None = None,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a TwoLayerNet by minibatch gradient descent on the cross-entropy.

    Labels may be class indices or one-hot rows. With a test set, each epoch also
    measures test accuracy. `on_epoch` is called with each epoch's record. With
    `config.standardize`, the returned parameters already include the input standardization.
    """
    start = time.perf_counter()
    x_train, t_train = _checked_split("training", x_train, t_train)
    if x_test is not None:
        x_test, t_test = _checked_split("test", x_test, t_test)
    standardization = Standardization.fit(x_train) if config.standardize else None
    if standardization is not None:
        x_train = standardization.apply(x_train)
        x_test = None if x_test is None else standardization.apply(x_test)
    net = TwoLayerNet(
        x_train.shape[1],
        config.hidden_size,
        NUM_CLASSES,
        config.weight_init_std,
        init=config.init,
        seed=config.seed,
    )
    params = net.params
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    shuffle_rng = np.random.default_rng([config.seed, SHUFFLE_STREAM])
    n = len(x_train)
    curve = []
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        optimizer.lr = scheduled_learning_rate(config, epoch)
        loss_sum, correct = 0.0, 0
        order = shuffle_rng.permutation(n)
        for first in range(0, n, config.batch_size):
            batch = order[first : first + config.batch_size]
            x, t = x_train[batch], t_train[batch]
            y, grads = backprop(params, x, t)
            loss_sum += cross_entropy_error(y, t) * len(batch)
            correct += int(np.count_nonzero(y.argmax(axis=1) == t))
            if config.weight_decay:
                # The L2 penalty (lambda / 2) * sum(W ** 2) adds lambda * W to each weight gradient.
                grads["W1"] += config.weight_decay * params["W1"]
                grads["W2"] += config.weight_decay * params["W2"]
            optimizer.update(params, grads)
        record = EpochRecord(
            epoch=epoch,
            loss=loss_sum / n,
            train_accuracy=correct / n,
            test_accuracy=None if x_test is None else net.accuracy(x_test, t_test),
            learning_rate=optimizer.lr,
            seconds=time.perf_counter() - epoch_start,
        )
        curve.append(record)
        _log_epoch(record, config.epochs)
        if on_epoch is not None:
            on_epoch(record)
    if standardization is not None:
        params = standardization.fold(params)
    return TrainResult(params=params, curve=curve, seconds=time.perf_counter() - start)


def _log_epoch(record: EpochRecord, epochs: int) -> None:
    test = "" if record.test_accuracy is None else f", test accuracy {record.test_accuracy:.4f}"
    logger.info(
        "epoch %d/%d: loss %.4f, train accuracy %.4f%s, lr %.3g, %.2f s",
        record.epoch,
        epochs,
        record.loss,
        record.train_accuracy,
        test,
        record.learning_rate,
        record.seconds,
    )


def write_learning_curve(path: str | Path, curve: list[EpochRecord]) -> None:
    """The curve as CSV, one row per epoch. No timings, so identical runs give identical bytes."""
    rows = [",".join(CURVE_COLUMNS)]
    for record in curve:
        test = "" if record.test_accuracy is None else f"{record.test_accuracy:.6f}"
        rows.append(
            f"{record.epoch},{record.loss:.6f},{record.train_accuracy:.6f},{test},"
            f"{record.learning_rate:.6g}"
        )
    atomic.write_text(path, "\n".join(rows) + "\n")
