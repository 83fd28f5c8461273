"""Images of clothing made into Fashion-MNIST pixels, the way the dataset itself was made.

The dataset's paper (Xiao et al. 2017, section 2) converts each product photograph by: trimming
the edges close to the corner colour (within 5% of the largest distance in RGB space), resizing
the longest edge to 28, sharpening (Gaussian, radius and sigma 1.0), extending the shorter edge
to 28 with the image centred, negating, and taking 8-bit grayscale. `photo_pixels` does the same
with Pillow (the resize averages the pixels it subsamples, which a noisy phone photo needs).

An image that already is 28 x 28 is taken as Fashion-MNIST pixels: only made grayscale and, when
it is dark on light, negated, so a dataset image saved as PNG scores exactly as in the Parquet
file. Whether to negate (`invert`): "auto" negates an image whose border is light (a garment
photographed on a light background), "yes" always, "no" never (light-on-dark images).
"""

from typing import Literal

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from fashionnet.data.catalog import IMAGE_SHAPE

Invert = Literal["auto", "yes", "no"]
SIDE = IMAGE_SHAPE[0]
TRIM_CLOSENESS = 0.05 * 255 * np.sqrt(3)  # 5% of the largest distance between two RGB colours
# The paper's sharpening: a Gaussian of radius and sigma 1.0, stronger near outlines (an unsharp
# mask: the image plus its difference from the blurred image).
SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)


class Unusable(ValueError):
    """An image that cannot be made into Fashion-MNIST pixels; the message says why."""


def is_light(gray: np.ndarray) -> bool:
    """Whether an 8-bit grayscale image's border (its outermost pixels) is light on average."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(border.mean()) > 127.5


def negated_if(gray: np.ndarray, invert: Invert) -> np.ndarray:
    if invert == "yes" or (invert == "auto" and is_light(gray)):
        return 255 - gray
    return gray


def trimmed(rgb: Image.Image) -> Image.Image:
    """`rgb` without the edges within TRIM_CLOSENESS of its top-left corner's colour."""
    pixels = np.asarray(rgb, dtype=np.float32)
    distance = np.sqrt(((pixels - pixels[0, 0]) ** 2).sum(axis=2))
    rows, columns = np.nonzero(distance > TRIM_CLOSENESS)
    if rows.size == 0:
        raise Unusable("the image is one colour: nothing to classify")
    return rgb.crop((columns.min(), rows.min(), columns.max() + 1, rows.max() + 1))


def photo_pixels(image: Image.Image, invert: Invert) -> np.ndarray:
    """The uint8 (28, 28) Fashion-MNIST pixels of a decoded 8-bit image (light-on-dark)."""
    if image.size == IMAGE_SHAPE[::-1]:
        return negated_if(np.asarray(image.convert("L")), invert)
    rgb = flattened(image)
    corner = rgb.getpixel((0, 0))
    cropped = trimmed(rgb)
    width, height = cropped.size
    scale = SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cropped.resize(size, Image.Resampling.BOX).filter(SHARPEN)
    canvas = Image.new("RGB", (SIDE, SIDE), corner)
    canvas.paste(small, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    gray = np.asarray(canvas.convert("L"))
    # "auto" judges the light border on the canvas: the corner colour the photo was taken on.
    return negated_if(gray, invert)


def flattened(image: Image.Image) -> Image.Image:
    """RGB, a transparent background made white (as a product photo's page is)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return ImageOps.exif_transpose(image).convert("RGB")
