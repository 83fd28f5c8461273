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
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from fashionnet import atomic
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import NUM_CLASSES
from fashionnet.functions import cross_entropy_error
from fashionnet.optimizers import OPTIMIZERS, make_optimizer
from fashionnet.options import OneOf, Options
from fashionnet.schema import CURVE_COLUMNS
from fashionnet.standardize import Standardization
from fashionnet.two_layer_net import WEIGHT_INITS, Params, TwoLayerNet, backprop, class_indices

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine", "step")
# The shuffle draws from its own stream of the seed, independent of the weight init.
SHUFFLE_STREAM = 1


class TrainConfig(Options):
    """The training recipe: everything that decides the trained weights (with the data)."""

    kind: ClassVar[str] = "training option"

    hidden_size: int = Field(512, gt=0, description="Hidden layer units.")
    epochs: int = Field(15, gt=0, description="Training epochs.")
    batch_size: int = Field(256, gt=0, description="Minibatch size.")
    learning_rate: float = Field(0.002, gt=0, description="Initial learning rate.")
    optimizer: Annotated[str, OneOf(OPTIMIZERS)] = Field(
        "adam", description="Update rule; 'sgd' is the book's plain gradient descent."
    )
    lr_schedule: Annotated[str, OneOf(LR_SCHEDULES)] = Field(
        "cosine", description="Learning rate over the epochs (see scheduled_learning_rate)."
    )
    weight_init: Annotated[str, OneOf(WEIGHT_INITS)] = Field(
        "he",
        description="'he' scales the initial weights by sqrt(2 / fan_in); 'std' draws "
        "weight_init_std * N(0, 1) as the book does.",
    )
    weight_init_std: float = Field(
        0.01, gt=0, description="Scale of the 'std' initialisation (unused by 'he')."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="L2 strength lambda: adds lambda * W to each weight gradient."
    )
    standardize: bool = Field(
        True,
        description="Train on per-pixel standardized inputs, folded into W1 and b1 afterwards "
        "(off: train on x / 255 as the book does).",
    )
    seed: int = Field(0, ge=0, description="Seed of the initialisation and the shuffling.")


DEFAULT_CONFIG = TrainConfig()
# The book's recipe: plain SGD from small random weights, 100 hidden units, batch 100.
BOOK_CONFIG = TrainConfig(
    hidden_size=100,
    epochs=17,
    batch_size=100,
    learning_rate=0.1,
    optimizer="sgd",
    lr_schedule="constant",
    weight_init="std",
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
        weight_init=config.weight_init,
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


def curve_table(curve: list[EpochRecord]) -> pd.DataFrame:
    """The curve as a table, one row per epoch (no timings: identical runs, identical tables)."""
    rows = [(r.epoch, r.loss, r.train_accuracy, r.test_accuracy, r.learning_rate) for r in curve]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curve_csv(curve: pd.DataFrame) -> str:
    """learning_curve.csv's text: losses and accuracies with 6 decimals (a missing test
    accuracy is an empty cell), learning rates with 6 significant digits, so a small late
    rate of a schedule keeps its value."""
    columns = {
        "epoch": "{:d}".format,
        "loss": "{:.6f}".format,
        "train_accuracy": "{:.6f}".format,
        "test_accuracy": lambda value: "" if pd.isna(value) else f"{value:.6f}",
        "learning_rate": "{:.6g}".format,
    }
    rows = [",".join(CURVE_COLUMNS)]
    for record in curve[CURVE_COLUMNS].itertuples(index=False):
        rows.append(
            ",".join(
                columns[name](value) for name, value in zip(CURVE_COLUMNS, record, strict=True)
            )
        )
    return "\n".join(rows) + "\n"


def write_learning_curve(path: str | Path, curve: pd.DataFrame) -> None:
    atomic.write_text(path, curve_csv(curve))


def read_learning_curve(path: str | Path) -> pd.DataFrame:
    """A learning_curve.csv back as a table; a file without the curve's columns is refused
    (a stored model with such a file is trained again)."""
    try:
        curve = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise FashionnetError(f"{path} is not a readable learning curve ({error})") from None
    if list(curve.columns) != CURVE_COLUMNS:
        raise FashionnetError(f"{path} has columns {list(curve.columns)}, not {CURVE_COLUMNS}")
    return curve
