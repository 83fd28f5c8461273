"""TwoLayerNet: backpropagation against numerical gradients and TensorFlow, and a pure predict."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fashionnet import functions
from fashionnet.errors import FashionnetError
from fashionnet.two_layer_net import PARAM_NAMES, TwoLayerNet, predict

INPUT, HIDDEN, OUTPUT, BATCH = 6, 5, 3, 4


def small_problem(seed: int = 0) -> tuple[TwoLayerNet, np.ndarray, np.ndarray]:
    """A float64 net with He init and standard-normal inputs: hidden units far from ReLU's kink,
    so central differences see a smooth function."""
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(INPUT, HIDDEN, OUTPUT, weight_init="he", seed=seed, dtype=np.float64)
    for name in ("b1", "b2"):  # nonzero biases, so their gradients are tested in earnest
        net.params[name] += 0.1 * rng.standard_normal(net.params[name].shape)
    x = rng.standard_normal((BATCH, INPUT))
    t = rng.integers(0, OUTPUT, BATCH)
    return net, x, t


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


@pytest.fixture
def exact_log(monkeypatch):
    """Cross-entropy without the 1e-7 that guards log(0).

    Backpropagation differentiates the exact loss; with the guard, the numerical gradient
    is off by a factor p / (p + 1e-7), which matters when the true class's p is small.
    """
    monkeypatch.setattr(functions, "LOG_EPSILON", 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_matches_numerical_gradient(seed, exact_log):
    net, x, t = small_problem(seed)
    numerical = net.numerical_gradient(x, t)
    backprop = net.gradient(x, t)
    assert set(backprop) == set(PARAM_NAMES)
    for name in PARAM_NAMES:
        assert backprop[name].shape == net.params[name].shape
        assert relative_error(backprop[name], numerical[name]) < 1e-6, name


def test_gradient_accepts_one_hot_labels():
    net, x, t = small_problem()
    one_hot = np.eye(OUTPUT)[t]
    for name, grad in net.gradient(x, one_hot).items():
        np.testing.assert_array_equal(grad, net.gradient(x, t)[name])


def test_numerical_gradient_leaves_params_as_they_were():
    net, x, t = small_problem()
    before = {name: array.copy() for name, array in net.params.items()}
    net.numerical_gradient(x, t)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(net.params[name], before[name])


def test_forward_and_gradient_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    net, x, t = small_problem()
    variables = {name: tf.Variable(array) for name, array in net.params.items()}
    with tf.GradientTape() as tape:
        hidden = tf.nn.relu(x @ variables["W1"] + variables["b1"])
        logits = hidden @ variables["W2"] + variables["b2"]
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=logits)
        )
    tf_grads = tape.gradient(loss, variables)
    np.testing.assert_allclose(net.predict(x), tf.nn.softmax(logits).numpy(), rtol=1e-12)
    assert net.loss(x, t) == pytest.approx(float(loss), rel=1e-6)  # ours adds 1e-7 inside log
    for name, grad in net.gradient(x, t).items():
        np.testing.assert_allclose(grad, tf_grads[name].numpy(), rtol=1e-10, atol=1e-14)


def test_init_shapes_dtype_and_seed():
    net = TwoLayerNet(784, 100, 10)
    shapes = {name: array.shape for name, array in net.params.items()}
    assert shapes == {"W1": (784, 100), "b1": (100,), "W2": (100, 10), "b2": (10,)}
    assert all(array.dtype == np.float32 for array in net.params.values())
    assert not net.params["b1"].any() and not net.params["b2"].any()
    np.testing.assert_array_equal(net.params["W1"], TwoLayerNet(784, 100, 10).params["W1"])
    assert not np.array_equal(net.params["W1"], TwoLayerNet(784, 100, 10, seed=1).params["W1"])


def test_init_scales():
    std = TwoLayerNet(784, 400, 10, weight_init_std=0.01).params
    he = TwoLayerNet(784, 400, 10, weight_init="he").params
    assert std["W1"].std() == pytest.approx(0.01, rel=0.01)
    assert he["W1"].std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert he["W2"].std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)


def test_unknown_init_is_refused():
    with pytest.raises(FashionnetError, match="init 'xavier'.*std, he"):
        TwoLayerNet(weight_init="xavier")


@pytest.fixture(scope="module")
def trained_like_params():
    """Float32 params with nonzero biases and a batch of float32 images."""
    rng = np.random.default_rng(3)
    params = TwoLayerNet(784, 64, 10, weight_init="he", seed=3).params
    params["b1"][:] = rng.standard_normal(64)
    params["b2"][:] = rng.standard_normal(10)
    return params, rng.random((50, 784), dtype=np.float32)


def test_predict_one_image_equals_its_row_of_the_batch(trained_like_params):
    params, x = trained_like_params
    batch = predict(params, x)
    assert batch.shape == (50, 10) and predict(params, x[7]).shape == (10,)
    for i in (0, 7, 49):
        np.testing.assert_allclose(predict(params, x[i]), batch[i], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-6)


def test_predict_keeps_float32(trained_like_params):
    params, x = trained_like_params
    assert predict(params, x).dtype == np.float32
    assert predict(params, x[0]).dtype == np.float32


def test_predict_is_pure(trained_like_params):
    params, x = trained_like_params
    before = {name: array.copy() for name, array in params.items()}
    x_before = x.copy()
    first = predict(params, x)
    np.testing.assert_array_equal(predict(params, x), first)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(params[name], before[name])
    np.testing.assert_array_equal(x, x_before)


def test_predict_is_thread_safe(trained_like_params):
    params, x = trained_like_params
    chunks = [x[i : i + 5] for i in range(0, len(x), 5)] * 8
    serial = [predict(params, chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda chunk: predict(params, chunk), chunks))
    for expected, got in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_loss_and_accuracy_by_hand():
    net = TwoLayerNet.from_params(
        {
            "W1": np.eye(2, dtype=np.float32),
            "b1": np.zeros(2, dtype=np.float32),
            "W2": np.eye(2, dtype=np.float32) * np.log(3, dtype=np.float32),
            "b2": np.zeros(2, dtype=np.float32),
        }
    )
    x = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)  # predicted 0, 1, 0 with p = 3/4
    assert net.accuracy(x, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert net.accuracy(x, np.eye(2)[[0, 1, 1]]) == pytest.approx(2 / 3)
    expected_loss = -(2 * np.log(0.75) + np.log(0.25)) / 3
    assert net.loss(x, np.array([0, 1, 1])) == pytest.approx(expected_loss, rel=1e-5)


def test_from_params_shares_the_given_arrays():
    params = TwoLayerNet(8, 4, 3).params
    net = TwoLayerNet.from_params(params)
    assert all(net.params[name] is params[name] for name in PARAM_NAMES)
