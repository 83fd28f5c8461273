"""The model source switch: train (stored and found again by model key), random, file."""

import json
import logging
import os
from functools import partial

import numpy as np
import pytest

from fashionnet.core import formats, integrity
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data.prepare import RawData, RawSplit, array_blocks, prepare_splits
from fashionnet.data.split_rule import SplitRule
from fashionnet.model import source as model_source
from fashionnet.model.source import obtain_model, trained_key
from fashionnet.model.store import load_stored
from fashionnet.model.train import TrainConfig
from fashionnet.model.weights import load_metadata, load_params, model_id, save_params

TINY = TrainConfig(hidden_size=8, epochs=2, batch_size=50)
RULE = SplitRule(validation_size=50, validation_seed=0)


def prepared_splits(root, rule=RULE):
    rng = np.random.default_rng(0)
    raw_splits = []
    for split, n in (("train", 250), ("test", 50)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        sources = {f"{split}-images": f"{split}1" * 8, f"{split}-labels": f"{split}2" * 8}
        raw_splits.append(RawSplit(split, labels, partial(array_blocks, images), sources))
    return prepare_splits(RawData("synthetic", tuple(raw_splits)), Layout(root), 100, rule)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return prepared_splits(tmp_path_factory.mktemp("project"))


@pytest.fixture
def count_training(monkeypatch) -> list:
    calls = []
    real_train = model_source.train
    monkeypatch.setattr(model_source, "train", lambda *a: calls.append(1) or real_train(*a))
    return calls


def test_train_stores_the_model_under_its_key_and_finds_it_again(splits, tmp_path, count_training):
    model = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1]
    train_split = splits["train"]
    key = trained_key(TINY, train_split.sources, train_split.split_rule)
    assert model.model_key == key and model.weights_path == tmp_path / key / "weights.npz"
    assert model.model_id == model_id(load_params(model.weights_path))
    assert model.hyperparameters == TINY.model_dump()
    assert list(model.learning_curve["epoch"]) == [1, 2]
    assert model.learning_curve["validation_accuracy"].notna().all()
    meta = json.loads((tmp_path / key / "meta.json").read_text())
    assert (meta["model_id"], meta["model_key"], meta["source"]) == (model.model_id, key, "train")
    assert meta["sources"] == train_split.sources  # the test split plays no part
    assert meta["split_rule"] == train_split.split_rule
    assert set(meta["split_rule"]) == {
        "validation_size",
        "validation_seed",
        "validation_rows_sha256",
    }
    assert meta["validation_accuracy"] == model.learning_curve["validation_accuracy"].iloc[-1]
    assert "final_minibatch_accuracy" in meta and "test_accuracy" not in meta
    assert "train_seconds" not in load_metadata(model.weights_path)  # so its bytes repeat

    again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1], "found again, not retrained"
    assert again.model_id == model.model_id
    assert again.learning_curve.equals(model.learning_curve)


def test_another_recipe_other_data_or_split_rule_is_another_model_key(splits):
    sources, rule = splits["train"].sources, splits["train"].split_rule
    key = trained_key(TINY, sources, rule)
    assert trained_key(TINY.replace(seed=1), sources, rule) != key
    assert trained_key(TINY.replace(shuffle_buffer_row_groups=1), sources, rule) != key
    assert trained_key(TINY, {**sources, "train-labels": "0" * 64}, rule) != key
    assert trained_key(TINY, sources, {**rule, "validation_seed": 1}) != key


def test_training_names_the_options_that_override_the_recipe(splits, tmp_path, caplog):
    tiny_accurate = TINY.replace(recipe="accurate")  # TINY's network, not the recipe's
    with caplog.at_level(logging.INFO, logger=model_source.__name__):
        obtain_model("train", tiny_accurate, splits, tmp_path)
    assert "the options given override the 'accurate' recipe: hidden_size=8 (its 2048)" in (
        caplog.text
    )


def test_training_never_reads_the_test_split(splits, tmp_path):
    without_test = {name: split for name, split in splits.items() if name != "test"}
    assert obtain_model("train", TINY, without_test, tmp_path).model_id == (
        obtain_model("train", TINY, splits, tmp_path / "again").model_id
    )


def test_another_split_rule_trains_another_model(tmp_path, count_training):
    first = obtain_model("train", TINY, prepared_splits(tmp_path / "a"), tmp_path / "models")
    other_rule = prepared_splits(tmp_path / "b", SplitRule(validation_size=60, validation_seed=0))
    second = obtain_model("train", TINY, other_rule, tmp_path / "models")
    assert count_training == [1, 1] and second.model_key != first.model_key


