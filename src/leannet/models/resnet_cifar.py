"""CIFAR-form ResNets (He et al. 2016, section 4.2): 3 stages of 16/32/64 channels, 6n+2 layers.

ResNet-20 and ResNet-56 are the standard subjects of the channel-pruning literature. Shortcuts that
change shape use a 1x1 projection (option B), which keeps every tensor prunable.
"""
from __future__ import annotations

from torch import nn, Tensor

from leannet.models.registry import register
from leannet.nn import BasicBlock, ConvBNAct, GlobalPool


class CifarResNet(nn.Module):
    """A stem conv, three stages of `blocks_per_stage` basic blocks, global pooling, a linear layer."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        widths = [max(1, int(round(w * width_mult))) for w in (16, 32, 64)]
        self.stem = ConvBNAct(in_channels, widths[0], 3)
        stages, channels = [], widths[0]
        for index, width in enumerate(widths):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = GlobalPool("avg")
        self.fc = nn.Linear(channels, num_classes)
        self.out_channels = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))


@register("resnet20", default_image_size=32)
def resnet20(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
             image_size: int | None = None) -> CifarResNet:
    """ResNet-20 for 32 px images (about 0.27M parameters)."""
    return CifarResNet(3, num_classes, in_channels, width_mult)


@register("resnet56", default_image_size=32)
def resnet56(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
             image_size: int | None = None) -> CifarResNet:
    """ResNet-56 for 32 px images (about 0.85M parameters)."""
    return CifarResNet(9, num_classes, in_channels, width_mult)
