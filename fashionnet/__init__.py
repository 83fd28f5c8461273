"""fashionnet: Fashion-MNIST classification with a from-scratch NumPy TwoLayerNet.

The seed's API is here at the top (`from fashionnet import TwoLayerNet, relu`); it needs NumPy
alone. The library has no Prefect import: `flows/` orchestrates it.
"""

from fashionnet.model.functions import cross_entropy_error, relu, softmax
from fashionnet.model.two_layer_net import TwoLayerNet

__version__ = "0.1.0"
__all__ = ["TwoLayerNet", "cross_entropy_error", "relu", "softmax"]
