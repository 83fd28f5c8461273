"""The model: the NumPy TwoLayerNet, its functions and optimizers, training, weights files and
the model store."""
