"""The tuning search (benchmarks/tune.py): its recipes, its rule, and its record in a CSV.

Kept apart from the script so that tests import it without the benchmark's environment.
"""

import csv
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import Splits, accuracy
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig, train

log = logging.getLogger("benchmarks.tune")

ROUNDING = 3  # validation accuracy is compared to 0.001: 10 of 10,000 images
COLUMNS = [
    "stage",
    "hidden_size",
    "epochs",
    "learning_rate",
    "weight_decay",
    "seed",
    "validation_accuracy",
    "test_accuracy",
    "seconds",
    "config",
]


@dataclass(frozen=True)
class Space:
    """The two values of each coarse factor; the learning rate starts at the base recipe's."""

    base: TrainConfig
    hidden_sizes: tuple[int, int]
    epochs: tuple[int, int]
    weight_decays: tuple[float, float]


FULL_SPACE = Space(DEFAULT_CONFIG, (512, 1024), (15, 30), (0.0, 1e-4))
QUICK_SPACE = Space(DEFAULT_CONFIG, (32, 64), (1, 2), (0.0, 1e-4))


def coarse_configs(space: Space) -> list[TrainConfig]:
    return [
        space.base.replace(hidden_size=hidden, epochs=epochs, weight_decay=decay)
        for hidden in space.hidden_sizes
        for epochs in space.epochs
        for decay in space.weight_decays
    ]


def refined_configs(
    best: TrainConfig, space: Space, searched: Iterable[TrainConfig]
) -> list[TrainConfig]:
    """The neighbours of the coarse winner, one factor changed at a time, but those already
    `searched`."""
    decay = best.weight_decay
    decays = (decay / 3, decay * 3) if decay else (min(d for d in space.weight_decays if d) / 2,)
    candidates = [
        best.replace(learning_rate=best.learning_rate / 2),
        best.replace(learning_rate=best.learning_rate * 2),
        best.replace(hidden_size=best.hidden_size * 2),
        best.replace(epochs=best.epochs + (best.epochs + 1) // 2),
        *(best.replace(weight_decay=value) for value in decays),
    ]
    seen = set(searched)
    return [config for config in dict.fromkeys(candidates) if config not in seen]


def config_key(config: TrainConfig) -> str:
    return json.dumps(config.model_dump(), sort_keys=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def append_row(path: Path, row: dict[str, object]) -> None:
    """Add one finished training to the CSV (with the header if the file is new). Appending,
    not rewriting: an interrupted search keeps every row written before."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)


def done(rows: Iterable[dict[str, str]], stage: str) -> dict[str, dict[str, str]]:
    """The rows of `stage` already in the CSV, by config key."""
    return {row["config"]: row for row in rows if row["stage"] == stage}


def pick(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """The rule: highest validation accuracy rounded to 0.001, then the cheaper recipe
    (hidden size x epochs), then the earlier row."""
    return min(
        rows,
        key=lambda row: (
            -round(float(row["validation_accuracy"]), ROUNDING),
            int(row["hidden_size"]) * int(row["epochs"]),
        ),
    )


def config_of(row: dict[str, str]) -> TrainConfig:
    return TrainConfig(**json.loads(row["config"]))


@dataclass
class Tuner:
    splits: Splits
    csv_path: Path

    def run_stage(
        self, stage: str, configs: Sequence[TrainConfig], *, test: bool = False
    ) -> list[dict[str, str]]:
        """Train each config not already in the CSV for this stage; returns the stage's rows,
        in the configs' order. Test accuracy is computed only when `test` (the final stage)."""
        finished = done(read_rows(self.csv_path), stage)
        for number, config in enumerate(configs, 1):
            key = config_key(config)
            if key in finished:
                log.info("%s %d/%d: done before, skipped", stage, number, len(configs))
                continue
            start = time.perf_counter()
            result = train(
                config, self.splits.train.row_groups(), self.splits.validation.row_groups()
            )
            row = {
                "stage": stage,
                "hidden_size": config.hidden_size,
                "epochs": config.epochs,
                "learning_rate": config.learning_rate,
                "weight_decay": config.weight_decay,
                "seed": config.seed,
                "validation_accuracy": f"{accuracy(result.params, self.splits.validation):.6f}",
                "test_accuracy": f"{accuracy(result.params, self.splits.test):.6f}" if test else "",
                "seconds": f"{time.perf_counter() - start:.2f}",
                "config": key,
            }
            append_row(self.csv_path, row)
            finished[key] = {name: str(value) for name, value in row.items()}
            log.info("%s %d/%d: validation %s (%s)", stage, number, len(configs),
                     row["validation_accuracy"], key)  # fmt: skip
        return [finished[config_key(config)] for config in configs]
