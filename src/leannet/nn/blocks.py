"""CNN building blocks: ConvBNAct, MobileNet v1/v2 blocks, ResNet blocks, pooling choices."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from leannet.errors import LeannetError

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "none": nn.Identity,
}


def make_activation(name: str | None) -> nn.Module:
    """Activation module by name (`relu`, `relu6`, `hardswish`, `silu`, `leaky_relu`, `none`)."""
    key = "none" if name is None else name
    if key not in _ACTIVATIONS:
        raise LeannetError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]()


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10% (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_pool(kind: str, kernel_size: int = 2, stride: int | None = None) -> nn.Module:
    """Spatial pooling by name: `max` or `avg`."""
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size, stride)
    raise LeannetError(f"unknown pooling {kind!r}; expected 'max' or 'avg'")


class GlobalPool(nn.Module):
    """Global pooling to a flat (N, C) vector, by `avg` or `max`."""

    def __init__(self, kind: str = "avg") -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise LeannetError(f"unknown global pooling {kind!r}; expected 'max' or 'avg'")
        self.kind = kind
        self.pool = nn.AdaptiveAvgPool2d(1) if kind == "avg" else nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation; 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "relu",
        dilation: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            make_activation(activation),
        )
        self.out_channels = out_channels


class DepthwiseSeparable(nn.Sequential):
    """MobileNet v1 block: 3x3 depthwise ConvBNAct then 1x1 pointwise ConvBNAct."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 activation: str = "relu") -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, activation=activation),
            ConvBNAct(in_channels, out_channels, 1, activation=activation),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """MobileNet v2 block: 1x1 expansion by t, 3x3 depthwise, linear 1x1 projection (no activation).

    The residual connection is used only when stride is 1 and input and output channels match.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 activation: str = "relu6") -> None:
        super().__init__()
        if stride not in (1, 2):
            raise LeannetError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=activation))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=activation),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs; a 1x1 projection shortcut when shape changes."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels, stride)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce to `channels`, 3x3, 1x1 expand by 4; projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a 1x1 conv + BN projection (ResNet option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )
