"""TwoLayerNet: input -> Affine -> ReLU -> Affine -> Softmax, trained by backpropagation.

The two-layer network of "ゼロから作るDeep Learning" (chapters 4 and 5) with a ReLU
hidden layer. Its parameters are a plain dict of arrays, so the forward pass is also
the pure function `predict(params, x)`, safe to call from many threads at once.
"""

from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from fashionnet.core.errors import FashionnetError
from fashionnet.core.threads import Job, Run
from fashionnet.model.functions import (
    cross_entropy_error,
    cross_entropy_gradient,
    relu,
    softmax,
)
from fashionnet.model.gradient import numerical_gradient

PARAM_NAMES = ("W1", "b1", "W2", "b2")
WEIGHT_INITS = ("std", "he")
# Hidden units per job of `BlockedBackprop`: a fixed number, so that the products' bits depend
# on it alone, never on how many threads share the jobs. Narrower blocks cost more (quiet, an
# epoch of the default recipe on 2 threads took about 5% longer in blocks of 128 than of 256),
# but more jobs share out better when another process holds a thread up: beside a busy loop
# per core, an epoch took a median 3.0 s in blocks of 128 against 3.5 s in blocks of 256.
HIDDEN_BLOCK = 128

Params = dict[str, np.ndarray]


def _forward(params: Mapping[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hidden layer's activations and the output scores (logits, before softmax)."""
    hidden = relu(x @ params["W1"] + params["b1"])
    return hidden, hidden @ params["W2"] + params["b2"]


def scores(params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The output scores (logits): softmax turns them into `predict`'s probabilities."""
    return _forward(params, x)[1]


def predict(params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities: x (784,) -> (10,), or (n, 784) -> (n, 10).

    Pure: reads `params` and `x`, writes neither, so threads may share them.
    """
    return softmax(scores(params, x))


def backprop(
    params: Mapping[str, np.ndarray], x: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, Params]:
    """One forward and one backward pass over a batch.

    Returns the scores (logits, n x classes) and the gradient of the mean cross-entropy
    with respect to each parameter. `labels` are class indices, shape (n,).
    """
    hidden, output = _forward(params, x)
    dscores = cross_entropy_gradient(output, labels)
    dhidden = dscores @ params["W2"].T
    dhidden *= hidden > 0  # ReLU lets the gradient through only where it was active
    grads = {
        "W1": x.T @ dhidden,
        "b1": dhidden.sum(axis=0),
        "W2": hidden.T @ dscores,
        "b2": dscores.sum(axis=0),
    }
    return output, grads


class BlockedBackprop:
    """`backprop` for minibatches of up to `batch_size` rows, as jobs that threads can share.

    The hidden layer is cut into blocks of HIDDEN_BLOCK units. The forward pass is one job per
    block (its hidden activations, and its part of the scores, hidden[:, block] @ W2[block]),
    the scores are those parts summed in block order; the backward pass is one job per block
    (the block's hidden gradient, its columns of dW1 and db1, its rows of dW2). `run` runs a
    list of jobs (`core.threads.Workers.run` on threads). Every product is one BLAS call on
    shapes fixed by the block, so the result is the same whichever thread ran which job; it
    equals `backprop` up to float32 rounding (the scores are summed block by block). Nothing is
    allocated per minibatch but the small score arrays: the gradients land in `grads`, arrays
    kept from one call to the next, laid out in memory as the parameters are.

    The hidden activations and their gradient are kept transposed (a row per hidden unit), so
    that a block's are contiguous and the element-wise work on them (bias, ReLU, its mask and
    sums) goes in one pass instead of one per image.

    Training's regularisers: with `label_smoothing` eps the targets are (1 - eps) * one_hot +
    eps / classes (`functions.cross_entropy_gradient`); a call's `dropout_scale` multiplies the
    hidden activations after ReLU (inverted dropout: 0 for a dropped unit, 1 / (1 - rate) for
    a kept one), drawn by the caller, so the bits do not depend on which thread ran a block.
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        batch_size: int,
        run: Run,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        self.params = params
        self.run = run
        self.label_smoothing = label_smoothing
        hidden_size, classes = params["W2"].shape
        self.blocks = [
            slice(start, min(start + HIDDEN_BLOCK, hidden_size))
            for start in range(0, hidden_size, HIDDEN_BLOCK)
        ]
        dtype = params["W1"].dtype
        self.hidden = np.empty((hidden_size, batch_size), dtype)  # transposed: (units, images)
        self.dhidden = np.empty_like(self.hidden)
        self.block_scores = np.empty((len(self.blocks), batch_size, classes), dtype)
        self.grads = {name: np.empty_like(params[name]) for name in PARAM_NAMES}

    def __call__(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        *,
        dropout_scale: np.ndarray | None = None,
        after_block: Callable[[slice], object] | None = None,
    ) -> tuple[np.ndarray, Params]:
        """`backprop(params, x, labels)`: the scores and the gradients (kept in `grads`): the
        forward jobs, `output_gradient`, then the backward jobs. Training strings the same
        steps together across minibatches, with other jobs among them (`train._train`).
        """
        self.run(self.forward(np.ascontiguousarray(x.T), dropout_scale))
        output, dscores = self.output_gradient(labels)
        self.run(self.backward(x, dscores, dropout_scale, after_block))
        return output, self.grads

    def forward(self, x_transposed: np.ndarray, dropout_scale: np.ndarray | None) -> list[Job]:
        """The forward pass, a job per block: the block's hidden activations and its part of the
        scores.

        `x_transposed` is the minibatch x as x.T in a C-contiguous array (pixels, images): the
        forward products read x that way and the backward ones read x itself, the layouts in
        which OpenBLAS computes each fastest (the forward product took 20% less time than from
        a view of x). `dropout_scale`, if given, is (hidden units, images), as the hidden layer.
        """
        return [
            partial(self._forward_block, number, block, x_transposed, dropout_scale)
            for number, block in enumerate(self.blocks)
        ]

    def output_gradient(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Once the forward jobs are done: the scores and the gradient of the loss with respect
        to them (for `backward`); b2's gradient lands in `grads`."""
        n = len(labels)
        output = self.block_scores[:, :n].sum(axis=0)
        output += self.params["b2"]
        dscores = cross_entropy_gradient(output, labels, self.label_smoothing)
        np.sum(dscores, axis=0, out=self.grads["b2"])
        return output, dscores

    def backward(
        self,
        x: np.ndarray,
        dscores: np.ndarray,
        dropout_scale: np.ndarray | None,
        after_block: Callable[[slice], object] | None = None,
    ) -> list[Job]:
        """The backward pass from `output_gradient`'s `dscores`, a job per block: the block's
        hidden gradient, its columns of dW1 and db1, its rows of dW2; then `after_block(block)`,
        once the block's gradients are computed (training updates the block's weights there,
        while they are in cache). A job reads the block's hidden activations of this minibatch:
        a job may go on with the next minibatch's `forward` of the same block, never before."""
        return [
            partial(self._backward_block, block, x, dscores, dropout_scale, after_block)
            for block in self.blocks
        ]

    def _forward_block(
        self,
        number: int,
        block: slice,
        x_transposed: np.ndarray,
        dropout_scale: np.ndarray | None,
    ) -> None:
        n = x_transposed.shape[1]
        hidden = self.hidden[block, :n]
        np.matmul(self.params["W1"][:, block].T, x_transposed, out=hidden)
        hidden += self.params["b1"][block, None]
        np.maximum(hidden, 0, out=hidden)  # ReLU
        if dropout_scale is not None:
            hidden *= dropout_scale[block]
        np.matmul(hidden.T, self.params["W2"][block], out=self.block_scores[number, :n])

    def _backward_block(
        self,
        block: slice,
        x: np.ndarray,
        dscores: np.ndarray,
        dropout_scale: np.ndarray | None,
        after_block: Callable[[slice], object] | None,
    ) -> None:
        n, grads = len(x), self.grads
        hidden, dhidden = self.hidden[block, :n], self.dhidden[block, :n]
        np.matmul(self.params["W2"][block], dscores.T, out=dhidden)
        dhidden *= hidden > 0  # ReLU lets the gradient through only where it was active
        if dropout_scale is not None:
            dhidden *= dropout_scale[block]
        np.matmul(x.T, dhidden.T, out=grads["W1"][:, block])
        np.sum(dhidden, axis=1, out=grads["b1"][block])
        np.matmul(hidden, dscores, out=grads["W2"][block])
        if after_block is not None:
            after_block(block)


def class_indices(t: np.ndarray) -> np.ndarray:
    """Labels as class indices, whether given as indices (n,) or one-hot rows (n, classes)."""
    t = np.asarray(t)
    return t if t.ndim == 1 else t.argmax(axis=1)


class TwoLayerNet:
    """The book's TwoLayerNet: `params` W1 (input, hidden), b1, W2 (hidden, output), b2.

    `weight_init="std"` draws weights as weight_init_std * N(0, 1), as the book does;
    `weight_init="he"` scales them by sqrt(2 / fan_in), which suits ReLU and trains faster.
    Biases start at zero. The same seed always gives the same weights (`default_rng(seed)`);
    without a seed the weights come from NumPy's global random state (`np.random.randn`), as in
    the tutorial, so `np.random.seed(0)` before two constructions gives two identical nets.
    The pipeline always passes its seed and its own `weight_init_std`.
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: float = 0.1,
        *,
        weight_init: str = "std",
        seed: int | None = None,
        dtype: type = np.float32,
    ) -> None:
        if weight_init not in WEIGHT_INITS:
            raise FashionnetError(
                f"unknown weight_init {weight_init!r}: use one of {', '.join(WEIGHT_INITS)}"
            )
        if weight_init == "he":
            scale1, scale2 = np.sqrt(2 / input_size), np.sqrt(2 / hidden_size)
        else:
            scale1 = scale2 = weight_init_std
        # np.random.standard_normal is np.random.randn, taking a shape tuple.
        rng = np.random if seed is None else np.random.default_rng(seed)
        normal = rng.standard_normal
        self.params = {
            "W1": (scale1 * normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (scale2 * normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, np.ndarray]) -> "TwoLayerNet":
        """A net around existing parameters (shared, not copied), e.g. loaded weights."""
        net = cls.__new__(cls)
        net.params = {name: params[name] for name in PARAM_NAMES}
        return net

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict(self.params, x)

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return cross_entropy_error(scores(self.params, x), t)

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        predicted = self.predict(x).argmax(axis=1)
        return float(np.mean(predicted == class_indices(t)))

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray) -> Params:
        """The gradient by central differences: slow, used only to check `gradient`."""

        def loss_w(_: np.ndarray) -> float:
            return self.loss(x, t)  # reads the parameter numerical_gradient just nudged

        return {name: numerical_gradient(loss_w, self.params[name]) for name in PARAM_NAMES}

    def gradient(self, x: np.ndarray, t: np.ndarray) -> Params:
        """The gradient by backpropagation: same keys as `params`, one pass each way."""
        return backprop(self.params, x, class_indices(t))[1]
