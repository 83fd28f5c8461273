"""The tuning search (benchmarks/tune.py): its candidates, its rule, and its record in a CSV.

Kept apart from the script so that tests import it without the benchmark's environment.

Every candidate is trained with each of SEEDS by `train()` itself (its threads and BLAS
settings: the numeric path `fashionnet run` ships) and scored on the validation split only.
Candidates are compared by paired differences: on each seed, a candidate's validation accuracy
minus the best candidate's (the one with the highest mean), so what the seeds share (their
initialisation, their shuffles) cancels. The rule (`choose`): among the candidates whose mean
paired difference to the best lies within one standard error of that difference, the cheapest
(hidden units x epochs, then the shorter mean training time). The test split is scored only for
the chosen recipes, once the search is over, from the weights each training saved.
"""

import csv
import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_info

from benchmarks.data import Splits, accuracy
from fashionnet.core.errors import FashionnetError
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig, train
from fashionnet.model.weights import load_params, save_params

log = logging.getLogger("benchmarks.tune")

SEEDS = (0, 1, 2, 3, 4)
# `load`: the 1-minute load average as the training ends (its own threads count in it);
# `blas_kernel`: OpenBLAS's kernel, which decides the products' rounding (and so the weights).
COLUMNS = ["candidate", "seed", "validation_accuracy", "seconds", "load", "blas_kernel", "config"]
START_AFRESH = "move it aside to search afresh"
# The recipe the search was run around: the default recipe of the time, without label
# smoothing. Its fast pick (smoothing 0.2) has been the default recipe since.
BASE = DEFAULT_CONFIG.replace(label_smoothing=0.0)
# The probe of issue 21 (validation 0.9079 with one seed): dropout on the hidden layer, flips,
# label smoothing, a long cosine schedule.
REGULARISED = BASE.replace(dropout=0.3, augment="flip", label_smoothing=0.1)

# A short list, not a grid (one default training takes about 20 s on the 2 cores, 45 to 100 s
# when they are shared, and each candidate is trained 5 times), in the order they are trained,
# the likeliest to matter first: the base; the probe's regularised recipe at 40 epochs; what the
# base's cost can buy (label smoothing, a larger batch, the regularised recipe at 15 epochs);
# the regularised recipe with more dropout, or with shifts as well as flips. The last four were
# added once the first seven had shown label smoothing alone ahead (on validation): they refine
# around it (more smoothing, a longer schedule, mild dropout without flips, twice the hidden
# units).
SMOOTHED = BASE.replace(label_smoothing=0.1)
CANDIDATES: dict[str, TrainConfig] = {
    "no smoothing": BASE,
    "dropout 0.3, flip, smoothing 0.1, 40 epochs": REGULARISED.replace(epochs=40),
    "smoothing 0.1": SMOOTHED,
    "batch 512": BASE.replace(batch_size=512),
    "dropout 0.3, flip, smoothing 0.1": REGULARISED,
    "dropout 0.5, flip, smoothing 0.1, 40 epochs": REGULARISED.replace(epochs=40, dropout=0.5),
    "dropout 0.3, shift-flip, smoothing 0.1, 40 epochs": REGULARISED.replace(
        epochs=40, augment="shift-flip"
    ),
    "smoothing 0.2": SMOOTHED.replace(label_smoothing=0.2),
    "smoothing 0.1, 25 epochs": SMOOTHED.replace(epochs=25),
    "dropout 0.2, smoothing 0.1, 25 epochs": SMOOTHED.replace(epochs=25, dropout=0.2),
    "smoothing 0.1, 2048 hidden units": SMOOTHED.replace(hidden_size=2048),
}
QUICK_CANDIDATES: dict[str, TrainConfig] = {
    "small": BASE.replace(hidden_size=32, epochs=2),
    "small, batch 128": BASE.replace(hidden_size=32, epochs=2, batch_size=128),
    "small, regularised": REGULARISED.replace(hidden_size=32, epochs=3),
}


def blas_kernel() -> str:
    """The kernels of the BLAS libraries loaded here (OpenBLAS names its kernel: SkylakeX,
    Haswell...); OpenMP runtimes, which threadpoolctl also lists, have none."""
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    return " ".join(sorted({str(info.get("architecture")) for info in blas}))


def config_key(config: TrainConfig) -> str:
    """What decides a training's weights: every field but the recipe's name (a label)."""
    return json.dumps(config.model_dump(exclude={"recipe"}), sort_keys=True)


def weights_path(folder: Path, config: TrainConfig) -> Path:
    """Where the training of `config` (seed included) keeps its weights."""
    return folder / f"{hashlib.sha256(config_key(config).encode()).hexdigest()[:16]}.npz"


