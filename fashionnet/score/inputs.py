"""What `fashionnet score` reads: image files, IDX image files, .npy arrays and Parquet splits.

`discover` turns the named files and folders (recursive) into `Input`s, one per file, and names
the files it cannot take; `image_picture` gives an image file's 28 x 28 picture and `read_rows`
an array input's images as uint8 (n, 28, 28) pixels, a block at a time; both raise `Unusable`
with the reason that goes into failed.csv. Nothing here deletes or moves an input.

Images are decoded with Pillow, checked before decoding: a picture larger than MAX_PIXELS (a
decompression bomb: a small file that decodes to gigabytes) is refused from its header alone.
"""

import gzip
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from fashionnet.core import threads
from fashionnet.core.errors import FashionnetError
from fashionnet.data import idx
from fashionnet.data.catalog import IMAGE_SHAPE, NUM_PIXELS
from fashionnet.data.parquet import SCHEMA, open_split, read_row_groups
from fashionnet.score.convert import SIDE, Unusable, fashion_picture

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# 40 megapixels: more than any phone camera takes, far less than a bomb decodes to.
MAX_PIXELS = 40_000_000
# Image modes whose pixels are not 8-bit colour or gray: refused, not guessed at.
REFUSED_MODES = {
    "I;16": "16-bit",
    "I;16B": "16-bit",
    "I;16L": "16-bit",
    "I": "32-bit integer",
    "F": "floating-point",
    "CMYK": "CMYK colour",
}


@dataclass(frozen=True)
class Input:
    path: Path
    kind: str  # "image", "idx", "npy" or "parquet"

    @property
    def name(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Failure:
    """An input (or one frame of it) that could not be scored, and why."""

    input: str
    reason: str
    sha256: str = ""


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".idx3-ubyte", ".idx3-ubyte.gz", "-ubyte", "-ubyte.gz", ".idx", ".idx.gz")):
        return "idx"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return {".npy": "npy", ".parquet": "parquet"}.get(suffix)


def printable(path: Path) -> str:
    """A path as text; bytes that are not UTF-8 shown as escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def files_under(folder: Path) -> list[Path]:
    """The files in `folder` and its subfolders (not those reached through a link), in name
    order; a link to a file counts as a file. One directory listing per folder, no stat."""
    found, folders = [], [folder]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.is_file():
                    found.append(Path(entry.path))
    return sorted(found, key=lambda path: path.parts)  # Path's own order, compared once each


def discover(named: list[Path]) -> tuple[list[Input], list[Failure]]:
    """The inputs under the named files and folders, in name order, and the files refused."""
    inputs, failures = [], []
    for root in named:
        if not root.exists():
            raise FashionnetError(
                f"{root}: no such file or folder; name images or folders to score"
            )
        paths = files_under(root) if root.is_dir() else [root]
        for path in paths:
            try:
                os.fsencode(path).decode("utf-8")
            except UnicodeDecodeError:
                failures.append(Failure(printable(path), "its name is not UTF-8: rename it"))
                continue
            kind = kind_of(path)
            if kind is None:
                failures.append(
                    Failure(
                        str(path), f"not a file kind that is scored ({path.suffix or 'no suffix'})"
                    )
                )
            else:
                inputs.append(Input(path, kind))
    return inputs, failures


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_picture(data: bytes) -> Image.Image:
    """One image file's bytes as its 28 x 28 grayscale picture (`convert.fashion_picture`), or
    Unusable saying why not."""
    if not data:
        raise Unusable("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data))  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise Unusable(
                    f"{width} x {height} pixels is more than {MAX_PIXELS:,} (a decompression "
                    "bomb?): not decoded"
                )
            if getattr(image, "n_frames", 1) > 1:
                raise Unusable(f"an animation of {image.n_frames} frames: save one frame")
            if image.mode in REFUSED_MODES:
                raise Unusable(f"{REFUSED_MODES[image.mode]} pixels: save it as 8-bit RGB or gray")
            if min(width, height) * SIDE < max(width, height):
                raise Unusable(
                    f"{width} x {height} pixels: the shorter edge would be under one pixel at 28"
                )
            image.load()
    except Unusable:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own check of the header's size, before ours: the same refusal
        raise Unusable(f"a decompression bomb ({error}): not decoded") from None
    except UnidentifiedImageError:
        raise Unusable("not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise Unusable(f"the image cannot be decoded ({error})") from None
    return fashion_picture(image)


def as_pixels(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 (n, 28, 28) from an array of n x 28 x 28 or n x 784, uint8 or floats in [0, 1]."""
    if array.ndim == 2 and array.shape[1] == NUM_PIXELS:
        array = array.reshape(-1, *IMAGE_SHAPE)
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise Unusable(f"{what} of shape {array.shape}: expected n x 28 x 28 or n x 784")
    if array.dtype == np.uint8:
        return np.asarray(array)
    if array.dtype.kind != "f":
        raise Unusable(f"{what} of dtype {array.dtype}: expected uint8 or floats in [0, 1]")
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        raise Unusable(f"{what} has values outside [0, 1]")
    return np.rint(values * 255).astype(np.uint8)


def row_count(item: Input) -> int:
    """How many images an input holds (1 for an image file), or Unusable."""
    try:
        if item.kind == "image":
            return 1
        if item.kind == "idx":
            return idx.image_count(item.path)
        if item.kind == "npy":
            with threads.NPY_HEADERS:
                return len(np.load(item.path, mmap_mode="r", allow_pickle=False))
        if not pq.read_schema(item.path).remove_metadata().equals(SCHEMA):
            raise Unusable("a Parquet file without the project's pixel columns")
        return open_split(item.path).num_rows
    except Unusable:
        raise
    except (FashionnetError, OSError, ValueError, EOFError, gzip.BadGzipFile) as error:
        raise Unusable(f"cannot be read as {item.kind} ({error})") from None


def read_rows(item: Input, rows: range) -> np.ndarray:
    """Rows `rows` of an array input (IDX, .npy, Parquet) as uint8 (n, 28, 28), as stored: an
    array's pixels are Fashion-MNIST's already, never negated."""
    try:
        if item.kind == "idx":
            return np.asarray(idx.read_images(item.path)[rows.start : rows.stop])
        if item.kind == "npy":
            with threads.NPY_HEADERS:
                array = np.load(item.path, mmap_mode="r", allow_pickle=False)
            return as_pixels(array[rows.start : rows.stop], "the array")
        split = open_split(item.path)
        starts = np.cumsum((0, *split.row_group_rows))
        groups = range(
            int(np.searchsorted(starts, rows.start, "right") - 1),
            int(np.searchsorted(starts, rows.stop - 1, "right")),
        )
        batch = read_row_groups(item.path, groups)
        first = rows.start - starts[groups.start]
        x = batch.x[first : first + len(rows)]
        return np.rint(x * 255).astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    except Unusable:
        raise
    except FileNotFoundError:
        raise Unusable("the file was removed before it was read") from None
    except (FashionnetError, OSError, ValueError, EOFError) as error:
        raise Unusable(f"cannot be read as {item.kind} ({error})") from None


def frames(item: Input, block_rows: int) -> Iterator[range]:
    """The row ranges an input is scored in, `block_rows` rows at a time."""
    total = row_count(item)
    for start in range(0, total, block_rows):
        yield range(start, min(total, start + block_rows))
