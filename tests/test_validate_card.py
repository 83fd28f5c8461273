"""The data card: every number checked against an independent plain-NumPy computation, the
tallies' additivity, and the exact recovery of the bytes the Parquet stores."""

import numpy as np
import pandas as pd
import pytest

from fashionnet.data.catalog import NUM_CLASSES
from fashionnet.data.statistics import (
    PROPERTIES,
    QUANTILES,
    CardTally,
    card_rows,
    image_bytes,
    image_properties,
    value_problems,
)


def fixture_images(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Varied small images: garments of random size and place, some faint, one blank, one
    full; labels mostly 0..9 with a few 12s."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for image in images[2:]:
        top, left = rng.integers(0, 20, 2)
        height, width = rng.integers(1, 28 - top), rng.integers(1, 28 - left)
        image[top : top + height, left : left + width] = rng.integers(0, 256, (height, width))
    images[1] = 255  # full
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.uint8)
    labels[[5, 9]] = 12
    return images.reshape(n, 784), labels


def plain_properties(images: np.ndarray) -> dict[str, np.ndarray]:
    """The properties as a person would compute them, one image at a time in floats."""
    out = {name: [] for name in PROPERTIES}
    for image in images:
        x = image.astype(np.float64) / 255
        out["brightness"].append(x.mean())
        out["contrast"].append(x.std())
        ink = image.reshape(28, 28) > 0.1 * 255
        out["ink"].append(ink.mean())
        rows, columns = np.nonzero(ink)
        if len(rows):
            out["box_height"].append(rows.max() - rows.min() + 1)
            out["box_width"].append(columns.max() - columns.min() + 1)
            out["box_centre_row"].append((rows.max() + rows.min()) / 2)
            out["box_centre_column"].append((columns.max() + columns.min()) / 2)
        else:
            out["box_height"].append(0)
            out["box_width"].append(0)
            out["box_centre_row"].append(13.5)
            out["box_centre_column"].append(13.5)
    return {name: np.array(values, dtype=np.float64) for name, values in out.items()}


@pytest.fixture(scope="module")
def fixture():
    images, labels = fixture_images()
    return images, labels, CardTally.of_images(images, labels)


def value(card: pd.DataFrame, statistic: str, item: str = "") -> float:
    [found] = card.loc[(card["statistic"] == statistic) & (card["item"] == item), "value"]
    return found


def test_every_number_of_the_card_matches_an_independent_computation(fixture):
    images, labels, tally = fixture
    card = card_rows("fixture", tally)
    x = images.astype(np.float64) / 255
    expected = {("images", ""): len(images), ("label_outside_classes", "12"): 2}
    for label in range(NUM_CLASSES):
        count = int(np.sum(labels == label))
        expected[("class_count", str(label))] = count
        expected[("class_share", str(label))] = count / len(labels)
    for pixel in range(784):
        expected[("pixel_mean", str(pixel))] = x[:, pixel].mean()
        expected[("pixel_std", str(pixel))] = x[:, pixel].std()
    for byte in range(256):
        expected[("byte_count", str(byte))] = int(np.sum(images == byte))
    for name, values in plain_properties(images).items():
        expected[(f"{name}_mean", "")] = values.mean()
        expected[(f"{name}_std", "")] = values.std()
        expected[(f"{name}_min", "")] = values.min()
        expected[(f"{name}_max", "")] = values.max()
        counts, edges = np.histogram(values, PROPERTIES[name].edges)
        for low, count in zip(edges[:-1], counts, strict=True):
            expected[(f"{name}_histogram", f"{low:g}")] = count
    for problem in ("non_finite_values", "out_of_range_values", "off_grid_values"):
        expected[(problem, "")] = 0
    quantile_rows = card["statistic"].str.endswith("_quantile")
    got = {(row.statistic, row.item): row.value for row in card[~quantile_rows].itertuples()}
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key


def test_quantiles_lie_within_a_bin_of_the_exact_ones(fixture):
    """Read off the histogram, so exact to a bin's width (and inside the observed range)."""
    images, _, tally = fixture
    card = card_rows("fixture", tally)
    for name, values in plain_properties(images).items():
        width = np.diff(PROPERTIES[name].edges).max()
        for q in QUANTILES:
            got = value(card, f"{name}_quantile", f"{q:g}")
            assert abs(got - np.quantile(values, q)) <= width, (name, q)
            assert values.min() <= got <= values.max()


def test_class_mean_images_are_the_mean_of_each_class(fixture):
    images, labels, tally = fixture
    for label in range(NUM_CLASSES):
        chosen = images[labels == label].astype(np.float64) / 255
        np.testing.assert_allclose(tally.class_mean_images()[label], chosen.mean(axis=0))


@pytest.mark.parametrize("cuts", [[1], [7, 100, 101], list(range(10, 240, 10))])
def test_tallies_add_up_across_any_chunks(fixture, cuts):
    images, labels, whole = fixture
    parts = [
        CardTally.of_images(chunk, chunk_labels)
        for chunk, chunk_labels in zip(np.split(images, cuts), np.split(labels, cuts), strict=True)
    ]
    assert_same_sums(CardTally.total(parts), whole)
    assert_same_sums(CardTally.total(reversed(parts)), whole)
    assert CardTally.total([]) == CardTally.empty()
    assert whole != parts[0]


def assert_same_sums(one: CardTally, other: CardTally) -> None:
    """Counts equal; float sums equal but for the order they were added in."""
    mine, theirs = one.arrays(), other.arrays()
    assert mine.keys() == theirs.keys()
    for name, array in mine.items():
        if np.issubdtype(array.dtype, np.integer):
            np.testing.assert_array_equal(array, theirs[name], err_msg=name)
        else:
            np.testing.assert_allclose(array, theirs[name], rtol=1e-12, err_msg=name)


def test_a_tally_survives_its_arrays(fixture):
    _, _, tally = fixture
    assert CardTally.from_arrays(tally.arrays()) == tally


def test_image_properties_of_a_blank_and_a_full_image():
    images = np.zeros((2, 784), np.uint8)
    images[1] = 255
    found = image_properties(images)
    assert found["brightness"].tolist() == [0.0, 1.0]
    assert found["contrast"].tolist() == [0.0, 0.0]
    assert found["ink"].tolist() == [0.0, 1.0]
    assert found["box_height"].tolist() == [0, 28] and found["box_width"].tolist() == [0, 28]
    assert found["box_centre_row"].tolist() == [13.5, 13.5]


def test_the_stored_pixels_give_back_their_bytes_exactly():
    every = np.arange(256, dtype=np.uint8)
    stored = np.arange(256, dtype=np.float32) / np.float32(255)  # as prepare writes them
    images, unexpected = image_bytes(stored.reshape(1, -1))
    np.testing.assert_array_equal(images[0], every)
    assert unexpected == 0


def test_pixel_values_that_are_not_stored_bytes_are_counted_by_kind():
    pixels = np.full((1, 784), np.float32(51) / np.float32(255), np.float32)
    pixels[0, :6] = [np.nan, np.inf, -0.5, 2.0, 0.5, np.nextafter(np.float32(1 / 255), 1)]
    images, unexpected = image_bytes(pixels)
    assert unexpected == 6
    assert value_problems(pixels) == (2, 2, 2)
    tally = CardTally.of_images(images, [0], value_problems(pixels))
    assert (tally.non_finite, tally.out_of_range, tally.off_grid) == (2, 2, 2)
