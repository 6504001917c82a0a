"""YOLO v1 / v2 / v3 detectors on any leannet backbone with a `features` Sequential (MobileNets).

The model returns the raw prediction convolutions as a dict `{"s<stride>": tensor}` (plus the raw
`"count"` logits of the optional digit-count head), so pruning protects them as model outputs;
decoding to boxes lives in `leannet.detect.decode`. `model.detect_spec` says how to read them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn, Tensor

from leannet._torch import eval_mode
from leannet.errors import LeannetError
from leannet.models.registry import create_model, register
from leannet.nn import ConvBNAct, DepthwiseSeparable, GlobalPool

HEADS = ("v1", "v2", "v3")
# YOLOv3's COCO anchors at 416 px and YOLOv2's VOC anchors (grid units x 32), scaled to image size.
V3_ANCHORS_416 = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119),
                  (116, 90), (156, 198), (373, 326)]
V2_ANCHORS_416 = [(34.6, 38.1), (109.4, 141.1), (212.2, 364.2), (301.4, 163.5), (531.8, 336.6)]
OBJECT_PRIOR = 0.01  # initial objectness probability (bias init), keeps early losses stable


@dataclass(frozen=True)
class DetectSpec:
    """How to read a YOLO model's raw outputs: head kind, levels, strides and anchors (pixels)."""

    head: str
    num_classes: int
    image_size: int
    keys: tuple[str, ...]  # output keys, shallowest level first
    strides: tuple[int, ...]
    anchors: tuple[tuple[tuple[float, float], ...], ...]  # per level; v1: () per level
    boxes_per_cell: int
    count_classes: int = 0
    class_names: tuple[str, ...] = ()


