"""`multi_head`: one backbone, named heads of different kinds (boxes, a mask, labels) at once.

What phone apps ship: a MobileNet trunk computed once, its three deepest resolutions (taps)
feeding a YOLOv3 detector, an LR-ASPP segmenter and pooled classifiers side by side (hard
sharing with heads at different depths). `forward` returns `{task: tensor}`, one tensor per
task, so ONNX export names one output per task and pruning protects every head's output.
"""
from __future__ import annotations

from typing import Any, Iterator

from torch import Tensor, nn

from leannet.errors import LeannetError
from leannet.models.heads import Taps, build_head
from leannet.models.registry import register
from leannet.models.yolo import Backbone
from leannet.nn.sharing import check_task_names


class MultiHead(nn.Module):
    """A shared backbone (returning its taps) and one head per task."""

    def __init__(self, backbone: Backbone, heads: dict[str, nn.Module],
                 specs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        check_task_names(heads, "multi_head heads")
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.head_specs = {name: dict(spec) for name, spec in specs.items()}

    @property
    def task_names(self) -> list[str]:
        """The tasks, in head order."""
        return list(self.heads)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters every task's loss reaches (gradient balancing methods act on these)."""
        return self.backbone.parameters()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(x)
        return {name: head(feats) for name, head in self.heads.items()}


@register("multi_head", default_image_size=96)
def multi_head(heads: dict[str, dict[str, Any]], backbone: str = "mobilenet_v2",
               backbone_kwargs: dict[str, Any] | None = None, in_channels: int = 3,
               image_size: int = 96) -> MultiHead:
    """A backbone with named heads, e.g. {"detect": {"kind": "detect", "classes": 10},
    "segment": {"kind": "segment", "classes": 11}, "classify": {"kind": "classify",
    "classes": 5, "tap": 1}}; kinds are in `leannet.models.heads`."""
    if not isinstance(heads, dict) or not heads:
        raise LeannetError(f"multi_head needs a dict of named head specs, got {heads!r}")
    net = Backbone(backbone, in_channels, **(backbone_kwargs or {}))
    if image_size % net.strides[-1]:
        raise LeannetError(f"image_size must be a multiple of {net.strides[-1]} for this "
                           f"backbone, got {image_size}")
    taps = Taps(tuple(net.channels), tuple(net.strides), int(image_size))
    built = {name: build_head(taps, spec) for name, spec in heads.items()}
    return MultiHead(net, built, heads)
