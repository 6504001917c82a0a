"""Multi-task learning: hard and soft parameter sharing, loss weighting, the multi-task Task."""
from leannet.nn.sharing import HardSharing, SoftSharing, l2_penalty, trace_norm_penalty
from leannet.multitask.tasks import MultiTask
from leannet.multitask.weighting import (
    DynamicWeightAveraging,
    FixedWeighting,
    UncertaintyWeighting,
    make_weighting,
)

__all__ = [
    "DynamicWeightAveraging",
    "FixedWeighting",
    "HardSharing",
    "MultiTask",
    "SoftSharing",
    "UncertaintyWeighting",
    "l2_penalty",
    "make_weighting",
    "trace_norm_penalty",
]
