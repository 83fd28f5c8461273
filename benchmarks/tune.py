"""`make tune`: a small search of the training recipe, chosen on the validation split alone.

    python -m benchmarks.tune [--raw-dir DIR] [--quick]

The search varies hidden size, epochs, learning rate and weight decay around the defaults
(`TrainConfig`), at most 16 recipes, in two stages:

1. coarse: hidden size x epochs x weight decay, two values each (8 recipes) at the default
   learning rate;
2. refine: the coarse winner with, one at a time, half and twice its learning rate, twice its
   hidden size, half again its epochs, and a weight decay a third and three times its own
   (or, at 0, the smaller coarse value halved) (at most 6 recipes).

Each recipe is trained with the library (`train()`, seed 0) on the training split and scored on
the validation split only. The rule: the highest validation accuracy rounded to 0.001 (10 of
the 10,000 validation images); among equals, the cheaper recipe (hidden size x epochs), then
the earlier. After the pick, and only then, the chosen recipe is trained with seeds 0, 1, 2 and
their test accuracy is reported once, as their mean: the test split chooses nothing.

Resumable: each finished training is appended to benchmarks/tuning.csv, keyed by its stage and
its full TrainConfig; a rerun skips what is there. Writes benchmarks/tuning.md (the table, the
rule, the pick) and prints the chosen recipe. `--quick` tunes a slice of the rows with small
recipes (benchmarks/work/tuning-quick.csv and .md), to check the script end to end.
"""

import argparse
import logging
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import benchmarks.environment  # noqa: F401  (first: the benchmark's environment)
from benchmarks import PROJECT_DIR, WORK, add_raw_dir_argument, prepared_splits, run_context
from benchmarks.data import Splits, load_splits
from benchmarks.search import (
    FULL_SPACE,
    QUICK_SPACE,
    Tuner,
    coarse_configs,
    config_of,
    pick,
    refined_configs,
)
from fashionnet.core import atomic
from fashionnet.core.layout import Layout
from fashionnet.model.train import TrainConfig

log = logging.getLogger("benchmarks.tune")

HERE = Path(__file__).resolve().parent
FINAL_SEEDS = (0, 1, 2)
QUICK_ROWS = 3_000


def _table(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[column] for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def tuning_markdown(
    searched: Sequence[dict[str, str]],
    chosen: TrainConfig,
    final: Sequence[dict[str, str]],
    splits: Splits,
) -> str:
    shown = ["stage", "hidden_size", "epochs", "learning_rate", "weight_decay",
             "validation_accuracy", "seconds"]  # fmt: skip
    tests = [float(row["test_accuracy"]) for row in final]
    validations = [float(row["validation_accuracy"]) for row in final]
    return (
        "# Tuning the training recipe\n\n"
        "Written by `make tune` (benchmarks/tune.py); every row is in benchmarks/tuning.csv. "
        f"{len(searched)} recipes, each trained once (seed 0) on the "
        f"{len(splits.train.label):,} images of the training split and scored on the "
        f"{len(splits.validation.label):,} of the validation split only.\n\n"
        + _table(searched, shown)
        + "\n\n## The rule\n\nThe highest validation accuracy rounded to 0.001 (10 images "
        "in 10,000); among equals, the cheaper recipe (hidden size x epochs), then the earlier. "
        "The test split is not looked at until the pick is made.\n\n"
        f"## The pick\n\n`{chosen.model_dump()}`\n\n"
        f"Trained with seeds {', '.join(str(row['seed']) for row in final)}: validation "
        f"accuracy {statistics.mean(validations):.4f} (mean), **test accuracy "
        f"{statistics.mean(tests):.4f}** (mean; each seed "
        f"{', '.join(f'{value:.4f}' for value in tests)}), reported once, after the pick.\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_raw_dir_argument(parser)
    parser.add_argument(
        "--quick", action="store_true", help="a slice of the rows and small recipes"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    layout = Layout(PROJECT_DIR)
    prepared = prepared_splits(run_context(layout, args.raw_dir.resolve()))
    splits = load_splits(prepared)
    if args.quick:
        splits, space = splits.head(QUICK_ROWS), QUICK_SPACE
        csv_path, md_path = WORK / "tuning-quick.csv", WORK / "tuning-quick.md"
    else:
        space, csv_path, md_path = FULL_SPACE, HERE / "tuning.csv", HERE / "tuning.md"
    tuner = Tuner(splits, csv_path)

    coarse = tuner.run_stage("coarse", coarse_configs(space))
    refine = tuner.run_stage(
        "refine", refined_configs(config_of(pick(coarse)), space, coarse_configs(space))
    )
    searched = [*coarse, *refine]
    chosen = config_of(pick(searched))
    print(f"chosen: {chosen.model_dump()}")
    final = tuner.run_stage("final", [chosen.replace(seed=seed) for seed in FINAL_SEEDS], test=True)
    atomic.write_text(md_path, tuning_markdown(searched, chosen, final, splits))
    mean_test = statistics.mean(float(row["test_accuracy"]) for row in final)
    print(f"test accuracy of the chosen recipe, mean of {len(final)} seeds: {mean_test:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
