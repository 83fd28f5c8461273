"""The data card: what a split holds, from sums that add up across chunks.

A `CardTally` is to images what `report.metrics.Tally` is to predictions: each chunk of a split
makes one from its rows and a split's is their sum, so memory does not grow with the number of
images and the chunks can be counted anywhere (threads, processes, Dask workers). It holds:

- the image count and how often each label value occurs (all 256 a uint8 can take, so a label
  outside the schema's domain is counted, not lost), and how often each byte value occurs among
  the pixels;
- per pixel, the sum and the sum of squares of its byte values (its mean and standard
  deviation), and per class the sum (the mean image of each class);
- per image property (`PROPERTIES`), a histogram over fixed edges, the sum, the sum of squares,
  the smallest and the largest value;
- the pixel values that are not finite, outside [0, 1], or not a byte value / 255.

Every property is computed from the image's bytes (`image_bytes`: the Parquet pixels are
float32 byte / 255): exact integer sums, then one division.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import pandas as pd

from fashionnet.data.catalog import IMAGE_SHAPE, NUM_CLASSES, NUM_PIXELS

MAX_BYTE = 255
LABEL_VALUES = 256  # every value a uint8 label can take
# A pixel is ink when its byte value is at least INK_BYTE (intensity above 0.1): the level that
# tells a garment from Fashion-MNIST's background, whose pixels are 0 or close to it.
INK_BYTE = 26
INK_LEVEL = 0.1
# The centre given to an image without ink: the centre of the frame.
EMPTY_CENTRE = (IMAGE_SHAPE[0] - 1) / 2
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class Property(NamedTuple):
    """A per-image property: what it measures, and the fixed edges of its histogram; a
    `discrete` property takes only the values at its bins' centres (whole or half rows)."""

    description: str
    edges: np.ndarray
    discrete: bool = False

    @property
    def values(self) -> np.ndarray:
        """Where a schema's bounds may lie: the bin edges, or a discrete property's values."""
        return (self.edges[:-1] + self.edges[1:]) / 2 if self.discrete else self.edges


def _integer_edges(top: int) -> np.ndarray:
    """One bin per whole number 0..top."""
    return np.arange(top + 2) - 0.5


def _half_edges(top: float) -> np.ndarray:
    """One bin per multiple of 0.5 in 0..top."""
    return np.arange(2 * top + 2) / 2 - 0.25


_CENTRE = f"of the ink's bounding box centre ({EMPTY_CENTRE} without ink)"
# 25 bins for the continuous properties: finer bins make the histogram distances of two samples
# of one distribution larger (drift.MIN_VERDICT_IMAGES).
_UNIT = np.linspace(0, 1, 26)
PROPERTIES = {
    "brightness": Property("mean intensity (0 black, 1 white)", _UNIT),
    "contrast": Property(
        "standard deviation of the intensities (RMS contrast)", np.linspace(0, 0.5, 26)
    ),
    "ink": Property(f"share of pixels brighter than {INK_LEVEL} (byte {INK_BYTE} or more)", _UNIT),
    "box_height": Property(
        "rows from the first to the last row with ink (0: no ink)",
        _integer_edges(IMAGE_SHAPE[0]),
        discrete=True,
    ),
    "box_width": Property(
        "columns from the first to the last column with ink (0: no ink)",
        _integer_edges(IMAGE_SHAPE[1]),
        discrete=True,
    ),
    "box_centre_row": Property(f"row {_CENTRE}", _half_edges(IMAGE_SHAPE[0] - 1), discrete=True),
    "box_centre_column": Property(
        f"column {_CENTRE}", _half_edges(IMAGE_SHAPE[1] - 1), discrete=True
    ),
}


# What the prepare stage stores for each byte value: float32 byte / 255.
_STORED = np.arange(MAX_BYTE + 1, dtype=np.float32) / np.float32(MAX_BYTE)


