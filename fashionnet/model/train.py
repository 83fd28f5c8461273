"""Minibatch training of TwoLayerNet: shuffle, backpropagate, update, log one line per epoch.

Training streams its split by row groups through a shuffle buffer (`shuffle_buffer`), so its
memory does not grow with the number of images; after each epoch it measures the accuracy on
the validation split, streamed the same way. It never reads the test split.

Everything is seeded (weights from `seed`; the row-group order, the rows' shuffle and the
augmentation each from their own stream of the same seed) and float32, so the same config and
data give bit-identical weights with the same BLAS kernel (another kernel rounds differently).

Each step's work is shared by one thread per core (`core.threads`), in jobs of a fixed size
(`BlockedBackprop`'s blocks of hidden units: a block's backward pass, the update of its weights,
then its forward pass of the next minibatch), so the weights are the same whatever the load and
however many cores there are.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from fashionnet.core import atomic, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.threads import Job, Run, run_in_order, training_workers
from fashionnet.data.catalog import NUM_CLASSES
from fashionnet.model.augment import AUGMENTS, augmented
from fashionnet.model.functions import cross_entropy_error
from fashionnet.model.optimizers import OPTIMIZERS, Optimizer, make_optimizer
from fashionnet.model.shuffle_buffer import HeldSplit, RowGroups, shuffled_minibatches
from fashionnet.model.standardize import Standardization
from fashionnet.model.two_layer_net import (
    PARAM_NAMES,
    WEIGHT_INITS,
    BlockedBackprop,
    Params,
    TwoLayerNet,
    scores,
)
from fashionnet.options import OneOf, Options
from fashionnet.report.columns import CURVE_COLUMNS

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine", "step")
# Each use of randomness draws from its own stream of the seed, independent of the weight init
# and of each other (so turning augmentation on does not change the shuffle).
SHUFFLE_STREAM = 1
ROW_GROUP_ORDER_STREAM = 2
AUGMENT_STREAM = 3
DROPOUT_STREAM = 4
# Validation images scored per job: a fixed size, so the accuracy does not depend on the
# number of threads.
ACCURACY_ROWS = 1_000


# Named recipes: the fields each sets where it differs from the fields' defaults (the default
# recipe). `TrainConfig(recipe=name, ...)` starts from the named one; the fields given override it.
RECIPES: dict[str, dict[str, Any]] = {
    # `make tune`'s fast pick, on validation alone (benchmarks/tuning.md): label smoothing 0.2,
    # validation 0.9094 (mean of 5 seeds) against 0.9076 without, for the same arithmetic.
    "default": {},
    # `make tune`'s accurate pick: validation 0.9106, for twice the default's arithmetic.
    "accurate": {"hidden_size": 2048, "label_smoothing": 0.1},
    # The book's: plain SGD from small random weights, 100 hidden units, batch 100, x / 255.
    "book": {
        "hidden_size": 100,
        "epochs": 17,
        "batch_size": 100,
        "learning_rate": 0.1,
        "optimizer": "sgd",
        "lr_schedule": "constant",
        "weight_init": "std",
        "weight_init_std": 0.01,
        "standardize": False,
        "label_smoothing": 0.0,
    },
}


class TrainConfig(Options):
    """The training recipe: everything that decides the trained weights (with the data)."""

    kind: ClassVar[str] = "training option"
    presets: ClassVar[str] = "recipe"  # the field that names a preset of the others

    recipe: Annotated[str, OneOf(RECIPES)] = Field(
        "default",
        description="The named recipe the other training options start from (those given "
        "override it): 'default' is fast, 'accurate' has twice the hidden units and half the "
        "label smoothing (benchmarks/tuning.md), 'book' is the book's SGD recipe.",
    )
    hidden_size: int = Field(1024, gt=0, description="Hidden layer units.")
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
    shuffle_buffer_row_groups: int = Field(
        8,
        gt=0,
        description="Row groups shuffled together (memory: this many row groups of images); "
        "the default holds all of Fashion-MNIST's training rows at 10,000 rows per group, so "
        "the shuffle is over the whole split.",
    )
    augment: Annotated[str, OneOf(AUGMENTS)] = Field(
        "none",
        description="'shift' moves each minibatch image by up to 2 pixels in each direction "
        "(zero fill), 'flip' mirrors half of them left to right, 'shift-flip' does both; drawn "
        "anew every epoch.",
    )
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Fraction of hidden units dropped at random in each training minibatch "
        "(inverted dropout: the kept ones scaled by 1 / (1 - dropout); none when predicting).",
    )
    label_smoothing: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Training targets (1 - label_smoothing) * one_hot + label_smoothing / 10 "
        "instead of one_hot.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="Seed of the initialisation, the shuffling, the augmentation and dropout.",
    )

    @model_validator(mode="before")
    @classmethod
    def _start_from_the_recipe(cls, values: Any) -> Any:
        """The named recipe's fields under the ones given (an unknown name is refused by the
        field's own rule)."""
        if isinstance(values, dict):
            return {**RECIPES.get(values.get("recipe", "default"), {}), **values}
        return values

    def recipe_overrides(self) -> dict[str, tuple[Any, Any]]:
        """The named recipe's fields this config sets otherwise: name -> (value, the recipe's).
        Said in the run's log: a form that sends every field (Prefect's, pre-filled with the
        defaults) overrides the recipe chosen in it."""
        return {
            name: (getattr(self, name), value)
            for name, value in RECIPES[self.recipe].items()
            if getattr(self, name) != value
        }


