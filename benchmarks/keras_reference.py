"""The Keras side of the comparison: fashionnet's recipe in Keras, the TensorFlow tutorial's
model, and our weights in Keras.

`same_recipe_fit` trains what `train()` trains, with Keras doing the work: Dense(hidden, relu)
-> Dense(10) starting from the very weights TwoLayerNet draws for the seed, Adam with the
recipe's learning rate, its moment decays and epsilon, the recipe's schedule applied per epoch,
its batch size, epochs and label smoothing, on the same per-pixel standardized float32 arrays;
and, as `train()` does, each minibatch's accuracy tallied and the validation split's accuracy
measured after each epoch (in batches of ACCURACY_ROWS), so both fits do the same work. The
tutorial
(https://www.tensorflow.org/tutorials/keras/classification) trains Flatten -> Dense(128, relu)
-> Dense(10) with adam for 10 epochs of batch 32. For prediction, the same W1, b1, W2, b2 we
trained go into Dense(hidden, relu) -> Dense(10, softmax), so both sides multiply the same
matrices. TensorFlow is imported here only, when first needed.
"""

import time
from collections.abc import Mapping

import numpy as np

from benchmarks.data import Fit, Split, Splits
from fashionnet.core.settings import quiet_tensorflow
from fashionnet.data.catalog import IMAGE_SHAPE, NUM_CLASSES, NUM_PIXELS
from fashionnet.model.optimizers import Adam
from fashionnet.model.train import ACCURACY_ROWS, TrainConfig, scheduled_learning_rate
from fashionnet.model.two_layer_net import PARAM_NAMES, TwoLayerNet


def _keras():
    quiet_tensorflow()
    import keras

    return keras


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def same_recipe_fit(config: TrainConfig, splits: Splits) -> Fit:
    """Train `config` with Keras on the training split; time `fit`, then score the held-out
    splits."""
    if config.optimizer != "adam" or config.dropout or config.augment != "none":
        raise ValueError(
            "the Keras reference follows adam recipes without dropout or augmentation, not "
            f"{config.optimizer!r}, dropout {config.dropout}, augment {config.augment!r}"
        )
    keras = _keras()
    keras.utils.set_random_seed(config.seed)
    standardization = splits.train.standardization() if config.standardize else None

    def inputs(split: Split) -> np.ndarray:
        return split.x if standardization is None else standardization.apply(split.x)

    # The L2 penalty (lambda / 2) * sum(W ** 2) that adds lambda * W to train()'s gradients.
    decay = keras.regularizers.L2(config.weight_decay / 2) if config.weight_decay else None
    model = keras.Sequential(
        [
            keras.Input((NUM_PIXELS,)),
            keras.layers.Dense(config.hidden_size, activation="relu", kernel_regularizer=decay),
            keras.layers.Dense(NUM_CLASSES, kernel_regularizer=decay),
        ]
    )
    initial = TwoLayerNet(
        NUM_PIXELS,
        config.hidden_size,
        NUM_CLASSES,
        config.weight_init_std,
        weight_init=config.weight_init,
        seed=config.seed,
    ).params
    model.set_weights([initial[name] for name in PARAM_NAMES])
    adam = Adam()  # fashionnet's moment decays and epsilon (Keras's epsilon default differs)
    model.compile(
        optimizer=keras.optimizers.Adam(
            config.learning_rate, beta_1=adam.beta1, beta_2=adam.beta2, epsilon=adam.eps
        ),
        # The smoothed targets (1 - label_smoothing) * one_hot + label_smoothing / 10, as
        # train()'s: Keras smooths one-hot labels only.
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=["accuracy"],
    )
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch, _: scheduled_learning_rate(config, epoch + 1)  # Keras counts from 0
    )
    x_train, x_validation = inputs(splits.train), inputs(splits.validation)
    start = time.perf_counter()
    model.fit(
        x_train,
        one_hot(splits.train.label),
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=(x_validation, one_hot(splits.validation.label)),
        validation_batch_size=ACCURACY_ROWS,
        callbacks=[schedule],
        verbose=0,
    )
    seconds = time.perf_counter() - start

    def accuracy(split: Split) -> float:
        scores = model.predict(inputs(split), batch_size=10_000, verbose=0)
        return float(np.mean(scores.argmax(axis=1) == split.label))

    return Fit(seconds, accuracy(splits.validation), accuracy(splits.test))


def tutorial_fit(splits: Splits, *, seed: int = 0) -> Fit:
    """Train the tutorial's model on images (n, 784) in [0, 1]; time `fit`, then score."""
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
    start = time.perf_counter()
    model.fit(
        splits.train.x.reshape(-1, *IMAGE_SHAPE), splits.train.label, epochs=10, batch_size=32,
        verbose=0,
    )  # fmt: skip
    seconds = time.perf_counter() - start

    def accuracy(split: Split) -> float:
        return float(model.evaluate(split.x.reshape(-1, *IMAGE_SHAPE), split.label, verbose=0)[1])

    return Fit(seconds, accuracy(splits.validation), accuracy(splits.test))


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