def test_a_stored_model_with_an_old_learning_curve_is_trained_again(
    splits, tmp_path, count_training, caplog
):
    first = obtain_model("train", TINY, splits, tmp_path)
    curve = first.weights_path.parent / "learning_curve.csv"
    old_header = "epoch,loss,train_accuracy,test_accuracy,learning_rate"
    curve.write_text("\n".join([old_header, *curve.read_text().splitlines()[1:]]) + "\n")
    integrity.seal(curve)  # intact, as an older fashionnet stored it
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1] and again.model_id == first.model_id
    assert "ignoring stored model" in caplog.text and "train_accuracy" in caplog.text
    assert list(again.learning_curve.columns)[2:4] == ["minibatch_accuracy", "validation_accuracy"]


def unlink(path):
    path.unlink()


def folder_instead(path):
    path.unlink()
    path.mkdir()


MISMATCH = "is damaged (its sha256 does not match"
DAMAGES = {
    "weights.npz missing": ("weights.npz", unlink, "is missing; making it again"),
    "learning_curve.csv missing": ("learning_curve.csv", unlink, "is missing; making it again"),
    "meta.json not an object": ("meta.json", lambda path: path.write_text("[1, 2, 3]"), MISMATCH),
    "weights.npz a folder": ("weights.npz", folder_instead, "is damaged (a folder"),
    "a byte of learning_curve.csv changed": (
        "learning_curve.csv",
        lambda path: path.write_text(path.read_text().replace("1", "2", 1)),
        MISMATCH,
    ),
}


@pytest.mark.parametrize("name, damage, warning", DAMAGES.values(), ids=DAMAGES)
def test_a_damaged_stored_model_is_named_and_trained_again(
    splits, tmp_path, count_training, name, damage, warning, caplog
):
    first = obtain_model("train", TINY, splits, tmp_path)
    path = tmp_path / first.model_key / name
    damage(path)
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1]
    assert again.model_id == first.model_id  # the same recipe on the same data
    assert f"{path} {warning}" in caplog.text
    assert integrity.verified(path), "made again, with its checksum record"


def test_a_stored_file_without_its_checksum_record_is_made_again(
    splits, tmp_path, count_training, caplog
):
    first = obtain_model("train", TINY, splits, tmp_path)
    weights = first.weights_path
    integrity.record_of(weights).unlink()  # as an interruption between file and record leaves it
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1]
    assert f"{weights} has no checksum record" in caplog.text
    assert integrity.verified(weights)
    assert not list(weights.parent.glob("*.damaged-*")), "not damaged: replaced, not moved aside"


def test_an_intact_model_that_todays_checks_refuse_is_trained_again(
    splits, tmp_path, count_training, caplog
):
    first = obtain_model("train", TINY, splits, tmp_path)
    empty_hidden = {"W1": np.zeros((784, 0)), "b1": np.zeros(0), "W2": np.zeros((0, 10))}
    np.savez(first.weights_path, **empty_hidden, b2=np.zeros(10))
    integrity.seal(first.weights_path)  # intact: its record matches
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1] and again.model_id == first.model_id
    assert "ignoring stored model" in caplog.text and "hidden layer of size 0" in caplog.text


def rewrite_meta(folder, change) -> None:
    """Change a stored model's meta.json and seal it again: intact, as written."""
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    integrity.seal(path)


def test_meta_json_carries_the_model_format_version_and_the_model_does_not(splits, tmp_path):
    model = obtain_model("train", TINY, splits, tmp_path)
    meta = json.loads((model.weights_path.parent / "meta.json").read_text())
    assert meta["format_version"] == formats.CURRENT[formats.MODEL] == 1
    assert "format_version" not in load_stored(tmp_path, model.model_key).meta
    assert "format_version" not in load_metadata(model.weights_path)


@pytest.mark.parametrize(
    "version, problem",
    [
        (None, "no model format version"),
        (0, "model format 0 is older than this fashionnet's 1"),
        ("1.5", "model format version '1.5' is not a whole number"),
    ],
    ids=["missing", "older", "garbled"],
)
def test_a_model_folder_without_the_current_format_version_is_trained_again(
    splits, tmp_path, count_training, caplog, version, problem
):
    first = obtain_model("train", TINY, splits, tmp_path)
    folder = first.weights_path.parent

    def set_version(meta):
        meta.pop("format_version")
        if version is not None:
            meta["format_version"] = version

    rewrite_meta(folder, set_version)
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1] and again.model_id == first.model_id
    assert f"ignoring stored model {folder} and making it again: meta.json: {problem}" in (
        caplog.text
    )
    assert json.loads((folder / "meta.json").read_text())["format_version"] == 1
    assert not list(folder.glob("*.damaged-*")), "intact: replaced, not moved aside"


