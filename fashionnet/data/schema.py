"""The data schema: what every split must look like, in a file a person reads and edits.

A schema (YAML, `fashion_mnist.schema.yaml` beside this module is Fashion-MNIST's) states the
image shape and byte type the pipeline reads, the byte values allowed, the label domain, the
fewest images a split and each class may have, and the range of each image property
(`statistics.PROPERTIES`). `anomalies` lists everything a split's card (`CardTally`) shows
outside it; the validate stage stops the run on any. `infer_schema` writes one from a training
split's card, for another data set (`fashionnet schema infer`).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fashionnet.core import atomic, formats
from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from fashionnet.data.statistics import MAX_BYTE, PROPERTIES, CardTally

SHIPPED_SCHEMA = "fashion_mnist.schema.yaml"
DTYPE = "uint8"
# What inference allows beyond a training split's observed property range, each side: this
# share of the range, rounded outward to the property's histogram edges (so the images outside
# it are counted exactly from the histogram).
INFERENCE_MARGIN = 0.1
DEFAULT_MIN_IMAGES = 10
DEFAULT_MIN_IMAGES_PER_CLASS = 1
# The share of a split's images that may lie outside a property's range before that is an
# anomaly: one odd image in ten thousand (a garment too faint to have ink but in a corner, say)
# does not stop a run; a hundred blank ones do. Below it, the card and drift show them.
DEFAULT_PROPERTY_TOLERANCE = 0.01

_FIX = "fix it, or write one for your data with `fashionnet schema infer`"


@dataclass(frozen=True)
class Schema:
    """A data schema, read from `source` (a file, or the one shipped for Fashion-MNIST)."""

    labels: tuple[int, ...]
    value_range: tuple[int, int] = (0, MAX_BYTE)
    min_images: int = DEFAULT_MIN_IMAGES
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS
    properties: dict[str, tuple[float, float]] = field(default_factory=dict)
    property_tolerance: float = DEFAULT_PROPERTY_TOLERANCE
    source: str = ""

    def document(self) -> dict[str, Any]:
        """The schema as its YAML file holds it."""
        return {
            formats.VERSION_FIELD: formats.CURRENT[formats.SCHEMA],
            "image": {
                "shape": list(IMAGE_SHAPE),
                "dtype": DTYPE,
                "value_range": list(self.value_range),
            },
            "labels": {
                "domain": list(self.labels),
                "min_images_per_class": self.min_images_per_class,
            },
            "splits": {"min_images": self.min_images},
            "properties": {name: list(bounds) for name, bounds in self.properties.items()},
            "property_tolerance": self.property_tolerance,
        }


HEADER = """\
# A fashionnet data schema: every split (train, validation, test) must fit it, or the run lists
# what does not in data/validation/anomalies.csv and stops before training.
# Edit it and pass it with `fashionnet run --schema FILE`; docs/DATA_VALIDATION.md says how
# each property is measured. image.shape and image.dtype are what the pipeline reads (28x28
# bytes) and cannot change; value_range bounds the pixels' byte values; labels.domain lists the
# labels allowed (at most 0..9) and every label in it must have min_images_per_class images in
# each split; each property's [low, high] bounds the images' values, of which no more than the
# share property_tolerance may lie outside it.
"""


def render_schema(schema: Schema, comment: str = "") -> str:
    """The YAML text of `schema`, with the explaining header (and `comment`, one more line)."""
    extra = f"# {comment}\n" if comment else ""
    body = yaml.safe_dump(schema.document(), sort_keys=False, default_flow_style=None)
    return HEADER + extra + body


def write_schema(path: Path, schema: Schema, comment: str = "") -> None:
    atomic.write_text(path, render_schema(schema, comment))


def load_schema(path: str | Path | None) -> Schema:
    """The schema in `path` (YAML), or the shipped Fashion-MNIST schema for None; a file that is
    not a valid schema is one FashionnetError naming it and the problem."""
    if path is None:
        text = resources.files("fashionnet.data").joinpath(SHIPPED_SCHEMA).read_text("utf-8")
        return parse_schema(text, f"the shipped schema {SHIPPED_SCHEMA}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FashionnetError(
            f"{path}: cannot read the schema ({getattr(error, 'strerror', None) or error}); "
            "give --schema a readable YAML file"
        ) from None
    return parse_schema(text, str(path))


def parse_schema(text: str, source: str) -> Schema:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FashionnetError(f"{source}: not YAML ({_first_line(error)}); {_FIX}") from None
    try:
        return _schema_of(document, source)
    except (KeyError, TypeError, ValueError) as error:
        problem = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise FashionnetError(f"{source}: {problem}; {_FIX}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _keys(section: Any, name: str, allowed: set[str]) -> dict:
    if not isinstance(section, dict):
        raise TypeError(f"{name} must be a mapping")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ValueError(f"{name} has unknown keys {', '.join(map(str, unknown))}")
    return section


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


def _share(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a share in [0, 1), not {value!r}")
    return float(value)


def _bounds(value: Any, name: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"{name} must be [low, high], not {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise ValueError(f"{name} must be two numbers, not {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be finite with low <= high, not {value!r}")
    return low, high


def _schema_of(document: Any, source: str) -> Schema:
    top = _keys(
        document,
        "the schema",
        {formats.VERSION_FIELD, "image", "labels", "splits", "properties", "property_tolerance"},
    )
    formats.check(source, formats.SCHEMA, top.get(formats.VERSION_FIELD))
    image = _keys(top["image"], "image", {"shape", "dtype", "value_range"})
    if image.get("shape") != list(IMAGE_SHAPE) or image.get("dtype") != DTYPE:
        raise ValueError(
            f"image.shape and image.dtype must be {list(IMAGE_SHAPE)} and {DTYPE} (what "
            f"fashionnet reads), not {image.get('shape')!r} and {image.get('dtype')!r}"
        )
    low, high = _bounds(image.get("value_range", [0, MAX_BYTE]), "image.value_range")
    if not (low.is_integer() and high.is_integer() and low >= 0 and high <= MAX_BYTE):
        raise ValueError(f"image.value_range must be whole bytes in 0..{MAX_BYTE}")
    labels = _keys(top["labels"], "labels", {"domain", "min_images_per_class"})
    domain = labels["domain"]
    if (
        not isinstance(domain, list)
        or not domain
        or any(isinstance(v, bool) or not isinstance(v, int) for v in domain)
        or len(set(domain)) != len(domain)
        or not set(domain) <= set(range(NUM_CLASSES))
    ):
        raise ValueError(f"labels.domain must list distinct labels of 0..{NUM_CLASSES - 1}")
    splits = _keys(top.get("splits", {}), "splits", {"min_images"})
    properties = _keys(top.get("properties") or {}, "properties", set(PROPERTIES))
    return Schema(
        labels=tuple(sorted(domain)),
        value_range=(int(low), int(high)),
        min_images=_count(splits.get("min_images", DEFAULT_MIN_IMAGES), "splits.min_images"),
        min_images_per_class=_count(
            labels.get("min_images_per_class", DEFAULT_MIN_IMAGES_PER_CLASS),
            "labels.min_images_per_class",
        ),
        properties={
            name: _bounds(properties[name], f"properties.{name}")
            for name in PROPERTIES
            if name in properties
        },
        property_tolerance=_share(
            top.get("property_tolerance", DEFAULT_PROPERTY_TOLERANCE), "property_tolerance"
        ),
        source=source,
    )


def infer_schema(tally: CardTally, source: str = "") -> Schema:
    """A schema that a training split with this card fits: its labels, byte values 0..255, the
    default minimum counts, and each property's observed range widened by INFERENCE_MARGIN of
    it each side, out to the histogram's edges (a discrete property's values)."""
    if not tally.images:
        raise FashionnetError(f"{source or 'the split'} has no images to infer a schema from")
    labels = tuple(int(label) for label in np.flatnonzero(tally.label_counts))
    outside = [label for label in labels if label >= NUM_CLASSES]
    if outside:
        raise FashionnetError(
            f"{source or 'the split'} has labels {outside}, outside 0..{NUM_CLASSES - 1} "
            "(the network has 10 outputs); relabel the data"
        )
    properties = {}
    for name, prop in PROPERTIES.items():
        low, high = tally.property_min[name], tally.property_max[name]
        margin = INFERENCE_MARGIN * (high - low)
        values = prop.values
        below = values[values <= low - margin]
        above = values[values >= high + margin]
        properties[name] = (
            _tidy(below.max() if len(below) else values[0]),
            _tidy(above.min() if len(above) else values[-1]),
        )
    return Schema(labels=labels, properties=properties, source=source)


def _tidy(value: float) -> float:
    """A bound as a person would write it: 0.84, not 0.8400000000000001."""
    return float(round(float(value), 6))


# anomalies.csv: one row per problem found; `count` is how many images (or pixel values, or
# the split's image count) it concerns.
ANOMALY_COLUMNS = ["split", "anomaly", "item", "count", "observed", "expected"]


def anomalies(split: str, tally: CardTally, schema: Schema) -> list[dict[str, Any]]:
    """Every way the split's card falls outside the schema, as anomalies.csv's rows."""
    found: list[dict[str, Any]] = []

    def add(anomaly: str, item: Any, count: int, observed: Any, expected: str) -> None:
        found.append(
            dict(
                zip(ANOMALY_COLUMNS, (split, anomaly, item, count, observed, expected), strict=True)
            )
        )

    if tally.images < schema.min_images:
        add("too_few_images", "", tally.images, tally.images, f">= {schema.min_images} images")
    domain = set(schema.labels)
    for label in np.flatnonzero(tally.label_counts):
        if int(label) not in domain:
            count = int(tally.label_counts[label])
            add("label_outside_domain", int(label), count, int(label), _domain_text(schema.labels))
    for label in schema.labels:
        count = int(tally.label_counts[label])
        if count < schema.min_images_per_class:
            add(
                "class_too_small",
                f"{label} ({CLASS_NAMES[label]})",
                count,
                count,
                f">= {schema.min_images_per_class} images",
            )
    pixel_problems = (
        ("non_finite_values", tally.non_finite, "finite"),
        ("values_outside_0_1", tally.out_of_range, "in [0, 1]"),
        ("values_not_bytes", tally.off_grid, "byte / 255 (float32)"),
    )
    for anomaly, count, expected in pixel_problems:
        if count:
            add(anomaly, "", count, count, expected)
    low, high = schema.value_range
    used = np.flatnonzero(tally.byte_counts)
    outside = int(tally.byte_counts[:low].sum() + tally.byte_counts[high + 1 :].sum())
    if outside:
        observed = f"{used.min()}..{used.max()}"
        add("bytes_outside_range", "", outside, observed, f"{low}..{high}")
    for name, (low, high) in schema.properties.items():
        if not tally.images:
            continue
        edges, counts = PROPERTIES[name].edges, tally.histograms[name]
        # Images in bins wholly outside [low, high] (at least the one beyond it): exact when the
        # bounds lie on bin edges or a discrete property's values, as inferred schemas' do.
        tolerated = schema.property_tolerance * tally.images
        expected = f"[{low:g}, {high:g}] for all but {schema.property_tolerance:.2%} of the images"
        if tally.property_min[name] < low:
            below = max(1, int(counts[edges[1:] <= low].sum()))
            if below > tolerated:
                observed = round(tally.property_min[name], 6)
                add("property_below_range", name, below, observed, expected)
        if tally.property_max[name] > high:
            above = max(1, int(counts[edges[:-1] > high].sum()))
            if above > tolerated:
                observed = round(tally.property_max[name], 6)
                add("property_above_range", name, above, observed, expected)
    return found


def _domain_text(labels: tuple[int, ...]) -> str:
    if labels == tuple(range(labels[0], labels[-1] + 1)):
        return f"labels {labels[0]}..{labels[-1]}"
    return "labels " + ", ".join(map(str, labels))


def anomaly_table(tallies: Mapping[str, CardTally], schema: Schema) -> pd.DataFrame:
    """anomalies.csv: every split's anomalies, in the tallies' order (no rows: none)."""
    rows = [row for split, tally in tallies.items() for row in anomalies(split, tally, schema)]
    return pd.DataFrame(rows, columns=ANOMALY_COLUMNS)
