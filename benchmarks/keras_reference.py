"""The Keras side of the comparison: the TensorFlow tutorial's model, and our weights in Keras.

The tutorial (https://www.tensorflow.org/tutorials/keras/classification) trains Flatten ->
Dense(128, relu) -> Dense(10) with adam for 10 epochs of batch 32. For prediction, the
same W1, b1, W2, b2 we trained go into Dense(hidden, relu) -> Dense(10, softmax), so both
sides multiply the same matrices. TensorFlow is imported here only, when first needed.
"""

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fashionnet.fashion_mnist import IMAGE_SHAPE, NUM_CLASSES
from fashionnet.settings import quiet_tensorflow
from fashionnet.two_layer_net import PARAM_NAMES


def _keras():
    quiet_tensorflow()
    import keras

    return keras


@dataclass(frozen=True)
class KerasFit:
    seconds: float  # wall time of model.fit alone
    test_accuracy: float


def tutorial_fit(
    x_train: np.ndarray,
    t_train: np.ndarray,
    x_test: np.ndarray,
    t_test: np.ndarray,
    *,
    seed: int = 0,
) -> KerasFit:
    """Train the tutorial's model on images (n, 784) in [0, 1]; time `fit`, then evaluate."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    images = x_train.reshape(-1, *IMAGE_SHAPE)
    start = time.perf_counter()
    model.fit(images, t_train, epochs=10, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test.reshape(-1, *IMAGE_SHAPE), t_test, verbose=0)
    return KerasFit(seconds, float(accuracy))


def same_weights_model(params: Mapping[str, np.ndarray]):
    """A Keras Dense(hidden, relu) -> Dense(10, softmax) holding our W1, b1, W2, b2."""
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input((params["W1"].shape[0],)),
            keras.layers.Dense(params["b1"].size, activation="relu"),
            keras.layers.Dense(params["b2"].size, activation="softmax"),
        ]
    )
    model.set_weights([params[name] for name in PARAM_NAMES])
    return model


def matmul_gflops(x: np.ndarray, w: np.ndarray, repeats: int = 5) -> float:
    """TensorFlow's median rate for x @ w in GFLOP/s: the engine under Keras's Dense layers."""
    _keras()
    import tensorflow as tf

    x, w = tf.constant(x), tf.constant(w)
    tf.matmul(x, w)  # warm-up; eager CPU ops return when done
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(x, w)
        seconds.append(time.perf_counter() - start)
    return 2 * x.shape[0] * x.shape[1] * w.shape[1] / statistics.median(seconds) / 1e9
