"""SGD, Momentum and Adam: hand-computed steps, a quadratic bowl, and Keras as a reference."""

from functools import partial

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.core.threads import Workers
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


def plain_adam_steps(w, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam as the paper writes it (algorithm 1 with section 2's folded bias correction), in
    float64, one step per gradient."""
    w, m, v = w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape)
    for step, grad in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        lr_t = lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w


def test_adam_in_place_equals_adam_written_plainly():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((300, 7)).astype(np.float32)
    grads = [rng.standard_normal(w.shape).astype(np.float32) * scale for scale in (1, 1e-3, 10)]
    grads += [np.zeros_like(w), rng.standard_normal(w.shape).astype(np.float32)]
    optimizer, params = Adam(lr=0.01), {"w": w.copy()}
    for grad in grads:
        optimizer.update(params, {"w": grad.copy()})  # an update may overwrite its gradient
    np.testing.assert_allclose(params["w"], plain_adam_steps(w, grads, 0.01), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_taken_a_block_at_a_time_on_threads_gives_the_same_bits(name):
    """As training takes it: W (column-major) a block of columns per job, b whole after."""
    rng = np.random.default_rng(2)
    start = {"W": np.asfortranarray(rng.standard_normal((50, 40)).astype(np.float32))}
    start["b"] = rng.standard_normal(40).astype(np.float32)
    grads = [
        {
            key: np.asfortranarray(rng.standard_normal(a.shape).astype(np.float32))
            for key, a in start.items()
        }
        for _ in range(3)
    ]
    whole, whole_params = make_optimizer(name, 0.01), {k: a.copy() for k, a in start.items()}
    parts, part_params = make_optimizer(name, 0.01), {k: a.copy() for k, a in start.items()}
    blocks = [slice(first, first + 7) for first in range(0, 40, 7)]
    with Workers(3) as workers:
        for grad in grads:
            whole.update(whole_params, {key: a.copy() for key, a in grad.items()})
            parts.start_step()
            state = parts.state("W", grad["W"])

            def block_job(block: slice, grad=grad, state=state) -> None:
                columns = (slice(None), block)
                parts.apply(
                    part_params["W"][columns], grad["W"][columns], *(a[columns] for a in state)
                )

            workers.run([partial(block_job, block) for block in blocks])
            parts.apply(part_params["b"], grad["b"], *parts.state("b", grad["b"]))
    for key in start:
        np.testing.assert_array_equal(part_params[key], whole_params[key])


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
def test_updates_match_keras(name, tensorflow):
    tf = tensorflow
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
        ours.update(params, {"w": grad.copy()})
        keras_optimizer.apply_gradients([(tf.constant(grad), variable)])
    np.testing.assert_allclose(params["w"], variable.numpy(), rtol=1e-5, atol=1e-6)
