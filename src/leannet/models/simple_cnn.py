"""A plain conv-pool stack for small images, to compare max and average pooling and bottlenecks."""
from __future__ import annotations

from torch import nn, Tensor

from leannet.models.registry import register
from leannet.nn import ConvBNAct, make_pool


class SimpleCNN(nn.Module):
    """[ConvBNAct -> pool] per stage, an optional 1x1 bottleneck, then flatten -> Linear -> Linear.

    Flattening the conv map straight into a Linear layer (rather than global pooling) is the
    classic LeNet/VGG head, and exercises pruning through flatten.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 channels: tuple[int, ...] = (32, 64), pool: str = "max",
                 bottleneck: int | None = None, hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, previous = image_size, in_channels
        for width in channels:
            layers += [ConvBNAct(previous, width, 3), make_pool(pool, 2)]
            previous, size = width, size // 2
        if bottleneck:
            layers.append(ConvBNAct(previous, bottleneck, 1))
            previous = bottleneck
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(previous * size * size, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


@register("simple_cnn", default_image_size=28)
def simple_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
               channels: list[int] | tuple[int, ...] = (32, 64), pool: str = "max",
               bottleneck: int | None = None, hidden: int = 128) -> SimpleCNN:
    """Plain conv-pool stack (max or avg pooling, optional 1x1 bottleneck), flatten, two Linear."""
    return SimpleCNN(num_classes, in_channels, image_size, tuple(channels), pool, bottleneck, hidden)
