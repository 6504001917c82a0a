"""The two classic architectures between hard and soft sharing: cross-stitch units and MTAN.

Cross-stitch (Misra et al. 2016): one column (backbone) per task; after each stage every column's
features become a learned linear combination of all columns' features at that depth,
x_t <- sum_s alpha[t, s] x_s, with alpha starting near the identity (0.9 on the diagonal), so
the network learns how much to share at each depth. Columns must have equal widths (the sum is
elementwise), which also ties their channels for pruning: a channel removed from one column is
removed from all.

MTAN (Liu, Johns & Davison 2019): one shared backbone; each task reads every tap through its own
soft attention mask, a = sigmoid(conv(relu(bn(conv(features))))), task features = a * shared
features, so tasks pick features from the shared pool without owning a column.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from leannet.errors import LeannetError


class CrossStitch(nn.Module):
    """Columns run stage by stage; after stage k, x_t <- sum_s alpha[k, t, s] x_s."""

    def __init__(self, columns: Sequence[nn.Sequential], taps: Sequence[int],
                 self_weight: float = 0.9) -> None:
        super().__init__()
        if len(columns) < 2:
            raise LeannetError("cross-stitch needs at least two columns (tasks)")
        self.columns = nn.ModuleList(columns)
        self.taps = list(taps)
        tasks = len(columns)
        other = (1 - self_weight) / (tasks - 1)
        start = torch.full((tasks, tasks), other)
        start.fill_diagonal_(self_weight)
        self.alpha = nn.Parameter(start.repeat(len(self.taps), 1, 1))

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        """Per column, the features at each tap (after mixing)."""
        xs = [x] * len(self.columns)
        outs: list[list[Tensor]] = [[] for _ in self.columns]
        begin = 0
        for stage, end in enumerate(self.taps):
            for t, column in enumerate(self.columns):
                for layer in list(column.children())[begin:end + 1]:
                    xs[t] = layer(xs[t])
            xs = self.mix(xs, stage)
            for t, feature in enumerate(xs):
                outs[t].append(feature)
            begin = end + 1
        return outs

    def mix(self, xs: list[Tensor], stage: int) -> list[Tensor]:
        """The cross-stitch unit of one stage."""
        alpha = self.alpha[stage]
        mixed = []
        for t in range(len(xs)):
            total = alpha[t, 0] * xs[0]
            for s in range(1, len(xs)):
                total = total + alpha[t, s] * xs[s]
            mixed.append(total)
        return mixed


class TaskAttention(nn.Module):
    """MTAN's attention for one task at one tap: a mask in (0, 1) per channel and position."""

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(8, channels // 4)
        self.mask = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False),
                                  nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, features: Tensor) -> Tensor:
        return self.mask(features) * features
