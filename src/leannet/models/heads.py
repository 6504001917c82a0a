"""Head kinds for multi-head models: classify, multilabel, YOLO v3 detect, LR-ASPP segment, yours.

A head kind is one `register_head(name, builder)` call. The builder gets the backbone's taps
(channels and strides of its three deepest resolutions, shallowest first), the head's own spec
from the model's JSON kwargs, and the input size, and returns a module that maps the list of tap
features to ONE tensor: one named output per task is what ONNX export and the pruner's output
protection need. A detect head therefore returns its levels flattened and concatenated (see
`DetectHead.split`), which the detection task splits back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leannet.errors import LeannetError
from leannet.models.yolo import (DetectSpec, TopDown, _init_prediction_bias, _out_channels,
                                 _split_anchors, default_anchors)
from leannet.nn import ConvBNAct, GlobalPool


@dataclass(frozen=True)
class Taps:
    """What a head may read: per tap (shallowest first) its channels and stride."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    image_size: int


HeadBuilder = Callable[[Taps, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class HeadKind:
    """A registered head kind: its builder and a one-line description."""

    name: str
    build: HeadBuilder
    description: str = ""


_HEADS: dict[str, HeadKind] = {}


def register_head(name: str, build: HeadBuilder, description: str = "") -> HeadKind:
    """Add a head kind (the last registration of a name wins)."""
    kind = HeadKind(name, build, description or (build.__doc__ or "").strip().split("\n")[0])
    _HEADS[name] = kind
    return kind


def list_heads() -> dict[str, HeadKind]:
    """Every registered head kind by name."""
    return dict(sorted(_HEADS.items()))


def build_head(taps: Taps, spec: dict[str, Any]) -> nn.Module:
    """The head a spec names (`{"kind": ..., ...}`), or a one-line error."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise LeannetError(f"a head spec must be a dict with a 'kind', got {spec!r}")
    kind = spec["kind"]
    if kind not in _HEADS:
        raise LeannetError(f"unknown head kind {kind!r}; expected one of {', '.join(_HEADS)}")
    return _HEADS[kind].build(taps, spec)


def _classes(spec: dict[str, Any]) -> int:
    classes = spec.get("classes")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise LeannetError(f"a {spec.get('kind')} head needs 'classes' >= 1, got {classes!r}")
    return classes


def _tap(taps: Taps, spec: dict[str, Any], default: int = -1) -> int:
    """The tap index a head reads (0 = shallowest of the three, -1/2 = deepest)."""
    tap = spec.get("tap", default)
    if not isinstance(tap, int) or not -len(taps.channels) <= tap < len(taps.channels):
        raise LeannetError(f"head tap must be an index into the backbone's "
                           f"{len(taps.channels)} taps, got {tap!r}")
    return tap % len(taps.channels)


class PooledHead(nn.Module):
    """Global average pool of one tap, optional hidden layer, then one logit per class."""

    def __init__(self, channels: int, classes: int, tap: int, hidden: int = 0) -> None:
        super().__init__()
        self.tap = tap
        layers: list[nn.Module] = [GlobalPool("avg")]
        if hidden:
            layers += [nn.Linear(channels, hidden), nn.ReLU(inplace=True)]
            channels = hidden
        layers.append(nn.Linear(channels, classes))
        self.body = nn.Sequential(*layers)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.body(feats[self.tap])


def classify_head(taps: Taps, spec: dict[str, Any]) -> nn.Module:
    """Image-level labels: pooled features of one tap (default the deepest) -> class logits."""
    tap = _tap(taps, spec)
    return PooledHead(taps.channels[tap], _classes(spec), tap, int(spec.get("hidden", 0)))


class DetectHead(nn.Module):
    """YOLOv3 on the taps: top-down neck, a 1x1 prediction conv per level; levels flattened.

    The output is (N, A * (5 + C), sum over levels of H * W); `split` gives back the
    `{"s<stride>": (N, A * (5 + C), H, W)}` dict that `leannet.detect` decodes.
    """

    def __init__(self, taps: Taps, spec: DetectSpec, width: int) -> None:
        super().__init__()
        self.neck = TopDown(list(taps.channels), width)
        self.predict = nn.ModuleList(nn.Conv2d(width, _out_channels(spec), 1)
                                     for _ in spec.strides)
        self.spec = spec
        _init_prediction_bias(self)  # type: ignore[arg-type]  # reads .predict and .spec only

    @property
    def detect_spec(self) -> DetectSpec:
        return self.spec

    def forward(self, feats: list[Tensor]) -> Tensor:
        levels = [conv(f) for conv, f in zip(self.predict, self.neck(feats))]
        return torch.cat([lv.flatten(2) for lv in levels], dim=2)

    @staticmethod
    def split(flat: Tensor, spec: DetectSpec) -> dict[str, Tensor]:
        """The flat output back as one (N, ch, H, W) map per level."""
        sizes = [spec.image_size // s for s in spec.strides]
        parts = torch.split(flat, [s * s for s in sizes], dim=2)
        return {key: p.reshape(p.shape[0], p.shape[1], s, s)
                for key, p, s in zip(spec.keys, parts, sizes)}


def detect_head(taps: Taps, spec: dict[str, Any]) -> nn.Module:
    """YOLO v3 boxes at three scales, from three depths of the backbone."""
    classes = _classes(spec)
    anchors = spec.get("anchors") or default_anchors("v3", taps.image_size)
    levels = _split_anchors(anchors, len(taps.strides))
    names = spec.get("class_names") or [str(i) for i in range(classes)]
    detect = DetectSpec("v3", classes, taps.image_size, tuple(f"s{s}" for s in taps.strides),
                        tuple(taps.strides), levels, len(levels[0]),
                        class_names=tuple(str(n) for n in names))
    return DetectHead(taps, detect, int(spec.get("width", 32)))


class LRASPPHead(nn.Module):
    """LR-ASPP (Howard et al. 2019, MobileNetV3): the deepest tap gated by its own global context,
    upsampled to the shallowest tap and added to a linear map of it; logits at input size."""

    def __init__(self, taps: Taps, classes: int, width: int) -> None:
        super().__init__()
        low, high = taps.channels[0], taps.channels[-1]
        self.image_size = taps.image_size
        self.cbr = ConvBNAct(high, width, 1)
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, width, 1),
                                   nn.Sigmoid())
        self.high_classifier = nn.Conv2d(width, classes, 1)
        self.low_classifier = nn.Conv2d(low, classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        low, high = feats[0], feats[-1]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.high_classifier(x) + self.low_classifier(low)
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False)


def segment_head(taps: Taps, spec: dict[str, Any]) -> nn.Module:
    """Semantic segmentation: an LR-ASPP decoder on the shallowest and deepest taps."""
    return LRASPPHead(taps, _classes(spec), int(spec.get("width", 32)))


register_head("classify", classify_head)
register_head("multilabel", classify_head, "Several labels per image: one logit per label "
              "(sigmoid), pooled from one tap")
register_head("detect", detect_head)
register_head("segment", segment_head)
