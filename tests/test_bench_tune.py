"""The tuning search: its candidates, its rule on paired differences, and its resumption from
tuning.csv, with the test split scored only for the chosen recipes."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import search
from benchmarks.data import Split, Splits
from benchmarks.search import (
    BASE,
    CANDIDATES,
    QUICK_CANDIDATES,
    SEEDS,
    Tuner,
    choose,
    config_key,
    read_rows,
    summarise,
)
from fashionnet.core.errors import FashionnetError
from fashionnet.model.train import ACCURATE_CONFIG, DEFAULT_CONFIG, TrainConfig


def test_the_candidates_start_from_the_base_and_search_each_factor():
    configs = list(CANDIDATES.values())
    assert configs[0] == BASE and len(SEEDS) >= 3
    assert len({config_key(config) for config in configs}) == len(configs) <= 12
    for factor in ("batch_size", "epochs", "dropout", "label_smoothing", "augment"):
        assert len({getattr(config, factor) for config in configs}) > 1, factor
    assert all(config.hidden_size <= 64 for config in QUICK_CANDIDATES.values())


def rows(name: str, config: TrainConfig, validations: list[float]) -> list[dict[str, str]]:
    """A candidate's CSV rows: one per value, for the first seeds."""
    return [
        {
            "candidate": name,
            "seed": str(seed),
            "validation_accuracy": str(value),
            "seconds": "10.0",
            "config": config_key(config.replace(seed=seed)),
        }
        for seed, value in zip(SEEDS[: len(validations)], validations, strict=True)
    ]


CHEAP, LONG, LONGER = (DEFAULT_CONFIG.replace(epochs=epochs) for epochs in (15, 30, 40))


def test_candidates_are_compared_by_paired_differences_to_the_best():
    summaries = summarise(
        rows("cheap", CHEAP, [0.900, 0.905, 0.910]) + rows("long", LONG, [0.903, 0.907, 0.911]),
        ["cheap", "long"],
    )
    cheap, long = summaries
    assert long.difference == 0 and long.standard_error == 0 and long.within_reach
    # differences -0.003, -0.002, -0.001: mean -0.002, standard error 0.001 / sqrt(3)
    assert cheap.difference == pytest.approx(-0.002)
    assert cheap.standard_error == pytest.approx(0.001 / math.sqrt(3))
    assert not cheap.within_reach  # consistently worse, though by less than the seeds' spread
    assert choose(summaries) == long
    assert cheap.config == CHEAP and cheap.cost < long.cost


def test_the_cheapest_within_one_standard_error_of_the_best_is_chosen():
    summaries = summarise(
        rows("cheap", CHEAP, [0.899, 0.911, 0.906])
        + rows("longer", LONGER, [0.905, 0.904, 0.910])
        + rows("long", LONG, [0.900, 0.909, 0.909]),
        ["cheap", "longer", "long"],
    )
    by_name = {summary.name: summary for summary in summaries}
    assert by_name["longer"].difference == 0  # the best mean
    assert by_name["cheap"].within_reach and by_name["long"].within_reach
    assert choose(summaries).name == "cheap"


def test_within_a_cost_the_best_is_taken_when_none_is_within_reach():
    summaries = summarise(
        rows("cheap", CHEAP, [0.890, 0.891, 0.892]) + rows("long", LONG, [0.900, 0.901, 0.903]),
        ["cheap", "long"],
    )
    assert choose(summaries, max_cost=CHEAP.hidden_size * CHEAP.epochs).name == "cheap"
    assert choose(summaries).name == "long"


def tiny_splits() -> Splits:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        labels = (np.arange(n) % 10).astype(np.uint8)
        x = rng.random((n, 784), dtype=np.float32) * 0.1
        x[np.arange(n), labels] += 1  # learnable: the label's pixel is bright
        return Split(x, labels)

    return Splits(split(200), split(100), split(100))


def test_a_rerun_skips_the_trainings_in_the_csv_and_test_is_scored_from_saved_weights(
    tmp_path, monkeypatch
):
    csv_path, weights = tmp_path / "tuning.csv", tmp_path / "weights"
    small = TrainConfig(hidden_size=8, epochs=1)
    candidates = {"small": small, "wider": small.replace(hidden_size=16, dropout=0.2)}
    first = Tuner(tiny_splits(), csv_path, weights).run({"small": small})
    assert [row["seed"] for row in first] == [str(seed) for seed in SEEDS]
    assert "test_accuracy" not in first[0]  # the search never scores the test split

    trained = []
    original = search.train
    monkeypatch.setattr(
        search, "train", lambda config, *a: trained.append(config) or original(config, *a)
    )
    tuner = Tuner(tiny_splits(), csv_path, weights)
    again = tuner.run(candidates)
    assert trained == [candidates["wider"].replace(seed=seed) for seed in SEEDS]
    assert again[: len(SEEDS)] == first
    hidden_sizes = [json.loads(row["config"])["hidden_size"] for row in read_rows(csv_path)]
    assert hidden_sizes == [8] * len(SEEDS) + [16] * len(SEEDS)
    summaries = summarise(again, candidates)
    assert [summary.name for summary in summaries] == ["small", "wider"]
    assert summaries[1].config == candidates["wider"]
    tests = tuner.test_accuracies(candidates["wider"])
    assert len(tests) == len(SEEDS) and all(0 <= value <= 1 for value in tests)
    assert len(trained) == len(SEEDS)  # scoring test trained nothing


def test_the_accurate_and_default_recipes_are_the_committed_search_picks():
    summaries = summarise(read_rows(Path(search.__file__).parent / "tuning.csv"), CANDIDATES)
    assert config_key(choose(summaries).config) == config_key(ACCURATE_CONFIG)
    fast = choose(summaries, max_cost=summaries[0].cost)
    assert config_key(fast.config) == config_key(DEFAULT_CONFIG)


GOOD_ROW = {**rows("small", TrainConfig(hidden_size=8, epochs=1), [0.9])[0], "load": "1.0"}


@pytest.mark.parametrize(
    "damage", ["a header without blas_kernel", "a folder in its place", "a number damaged"]
)
def test_a_record_that_cannot_be_resumed_is_refused_in_one_line(tmp_path, damage):
    path = tmp_path / "tuning.csv"
    if damage == "a folder in its place":
        path.mkdir()
    elif damage == "a number damaged":
        for accuracy in ("0.9", "0.9x"):
            search.append_row(path, {**GOOD_ROW, "validation_accuracy": accuracy})
    else:
        path.write_text("candidate,seed,validation_accuracy,seconds,load,config\n")
    with pytest.raises(FashionnetError, match=f"^{path}[ ,].*: move it aside to search afresh$"):
        read_rows(path)
