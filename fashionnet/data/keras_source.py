"""The same Fashion-MNIST arrays through `tf.keras.datasets.fashion_mnist.load_data()`.

An alternative source for people who already have the Keras cache (~/.keras/datasets).
TensorFlow is imported only here, inside the function, because it is slow to import and optional.
"""

import hashlib
from functools import partial

import numpy as np

from fashionnet.core.errors import FashionnetError
from fashionnet.core.settings import quiet_tensorflow
from fashionnet.data.prepare import RawData, RawSplit, array_blocks

KERAS_ORIGIN = "tf.keras.datasets.fashion_mnist"
_USE_LOCAL_FILES = "use the default source with local files (FASHIONNET_RAW_DIR)"


def load_keras_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images uint8 (n, 28, 28), labels uint8 (n,)), "test": (...)} from Keras."""
    quiet_tensorflow()
    try:
        import tensorflow as tf
    except ImportError as error:
        raise FashionnetError(
            f"the keras source needs TensorFlow ({error}): install fashionnet[tensorflow] "
            f"or {_USE_LOCAL_FILES}"
        ) from None
    try:
        (x_train, y_train), (x_test, y_test) = tf.keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # Keras wraps download failures in a bare Exception
        raise FashionnetError(
            f"Keras could not load Fashion-MNIST (no network and no Keras cache?): {error}; "
            f"{_USE_LOCAL_FILES}"
        ) from None
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def array_sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and C-order bytes (provenance for Keras arrays)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def keras_raw_data() -> RawData:
    """The fetch stage for the keras source: the arrays Keras returns, as raw splits.

    A split's sources are the sha256 of the arrays Keras returned (`keras:<split>-images`,
    `keras:<split>-labels`), so a changed Keras cache is noticed like a changed raw file.
    """
    splits = []
    for raw_split, (images, labels) in load_keras_arrays().items():
        sources = {
            f"keras:{raw_split}-images": array_sha256(images),
            f"keras:{raw_split}-labels": array_sha256(labels),
        }
        splits.append(RawSplit(raw_split, labels, partial(array_blocks, images), sources))
    return RawData(KERAS_ORIGIN, tuple(splits))
