"""TwoLayerNet: backpropagation against numerical gradients and TensorFlow, and a pure predict."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.core.threads import Workers, run_in_order
from fashionnet.model.functions import cross_entropy_error, relu, softmax
from fashionnet.model.gradient import numerical_gradient
from fashionnet.model.source import obtain_model
from fashionnet.model.train import TrainConfig
from fashionnet.model.two_layer_net import (
    HIDDEN_BLOCK,
    PARAM_NAMES,
    BlockedBackprop,
    TwoLayerNet,
    backprop,
    predict,
    scores,
)
from fashionnet.model.weights import load_params

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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_matches_numerical_gradient(seed):
    net, x, t = small_problem(seed)
    numerical = net.numerical_gradient(x, t)
    backprop = net.gradient(x, t)
    assert set(backprop) == set(PARAM_NAMES)
    for name in PARAM_NAMES:
        assert backprop[name].shape == net.params[name].shape
        assert relative_error(backprop[name], numerical[name]) < 1e-6, name


def test_blocked_backprop_matches_numerical_gradient():
    """Two blocks of hidden units, the second partial, in float64: the blocked formulation is
    the same derivative."""
    rng = np.random.default_rng(4)
    net = TwoLayerNet(INPUT, HIDDEN_BLOCK + 3, OUTPUT, weight_init="he", seed=4, dtype=np.float64)
    for name in ("b1", "b2"):
        net.params[name] += 0.1 * rng.standard_normal(net.params[name].shape)
    x, t = rng.standard_normal((BATCH, INPUT)), rng.integers(0, OUTPUT, BATCH)
    output, grads = BlockedBackprop(net.params, BATCH, run_in_order)(x, t)
    numerical = net.numerical_gradient(x, t)
    np.testing.assert_allclose(output, scores(net.params, x), rtol=1e-12)
    for name in PARAM_NAMES:
        assert relative_error(grads[name], numerical[name]) < 1e-6, name


@pytest.mark.parametrize(("dropout", "label_smoothing"), [(0.5, 0.0), (0.0, 0.1), (0.3, 0.2)])
def test_blocked_backprop_with_dropout_and_label_smoothing_matches_numerical_gradient(
    dropout, label_smoothing
):
    """The derivative of the loss training minimises: the cross-entropy against the smoothed
    targets, of the scores with the hidden units scaled by a fixed inverted-dropout mask."""
    rng = np.random.default_rng(5)
    hidden_size = HIDDEN_BLOCK + 3
    net = TwoLayerNet(INPUT, hidden_size, OUTPUT, weight_init="he", seed=5, dtype=np.float64)
    for name in ("b1", "b2"):
        net.params[name] += 0.1 * rng.standard_normal(net.params[name].shape)
    x, t = rng.standard_normal((BATCH, INPUT)), rng.integers(0, OUTPUT, BATCH)
    scale = (rng.random((hidden_size, BATCH)) >= dropout) / (1 - dropout)  # (units, images)
    assert dropout == 0 or (scale == 0).any()

    def loss(_: np.ndarray) -> float:
        hidden = relu(x @ net.params["W1"] + net.params["b1"]) * scale.T
        output = hidden @ net.params["W2"] + net.params["b2"]
        return cross_entropy_error(output, t, label_smoothing)

    backprop = BlockedBackprop(net.params, BATCH, run_in_order, label_smoothing=label_smoothing)
    output, grads = backprop(x, t, dropout_scale=scale)
    assert cross_entropy_error(output, t, label_smoothing) == pytest.approx(loss(x))
    for name in PARAM_NAMES:
        numerical = numerical_gradient(loss, net.params[name])
        assert relative_error(grads[name], numerical) < 1e-6, name


@pytest.fixture(scope="module")
def float32_batch():
    """Float32 params with three blocks of hidden units (the last partial), nonzero biases, and
    a batch of images."""
    rng = np.random.default_rng(6)
    params = TwoLayerNet(784, 2 * HIDDEN_BLOCK + 44, 10, weight_init="he", seed=6).params
    params["b1"][:] = 0.1 * rng.standard_normal(params["b1"].shape)
    params["b2"][:] = rng.standard_normal(10)
    return params, rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64)


@pytest.mark.parametrize("rows", [64, 50])  # a full minibatch, and a short last one
def test_blocked_backprop_equals_backprop_within_float32_rounding(float32_batch, rows):
    params, x, t = float32_batch
    expected_output, expected = backprop(params, x[:rows], t[:rows])
    output, grads = BlockedBackprop(params, 64, run_in_order)(x[:rows], t[:rows])
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    for name in PARAM_NAMES:
        assert grads[name].dtype == np.float32
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-6)


def test_after_block_sees_each_blocks_final_gradients_once(float32_batch):
    params, x, t = float32_batch
    backprop = BlockedBackprop(params, 64, run_in_order)
    seen = {}

    def after_block(block: slice) -> None:
        assert block.start not in seen
        seen[block.start] = (
            backprop.grads["W1"][:, block].copy(),
            backprop.grads["W2"][block].copy(),
        )

    _, grads = backprop(x, t, after_block=after_block)
    assert sorted(seen) == [block.start for block in backprop.blocks]
    for block in backprop.blocks:
        np.testing.assert_array_equal(seen[block.start][0], grads["W1"][:, block])
        np.testing.assert_array_equal(seen[block.start][1], grads["W2"][block])


def test_blocked_backprop_gives_the_same_bits_on_any_number_of_threads(float32_batch):
    params, x, t = float32_batch
    alone = BlockedBackprop(params, 64, run_in_order)(x, t)
    alone = alone[0], {name: grad.copy() for name, grad in alone[1].items()}
    for count in (2, 3):
        with Workers(count) as workers:
            output, grads = BlockedBackprop(params, 64, workers.run)(x, t)
        np.testing.assert_array_equal(output, alone[0])
        for name in PARAM_NAMES:
            np.testing.assert_array_equal(grads[name], alone[1][name])


def test_backprop_returns_the_scores_whose_softmax_is_predict():
    net, x, t = small_problem()
    output, _ = backprop(net.params, x, t)
    np.testing.assert_array_equal(output, scores(net.params, x))
    np.testing.assert_array_equal(softmax(output), net.predict(x))


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


def test_forward_and_gradient_match_tensorflow(tensorflow):
    tf = tensorflow
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
    assert net.loss(x, t) == pytest.approx(float(loss), rel=1e-12)
    for name, grad in net.gradient(x, t).items():
        np.testing.assert_allclose(grad, tf_grads[name].numpy(), rtol=1e-10, atol=1e-14)


def test_init_shapes_dtype_and_seed():
    net = TwoLayerNet(784, 100, 10, seed=0)
    shapes = {name: array.shape for name, array in net.params.items()}
    assert shapes == {"W1": (784, 100), "b1": (100,), "W2": (100, 10), "b2": (10,)}
    assert all(array.dtype == np.float32 for array in net.params.values())
    assert not net.params["b1"].any() and not net.params["b2"].any()
    np.testing.assert_array_equal(net.params["W1"], TwoLayerNet(784, 100, 10, seed=0).params["W1"])
    assert not np.array_equal(net.params["W1"], TwoLayerNet(784, 100, 10, seed=1).params["W1"])


def test_without_a_seed_the_tutorial_draws_from_numpys_global_state():
    np.random.seed(0)
    first = TwoLayerNet(784, 64, 10)
    np.random.seed(0)
    second = TwoLayerNet(784, 64, 10)
    np.random.seed(0)
    tutorial_w1 = 0.1 * np.random.randn(784, 64)  # the tutorial's own initialisation
    tutorial_w2 = 0.1 * np.random.randn(64, 10)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(first.params[name], second.params[name])
    np.testing.assert_array_equal(first.params["W1"], tutorial_w1.astype(np.float32))
    np.testing.assert_array_equal(first.params["W2"], tutorial_w2.astype(np.float32))
    third = TwoLayerNet(784, 64, 10)  # the global state has moved on
    assert not np.array_equal(third.params["W1"], first.params["W1"])


def test_an_explicit_seed_ignores_the_global_state():
    np.random.seed(0)
    seeded = TwoLayerNet(784, 64, 10, seed=5)
    np.random.seed(1)
    again = TwoLayerNet(784, 64, 10, seed=5)
    np.testing.assert_array_equal(seeded.params["W1"], again.params["W1"])
    expected = 0.1 * np.random.default_rng(5).standard_normal((784, 64))
    np.testing.assert_array_equal(seeded.params["W1"], expected.astype(np.float32))


def test_init_scales():
    default = TwoLayerNet(784, 400, 10, seed=0).params
    std = TwoLayerNet(784, 400, 10, weight_init_std=0.01, seed=0).params
    he = TwoLayerNet(784, 400, 10, weight_init="he", seed=0).params
    assert default["W1"].std() == pytest.approx(0.1, rel=0.01)
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


def test_the_pipelines_untrained_model_keeps_its_own_seeded_initialisation(tmp_path):
    config = TrainConfig(hidden_size=64, seed=3)
    np.random.seed(0)  # the global state must not matter to the pipeline
    model = obtain_model("random", config, {}, tmp_path / "models")
    params = load_params(model.weights_path)
    expected = TwoLayerNet(784, 64, 10, weight_init_std=config.weight_init_std, seed=3).params
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(params[name], expected[name])
    assert params["W1"].std() == pytest.approx(config.weight_init_std, rel=0.02)
    assert config.weight_init_std != 0.1  # the pipeline's choice, not the tutorial's default
