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
from leannet.nn.between import CrossStitch, TaskAttention
from leannet.nn.sharing import check_task_names

SHARINGS = ("hard", "mtan", "cross_stitch")


class MultiHead(nn.Module):
    """A backbone (returning its taps) and one head per task.

    `sharing` says how the tasks share the backbone: "hard" (every head reads the same taps),
    "mtan" (each task reads the shared taps through its own attention masks) or
    "cross_stitch" (`backbone` is a CrossStitch of one column per task, in head order).
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module],
                 specs: dict[str, dict[str, Any]], sharing: str = "hard",
                 attention: nn.ModuleDict | None = None) -> None:
        super().__init__()
        check_task_names(heads, "multi_head heads")
        if sharing not in SHARINGS:
            raise LeannetError(f"unknown multi-head sharing {sharing!r}; expected one of "
                               f"{', '.join(SHARINGS)}")
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.head_specs = {name: dict(spec) for name, spec in specs.items()}
        self.sharing = sharing
        self.attention = attention

    @property
    def task_names(self) -> list[str]:
        """The tasks, in head order."""
        return list(self.heads)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters every task's loss reaches (gradient balancing methods act on these):
        the backbone (for cross-stitch: every column and the stitches)."""
        return self.backbone.parameters()

    def task_features(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Per task, the tap features its head reads."""
        if self.sharing == "cross_stitch":
            return dict(zip(self.heads, self.backbone(x)))
        feats = self.backbone(x)
        if self.attention is None:
            return {name: feats for name in self.heads}
        return {name: [att(f) for att, f in zip(self.attention[name], feats)]  # type: ignore
                for name in self.heads}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        per_task = self.task_features(x)
        return {name: head(per_task[name]) for name, head in self.heads.items()}


@register("multi_head", default_image_size=96)
def multi_head(heads: dict[str, dict[str, Any]], backbone: str = "mobilenet_v2",
               backbone_kwargs: dict[str, Any] | None = None, in_channels: int = 3,
               image_size: int = 96, sharing: str = "hard") -> MultiHead:
    """A backbone with named heads, e.g. {"detect": {"kind": "detect", "classes": 10},
    "segment": {"kind": "segment", "classes": 11}, "classify": {"kind": "classify",
    "classes": 5, "tap": 1}}; kinds are in `leannet.models.heads`. `sharing`: hard, mtan
    (task attention on the shared taps) or cross_stitch (a column per task, stitched at taps)."""
    if not isinstance(heads, dict) or not heads:
        raise LeannetError(f"multi_head needs a dict of named head specs, got {heads!r}")
    if sharing not in SHARINGS:
        raise LeannetError(f"unknown multi-head sharing {sharing!r}; expected one of "
                           f"{', '.join(SHARINGS)}")
    net = Backbone(backbone, in_channels, **(backbone_kwargs or {}))
    if image_size % net.strides[-1]:
        raise LeannetError(f"image_size must be a multiple of {net.strides[-1]} for this "
                           f"backbone, got {image_size}")
    taps = Taps(tuple(net.channels), tuple(net.strides), int(image_size))
    built = {name: build_head(taps, spec) for name, spec in heads.items()}
    trunk: nn.Module = net
    attention = None
    if sharing == "cross_stitch":
        columns = [net.features] + [Backbone(backbone, in_channels, **(backbone_kwargs or {})
                                             ).features for _ in list(heads)[1:]]
        trunk = CrossStitch(columns, net.taps)
    elif sharing == "mtan":
        attention = nn.ModuleDict({name: nn.ModuleList(TaskAttention(c) for c in net.channels)
                                   for name in heads})
    return MultiHead(trunk, built, heads, sharing, attention)
