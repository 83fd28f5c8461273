"""SGD, Momentum and Adam: hand-computed steps, a quadratic bowl, and Keras as a reference."""

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.model.optimizers import OPTIMIZERS, SGD, Adam, Momentum, make_optimizer

TARGET = np.array([1.0, -2.0, 3.0], dtype=np.float32)
CURVATURE = np.array([1.0, 4.0, 0.5], dtype=np.float32)


def bowl(w: np.ndarray) -> float:
    """A quadratic with its minimum 0 at TARGET and different curvatures per axis."""
    return float(0.5 * np.sum(CURVATURE * (w - TARGET) ** 2))


def bowl_gradient(w: np.ndarray) -> np.ndarray:
    return CURVATURE * (w - TARGET)


@pytest.mark.parametrize(("name", "lr"), [("sgd", 0.1), ("momentum", 0.05), ("adam", 0.1)])
def test_each_optimizer_descends_a_quadratic(name, lr):
    optimizer = make_optimizer(name, lr)
    params = {"w": np.zeros(3, dtype=np.float32)}
    start = bowl(params["w"])
    for _ in range(300):
        optimizer.update(params, {"w": bowl_gradient(params["w"])})
    assert bowl(params["w"]) < 1e-3 * start
    assert params["w"].dtype == np.float32


def test_sgd_step_by_hand():
    params = {"w": np.array([1.0, 2.0], dtype=np.float32)}
    SGD(lr=0.5).update(params, {"w": np.array([2.0, -4.0], dtype=np.float32)})
    np.testing.assert_array_equal(params["w"], [0.0, 4.0])


def test_momentum_steps_by_hand():
    optimizer = Momentum(lr=0.1, momentum=0.5)
    params = {"w": np.zeros(1, dtype=np.float32)}
    grad = {"w": np.ones(1, dtype=np.float32)}
    optimizer.update(params, grad)  # v = -0.1
    optimizer.update(params, grad)  # v = 0.5 * -0.1 - 0.1 = -0.15
    np.testing.assert_allclose(params["w"], [-0.25], rtol=1e-6)
    assert optimizer.velocity["w"].dtype == np.float32


def test_adam_first_step_moves_each_weight_by_about_lr():
    params = {"w": np.zeros(3, dtype=np.float32)}
    Adam(lr=0.01).update(params, {"w": np.array([0.1, -5.0, 200.0], dtype=np.float32)})
    np.testing.assert_allclose(params["w"], [-0.01, 0.01, -0.01], rtol=1e-4)


def test_adam_state_stays_float32():
    optimizer = Adam(lr=0.01)
    params = {"w": np.zeros(3, dtype=np.float32)}
    optimizer.update(params, {"w": np.ones(3, dtype=np.float32)})
    assert params["w"].dtype == optimizer.m["w"].dtype == optimizer.v["w"].dtype == np.float32


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_lr_can_be_changed_between_updates(name):
    optimizer = make_optimizer(name, 0.1)
    params = {"w": np.ones(2, dtype=np.float32)}
    optimizer.update(params, {"w": np.ones(2, dtype=np.float32)})
    optimizer.lr = 0.0
    before = params["w"].copy()
    if name == "momentum":
        optimizer.velocity["w"][:] = 0  # else the velocity alone keeps it moving
    optimizer.update(params, {"w": np.ones(2, dtype=np.float32)})
    np.testing.assert_array_equal(params["w"], before)


def test_make_optimizer_refuses_unknown_names():
    with pytest.raises(FashionnetError, match="optimizer 'rmsprop'.*sgd, momentum, adam"):
        make_optimizer("rmsprop", 0.1)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_updates_match_keras(name):
    tf = pytest.importorskip("tensorflow")
    keras_optimizer = {
        "sgd": lambda: tf.keras.optimizers.SGD(learning_rate=0.05),
        "momentum": lambda: tf.keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        "adam": lambda: tf.keras.optimizers.Adam(learning_rate=0.05, epsilon=1e-8),
    }[name]()
    ours = make_optimizer(name, 0.05)
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 3)).astype(np.float32)}
    variable = tf.Variable(params["w"])
    for _ in range(5):
        grad = rng.standard_normal((4, 3)).astype(np.float32)
        ours.update(params, {"w": grad})
        keras_optimizer.apply_gradients([(tf.constant(grad), variable)])
    np.testing.assert_allclose(params["w"], variable.numpy(), rtol=1e-5, atol=1e-6)
