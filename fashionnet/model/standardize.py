"""Per-pixel input standardization for training, folded back into the first layer afterwards.

Training on pixels shifted to mean 0 and scaled to a common spread conditions the first layer
far better than raw [0, 1] values (border pixels are almost always 0, the centre varies a lot),
so the same accuracy takes fewer epochs. Because the first layer is affine, the shift and scale
fold exactly into W1 and b1:

    ((x - mean) / scale) @ W1 + b1  =  x @ (W1 / scale[:, None]) + (b1 - (mean / scale) @ W1)

so the trained network takes the pipeline's ordinary x / 255 inputs, like any other TwoLayerNet.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from fashionnet.model.two_layer_net import Params

# Added to each pixel's standard deviation: a pixel that is nearly constant (the image border)
# keeps a modest scale instead of having its rare, tiny variations blown up.
SCALE_FLOOR = np.float32(0.05)


@dataclass(frozen=True)
class Standardization:
    mean: np.ndarray  # float32 (features,)
    scale: np.ndarray  # float32 (features,), > 0

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardization":
        """The per-feature mean and scale (standard deviation + SCALE_FLOOR) of x (n, features)."""
        return cls.fit_stream([x])

    @classmethod
    def fit_stream(cls, parts: Iterable[np.ndarray]) -> "Standardization":
        """`fit` of the rows of all `parts` (each (rows, features)), in one pass holding one part
        at a time: per-feature sums of x and x**2 in float64 (pixels lie in [0, 1], so the
        difference of the two moments loses nothing that float32 keeps)."""
        n, total, total_square = 0, 0.0, 0.0
        for x in parts:
            n += len(x)
            total = total + x.sum(axis=0, dtype=np.float64)
            total_square = total_square + np.einsum("ij,ij->j", x, x, dtype=np.float64)
        if n == 0:
            raise ValueError("standardization needs at least one row")
        mean = total / n
        std = np.sqrt(np.maximum(total_square / n - mean**2, 0))
        return cls(mean.astype(np.float32), std.astype(np.float32) + SCALE_FLOOR)

    def apply(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(x - mean) / scale, float32: a new array, or `out` (shaped like x) filled."""
        standardized = np.subtract(x, self.mean, out=out)
        standardized /= self.scale
        return standardized

    def fold(self, params: Mapping[str, np.ndarray]) -> Params:
        """Parameters for raw inputs that compute what `params` computes on `apply(x)`."""
        folded = dict(params)
        folded["W1"] = params["W1"] / self.scale[:, None]
        folded["b1"] = params["b1"] - (self.mean / self.scale) @ params["W1"]
        return folded
