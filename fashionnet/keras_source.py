"""The same Fashion-MNIST arrays through `tf.keras.datasets.fashion_mnist.load_data()`.

An alternative source for people who already have the Keras cache (~/.keras/datasets).
TensorFlow is imported only here, inside the function, because it is slow to import and optional.
"""

import hashlib
import os

import numpy as np

from fashionnet.errors import FashionnetError

_USE_LOCAL_FILES = "use the default source with local files (FASHIONNET_RAW_DIR)"


def load_keras_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images uint8 (n, 28, 28), labels uint8 (n,)), "test": (...)} from Keras."""
    # Quiet TensorFlow's start-up chatter and keep its numerics reproducible (user settings win).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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
