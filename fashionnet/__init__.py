"""fashionnet: Fashion-MNIST classification with a from-scratch NumPy TwoLayerNet.

The library has no Prefect import: `flows/` orchestrates it.
"""

__version__ = "0.1.0"