DEFAULT_CONFIG = TrainConfig()
ACCURATE_CONFIG = TrainConfig(recipe="accurate")
BOOK_CONFIG = TrainConfig(recipe="book")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean cross-entropy over the epoch's minibatches (without the L2 term)
    # On the epoch's minibatches, each before its update (as Keras reports): a running figure,
    # not the accuracy of the final weights on the training rows.
    minibatch_accuracy: float
    validation_accuracy: float | None  # after the epoch; None without a validation split
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


def train(
    config: TrainConfig,
    train_split: RowGroups,
    validation_split: RowGroups | None = None,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a TwoLayerNet by minibatch gradient descent on the cross-entropy.

    Both splits are read by row groups (`dataset.SplitFile`, or `ArrayRowGroups` for arrays).
    With a validation split, each epoch also measures validation accuracy. `on_epoch` is called
    with each epoch's record. With `config.standardize`, the returned parameters already
    include the input standardization.
    """
    start = time.perf_counter()
    # A split that fits in the shuffle buffer is read once and held, rather than read again
    # every epoch: memory stays within the buffer (and one validation row group, as before).
    if config.shuffle_buffer_row_groups >= len(train_split.row_group_rows):
        train_split = HeldSplit(train_split)
    if validation_split is not None and len(validation_split.row_group_rows) == 1:
        validation_split = HeldSplit(validation_split)
    with training_workers() as workers:
        params, curve = _train(config, train_split, validation_split, on_epoch, workers.run)
    return TrainResult(params=params, curve=curve, seconds=time.perf_counter() - start)


def _train(
    config: TrainConfig,
    train_split: RowGroups,
    validation_split: RowGroups | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    run: Run,
) -> tuple[Params, list[EpochRecord]]:
    """`train`'s work, each step's jobs run by `run`: the parameters and the curve."""
    all_groups = range(len(train_split.row_group_rows))
    n = sum(train_split.row_group_rows)
    standardization = None
    if config.standardize:  # one streaming pass over the training rows
        standardization = Standardization.fit_stream(train_split.read([g])[0] for g in all_groups)
    net = TwoLayerNet(
        train_split.num_features,
        config.hidden_size,
        NUM_CLASSES,
        config.weight_init_std,
        weight_init=config.weight_init,
        seed=config.seed,
    )
    params = net.params
    # Column-major during training: a block of hidden units is a block of W1's memory, which
    # the job that computed its gradient updates in one pass per operation.
    params["W1"] = np.asfortranarray(params["W1"])
    backprop = BlockedBackprop(
        params, config.batch_size, run, label_smoothing=config.label_smoothing
    )
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    updates = _Updates(optimizer, params, backprop.grads, config.weight_decay)
    # While a step's jobs read its minibatch (backward) and the next one (forward), the one after
    # is prepared: three buffers.
    buffers = [_Buffers(config, train_split.num_features) for _ in range(3)]
    group_rng = np.random.default_rng([config.seed, ROW_GROUP_ORDER_STREAM])
    shuffle_rng = np.random.default_rng([config.seed, SHUFFLE_STREAM])
    augment_rng = np.random.default_rng([config.seed, AUGMENT_STREAM])
    dropout_rng = np.random.default_rng([config.seed, DROPOUT_STREAM])
    curve = []
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        optimizer.lr = scheduled_learning_rate(config, epoch)
        tally = _Tally()
        minibatches = _prepared(
            shuffled_minibatches(
                train_split,
                config.shuffle_buffer_row_groups,
                config.batch_size,
                group_rng,
                shuffle_rng,
            ),
            config,
            augment_rng,
            dropout_rng,
            standardization,
            buffers,
        )
        batch = next(minibatches)  # an epoch has at least one minibatch
        following: list[_Minibatch | None] = []
        run(
            [
                *backprop.forward(batch.x_transposed, batch.dropout_scale),
                partial(_take_next, minibatches, following),
            ]
        )
        while batch is not None:
            interrupts.check()  # a stop request ends training within one step
            current = batch
            batch = following.pop()  # prepared during the last jobs; None after the epoch's last
            optimizer.start_step()
            output, dscores = backprop.output_gradient(current.labels)
            jobs = backprop.backward(current.x, dscores, current.dropout_scale, updates.block)
            beside: list[Job] = [updates.output_bias]
            if batch is not None:
                # Each block's job goes on with the next minibatch's forward pass of the block,
                # its weights just updated: one wait for the threads per step instead of two.
                upcoming = backprop.forward(batch.x_transposed, batch.dropout_scale)
                jobs = [partial(run_in_order, pair) for pair in zip(jobs, upcoming, strict=True)]
                beside.append(partial(_take_next, minibatches, following))
            run([*beside, *jobs])
            tally.add(output, current.labels)
        record = EpochRecord(
            epoch=epoch,
            loss=tally.loss_sum / n,
            minibatch_accuracy=tally.correct / n,
            validation_accuracy=None
            if validation_split is None
            else streamed_accuracy(params, validation_split, standardization, run),
            learning_rate=optimizer.lr,
            seconds=time.perf_counter() - epoch_start,
        )
        curve.append(record)
        _log_epoch(record, config.epochs)
        if on_epoch is not None:
            on_epoch(record)
    if standardization is not None:
        params = standardization.fold(params)
    # Row-major again, as the pipeline saves and loads W1.
    return {name: np.ascontiguousarray(array) for name, array in params.items()}, curve


class _Updates:
    """One optimizer step applied as the gradients come: a block of hidden units' part of W1
    (its columns), b1 and W2 (its rows) in the backward job that computed their gradients
    (`block`), before the same job's forward pass of the next minibatch reads them; b2, whose
    gradient is known before those jobs start, beside them (`output_bias`). With weight decay,
    the L2 penalty (lambda / 2) * sum(W ** 2) adds lambda * W to each weight gradient first."""

    def __init__(
        self, optimizer: Optimizer, params: Params, grads: Params, weight_decay: float
    ) -> None:
        self.optimizer, self.params, self.grads = optimizer, params, grads
        self.weight_decay = weight_decay
        # Made here, once: the jobs only take their part of them.
        self.states = {name: optimizer.state(name, grads[name]) for name in PARAM_NAMES}

    def block(self, block: slice) -> None:
        self._apply("W1", (slice(None), block))
        self._apply("b1", block)
        self._apply("W2", block)

    def output_bias(self) -> None:
        self._apply("b2", slice(None))

    def _apply(self, name: str, part: Any) -> None:
        param, grad = self.params[name][part], self.grads[name][part]
        if self.weight_decay and name.startswith("W"):
            grad += self.weight_decay * param
        self.optimizer.apply(param, grad, *(array[part] for array in self.states[name]))


@dataclass
class _Tally:
    """An epoch's loss (summed over its rows) and its correct answers, minibatch by minibatch."""

    loss_sum: float = 0.0
    correct: int = 0

    def add(self, output: np.ndarray, t: np.ndarray) -> None:
        self.loss_sum += cross_entropy_error(output, t) * len(t)
        self.correct += int(np.count_nonzero(output.argmax(axis=1) == t))


class _Minibatch(NamedTuple):
    """A prepared minibatch."""

    x: np.ndarray  # standardized pixels (images, pixels)
    x_transposed: np.ndarray  # the same, transposed (pixels, images)
    labels: np.ndarray
    dropout_scale: np.ndarray | None  # None without dropout


class _Buffers:
    """Where one minibatch is prepared: its standardized pixels in both layouts
    (`BlockedBackprop` reads each where it is faster) and its dropout scale."""

    def __init__(self, config: TrainConfig, num_features: int) -> None:
        self.pixels = np.empty((config.batch_size, num_features), np.float32)
        self.pixels_transposed = np.empty((num_features, config.batch_size), np.float32)
        dropout_size = config.hidden_size * config.batch_size if config.dropout else 0
        self.dropout = np.empty(dropout_size, np.float32)  # none needed without dropout
        self.hidden_size = config.hidden_size


def _prepared(
    minibatches: Iterator[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    augment_rng: np.random.Generator,
    dropout_rng: np.random.Generator,
    standardization: Standardization | None,
    buffers: list[_Buffers],
) -> Iterator[_Minibatch]:
    """The minibatches augmented and standardized, each with its dropout scale drawn, in each
    of `buffers` by turns (so a minibatch stays valid while the next is prepared). Drawn here,
    one minibatch after the other, not in the threads' jobs: the draws never depend on which
    thread runs what."""
    for number, (x, t) in enumerate(minibatches):
        into = buffers[number % len(buffers)]
        x = augmented(x, config.augment, augment_rng)
        if standardization is not None:
            x = standardization.apply(x, out=into.pixels[: len(x)])
        x_transposed = into.pixels_transposed[:, : len(x)]
        np.copyto(x_transposed, x.T)
        dropout_scale = None
        if config.dropout:
            # (hidden units, images), as BlockedBackprop keeps the hidden layer.
            dropout_scale = into.dropout[: into.hidden_size * len(x)].reshape(-1, len(x))
            dropout_rng.random(out=dropout_scale, dtype=np.float32)
            kept = dropout_scale >= config.dropout
            np.multiply(kept, np.float32(1 / (1 - config.dropout)), out=dropout_scale)
        yield _Minibatch(x, x_transposed, t, dropout_scale)


def _take_next(minibatches: Iterator, into: list) -> None:
    into.append(next(minibatches, None))


def streamed_accuracy(
    params: Params,
    split: RowGroups,
    standardization: Standardization | None,
    run: Run = run_in_order,
) -> float:
    """The accuracy of `params` on `split`, one row group at a time, ACCURACY_ROWS images a
    job (`run` runs the jobs)."""
    correct: list[int] = []

    def count_correct(x: np.ndarray, t: np.ndarray) -> None:
        if standardization is not None:
            x = standardization.apply(x)
        correct.append(int(np.count_nonzero(scores(params, x).argmax(axis=1) == t)))

    for group in range(len(split.row_group_rows)):
        x, t = split.read([group])
        rows = range(0, len(t), ACCURACY_ROWS)
        run(
            [
                partial(count_correct, x[i : i + ACCURACY_ROWS], t[i : i + ACCURACY_ROWS])
                for i in rows
            ]
        )
    return sum(correct) / sum(split.row_group_rows)


def _log_epoch(record: EpochRecord, epochs: int) -> None:
    validation = (
        ""
        if record.validation_accuracy is None
        else f", validation accuracy {record.validation_accuracy:.4f}"
    )
    logger.info(
        "epoch %d/%d: loss %.4f, minibatch accuracy %.4f%s, lr %.3g, %.2f s",
        record.epoch,
        epochs,
        record.loss,
        record.minibatch_accuracy,
        validation,
        record.learning_rate,
        record.seconds,
    )


def curve_table(curve: list[EpochRecord]) -> pd.DataFrame:
    """The curve as a table, one row per epoch (no timings: identical runs, identical tables)."""
    rows = [
        (r.epoch, r.loss, r.minibatch_accuracy, r.validation_accuracy, r.learning_rate)
        for r in curve
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curve_csv(curve: pd.DataFrame) -> str:
    """learning_curve.csv's text: losses and accuracies with 6 decimals (a missing validation
    accuracy is an empty cell), learning rates with 6 significant digits, so a small late
    rate of a schedule keeps its value."""
    columns = {
        "epoch": "{:d}".format,
        "loss": "{:.6f}".format,
        "minibatch_accuracy": "{:.6f}".format,
        "validation_accuracy": lambda value: "" if pd.isna(value) else f"{value:.6f}",
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
