"""Property tests of the pruning engine on random conv graphs (hypothesis).

Each example builds a network from random blocks (residual adds, concat and split, depthwise and
grouped convs, SE gates, channel shuffle, flatten into Linear, a second output), prunes a random
fraction of its channels with a random weight criterion, and checks what must always hold:
verification passes (zeroing = removing), every output keeps its shape, and the plan replays on a
fresh instance to the same shapes.
"""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from leannet.errors import UnreachableTarget
from leannet.prune import Pruner, Target, apply_plan

BLOCKS = ("conv", "residual", "concat", "split", "depthwise", "grouped", "se", "shuffle")


def conv_bn(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class Concat(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = conv_bn(c, c), conv_bn(c, c // 2 + 1)
        self.out_channels = c + c // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Split(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.half = c // 2
        self.conv = conv_bn(c - self.half, c - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([a, self.conv(b)], dim=1)


class SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, max(1, c // 4), 1), nn.Conv2d(max(1, c // 4), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Shuffle(nn.Module):
    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class RandomNet(nn.Module):
    """A stem, the given blocks, then a flatten->Linear classifier and optionally a conv head."""

    def __init__(self, blocks: list[str], width: int, two_outputs: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, width)]
        c = width
        for kind in blocks:
            if kind == "conv":
                layers.append(conv_bn(c, c + 2))
                c += 2
            elif kind == "residual":
                layers.append(Residual(c))
            elif kind == "concat":
                block = Concat(c)
                layers.append(block)
                c = block.out_channels
            elif kind == "split":
                layers.append(Split(c))
            elif kind == "depthwise":
                layers += [conv_bn(c, c, groups=c), conv_bn(c, c)]
            elif kind == "grouped":
                even = c + c % 2
                layers += [conv_bn(c, even), conv_bn(even, even, groups=2)]
                c = even
            elif kind == "se":
                layers.append(SE(c))
            elif kind == "shuffle":
                even = c + c % 2
                layers += [conv_bn(c, even), Shuffle(2)]
                c = even
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(c * 4, 5)
        self.head = nn.Conv2d(c, 3, 1) if two_outputs else None

    def forward(self, x: torch.Tensor):
        f = self.features(x)
        logits = self.classifier(torch.flatten(self.pool(f), 1))
        if self.head is None:
            return logits
        return {"labels": logits, "mask": self.head(f)}


def outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = model.eval()(x)
    return out if isinstance(out, dict) else {"out": out}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4),
       width=st.integers(4, 12), two_outputs=st.booleans(),
       fraction=st.floats(0.3, 0.9), seed=st.integers(0, 1000),
       criterion=st.sampled_from(["l1", "l2", "fpgm", "bn_scale", "random"]))
def test_random_graphs_prune_exactly_and_replay(blocks, width, two_outputs, fraction, seed,
                                                criterion):
    torch.manual_seed(seed)
    model = RandomNet(blocks, width, two_outputs)
    for m in model.modules():  # non-trivial BN statistics, so zeroing is a real test
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.2, 1.5)
    fresh = RandomNet(blocks, width, two_outputs)
    x = torch.randn(2, 3, 8, 8)
    before = {k: v.shape for k, v in outputs(model, x).items()}
    pruner = Pruner(model, x, criterion=criterion, seed=seed)
    try:
        plan = pruner.plan(Target(channels=fraction))
    except UnreachableTarget:
        return  # every channel protected (e.g. all feed an output): nothing to check
    pruner.apply(plan, verify=True)  # raises when zeroing and removing disagree
    after = outputs(model, x)
    assert {k: v.shape for k, v in after.items()} == before
    assert all(torch.isfinite(v).all() for v in after.values())
    apply_plan(fresh, plan.to_dict(), x)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
