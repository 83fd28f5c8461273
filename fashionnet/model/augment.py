"""Data augmentation of a minibatch, on the fly: no copy of the data set beyond the batch.

`shift` moves each image by a random whole number of pixels, up to MAX_SHIFT in each direction
(drawn per image from a seeded stream), filling the uncovered border with 0 (background).
`flip` mirrors each image left to right with probability 1/2 (Fashion-MNIST's clothes look
like clothes either way round). `shift-flip` shifts, then flips, from the same stream.
"""

import numpy as np

from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import IMAGE_SHAPE, NUM_PIXELS

AUGMENTS = ("none", "shift", "flip", "shift-flip")
MAX_SHIFT = 2


def _images(x: np.ndarray, augment: str) -> np.ndarray:
    """x (n, 784) seen as n 28x28 images, or a clear error."""
    if x.ndim != 2 or x.shape[1] != NUM_PIXELS:
        raise FashionnetError(
            f"augment {augment!r} needs 28x28 images ({NUM_PIXELS} features), got {x.shape}"
        )
    return x.reshape(-1, *IMAGE_SHAPE)


def shift_images(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Images x (n, 784) each moved by offsets (n, 2) = (down, right) pixels, zero-filled, as a
    new float32 array."""
    images = _images(x, "shift")
    shifted = np.zeros_like(images)
    height, width = IMAGE_SHAPE
    # One slice assignment per distinct offset (at most 25), not per image.
    for down, right in np.unique(offsets, axis=0):
        chosen = np.flatnonzero((offsets[:, 0] == down) & (offsets[:, 1] == right))
        target = (
            slice(max(down, 0), height + min(down, 0)),
            slice(max(right, 0), width + min(right, 0)),
        )
        source = (
            slice(max(-down, 0), height + min(-down, 0)),
            slice(max(-right, 0), width + min(-right, 0)),
        )
        shifted[(chosen, *target)] = images[(chosen, *source)]
    return shifted.reshape(len(x), NUM_PIXELS)


def flip_images(x: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Images x (n, 784) with those where `flipped` (n,) is true mirrored left to right, as a
    new array."""
    images = _images(x, "flip").copy()
    images[flipped] = images[flipped, :, ::-1]
    return images.reshape(len(x), NUM_PIXELS)


def augmented(x: np.ndarray, augment: str, rng: np.random.Generator) -> np.ndarray:
    """The minibatch x as `augment` (one of AUGMENTS) changes it, its randomness drawn from
    `rng`: shifts uniform in -MAX_SHIFT..MAX_SHIFT per image and direction, flips with
    probability 1/2 per image."""
    if augment in ("shift", "shift-flip"):
        x = shift_images(x, rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(len(x), 2)))
    if augment in ("flip", "shift-flip"):
        x = flip_images(x, rng.random(len(x)) < 0.5)
    return x