def image_bytes(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The uint8 (n, 784) bytes of Parquet pixels (float32 byte / 255), and how many pixel
    values are not exactly what the prepare stage stores for a byte (`value_problems` says
    which they are). Each value is rounded to the nearest byte (clipped to 0..255, NaN as 0)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    scaled = pixels * np.float32(MAX_BYTE)
    scaled += np.float32(0.5)
    np.clip(scaled, 0, MAX_BYTE, out=scaled)
    with np.errstate(invalid="ignore"):  # NaN becomes some byte here; it is counted below
        images = scaled.astype(np.uint8)
    # Exactly the stored value of that byte, or not: float32 division as prepare did it.
    stored = np.divide(images, np.float32(MAX_BYTE), dtype=np.float32)
    return images, int(np.count_nonzero(stored != pixels))


def value_problems(pixels: np.ndarray) -> tuple[int, int, int]:
    """How many pixel values are not finite, finite but outside [0, 1], and inside [0, 1] but
    not a byte / 255 as float32 (the format stores bytes / 255)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    finite = np.isfinite(pixels)
    inside = finite & (pixels >= 0) & (pixels <= 1)
    images, _ = image_bytes(np.where(inside, pixels, 0))
    on_grid = np.divide(images, np.float32(MAX_BYTE), dtype=np.float32) == pixels
    return (
        int(pixels.size - np.count_nonzero(finite)),
        int(np.count_nonzero(finite) - np.count_nonzero(inside)),
        int(np.count_nonzero(inside & ~on_grid)),
    )


def image_properties(
    images: np.ndarray, squares: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every property of `PROPERTIES` for each image (uint8 (n, 784)), as float64 (n,);
    `squares` are the images' squared bytes (uint16), if already at hand."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, NUM_PIXELS)
    if squares is None:
        squares = np.square(images, dtype=np.uint16)
    total = images.sum(axis=1, dtype=np.int64)
    square_total = squares.sum(axis=1, dtype=np.int64)
    # Variance numerator in exact integers: P * sum(b^2) - sum(b)^2 = P^2 * var(b).
    spread = NUM_PIXELS * square_total - total * total
    ink = images >= INK_BYTE
    grid = ink.reshape(-1, *IMAGE_SHAPE)
    height, row_centre = _extent(grid.any(axis=2))
    width, column_centre = _extent(grid.any(axis=1))
    return {
        "brightness": total / (NUM_PIXELS * MAX_BYTE),
        "contrast": np.sqrt(spread) / (NUM_PIXELS * MAX_BYTE),
        "ink": ink.sum(axis=1, dtype=np.int64) / NUM_PIXELS,
        "box_height": height,
        "box_width": width,
        "box_centre_row": row_centre,
        "box_centre_column": column_centre,
    }


def byte_counts(images: np.ndarray, rows: int = 1_000) -> np.ndarray:
    """How many pixels of `images` hold each byte value (int64 (256,)), `rows` images at a time:
    bincount widens its input to int64, eight times the bytes of the images."""
    counts = np.zeros(MAX_BYTE + 1, dtype=np.int64)
    for first in range(0, len(images), rows):
        counts += np.bincount(images[first : first + rows].ravel(), minlength=MAX_BYTE + 1)
    return counts


def _extent(marked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `marked` (n, k) booleans: the span from its first to its last True, and
    the middle of that span (0 and EMPTY_CENTRE for a row without any)."""
    size = marked.shape[1]
    anywhere = marked.any(axis=1)
    first = marked.argmax(axis=1)
    last = size - 1 - marked[:, ::-1].argmax(axis=1)
    span = np.where(anywhere, last - first + 1, 0).astype(np.float64)
    centre = np.where(anywhere, (first + last) / 2, EMPTY_CENTRE)
    return span, centre


@dataclass(frozen=True, eq=False)
class CardTally:
    """The additive sums of some images (a chunk, or a whole split): tallies add with `+`."""

    images: int
    label_counts: np.ndarray  # int64 (256,): images per label value
    byte_counts: np.ndarray  # int64 (256,): pixels of each byte value, over every image
    pixel_sums: np.ndarray  # int64 (784,): sum of each pixel's bytes
    pixel_square_sums: np.ndarray  # int64 (784,): sum of each pixel's squared bytes
    class_pixel_sums: np.ndarray  # int64 (10, 784): per class (labels 0..9), sum of the bytes
    histograms: dict[str, np.ndarray]  # property -> int64 counts over PROPERTIES[p].edges
    property_sums: dict[str, float]
    property_square_sums: dict[str, float]
    property_min: dict[str, float]  # +inf for no images
    property_max: dict[str, float]  # -inf for no images
    non_finite: int  # pixel values that are NaN or infinite
    out_of_range: int  # finite pixel values outside [0, 1]
    off_grid: int  # pixel values in [0, 1] that are not a byte / 255

    @classmethod
    def of_images(
        cls, images: np.ndarray, labels: np.ndarray, problems: tuple[int, int, int] = (0, 0, 0)
    ) -> "CardTally":
        """The tally of uint8 images (n, 784) and their labels; `problems` are the counts of
        `value_problems` of the pixels they were read from."""
        images = np.asarray(images, dtype=np.uint8).reshape(-1, NUM_PIXELS)
        labels = np.asarray(labels, dtype=np.int64)
        squares = np.square(images, dtype=np.uint16)
        properties = image_properties(images, squares)
        class_sums = np.zeros((NUM_CLASSES, NUM_PIXELS), dtype=np.int64)
        for label in np.unique(labels[labels < NUM_CLASSES]):
            class_sums[label] = images[labels == label].sum(axis=0, dtype=np.int64)
        return cls(
            images=len(images),
            label_counts=np.bincount(labels, minlength=LABEL_VALUES).astype(np.int64),
            byte_counts=byte_counts(images),
            pixel_sums=images.sum(axis=0, dtype=np.int64),
            pixel_square_sums=squares.sum(axis=0, dtype=np.int64),
            class_pixel_sums=class_sums,
            histograms={
                name: np.histogram(values, PROPERTIES[name].edges)[0].astype(np.int64)
                for name, values in properties.items()
            },
            property_sums={name: float(values.sum()) for name, values in properties.items()},
            property_square_sums={
                name: float(np.dot(values, values)) for name, values in properties.items()
            },
            property_min={
                name: float(values.min(initial=np.inf)) for name, values in properties.items()
            },
            property_max={
                name: float(values.max(initial=-np.inf)) for name, values in properties.items()
            },
            non_finite=problems[0],
            out_of_range=problems[1],
            off_grid=problems[2],
        )

    @classmethod
    def empty(cls) -> "CardTally":
        return cls.of_images(np.zeros((0, NUM_PIXELS), np.uint8), np.zeros(0, np.int64))

    @classmethod
    def total(cls, tallies: Iterable["CardTally"]) -> "CardTally":
        """The sum of `tallies`; of none, the empty tally."""
        total = cls.empty()
        for tally in tallies:
            total += tally
        return total

    def __add__(self, other: "CardTally") -> "CardTally":
        def merged(mine: dict, theirs: dict, combine) -> dict:
            return {name: combine(mine[name], theirs[name]) for name in mine}

        return CardTally(
            images=self.images + other.images,
            label_counts=self.label_counts + other.label_counts,
            byte_counts=self.byte_counts + other.byte_counts,
            pixel_sums=self.pixel_sums + other.pixel_sums,
            pixel_square_sums=self.pixel_square_sums + other.pixel_square_sums,
            class_pixel_sums=self.class_pixel_sums + other.class_pixel_sums,
            histograms=merged(self.histograms, other.histograms, np.add),
            property_sums=merged(self.property_sums, other.property_sums, float.__add__),
            property_square_sums=merged(
                self.property_square_sums, other.property_square_sums, float.__add__
            ),
            property_min=merged(self.property_min, other.property_min, min),
            property_max=merged(self.property_max, other.property_max, max),
            non_finite=self.non_finite + other.non_finite,
            out_of_range=self.out_of_range + other.out_of_range,
            off_grid=self.off_grid + other.off_grid,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CardTally):
            return NotImplemented
        mine, theirs = self.arrays(), other.arrays()
        return mine.keys() == theirs.keys() and all(
            np.array_equal(mine[name], theirs[name]) for name in mine
        )

    # The tally as named arrays, for the card cache (`np.savez`) and back.

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                for name, item in value.items():
                    out[f"{field.name}.{name}"] = np.asarray(item)
            else:
                out[field.name] = np.asarray(value)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "CardTally":
        """The tally `arrays()` gave."""
        values: dict = {}
        for field in fields(cls):
            if field.name in _PER_PROPERTY:
                kind = _PER_PROPERTY[field.name]
                values[field.name] = {
                    name: kind(arrays[f"{field.name}.{name}"]) for name in PROPERTIES
                }
            elif field.type is int:
                values[field.name] = int(arrays[field.name])
            else:
                values[field.name] = np.asarray(arrays[field.name], dtype=np.int64)
        return cls(**values)

    # What the sums say.

    def class_counts(self) -> np.ndarray:
        """Images per class 0..9 (int64 (10,))."""
        return self.label_counts[:NUM_CLASSES]

    def class_shares(self) -> np.ndarray:
        return _ratio(self.class_counts(), self.images)

    def pixel_mean(self) -> np.ndarray:
        """The mean image, as intensities (float64 (784,))."""
        return _ratio(self.pixel_sums, self.images * MAX_BYTE)

    def pixel_std(self) -> np.ndarray:
        """Each pixel's standard deviation over the images, as intensities."""
        n = self.images
        spread = np.maximum(n * self.pixel_square_sums - self.pixel_sums**2, 0)
        return _ratio(np.sqrt(spread.astype(np.float64)), n * MAX_BYTE)

    def class_mean_images(self) -> np.ndarray:
        """The mean image of each class, as intensities (float64 (10, 784)); zeros for a class
        without images."""
        return _ratio(self.class_pixel_sums, self.class_counts()[:, None] * MAX_BYTE)

    def property_mean(self, name: str) -> float:
        return float(_ratio(self.property_sums[name], self.images))

    def property_std(self, name: str) -> float:
        if not self.images:
            return 0.0
        mean = self.property_sums[name] / self.images
        return float(np.sqrt(max(self.property_square_sums[name] / self.images - mean**2, 0.0)))

    def quantiles(self, name: str) -> np.ndarray:
        """QUANTILES of a property, read off its histogram (linear within a bin, so exact to a
        bin's width) and kept inside the property's observed minimum and maximum; NaN for no
        images."""
        counts = self.histograms[name]
        if not self.images:
            return np.full(len(QUANTILES), np.nan)
        edges = PROPERTIES[name].edges
        cumulative = np.concatenate([[0.0], np.cumsum(counts)]) / self.images
        # Edges where the cumulative share stays flat are skipped, so interp sees a rising curve.
        rising = np.concatenate([[True], np.diff(cumulative) > 0])
        values = np.interp(QUANTILES, cumulative[rising], edges[rising])
        return np.clip(values, self.property_min[name], self.property_max[name])


# The fields holding one value per property, and how each value is read back.
_PER_PROPERTY = {
    "histograms": lambda array: np.asarray(array, dtype=np.int64),
    "property_sums": float,
    "property_square_sums": float,
    "property_min": float,
    "property_max": float,
}


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator as float64, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


# card.csv: one row per split and number. `item` says which one: a class, a pixel, a quantile,
# a histogram bin's lower edge; empty for a number of the split as a whole.
CARD_COLUMNS = ["split", "statistic", "item", "value"]


def card_rows(split: str, tally: CardTally) -> pd.DataFrame:
    """A split's card as card.csv's rows."""
    rows: list[tuple[str, str, object]] = [("images", "", tally.images)]
    for value in np.flatnonzero(tally.label_counts):
        if value >= NUM_CLASSES:
            rows.append(("label_outside_classes", str(value), int(tally.label_counts[value])))
    for label, (count, share) in enumerate(
        zip(tally.class_counts(), tally.class_shares(), strict=True)
    ):
        rows += [("class_count", str(label), int(count)), ("class_share", str(label), share)]
    for name in PROPERTIES:
        rows += [
            (f"{name}_mean", "", tally.property_mean(name)),
            (f"{name}_std", "", tally.property_std(name)),
            (f"{name}_min", "", tally.property_min[name] if tally.images else np.nan),
            (f"{name}_max", "", tally.property_max[name] if tally.images else np.nan),
        ]
        rows += [
            (f"{name}_quantile", f"{q:g}", value)
            for q, value in zip(QUANTILES, tally.quantiles(name), strict=True)
        ]
        edges = PROPERTIES[name].edges
        rows += [
            (f"{name}_histogram", f"{low:g}", int(count))
            for low, count in zip(edges[:-1], tally.histograms[name], strict=True)
        ]
    rows += [("pixel_mean", str(pixel), value) for pixel, value in enumerate(tally.pixel_mean())]
    rows += [("pixel_std", str(pixel), value) for pixel, value in enumerate(tally.pixel_std())]
    rows += [
        ("byte_count", str(value), int(count)) for value, count in enumerate(tally.byte_counts)
    ]
    rows += [
        ("non_finite_values", "", tally.non_finite),
        ("out_of_range_values", "", tally.out_of_range),
        ("off_grid_values", "", tally.off_grid),
    ]
    frame = pd.DataFrame(rows, columns=CARD_COLUMNS[1:])
    frame.insert(0, "split", split)
    return frame


def card_table(tallies: Mapping[str, CardTally]) -> pd.DataFrame:
    """card.csv: every split's card, in the given split order."""
    return pd.concat(
        [card_rows(split, tally) for split, tally in tallies.items()], ignore_index=True
    )