# meta.json content that does not fit its schema, sealed again (its record matches) -> the
# problem the warning names.
UNFIT_META = {
    "not JSON": (lambda meta: "{", "not JSON: Expecting property name"),
    "a JSON array": (lambda meta: "[1, 2]", "not a JSON object"),
    "without its source": (
        lambda meta: json.dumps({"format_version": 1, "model_id": meta["model_id"]}),
        "no source",
    ),
    "hyperparameters not an object": (
        lambda meta: json.dumps({**meta, "hyperparameters": 3}),
        "hyperparameters 3, not a JSON object",
    ),
    "a trained model said untrained": (
        lambda meta: json.dumps({**meta, "trained": False}),
        "trained false for a model of source 'train'",
    ),
    "a calibration that is a list": (
        lambda meta: json.dumps({**meta, "calibration": [1]}),
        "its calibration is not a JSON object",
    ),
    "a calibration without its weights": (
        lambda meta: json.dumps({**meta, "calibration": {"temperature": 2}}),
        "its calibration has no weights_id",
    ),
}


@pytest.mark.parametrize("content, problem", UNFIT_META.values(), ids=UNFIT_META)
def test_meta_json_that_does_not_fit_its_schema_is_damage_whatever_its_record(
    splits, tmp_path, count_training, caplog, content, problem
):
    first = model_source.calibrated(
        obtain_model("train", TINY, splits, tmp_path), splits["validation"], tmp_path
    )
    path = first.weights_path.parent / "meta.json"
    path.write_text(content(json.loads(path.read_text())))
    integrity.seal(path)
    assert model_source.recorded_calibration(path.parent) is None, "read by the champion's code"
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        again = obtain_model("train", TINY, splits, tmp_path)
    assert count_training == [1, 1] and again.learning_curve is not None
    assert f"{path} is damaged ({problem}" in caplog.text
    assert len(list(path.parent.glob("meta.json.damaged-*"))) == 1, "kept for a person"
    assert integrity.verified(path)


@pytest.mark.timeout(30)  # opened, it would wait for a writer for ever
def test_a_meta_json_that_is_a_fifo_is_damage_never_opened(splits, tmp_path, caplog):
    first = obtain_model("train", TINY, splits, tmp_path)
    path = first.weights_path.parent / "meta.json"
    path.unlink()
    os.mkfifo(path)
    assert model_source.recorded_calibration(path.parent) is None
    with caplog.at_level(logging.WARNING, logger="fashionnet"):
        obtain_model("train", TINY, splits, tmp_path)
    assert f"{path} is damaged (a folder or special file, not a file)" in caplog.text
    assert integrity.verified(path)


def test_a_model_folder_of_a_newer_fashionnet_stops_the_run_and_stays(
    splits, tmp_path, count_training
):
    first = obtain_model("train", TINY, splits, tmp_path)
    folder = first.weights_path.parent
    rewrite_meta(folder, lambda meta: meta.update(format_version=2))
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(formats.NewerFormat) as caught:
        obtain_model("train", TINY, splits, tmp_path)
    assert str(caught.value) == (
        f"{folder / 'meta.json'}: written by a newer fashionnet (model format 2; this one reads "
        "up to 1): upgrade fashionnet, or move the file aside"
    )
    assert count_training == [1]
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_random_is_the_untrained_book_initialisation(splits, tmp_path, count_training):
    model = obtain_model("random", TINY, splits, tmp_path)
    assert count_training == []
    params = load_params(model.weights_path)
    assert params["W1"].shape == (784, 8)
    assert np.std(params["W1"]) == pytest.approx(TINY.weight_init_std, rel=0.1)
    assert model.learning_curve is None and model.source == "random"
    assert model.weights_path.parent.name == model.model_key
    assert obtain_model("random", TINY, splits, tmp_path).model_id == model.model_id
    assert obtain_model("random", TINY.replace(seed=5), splits, tmp_path).model_id != model.model_id


def test_file_uses_the_given_weights_and_stores_nothing(splits, tmp_path, count_training):
    params = load_params(obtain_model("random", TINY, splits, tmp_path / "a").weights_path)
    weights = tmp_path / "mine.npz"
    save_params(weights, params)
    model = obtain_model("file", TINY, splits, tmp_path / "models", weights)
    assert (model.weights_path, model.model_key, model.source) == (weights, None, "file")
    assert model.model_id == model_id(params)
    assert not (tmp_path / "models").exists() and count_training == []
    assert model.describe()["origin"] == f"weights file {weights}"


def test_a_missing_weights_file_is_a_user_error(splits, tmp_path):
    with pytest.raises(FashionnetError, match="nope.npz not found"):
        obtain_model("file", TINY, splits, tmp_path, tmp_path / "nope.npz")
