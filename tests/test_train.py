"""Training: it learns, it is reproducible to the bit, and it refuses bad options clearly."""

import logging
import math

import numpy as np
import pytest

from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import NUM_PIXELS, SPLITS
from fashionnet.idx import read_split
from fashionnet.optimizers import OPTIMIZERS
from fashionnet.train import (
    BOOK_CONFIG,
    DEFAULT_CONFIG,
    TrainConfig,
    curve_table,
    read_learning_curve,
    scheduled_learning_rate,
    train,
    write_learning_curve,
)
from fashionnet.two_layer_net import TwoLayerNet

SMALL = TrainConfig(hidden_size=16, epochs=6, batch_size=32, learning_rate=0.01)


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated Gaussian clusters in 20 dimensions (the same centres for every seed)."""
    centres = np.random.default_rng(99).standard_normal((4, 20)) * 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = centres[labels] + rng.standard_normal((n, 20))
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    return (*blobs(500, 0), *blobs(200, 1))


def same_params(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[name], b[name]) for name in ("W1", "b1", "W2", "b2"))


def test_training_lowers_the_loss_and_learns(data):
    x_train, t_train, x_test, t_test = data
    result = train(SMALL, x_train, t_train, x_test, t_test)
    assert [record.epoch for record in result.curve] == list(range(1, 7))
    assert result.curve[-1].loss < 0.5 * result.curve[0].loss
    assert result.curve[-1].test_accuracy > 0.95
    assert result.curve[-1].train_accuracy > 0.95
    assert all(value.dtype == np.float32 for value in result.params.values())
    assert result.seconds >= sum(record.seconds for record in result.curve) * 0.99


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_every_optimizer_and_schedule_learns(data, optimizer, schedule):
    x_train, t_train, x_test, t_test = data
    lr = {"sgd": 0.1, "momentum": 0.02, "adam": 0.01}[optimizer]
    config = SMALL.replace(optimizer=optimizer, lr_schedule=schedule, learning_rate=lr)
    result = train(config, x_train, t_train, x_test, t_test)
    assert result.curve[-1].test_accuracy > 0.9


def test_book_recipe_learns(data):
    x_train, t_train, x_test, t_test = data
    config = BOOK_CONFIG.replace(hidden_size=16, epochs=10, batch_size=20)
    result = train(config, x_train, t_train, x_test, t_test)
    assert result.curve[-1].loss < 0.5 * result.curve[0].loss


def test_same_seed_gives_identical_weights_and_curve(data, tmp_path):
    x_train, t_train, _, _ = data
    first, second = (train(SMALL, x_train, t_train) for _ in range(2))
    assert same_params(first.params, second.params)
    write_learning_curve(tmp_path / "a.csv", curve_table(first.curve))
    write_learning_curve(tmp_path / "b.csv", curve_table(second.curve))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_different_seeds_give_different_weights(data):
    x_train, t_train, _, _ = data
    first = train(SMALL, x_train, t_train)
    other = train(SMALL.replace(seed=1), x_train, t_train)
    assert not same_params(first.params, other.params)


def test_one_hot_labels_train_like_indices(data):
    x_train, t_train, _, _ = data
    with_indices = train(SMALL, x_train, t_train)
    with_one_hot = train(SMALL, x_train, np.eye(10)[t_train])
    assert same_params(with_indices.params, with_one_hot.params)


def test_weight_decay_shrinks_the_weights(data):
    x_train, t_train, _, _ = data
    plain = train(SMALL, x_train, t_train).params
    decayed = train(SMALL.replace(weight_decay=0.1), x_train, t_train).params
    for name in ("W1", "W2"):
        assert np.linalg.norm(decayed[name]) < 0.8 * np.linalg.norm(plain[name])


def test_standardized_training_returns_weights_for_raw_inputs(data):
    x_train, t_train, x_test, t_test = data
    x_train, x_test = x_train * 3 + 5, x_test * 3 + 5  # far from mean 0, unit spread
    result = train(SMALL.replace(standardize=True), x_train, t_train, x_test, t_test)
    raw_accuracy = TwoLayerNet.from_params(result.params).accuracy(x_test, t_test)
    assert raw_accuracy == result.curve[-1].test_accuracy > 0.95


def test_without_a_test_set_test_accuracy_is_none(data, tmp_path):
    x_train, t_train, _, _ = data
    result = train(SMALL.replace(epochs=2), x_train, t_train)
    assert [record.test_accuracy for record in result.curve] == [None, None]
    write_learning_curve(tmp_path / "curve.csv", curve_table(result.curve))
    rows = (tmp_path / "curve.csv").read_text().splitlines()
    assert rows[1].split(",")[3] == ""


def test_on_epoch_and_one_log_line_per_epoch(data, caplog):
    x_train, t_train, x_test, t_test = data
    seen = []
    with caplog.at_level(logging.INFO, logger="fashionnet.train"):
        result = train(SMALL, x_train, t_train, x_test, t_test, on_epoch=seen.append)
    assert seen == result.curve
    lines = [r.getMessage() for r in caplog.records if r.name == "fashionnet.train"]
    assert len(lines) == SMALL.epochs
    assert lines[0].startswith("epoch 1/6: loss ")
    assert "test accuracy" in lines[0] and lines[0].endswith(" s")


def test_learning_curve_csv(tmp_path, data):
    x_train, t_train, x_test, t_test = data
    result = train(SMALL.replace(epochs=2), x_train, t_train, x_test, t_test)
    path = tmp_path / "curves" / "learning_curve.csv"
    write_learning_curve(path, curve_table(result.curve))
    rows = [row.split(",") for row in path.read_text().splitlines()]
    assert rows[0] == ["epoch", "loss", "train_accuracy", "test_accuracy", "learning_rate"]
    assert [row[0] for row in rows[1:]] == ["1", "2"]
    first = result.curve[0]
    assert rows[1][1:4] == [
        f"{first.loss:.6f}",
        f"{first.train_accuracy:.6f}",
        f"{first.test_accuracy:.6f}",
    ]
    assert float(rows[1][4]) == SMALL.learning_rate


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        (
            "cosine",
            [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2],
        ),
        ("step", [1.0, 1.0, 0.1, 0.01]),
    ],
)
def test_schedules(schedule, expected):
    config = TrainConfig(epochs=4, learning_rate=1.0, lr_schedule=schedule)
    rates = [scheduled_learning_rate(config, epoch) for epoch in range(1, 5)]
    assert rates == pytest.approx(expected)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("hidden_size", 0, "Input should be greater than 0"),
        ("epochs", 2.5, "Input should be a valid integer"),
        ("batch_size", True, "Input should be a valid integer"),
        ("learning_rate", -0.1, "Input should be greater than 0"),
        ("learning_rate", float("nan"), "Input should be a finite number"),
        ("learning_rate", "0.1", "Input should be a valid number"),
        ("optimizer", "rmsprop", "use one of sgd, momentum, adam"),
        ("lr_schedule", "linear", "use one of constant, cosine, step"),
        ("weight_init", "xavier", "use one of std, he"),
        ("weight_init_std", 0, "Input should be greater than 0"),
        ("weight_decay", -1e-4, "Input should be greater than or equal to 0"),
        ("standardize", "yes", "Input should be a valid boolean"),
        ("seed", -1, "Input should be greater than or equal to 0"),
        ("momentum", 0.9, "Extra inputs are not permitted"),
    ],
)
def test_config_refuses_bad_options(option, value, problem):
    with pytest.raises(FashionnetError) as caught:
        TrainConfig(**{option: value})
    assert str(caught.value) == f"invalid training option {option}={value!r}: {problem}"


def test_replace_validates_like_a_new_config():
    assert SMALL.replace(seed=3).seed == 3 and SMALL.seed == 0
    with pytest.raises(FashionnetError, match="epochs=0"):
        SMALL.replace(epochs=0)


def test_a_newly_registered_optimizer_is_accepted_and_listed(monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "nesterov", OPTIMIZERS["momentum"])
    assert TrainConfig(optimizer="nesterov").optimizer == "nesterov"
    schema = TrainConfig.model_json_schema()["properties"]["optimizer"]
    assert "nesterov" in schema["enum"]


def test_every_option_is_described_for_the_ui_and_the_cli():
    for name, field in TrainConfig.model_fields.items():
        assert field.description and len(field.description) > 10, name


def test_learning_curve_round_trips_byte_for_byte(data, tmp_path):
    x_train, t_train, x_test, t_test = data
    result = train(SMALL.replace(epochs=3), x_train, t_train, x_test, t_test)
    path = tmp_path / "learning_curve.csv"
    write_learning_curve(path, curve_table(result.curve))
    again = tmp_path / "again.csv"
    write_learning_curve(again, read_learning_curve(path))
    assert again.read_bytes() == path.read_bytes()


def test_a_file_that_is_not_a_learning_curve_is_refused(tmp_path):
    path = tmp_path / "learning_curve.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FashionnetError, match="learning_curve.csv has columns"):
        read_learning_curve(path)


def test_refuses_mismatched_or_out_of_range_data(data):
    x_train, t_train, _, _ = data
    with pytest.raises(FashionnetError, match="training data"):
        train(SMALL, x_train, t_train[:-1])
    with pytest.raises(FashionnetError, match="labels must lie in 0..9"):
        train(SMALL, x_train, t_train + 7)


def test_default_and_book_configs_are_valid_and_distinct():
    assert DEFAULT_CONFIG != BOOK_CONFIG
    assert (BOOK_CONFIG.optimizer, BOOK_CONFIG.weight_init, BOOK_CONFIG.weight_init_std) == (
        "sgd",
        "std",
        0.01,
    )


def real_split(raw_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_split(*(raw_dir / name for name in SPLITS[split]))
    return images.reshape(-1, NUM_PIXELS).astype(np.float32) / 255, labels


def test_default_config_reaches_090_on_real_fashion_mnist(real_raw_dir):
    x_test, t_test = real_split(real_raw_dir, "test")
    result = train(DEFAULT_CONFIG, *real_split(real_raw_dir, "train"), x_test, t_test)
    # The saved weights take the pipeline's x / 255 (the standardization is folded in).
    assert TwoLayerNet.from_params(result.params).accuracy(x_test, t_test) >= 0.90
    assert result.curve[-1].loss < result.curve[0].loss
