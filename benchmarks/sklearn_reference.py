"""scikit-learn's MLPClassifier with the closest recipe to `train()`'s that it allows.

The same architecture (one ReLU hidden layer of `hidden_size`), Adam with the recipe's initial
learning rate, moment decays and epsilon, the same batch size, `epochs` passes over the data
with no early stopping (`tol=0` and patience beyond the last epoch), on the same standardized
float32 arrays. What differs: MLPClassifier keeps the learning rate constant (it has no cosine
schedule), has no label smoothing, draws its own initial weights (Glorot-uniform) and its own
shuffling, and scales its L2 term by the batch: its `alpha` adds alpha * W / batch_size to the
gradients, so alpha = weight_decay * batch_size matches train()'s lambda * W.
"""

import time
import warnings

import numpy as np

from benchmarks.data import Fit, Split, Splits
from fashionnet.model.optimizers import Adam
from fashionnet.model.train import TrainConfig


def mlp_fit(config: TrainConfig, splits: Splits) -> Fit:
    """Train MLPClassifier on the training split; time `fit`, then score the held-out splits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    standardization = splits.train.standardization() if config.standardize else None

    def inputs(split: Split) -> np.ndarray:
        return split.x if standardization is None else standardization.apply(split.x)

    adam = Adam()
    model = MLPClassifier(
        hidden_layer_sizes=(config.hidden_size,),
        activation="relu",
        solver="adam",
        alpha=config.weight_decay * config.batch_size,
        batch_size=config.batch_size,
        learning_rate_init=config.learning_rate,
        max_iter=config.epochs,
        shuffle=True,
        random_state=config.seed,
        tol=0.0,
        n_iter_no_change=config.epochs + 1,
        early_stopping=False,
        beta_1=adam.beta1,
        beta_2=adam.beta2,
        epsilon=adam.eps,
    )
    x_train = inputs(splits.train)
    start = time.perf_counter()
    with warnings.catch_warnings():  # "maximum iterations reached": the recipe's epochs, as asked
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, splits.train.label)
    seconds = time.perf_counter() - start

    def accuracy(split: Split) -> float:
        return float(np.mean(model.predict(inputs(split)) == split.label))

    return Fit(seconds, accuracy(splits.validation), accuracy(splits.test))