class Backbone(nn.Module):
    """A registered model's `features`; returns the maps ending its three deepest strides."""

    def __init__(self, name: str, in_channels: int, **kwargs: object) -> None:
        super().__init__()
        net = create_model(name, in_channels=in_channels, **kwargs)
        features = getattr(net, "features", None)
        if not isinstance(features, nn.Sequential):
            raise LeannetError(f"backbone {name!r} has no `features` Sequential; "
                               "expected a model such as mobilenet_v1 or mobilenet_v2")
        layers = list(features)
        last = layers[-1]
        if isinstance(last, ConvBNAct) and last[0].kernel_size == (1, 1) and len(layers) > 1:
            layers = layers[:-1]  # MobileNetV2's 1280-wide classifier conv: heavy, not needed
        self.features = nn.Sequential(*layers)
        self.taps, self.strides, self.channels = _find_taps(self.features, in_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outs.append(x)
        return outs


def _find_taps(features: nn.Sequential, in_channels: int) -> tuple[list[int], list[int], list[int]]:
    """Indices, strides and channels of the last layer at each of the three deepest resolutions."""
    size = 256
    x = torch.zeros(1, in_channels, size, size)
    last_at: dict[int, tuple[int, int]] = {}
    with torch.no_grad(), eval_mode(features):
        for index, layer in enumerate(features):
            x = layer(x)
            last_at[size // x.shape[-1]] = (index, x.shape[1])
    strides = sorted(last_at)[-3:]
    if len(strides) < 3:
        raise LeannetError("backbone must downsample at least three times for a YOLO head")
    return [last_at[s][0] for s in strides], strides, [last_at[s][1] for s in strides]


class TopDown(nn.Module):
    """YOLOv3's top-down path: deepest map -> reduce, upsample 2x, concat next map -> conv."""

    def __init__(self, channels: list[int], width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.reduce = nn.ModuleList()
        incoming = 0
        for index, c in enumerate(reversed(channels)):
            self.blocks.append(nn.Sequential(ConvBNAct(c + incoming, width, 1),
                                             DepthwiseSeparable(width, width)))
            if index < len(channels) - 1:
                self.reduce.append(nn.Sequential(ConvBNAct(width, width // 2, 1),
                                                 nn.Upsample(scale_factor=2, mode="nearest")))
                incoming = width // 2

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        outs: list[Tensor] = []
        x = None
        for index, (block, feat) in enumerate(zip(self.blocks, reversed(feats))):
            x = block(feat if x is None else torch.cat([feat, x], dim=1))
            outs.append(x)
            if index < len(self.reduce):
                x = self.reduce[index](x)
        return outs[::-1]


class YOLO(nn.Module):
    """Backbone -> top-down neck -> one 1x1 prediction conv per level (+ an optional count head)."""

    def __init__(self, backbone: Backbone, spec: DetectSpec, width: int) -> None:
        super().__init__()
        self.backbone = backbone
        levels = [backbone.strides.index(s) for s in spec.strides]
        self.first_level = min(levels)
        self.neck = TopDown(backbone.channels[self.first_level:], width)
        self.predict = nn.ModuleList(nn.Conv2d(width, _out_channels(spec), 1) for _ in levels)
        self.spec = spec
        self.count = None
        if spec.count_classes:
            self.count = nn.Sequential(GlobalPool("avg"),
                                       nn.Linear(backbone.channels[-1], spec.count_classes))
        _init_prediction_bias(self)

    @property
    def detect_spec(self) -> DetectSpec:
        return self.spec

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(x)
        merged = self.neck(feats[self.first_level:])
        out = {key: conv(feat) for key, conv, feat in zip(self.spec.keys, self.predict, merged)}
        if self.count is not None:
            out["count"] = self.count(feats[-1])
        return out


def _out_channels(spec: DetectSpec) -> int:
    """v1: B boxes x (x, y, w, h, conf) + C classes per cell; v2/v3: per anchor (4 + obj + C)."""
    if spec.head == "v1":
        return spec.boxes_per_cell * 5 + spec.num_classes
    return spec.boxes_per_cell * (5 + spec.num_classes)


def _init_prediction_bias(model: YOLO) -> None:
    """Objectness biases start at a 1% prior, v3 class biases at 1/C (as YOLOv5 does)."""
    prior = math.log(OBJECT_PRIOR / (1 - OBJECT_PRIOR))
    spec = model.spec
    for conv in model.predict.modules():
        if not isinstance(conv, nn.Conv2d) or conv.bias is None:
            continue
        nn.init.normal_(conv.weight, 0, 0.01)
        nn.init.zeros_(conv.bias)
        with torch.no_grad():
            if spec.head == "v1":
                conv.bias[4:spec.boxes_per_cell * 5:5] = prior
            else:
                conv.bias.view(spec.boxes_per_cell, -1)[:, 4] = prior
            if spec.head == "v3":  # independent logistic classes start at P = 1 / num_classes
                conv.bias.view(spec.boxes_per_cell, -1)[:, 5:] = -math.log(spec.num_classes)


def default_anchors(head: str, image_size: int) -> list[list[float]]:
    """The papers' anchors (v2: VOC, v3: COCO) scaled from 416 px to `image_size`."""
    base = V3_ANCHORS_416 if head == "v3" else V2_ANCHORS_416
    scale = image_size / 416
    return [[round(w * scale, 2), round(h * scale, 2)] for w, h in base]


def _split_anchors(anchors: list[list[float]], levels: int) -> tuple:
    """Sort anchors by area and split them evenly over levels, smallest to the finest level."""
    if levels > 1 and len(anchors) % levels:
        raise LeannetError(f"v3 needs a multiple of {levels} anchors, got {len(anchors)}")
    for anchor in anchors:
        if len(anchor) != 2 or min(anchor) <= 0:
            raise LeannetError(f"anchors must be [width, height] pairs > 0, got {anchor}")
    ordered = sorted((tuple(map(float, a)) for a in anchors), key=lambda a: a[0] * a[1])
    per = len(ordered) // levels
    return tuple(tuple(ordered[i * per:(i + 1) * per]) for i in range(levels))


def _grid_stride(strides: list[int], image_size: int, grid_stride: int | None) -> int:
    """v1/v2 grid: the given stride, or the coarsest one that still gives at least a 6x6 grid."""
    if grid_stride is not None:
        if grid_stride not in strides:
            raise LeannetError(f"grid_stride must be one of {strides}, got {grid_stride}")
        return grid_stride
    fitting = [s for s in strides if image_size // s >= 6]
    return max(fitting) if fitting else min(strides)


@register("yolo", default_image_size=96)
def yolo(backbone: str = "mobilenet_v2", backbone_kwargs: dict | None = None, head: str = "v3",
         num_classes: int = 80, in_channels: int = 3, image_size: int = 96,
         anchors: list[list[float]] | None = None, boxes_per_cell: int = 2,
         grid_stride: int | None = None, neck_channels: int = 64, count_classes: int = 0,
         class_names: list[str] | None = None) -> YOLO:
    """YOLO v1 (grid), v2 (anchors) or v3 (three scales) detector on a MobileNet backbone."""
    if head not in HEADS:
        raise LeannetError(f"unknown YOLO head {head!r}; expected one of {', '.join(HEADS)}")
    if num_classes < 1:
        raise LeannetError(f"num_classes must be at least 1, got {num_classes}")
    net = Backbone(backbone, in_channels, **(backbone_kwargs or {}))
    if image_size % net.strides[-1]:
        raise LeannetError(f"image_size must be a multiple of {net.strides[-1]} for this "
                           f"backbone, got {image_size}")
    if head == "v3":
        strides = list(net.strides)
    else:
        strides = [_grid_stride(net.strides, image_size, grid_stride)]
    if head == "v1":
        level_anchors: tuple = tuple(() for _ in strides)
        per_cell = boxes_per_cell
    else:
        level_anchors = _split_anchors(anchors or default_anchors(head, image_size), len(strides))
        per_cell = len(level_anchors[0])
    spec = DetectSpec(head, num_classes, image_size, tuple(f"s{s}" for s in strides),
                      tuple(strides), level_anchors, per_cell, count_classes,
                      tuple(class_names or [str(i) for i in range(num_classes)]))
    return YOLO(net, spec, neck_channels)