def read_rows(path: Path) -> list[dict[str, str]]:
    """The trainings recorded in `path` (none if it does not exist yet). A file that is not a
    search record of today's columns is refused in one line: its rows cannot be resumed."""
    if not os.path.lexists(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FashionnetError(f"{path} cannot be read ({error}): {START_AFRESH}") from error
    if reader.fieldnames != COLUMNS:
        raise FashionnetError(
            f"{path} has the columns {reader.fieldnames}, not {COLUMNS} (written by another "
            f"version of make tune?): {START_AFRESH}"
        )
    for line, row in enumerate(rows, start=2):
        try:
            int(row["seed"]), float(row["validation_accuracy"]), float(row["seconds"])
            TrainConfig(**json.loads(row["config"]))
        except (TypeError, ValueError) as error:  # pydantic's and json's errors are ValueErrors
            raise FashionnetError(f"{path}, line {line}, is damaged: {START_AFRESH}") from error
    return rows


def append_row(path: Path, row: Mapping[str, object]) -> None:
    """Add one finished training to the CSV (with the header if the file is new). Appending,
    not rewriting: an interrupted search keeps every row written before."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)


@dataclass(frozen=True)
class Summary:
    """One candidate over the seeds, and its paired difference to the best candidate."""

    name: str
    config: TrainConfig  # seed 0's
    validation: tuple[float, ...]  # per seed, in SEEDS order
    seconds: tuple[float, ...]
    difference: float = 0.0  # mean over the seeds of (this - best)
    standard_error: float = 0.0  # of that mean: stdev of the differences / sqrt(seeds)

    @property
    def mean(self) -> float:
        return statistics.mean(self.validation)

    @property
    def cost(self) -> int:
        """Multiply-adds per image seen, times the epochs: the cost the rule compares."""
        return self.config.hidden_size * self.config.epochs

    @property
    def within_reach(self) -> bool:
        """Within one standard error of the best (the best itself is, at 0)."""
        return -self.difference <= self.standard_error


def summarise(rows: Sequence[Mapping[str, str]], names: Iterable[str]) -> list[Summary]:
    """The candidates `names` (each with a row per seed in `rows`), compared with the best."""
    by_name: dict[str, list[Mapping[str, str]]] = {}
    for row in rows:
        by_name.setdefault(row["candidate"], []).append(row)
    plain = []
    for name in names:
        seeded = sorted(by_name[name], key=lambda row: int(row["seed"]))
        config = TrainConfig(**json.loads(seeded[0]["config"]))
        plain.append(
            Summary(
                name,
                config.replace(seed=0),
                tuple(float(row["validation_accuracy"]) for row in seeded),
                tuple(float(row["seconds"]) for row in seeded),
            )
        )
    best = max(plain, key=lambda summary: summary.mean)
    compared = []
    for summary in plain:
        differences = [a - b for a, b in zip(summary.validation, best.validation, strict=True)]
        error = statistics.stdev(differences) / math.sqrt(len(differences))
        compared.append(
            Summary(
                **{
                    **summary.__dict__,
                    "difference": statistics.mean(differences),
                    "standard_error": error,
                }
            )  # fmt: skip
        )
    return compared


def choose(summaries: Sequence[Summary], max_cost: int | None = None) -> Summary:
    """The rule: of the candidates within one standard error of the best (and costing at most
    `max_cost`, if given), the cheapest, then the quicker."""
    eligible = [s for s in summaries if s.within_reach and (max_cost is None or s.cost <= max_cost)]
    if not eligible:  # nothing that cheap is within reach: the best that cheap
        eligible = [max((s for s in summaries if s.cost <= max_cost), key=lambda s: s.mean)]
    return min(eligible, key=lambda s: (s.cost, statistics.mean(s.seconds)))


@dataclass
class Tuner:
    splits: Splits
    csv_path: Path
    weights_dir: Path

    def run(self, candidates: Mapping[str, TrainConfig]) -> list[dict[str, str]]:
        """Train each candidate with each of SEEDS, but the trainings already in the CSV;
        returns the candidates' rows. Each training's weights are kept (for the test score of
        the chosen ones, after the search)."""
        finished = {row["config"]: row for row in read_rows(self.csv_path)}
        total = len(candidates) * len(SEEDS)
        number = 0
        for name, base in candidates.items():
            for seed in SEEDS:
                number += 1
                config = base.replace(seed=seed)
                key = config_key(config)
                if key in finished:
                    log.info("%d/%d %s, seed %d: done before, skipped", number, total, name, seed)
                    continue
                start = time.perf_counter()
                result = train(
                    config, self.splits.train.row_groups(), self.splits.validation.row_groups()
                )
                seconds = time.perf_counter() - start
                save_params(weights_path(self.weights_dir, config), result.params)
                row = {
                    "candidate": name,
                    "seed": seed,
                    "validation_accuracy": f"{accuracy(result.params, self.splits.validation):.6f}",
                    "seconds": f"{seconds:.2f}",
                    "load": f"{os.getloadavg()[0]:.2f}",
                    "blas_kernel": blas_kernel(),
                    "config": key,
                }
                append_row(self.csv_path, row)
                finished[key] = {column: str(value) for column, value in row.items()}
                log.info("%d/%d %s, seed %d: validation %s, %.1f s", number, total, name, seed,
                         row["validation_accuracy"], seconds)  # fmt: skip
        keys = {config_key(base.replace(seed=s)) for base in candidates.values() for s in SEEDS}
        return [row for key, row in finished.items() if key in keys]

    def test_accuracies(self, config: TrainConfig) -> list[float]:
        """The test accuracy of `config`'s trainings, one per seed: for the chosen recipes
        alone, once the search is over."""
        return [
            accuracy(load_params(weights_path(self.weights_dir, config.replace(seed=seed))),
                     self.splits.test)
            for seed in SEEDS
        ]  # fmt: skip
