"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018) with a width multiplier.

At width 1.0 and 224 px these match the papers (v1: 4.23M params, 569M MACs) and torchvision's
MobileNetV2 exactly (3,504,872 params). `small_input=True` removes two early strides so that
28-32 px images (digits, MNIST, CIFAR-10) keep enough spatial resolution.
"""
from __future__ import annotations

from torch import nn, Tensor

from leannet.models.registry import register
from leannet.nn import ConvBNAct, DepthwiseSeparable, GlobalPool, InvertedResidual, make_divisible

# (output channels, stride) of the 13 depthwise-separable blocks of MobileNet v1.
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

# (expansion t, output channels c, repeats n, first stride s) of MobileNet v2, as in the paper.
V2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class Classifier(nn.Module):
    """Global pooling, dropout and a linear layer: the head shared by the MobileNets."""

    def __init__(self, in_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.pool = GlobalPool("avg")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x)))


class MobileNetV1(nn.Module):
    """MobileNet v1: a stem conv then 13 depthwise-separable blocks."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 1 if small_input else 2)]
        for index, (out, stride) in enumerate(V1_BLOCKS):
            if small_input and index == 1:
                stride = 1
            out = make_divisible(out * width_mult)
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.features = nn.Sequential(*layers)
        self.out_channels = channels
        self.classifier = Classifier(channels, num_classes, dropout)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class MobileNetV2(nn.Module):
    """MobileNet v2: inverted residuals with linear bottlenecks, channels rounded to 8."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, channels, 3, 1 if small_input else 2, activation="relu6")]
        for stage, (t, c, n, s) in enumerate(V2_SETTINGS):
            out = make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                if small_input and stage == 1:
                    stride = 1
                layers.append(InvertedResidual(channels, out, stride, t))
                channels = out
        layers.append(ConvBNAct(channels, last, 1, activation="relu6"))
        self.features = nn.Sequential(*layers)
        self.out_channels = last
        self.classifier = Classifier(last, num_classes, dropout)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small normal linear: torchvision's MobileNet initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register("mobilenet_v1", default_image_size=224)
def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.0, image_size: int | None = None
                 ) -> MobileNetV1:
    """MobileNet v1 (depthwise separable convolutions, width multiplier)."""
    return MobileNetV1(num_classes, in_channels, width_mult, small_input, dropout)


@register("mobilenet_v2", default_image_size=224)
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2, image_size: int | None = None
                 ) -> MobileNetV2:
    """MobileNet v2 (inverted residuals, linear bottlenecks, width multiplier)."""
    return MobileNetV2(num_classes, in_channels, width_mult, small_input, dropout)
