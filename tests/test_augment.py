"""Augmentation by random shifts and flips: shapes, zero fill, identity at 0, mirror images,
seeded."""

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.model.augment import MAX_SHIFT, augmented, flip_images, shift_images


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, 784), dtype=np.float32) + 1  # no pixel is 0


def test_a_shift_of_zero_is_the_identity(images):
    assert np.array_equal(shift_images(images, np.zeros((6, 2), int)), images)


@pytest.mark.parametrize("down, right", [(1, 0), (0, -2), (2, 2), (-1, 1)])
def test_a_shift_moves_the_image_and_fills_the_border_with_zero(images, down, right):
    shifted = shift_images(images, np.tile([down, right], (6, 1))).reshape(6, 28, 28)
    original = images.reshape(6, 28, 28)
    rolled = np.roll(original, (down, right), axis=(1, 2))
    inside = np.ones((28, 28), bool)
    inside[: max(down, 0)] = inside[28 + min(down, 0) :] = False
    inside[:, : max(right, 0)] = inside[:, 28 + min(right, 0) :] = False
    assert np.array_equal(shifted[:, inside], rolled[:, inside])
    assert np.all(shifted[:, ~inside] == 0) and (~inside).sum() > 0


def test_random_shifts_keep_shape_and_dtype_and_stay_within_two_pixels(images):
    shifted = augmented(images, "shift", np.random.default_rng(1))
    assert shifted.shape == images.shape and shifted.dtype == np.float32
    # At most MAX_SHIFT border rows and columns are zero-filled in each image.
    zero_rows = (shifted.reshape(6, 28, 28) == 0).all(axis=2).sum(axis=1)
    assert np.all(zero_rows <= MAX_SHIFT)


@pytest.mark.parametrize("augment", ["shift", "flip", "shift-flip"])
def test_augmentation_is_seeded(images, augment):
    first = augmented(images, augment, np.random.default_rng(7))
    assert np.array_equal(first, augmented(images, augment, np.random.default_rng(7)))
    assert not np.array_equal(first, augmented(images, augment, np.random.default_rng(8)))


def test_each_image_draws_its_own_shift():
    many = np.ones((200, 784), np.float32)
    shifted = augmented(many, "shift", np.random.default_rng(0)).reshape(200, 28, 28)
    zero_pixels = {int((image == 0).sum()) for image in shifted}
    assert len(zero_pixels) > 3


@pytest.mark.parametrize("augment", ["shift", "flip", "shift-flip"])
def test_augmentation_refuses_what_is_not_a_28x28_image(augment):
    with pytest.raises(FashionnetError, match=f"augment '{augment.split('-')[0]}' needs 28x28"):
        augmented(np.zeros((2, 20), np.float32), augment, np.random.default_rng(0))


def test_a_flip_mirrors_the_chosen_images_left_to_right_and_leaves_the_others(images):
    chosen = np.array([True, False, True, False, False, True])
    original = images.reshape(6, 28, 28).copy()
    flipped = flip_images(images, chosen).reshape(6, 28, 28)
    assert np.array_equal(flipped[chosen], original[chosen, :, ::-1])
    assert np.array_equal(flipped[~chosen], original[~chosen])
    assert np.array_equal(images.reshape(6, 28, 28), original)  # the input is left alone


def test_flips_choose_about_half_of_the_images():
    many = np.random.default_rng(1).random((400, 784), dtype=np.float32)
    flipped = augmented(many, "flip", np.random.default_rng(0))
    changed = (flipped != many).any(axis=1).sum()
    assert 150 < changed < 250


def test_none_is_the_identity_and_shift_flip_is_a_shift_then_a_flip(images):
    assert augmented(images, "none", np.random.default_rng(0)) is images
    shifted = augmented(images, "shift", np.random.default_rng(3))
    both = augmented(images, "shift-flip", np.random.default_rng(3))
    mirrored = (both != shifted).any(axis=1)
    assert mirrored.any() and not mirrored.all()
    np.testing.assert_array_equal(flip_images(shifted, mirrored), both)
