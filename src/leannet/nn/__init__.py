"""Building blocks shared by every model: conv-BN-activation, MobileNet and ResNet blocks, pooling."""
from leannet.nn.blocks import (
    Bottleneck,
    BasicBlock,
    ConvBNAct,
    DepthwiseSeparable,
    InvertedResidual,
    make_activation,
    make_divisible,
    make_pool,
    GlobalPool,
)

__all__ = [
    "Bottleneck",
    "BasicBlock",
    "ConvBNAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "make_activation",
    "make_divisible",
    "make_pool",
    "GlobalPool",
]
