"""The data schema: the shipped file, reading and writing, inference, and every anomaly listed."""

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.core.formats import NewerFormat
from fashionnet.data.catalog import NUM_CLASSES
from fashionnet.data.schema import (
    ANOMALY_COLUMNS,
    INFERENCE_MARGIN,
    SHIPPED_SCHEMA,
    Schema,
    anomaly_table,
    infer_schema,
    load_schema,
    parse_schema,
    render_schema,
)
from fashionnet.data.statistics import PROPERTIES, CardTally


def garments(n: int, seed: int = 0, labels: np.ndarray | None = None) -> CardTally:
    """n images of a filled rectangle of random size and brightness, 10 classes in turn."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for image in images:
        top, left = rng.integers(2, 8, 2)
        image[top : 28 - top, left : 28 - left] = rng.integers(60, 200)
    labels = np.arange(n) % NUM_CLASSES if labels is None else labels
    return CardTally.of_images(images.reshape(n, -1), labels)


def test_the_shipped_schema_is_fashion_mnists():
    schema = load_schema(None)
    assert schema.labels == tuple(range(NUM_CLASSES))
    assert schema.value_range == (0, 255)
    assert set(schema.properties) == set(PROPERTIES)
    assert SHIPPED_SCHEMA in schema.source


def test_a_schema_survives_its_file(tmp_path):
    schema = infer_schema(garments(200), "garments")
    text = render_schema(schema, "a comment")
    assert text.startswith("# A fashionnet data schema") and "# a comment\n" in text
    again = parse_schema(text, "file")
    assert again == Schema(**{**schema.__dict__, "source": "file"})


def test_inference_widens_the_observed_range_out_to_the_bin_edges():
    tally = garments(200)
    schema = infer_schema(tally)
    for name, (low, high) in schema.properties.items():
        observed_low, observed_high = tally.property_min[name], tally.property_max[name]
        margin = INFERENCE_MARGIN * (observed_high - observed_low)
        values = PROPERTIES[name].values
        assert low <= observed_low - margin or low == values[0], name
        assert high >= observed_high + margin or high == values[-1], name
        assert np.isclose(values, low).any() and np.isclose(values, high).any(), name
    assert anomaly_table({"train": tally}, schema).empty, "the split it came from fits it"


def test_inference_refuses_labels_the_network_cannot_have():
    with pytest.raises(FashionnetError, match=r"labels \[12\], outside 0..9"):
        infer_schema(garments(20, labels=np.full(20, 12)), "mine")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("format_version: 1", "format_version: 0"), "schema format 0 is older"),
        (lambda t: t.replace("shape: [28, 28]", "shape: [32, 32]"), "image.shape and image.dtype"),
        (lambda t: t.replace("dtype: uint8", "dtype: float32"), "image.shape and image.dtype"),
        (lambda t: t.replace("domain: [0, 1, 2", "domain: [0, 1, 12"), "labels.domain"),
        (lambda t: t.replace("min_images: 10", "min_images: -1"), "splits.min_images"),
        (lambda t: t.replace("brightness: [0.0, 0.84]", "brightness: [0.9, 0.1]"), "brightness"),
        (lambda t: t.replace("brightness:", "brightnes:"), "unknown keys brightnes"),
        (lambda t: t.replace("value_range: [0, 255]", "value_range: [0, 300]"), "value_range"),
        (lambda t: t.replace("property_tolerance: 0.01", "property_tolerance: 2"), "a share"),
        (lambda t: t + "\n  : :\n", "not YAML"),
        (lambda t: "labels: {}\n", "no schema format version"),
    ],
)
def test_a_bad_schema_file_is_one_line_naming_it(tmp_path, edit, problem):
    path = tmp_path / "mine.yaml"
    path.write_text(edit(render_schema(load_schema(None))))
    with pytest.raises(FashionnetError) as raised:
        load_schema(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "fashionnet schema infer" in message and "\n" not in message


def test_a_schema_of_a_newer_fashionnet_is_named_as_such(tmp_path):
    path = tmp_path / "newer.yaml"
    path.write_text(
        render_schema(load_schema(None)).replace("format_version: 1", "format_version: 7")
    )
    with pytest.raises(NewerFormat, match=f"^{path}: written by a newer fashionnet"):
        load_schema(path)


def test_a_missing_schema_file_is_named(tmp_path):
    with pytest.raises(FashionnetError, match="cannot read the schema"):
        load_schema(tmp_path / "absent.yaml")


def test_every_anomaly_is_listed_not_the_first():
    schema = Schema(
        labels=tuple(range(NUM_CLASSES)),
        value_range=(0, 250),
        min_images=100,
        min_images_per_class=2,
        properties={"brightness": (0.1, 0.2), "box_height": (5.0, 20.0)},
    )
    labels = np.arange(40) % NUM_CLASSES
    labels[labels == 3] = 12  # class 3 missing, label 12 four times
    images = np.zeros((40, 784), np.uint8)
    images[:10, :100] = 255  # bright rows at the top: bytes above 250
    tally = CardTally.of_images(images, labels, problems=(3, 0, 1))
    found = anomaly_table({"mine": tally}, schema)
    assert list(found.columns) == ANOMALY_COLUMNS
    rows = {(row.anomaly, str(row.item)): row for row in found.itertuples()}
    assert rows[("too_few_images", "")].count == 40
    assert rows[("label_outside_domain", "12")].count == 4
    assert rows[("class_too_small", "3 (Dress)")].count == 0
    assert rows[("non_finite_values", "")].count == 3
    assert rows[("values_not_bytes", "")].count == 1
    assert rows[("bytes_outside_range", "")].count == 1000
    assert rows[("property_below_range", "brightness")].count == 30  # the blank images
    assert rows[("property_below_range", "box_height")].count == 40  # heights 0 and 4
    assert ("property_above_range", "brightness") not in rows  # bright ones: 0.128..
    assert set(found["split"]) == {"mine"}
    assert len(found) == 8


def test_a_few_images_outside_a_property_range_are_tolerated():
    """Up to property_tolerance of a split's images may lie outside a range."""
    images = np.full((300, 784), 90, np.uint8)
    images[:3] = 0  # 1% blank
    schema = Schema(labels=(0,), properties={"brightness": (0.2, 0.5)}, property_tolerance=0.01)
    tally = CardTally.of_images(images, np.zeros(300))
    assert anomaly_table({"s": tally}, schema).empty
    images[3] = 0  # one more: 1.33%
    found = anomaly_table({"s": CardTally.of_images(images, np.zeros(300))}, schema)
    assert found[["anomaly", "item", "count"]].values.tolist() == [
        ["property_below_range", "brightness", 4]
    ]


def test_a_split_of_none_or_one_image_is_an_anomaly():
    schema = load_schema(None)
    empty = CardTally.empty()
    one = CardTally.of_images(np.full((1, 784), 80, np.uint8), [4])
    found = anomaly_table({"test": empty, "validation": one}, schema)
    by_split = found.groupby("split")["anomaly"].apply(list).to_dict()
    assert by_split["test"].count("class_too_small") == NUM_CLASSES
    assert "too_few_images" in by_split["test"]
    assert by_split["validation"].count("class_too_small") == NUM_CLASSES - 1
    assert "too_few_images" in by_split["validation"]
