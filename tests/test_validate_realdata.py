"""The validate stage's statistics on the real Fashion-MNIST: train against validation is
quiet for every validation seed, and each synthetic fault is caught by the statistic meant for
it, named in one line; copies of test images are found, exactly.

The faults are made from the validation split of seed 0 (10,000 images), so each is judged at
the size a run judges it.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from fashionnet.data import idx
from fashionnet.data.catalog import NUM_CLASSES, SPLITS
from fashionnet.data.drift import DRIFTED, NO_VERDICT, drift_table, drifted_lines
from fashionnet.data.duplicates import ImageKeys, find_duplicates
from fashionnet.data.schema import anomaly_table, load_schema
from fashionnet.data.split_rule import training_rows, validation_rows
from fashionnet.data.statistics import CardTally

SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (n, 784)
    labels: np.ndarray

    @property
    def tally(self) -> CardTally:
        return CardTally.of_images(self.images, self.labels)


@pytest.fixture(scope="module")
def raw(real_raw_dir) -> dict[str, Split]:
    splits = {}
    for name, (images, labels) in SPLITS.items():
        x, y = idx.read_split(real_raw_dir / images, real_raw_dir / labels)
        splits[name] = Split(x.reshape(len(x), -1), y)
    return splits


@pytest.fixture(scope="module")
def divided(raw):
    """Per validation seed: the train and validation splits as the prepare stage cuts them."""

    @cache
    def cut(seed: int) -> tuple[Split, Split]:
        whole = raw["train"]
        held_out = validation_rows(whole.labels, 10_000, seed)
        kept = training_rows(len(whole.labels), held_out)
        return (
            Split(whole.images[kept], whole.labels[kept]),
            Split(whole.images[held_out], whole.labels[held_out]),
        )

    return cut


@pytest.fixture(scope="module")
def train_tally(divided) -> CardTally:
    return divided(0)[0].tally


def drifted(train: CardTally, split: CardTally) -> set[tuple[str, str]]:
    table = drift_table("train", {"train": train, "validation": split})
    assert (table["verdict"] != NO_VERDICT).all(), "10,000 images are enough for every verdict"
    return {(row.feature, row.statistic) for row in table.itertuples() if row.verdict == DRIFTED}


@pytest.mark.parametrize("seed", SEEDS)
def test_train_against_validation_raises_no_drift_no_anomaly_no_duplicate(divided, seed):
    train, validation = divided(seed)
    tallies = {"train": train.tally, "validation": validation.tally}
    assert drifted(tallies["train"], tallies["validation"]) == set()
    assert anomaly_table(tallies, load_schema(None)).empty
    keys = {
        "train": ImageKeys.of_images(np.arange(50_000), train.labels, train.images, aligned=False),
        "validation": ImageKeys.of_images(
            np.arange(10_000), validation.labels, validation.images, aligned=True
        ),
    }
    assert find_duplicates(keys).counts_table()["pairs"].sum() == 0


def test_the_test_split_is_not_drifted_from_train(train_tally, raw):
    assert drifted(train_tally, raw["test"].tally) == set()
    assert anomaly_table({"test": raw["test"].tally}, load_schema(None)).empty


def moved(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    grid = np.zeros((len(images), 28 + 2 * abs(rows), 28 + 2 * abs(columns)), np.uint8)
    top, left = abs(rows) + rows, abs(columns) + columns
    grid[:, top : top + 28, left : left + 28] = images.reshape(-1, 28, 28)
    return grid[:, abs(rows) : abs(rows) + 28, abs(columns) : abs(columns) + 28].reshape(-1, 784)


def digits() -> Split:
    """scikit-learn's 1,797 handwritten digits, 8x8 in 0..16, upscaled to 24x24 bytes, centred
    in 28x28; twice (once moved a pixel) to reach a size drift is judged at."""
    from sklearn.datasets import load_digits

    found = load_digits()
    big = np.kron(found.images * (255 / 16), np.ones((3, 3)))
    images = np.zeros((len(big), 28, 28), np.uint8)
    images[:, 2:26, 2:26] = np.rint(big).astype(np.uint8)
    flat = images.reshape(len(big), -1)
    return Split(np.concatenate([flat, moved(flat, 1, 0)]), np.tile(found.target, 2))


def relabelled(split: Split, share: float, seed: int = 5) -> Split:
    rng = np.random.default_rng(seed)
    labels = split.labels.copy()
    chosen = rng.random(len(labels)) < share
    labels[chosen] = rng.integers(0, NUM_CLASSES, chosen.sum())
    return Split(split.images, labels)


FAULTS = {
    # name: (make the faulted split from validation, the statistics meant to catch it); the
    # anomalies some of them also are: FAULT_ANOMALIES
    "every image at 70% brightness": (
        lambda v: Split(np.rint(v.images * 0.7).astype(np.uint8), v.labels),
        {("brightness", "jensen_shannon"), ("brightness", "wasserstein_normed")},
    ),
    "inverted images": (
        lambda v: Split(255 - v.images, v.labels),
        {
            ("brightness", "jensen_shannon"),
            ("ink", "jensen_shannon"),
            ("mean_image", "max_pixel_difference"),
        },
    ),
    "every image moved 3 pixels": (
        lambda v: Split(moved(v.images, 3, 3), v.labels),
        {("box_centre_row", "jensen_shannon"), ("box_centre_column", "jensen_shannon")},
    ),
    "one class removed": (
        lambda v: Split(v.images[v.labels != 3], v.labels[v.labels != 3]),
        {("label", "linf_distance"), ("label", "chi2_p_value")},
    ),
    "20% of labels replaced at random": (
        lambda v: relabelled(v, 0.2),
        {("class_mean_image", "rms_difference")},
    ),
    "digits in place of clothing": (
        lambda v: digits(),
        {
            ("ink", "jensen_shannon"),
            ("box_width", "jensen_shannon"),
            ("mean_image", "max_pixel_difference"),
        },
    ),
}


# The faults that are also anomalies against the shipped schema (the others warn, and the run
# goes on): inverted garments are white on black backgrounds far brighter than any training
# image; a missing class is missing.
FAULT_ANOMALIES = {
    "inverted images": [("property_above_range", "brightness")],
    "one class removed": [("class_too_small", "3 (Dress)")],
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_each_fault_is_caught_by_its_statistic_and_named_in_one_line(divided, train_tally, fault):
    make, meant = FAULTS[fault]
    faulted = make(divided(0)[1]).tally
    found = drifted(train_tally, faulted)
    assert meant <= found, found
    table = drift_table("train", {"train": train_tally, "validation": faulted})
    [line] = drifted_lines(table)
    assert line.startswith("validation drifted from train: ")
    for feature, _ in meant:
        assert feature in line
    anomalies = anomaly_table({"validation": faulted}, load_schema(None))
    assert [(row.anomaly, row.item) for row in anomalies.itertuples()] == FAULT_ANOMALIES.get(
        fault, []
    )


def test_random_labels_move_the_class_means_alone(divided, train_tally):
    """Class shares stay as they were: only the class-conditional mean images tell."""
    faulted = relabelled(divided(0)[1], 0.2).tally
    assert drifted(train_tally, faulted) == {("class_mean_image", "rms_difference")}


def test_a_removed_class_and_a_label_of_12_are_anomalies(divided):
    validation = divided(0)[1]
    without = Split(
        validation.images[validation.labels != 3], validation.labels[validation.labels != 3]
    )
    labels = validation.labels.copy()
    labels[:57] = 12
    found = anomaly_table(
        {"validation": without.tally, "test": Split(validation.images, labels).tally},
        load_schema(None),
    )
    rows = {(row.split, row.anomaly, str(row.item)): row.count for row in found.itertuples()}
    assert rows == {
        ("validation", "class_too_small", "3 (Dress)"): 0,
        ("test", "label_outside_domain", "12"): 57,
    }


def test_fifty_copied_test_images_are_exactly_fifty_pairs_and_their_variants_near_ones(
    divided, raw
):
    """In a split of 10,000 validation images: 50 test images copied, 50 more with one pixel
    changed, 50 more moved by one pixel (down and left)."""
    validation, test = divided(0)[1], raw["test"]
    rng = np.random.default_rng(0)
    picked = rng.choice(len(test.labels), 150, replace=False)
    images, labels = validation.images.copy(), validation.labels.copy()
    places = rng.choice(len(labels), 150, replace=False)
    images[places[:50]] = test.images[picked[:50]]
    changed = test.images[picked[50:100]].copy()
    changed[np.arange(50), rng.integers(0, 784, 50)] ^= 0x80
    images[places[50:100]] = changed
    images[places[100:]] = moved(test.images[picked[100:]], 1, -1)
    labels[places] = test.labels[picked]
    keys = {
        "test": ImageKeys.of_images(np.arange(10_000), test.labels, test.images, aligned=False),
        "mixed": ImageKeys.of_images(np.arange(10_000), labels, images, aligned=True),
    }
    found = {(p.kind, p.split_a, p.split_b): p for p in find_duplicates(keys).found}

    exact = found[("exact", "test", "mixed")]
    assert sorted(zip(exact.rows_a.tolist(), exact.rows_b.tolist(), strict=True)) == sorted(
        zip(picked[:50].tolist(), places[:50].tolist(), strict=True)
    )
    near = found[("near", "test", "mixed")]
    pairs = dict(
        zip(
            near.rows_b.tolist(),
            zip(near.rows_a.tolist(), map(tuple, near.shifts.tolist()), strict=True),
            strict=True,
        )
    )
    expected = {
        int(b): (int(a), (0, 0)) for a, b in zip(picked[50:100], places[50:100], strict=True)
    }
    expected |= {int(b): (int(a), (1, -1)) for a, b in zip(picked[100:], places[100:], strict=True)}
    assert pairs == expected
    assert (exact.labels_a == exact.labels_b).all()
    assert len(found[("exact", "mixed", "mixed")].rows_a) == 0
