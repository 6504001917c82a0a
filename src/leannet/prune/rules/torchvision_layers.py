"""Rules for torchvision layers. `Conv2dNormActivation` and `SqueezeExcitation` need none: they
are traced into and their parts (conv, norm, activation, mean, mul) have rules. `StochasticDepth`
is a leaf: per-sample, elementwise, so channels pass through."""
from __future__ import annotations

from leannet.prune.rules.base import register
from leannet.prune.rules.torch_nn import Elementwise

try:
    from torchvision.ops import StochasticDepth
except ImportError:  # pragma: no cover - torchvision is a dependency; stay importable without it
    StochasticDepth = None

if StochasticDepth is not None:
    register(Elementwise(types=(StochasticDepth,), activations=(), leaf=True))
