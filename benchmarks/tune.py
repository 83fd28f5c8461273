"""`make tune`: a small search of the training recipe, chosen on the validation split alone.

    python -m benchmarks.tune [--raw-dir DIR] [--quick]

Each candidate of `search.CANDIDATES` (batch size, schedule length, dropout, label smoothing,
flips and shifts around `search.BASE`, the default recipe when the search ran) is trained with
seeds 0 to 4 by `train()`, on the training split, and scored on the validation split. The
rule (`search.choose`), applied twice: the *accurate* recipe is the cheapest candidate whose
mean paired difference to the best is within one standard error of it; the *fast* recipe is
the same rule among the candidates that cost no more than the base (hidden units x epochs),
the default recipe since. Only then are the chosen recipes' saved weights scored on the test
split, reported once: the test split chooses nothing.

Resumable: each finished training is appended to benchmarks/tuning.csv, keyed by its full
TrainConfig (seed included), its weights kept in benchmarks/work/tuning-weights; a rerun skips
what is there. Writes benchmarks/tuning.md (the table, the rule, the picks). `--quick` tunes a
slice of the rows with small recipes (benchmarks/work/tuning-quick.csv and .md), to check the
script end to end.
"""

import argparse
import logging
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import benchmarks.environment  # noqa: F401  (first: the benchmark's environment)
from benchmarks import (
    PROJECT_DIR,
    WORK,
    add_raw_dir_argument,
    prepared_splits,
    run_context,
    run_script,
)
from benchmarks.data import Splits, load_splits
from benchmarks.search import (
    CANDIDATES,
    QUICK_CANDIDATES,
    SEEDS,
    Summary,
    Tuner,
    choose,
    summarise,
)
from fashionnet.core import atomic
from fashionnet.core.layout import Layout
from fashionnet.core.threads import training_threads
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig

log = logging.getLogger("benchmarks.tune")

HERE = Path(__file__).resolve().parent
QUICK_ROWS = 3_000
# Below this 1-minute load average per core, besides the training's own threads, the machine
# counts as quiet.
QUIET_LOAD_PER_CORE = 0.25


def _table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _recipe(config: TrainConfig) -> str:
    """The fields that differ from the default recipe (seed aside)."""
    default = DEFAULT_CONFIG.model_dump()
    changed = {
        name: value
        for name, value in config.model_dump().items()
        if name != "seed" and value != default[name]
    }
    return ", ".join(f"{name}={value}" for name, value in changed.items()) or "the default"


def _timing_note(loads: Sequence[float]) -> str:
    cores = os.cpu_count() or 1
    span = f"{min(loads):.2f} to {max(loads):.2f} on {cores} cores"
    # The load as a training ends counts the training's own threads: the rest is other work.
    if (max(loads) - training_threads()) / cores < QUIET_LOAD_PER_CORE:
        return (
            f"Timings from a quiet machine (1-minute load average {span}, as each training "
            f"ended: its own {training_threads()} threads and little else)."
        )
    return (
        f"**Timings from a shared machine, not a quiet one** (1-minute load average {span}, "
        "other work running beside the search): they rank the candidates' costs roughly; the "
        "rule's cost is hidden units x epochs, not these seconds."
    )


def tuning_markdown(
    summaries: Sequence[Summary],
    picks: dict[str, Summary],
    tests: dict[str, list[float]],
    splits: Splits,
    loads: Sequence[float],
    kernels: Sequence[str],
) -> str:
    columns = ["candidate", "changes from the default", "validation per seed", "mean",
               "paired difference to the best ± SE", "within reach", "mean seconds"]  # fmt: skip
    rows = [
        (
            summary.name,
            _recipe(summary.config),
            ", ".join(f"{value:.4f}" for value in summary.validation),
            f"{summary.mean:.4f}",
            f"{summary.difference:+.4f} ± {summary.standard_error:.4f}",
            "yes" if summary.within_reach else "no",
            f"{statistics.mean(summary.seconds):.1f}",
        )
        for summary in summaries
    ]
    pick_lines = []
    for role, summary in picks.items():
        test = tests[summary.name]
        changes = _recipe(summary.config)
        changes = changes if changes == "the default" else f"`{changes}`"
        pick_lines.append(
            f"- **{role}**: {summary.name} ({changes}): validation "
            f"{summary.mean:.4f} (mean of {len(SEEDS)} seeds), training "
            f"{statistics.mean(summary.seconds):.1f} s (mean); **test accuracy "
            f"{statistics.mean(test):.4f}** (mean; each seed "
            f"{', '.join(f'{value:.4f}' for value in test)}), reported once, after the pick."
        )
    return (
        "# Tuning the training recipe\n\n"
        "Written by `make tune` (benchmarks/tune.py); every training is a row of "
        f"benchmarks/tuning.csv. {len(summaries)} candidates, each trained by `train()` (the "
        f"numeric path `fashionnet run` ships: its threads, one BLAS thread each; OpenBLAS's "
        f"{', '.join(kernels)} kernel, whose rounding the weights' bits depend on) with seeds "
        f"{', '.join(map(str, SEEDS))} on the {len(splits.train.label):,} images of the "
        f"training split, and scored on the {len(splits.validation.label):,} of the validation "
        f"split only. {_timing_note(loads)}\n\n" + _table(rows, columns) + "\n\n## The rule\n\n"
        "Paired differences: on each seed, a candidate's validation accuracy minus the best "
        "candidate's (highest mean), so what a seed gives both cancels; their mean, and its "
        "standard error (standard deviation of the differences / sqrt(seeds)). A candidate is "
        "within reach of the best when its mean difference is no further below 0 than one "
        "standard error. **Accurate**: the cheapest candidate within reach (hidden units x "
        "epochs, then the shorter mean training time). **Fast**: the same rule among the "
        "candidates costing no more than the first, the search's base (the best of them if none "
        "is within reach). The test split is not looked at until the picks are made.\n\n"
        "## The picks\n\n" + "\n".join(pick_lines) + "\n"
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
        splits, candidates = splits.head(QUICK_ROWS), QUICK_CANDIDATES
        csv_path, md_path = WORK / "tuning-quick.csv", WORK / "tuning-quick.md"
        weights_dir = WORK / "tuning-quick-weights"
    else:
        candidates, csv_path, md_path = CANDIDATES, HERE / "tuning.csv", HERE / "tuning.md"
        weights_dir = WORK / "tuning-weights"
    tuner = Tuner(splits, csv_path, weights_dir)
    rows = tuner.run(candidates)
    summaries = summarise(rows, candidates)
    # The first candidate is the reference the fast recipe may not cost more than (the base).
    picks = {"accurate": choose(summaries), "fast": choose(summaries, max_cost=summaries[0].cost)}
    tests = {pick.name: tuner.test_accuracies(pick.config) for pick in picks.values()}
    loads = [float(row["load"]) for row in rows]
    kernels = sorted({row["blas_kernel"] for row in rows})
    atomic.write_text(md_path, tuning_markdown(summaries, picks, tests, splits, loads, kernels))
    for role, pick in picks.items():
        print(f"{role}: {pick.name}: validation {pick.mean:.4f}, "
              f"test {statistics.mean(tests[pick.name]):.4f} (reported once)")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_script(main, "make tune")
