"""Images of clothing made into Fashion-MNIST pixels, the way the dataset itself was made.

The dataset's paper (Xiao et al. 2017, section 2) converts each product photograph by: trimming
the edges close to the corner colour (within 5% of the largest distance in RGB space), resizing
the longest edge to 28, sharpening (Gaussian, radius and sigma 1.0), extending the shorter edge
to 28 with the image centred, negating, and taking 8-bit grayscale. `fashion_picture` does the
same with Pillow (the resize averages the pixels it subsamples, which a noisy phone photo needs)
but for the negation, which `negated` does for a whole chunk of pictures at once (`stacked`).

A grayscale picture goes through the same steps in Pillow's mode L rather than as an RGB copy of
itself: each step treats the three equal channels of that copy alike and the final grayscale of
(v, v, v) is v, so the pixels are the same, for a third of the work.

An image that already is 28 x 28 is taken as Fashion-MNIST pixels: only made grayscale and, when
it is dark on light, negated, so a dataset image saved as PNG scores exactly as in the Parquet
file. Whether to negate (`invert`): "auto" negates an image whose border is light (a garment
photographed on a light background), "yes" always, "no" never (light-on-dark images).
"""

from collections.abc import Sequence
from math import ceil, sqrt
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageChops, ImageFilter, ImageOps

from fashionnet.data.catalog import IMAGE_SHAPE

Invert = Literal["auto", "yes", "no"]
SIDE = IMAGE_SHAPE[0]
TRIM_CLOSENESS = 0.05 * 255 * np.sqrt(3)  # 5% of the largest distance between two RGB colours
# The trim keeps a pixel farther than TRIM_CLOSENESS from the corner's colour: with whole-number
# channel differences, a squared distance of KEPT_SQUARED or more.
KEPT_SQUARED = int(TRIM_CLOSENESS**2) + 1
# So a pixel whose largest channel difference is below MAYBE_KEPT is never kept (three such
# channels fall short), one at SURELY_KEPT or more always is (that channel alone suffices); a
# gray pixel, three equal channels, is kept exactly when its difference is MAYBE_KEPT or more.
MAYBE_KEPT = ceil(sqrt(KEPT_SQUARED / 3))
SURELY_KEPT = ceil(sqrt(KEPT_SQUARED))
# The paper's sharpening: a Gaussian of radius and sigma 1.0, stronger near outlines (an unsharp
# mask: the image plus its difference from the blurred image).
SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)


class Unusable(ValueError):
    """An image that cannot be made into Fashion-MNIST pixels; the message says why."""


def negated(images: np.ndarray, invert: Invert) -> np.ndarray:
    """`images` (uint8 (n, 28, 28)) with those to negate negated: every one ("yes"), none
    ("no"), or ("auto") each whose border, its outermost pixels, is light on average."""
    if invert == "no" or not len(images):
        return images
    if invert == "yes":
        return 255 - images
    whole = images.sum(axis=(1, 2), dtype=np.int64)
    inside = images[:, 1:-1, 1:-1].sum(axis=(1, 2), dtype=np.int64)
    border_pixels = images[0].size - images[0, 1:-1, 1:-1].size
    light = 2 * (whole - inside) > 255 * border_pixels  # a mean above 127.5
    return np.where(light[:, None, None], 255 - images, images)


def stacked(pictures: Sequence[Image.Image]) -> np.ndarray:
    """The pixels of 28 x 28 grayscale pictures as uint8 (n, 28, 28), read from one sheet they
    are pasted on side by side (one read instead of one per picture)."""
    sheet = Image.new("L", (SIDE * len(pictures), SIDE))
    for position, picture in enumerate(pictures):
        sheet.paste(picture, (SIDE * position, 0))
    rows = np.asarray(sheet).reshape(SIDE, len(pictures), SIDE)
    return np.ascontiguousarray(rows.transpose(1, 0, 2))


def _box_of_differences(difference: Image.Image, level: int) -> tuple[int, int, int, int] | None:
    """The box around the pixels of `difference` with a channel of `level` or more."""
    # (d + d) / 2 + 1 - level is above zero exactly where d >= level: no constant image to make
    return ImageChops.add(difference, difference, scale=2.0, offset=1 - level).getbbox()


def trim_box(picture: Image.Image) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) around the pixels of `picture` (mode L or RGB) farther
    than TRIM_CLOSENESS from its top-left corner's colour.

    Found in Pillow from the channel differences, which settle every pixel but those whose
    largest one lies between MAYBE_KEPT and SURELY_KEPT; only when such pixels could move the box
    is the whole distance computed, and then only inside the box of the pixels that may be kept.
    """
    corner = Image.new(picture.mode, picture.size, picture.getpixel((0, 0)))
    difference = ImageChops.difference(picture, corner)
    maybe = _box_of_differences(difference, MAYBE_KEPT)
    if maybe is not None and (
        picture.mode == "L" or _box_of_differences(difference, SURELY_KEPT) == maybe
    ):
        return maybe
    if maybe is not None:
        channels = np.asarray(difference.crop(maybe), dtype=np.int32)
        kept = np.einsum("ijk,ijk->ij", channels, channels) >= KEPT_SQUARED
        rows, columns = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
        if rows.size:
            left, top = maybe[:2]
            return (
                left + int(columns[0]),
                top + int(rows[0]),
                left + int(columns[-1]) + 1,
                top + int(rows[-1]) + 1,
            )
    raise Unusable("the image is one colour: nothing to classify")


def fashion_picture(image: Image.Image) -> Image.Image:
    """The 28 x 28 grayscale picture of a decoded 8-bit image, before any negation (`negated`)."""
    if image.size == IMAGE_SHAPE[::-1]:
        return image if image.mode == "L" else image.convert("L")
    picture = flattened(image)
    corner = picture.getpixel((0, 0))
    cropped = picture.crop(trim_box(picture))
    width, height = cropped.size
    scale = SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cropped.resize(size, Image.Resampling.BOX).filter(SHARPEN)
    # The canvas keeps the corner colour the photo was taken on: "auto" judges its border.
    canvas = Image.new(picture.mode, (SIDE, SIDE), corner)
    canvas.paste(small, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    return canvas if canvas.mode == "L" else canvas.convert("L")


def flattened(image: Image.Image) -> Image.Image:
    """RGB, or L for a grayscale image; a transparent background made white (as a product
    photo's page is)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # a turned camera's photo
        image = ImageOps.exif_transpose(image)
    mode = "L" if image.mode in ("1", "L") else "RGB"
    return image if image.mode == mode else image.convert(mode)
