"""The tuning search's plan, its rule, and its resumption from tuning.csv."""

import numpy as np

from benchmarks import search
from benchmarks.data import Split, Splits
from benchmarks.search import (
    QUICK_SPACE,
    Tuner,
    coarse_configs,
    config_key,
    pick,
    read_rows,
    refined_configs,
)
from fashionnet.model.train import TrainConfig


def test_the_search_stays_within_sixteen_distinct_recipes():
    coarse = coarse_configs(search.FULL_SPACE)
    for best in coarse:
        refined = refined_configs(best, search.FULL_SPACE, coarse)
        keys = {config_key(config) for config in [*coarse, *refined]}
        assert len(keys) == len(coarse) + len(refined) <= 16


def test_a_weight_decay_of_zero_is_refined_towards_a_small_one():
    best = TrainConfig(weight_decay=0.0)
    decays = {config.weight_decay for config in refined_configs(best, search.FULL_SPACE, [])}
    assert decays == {0.0, 5e-5}


def row(validation: float, hidden: int, epochs: int) -> dict[str, str]:
    return {
        "validation_accuracy": str(validation),
        "hidden_size": str(hidden),
        "epochs": str(epochs),
    }


def test_the_rule_prefers_accuracy_then_the_cheaper_recipe():
    assert pick([row(0.8991, 512, 15), row(0.9012, 1024, 30)])["hidden_size"] == "1024"
    # 0.9012 and 0.9009 are equal to 0.001: the cheaper recipe wins
    assert pick([row(0.9012, 1024, 30), row(0.9009, 512, 15)])["hidden_size"] == "512"


def tiny_splits() -> Splits:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        labels = (np.arange(n) % 10).astype(np.uint8)
        x = rng.random((n, 784), dtype=np.float32) * 0.1
        x[np.arange(n), labels] += 1  # learnable: the label's pixel is bright
        return Split(x, labels)

    return Splits(split(200), split(100), split(100))


def test_a_rerun_skips_the_recipes_already_in_the_csv_and_keeps_test_out_of_the_search(
    tmp_path, monkeypatch
):
    csv_path = tmp_path / "tuning.csv"
    configs = [TrainConfig(hidden_size=8, epochs=1, seed=0), TrainConfig(hidden_size=16, epochs=1)]
    first = Tuner(tiny_splits(), csv_path).run_stage("coarse", configs[:1])
    assert first[0]["test_accuracy"] == ""  # the search never scores the test split

    trained = []
    original = search.train
    monkeypatch.setattr(
        search, "train", lambda config, *a: trained.append(config) or original(config, *a)
    )
    again = Tuner(tiny_splits(), csv_path).run_stage("coarse", configs)
    assert trained == configs[1:]
    assert again[0] == first[0]
    assert [r["config"] for r in read_rows(csv_path)] == [config_key(c) for c in configs]

    final = Tuner(tiny_splits(), csv_path).run_stage("final", configs[:1], test=True)
    assert final[0]["test_accuracy"] != ""
    assert len(read_rows(csv_path)) == 3  # the same recipe in another stage is another row


def test_the_quick_space_is_small():
    assert all(config.hidden_size <= 64 for config in coarse_configs(QUICK_SPACE))
