"""Data augmentation of a minibatch, on the fly: no copy of the data set beyond the batch.

`shift` moves each image by a random whole number of pixels, up to MAX_SHIFT in each direction
(drawn per image from a seeded stream), filling the uncovered border with 0 (background).
"""

import numpy as np

from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import IMAGE_SHAPE, NUM_PIXELS

AUGMENTS = ("none", "shift")
MAX_SHIFT = 2


def shift_images(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Images x (n, 784) each moved by offsets (n, 2) = (down, right) pixels, zero-filled, as a
    new float32 array."""
    if x.ndim != 2 or x.shape[1] != NUM_PIXELS:
        raise FashionnetError(
            f"augment 'shift' needs 28x28 images ({NUM_PIXELS} features), got {x.shape}"
        )
    images = x.reshape(-1, *IMAGE_SHAPE)
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


def random_shifts(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`shift_images` with offsets drawn uniformly from -MAX_SHIFT..MAX_SHIFT per image."""
    offsets = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(len(x), 2))
    return shift_images(x, offsets)
