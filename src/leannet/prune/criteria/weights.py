"""Weight criteria: they read the parameters only, no data.

`l1` / `l2`: mean |w| / root mean square of each producer's filter. `fpgm`: a filter's distance
to the others (near the geometric median = redundant). `bn_scale`: |gamma| of the norms. `random`:
the control. `group_l1` / `group_l2`: the magnitude of the whole channel, every member counted
(producers' filters, norm scales, per-channel parameters and every consumer's input weights),
each member's sum of |w| (or w²) averaged over the members, which is what Torch-Pruning's
GroupMagnitudeImportance measures.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from leannet.prune.capture.graph import ChannelGraph, Member
from leannet.prune.criteria.base import L1_ROWS, Criterion, Scorer, register_criterion, weight_rows


class RowCriterion(Criterion):
    """A score per weight row (a filter, or an input slice when a group has no filter)."""

    def member_scores(self, model: nn.Module, member: Member) -> np.ndarray | None:
        rows = weight_rows(model, member)
        return None if rows is None else self.rows(rows).numpy()

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_criterion
class L1(RowCriterion):
    """Mean |w| of each filter."""

    name = "l1"

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.abs().mean(1)


@register_criterion
class L2(RowCriterion):
    """Root mean square of each filter."""

    name = "l2"

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.pow(2).mean(1).sqrt()


@register_criterion
class FPGM(RowCriterion):
    """Sum of distances to the other filters of the layer: the filter nearest the geometric
    median is the most replaceable (He et al., 2019)."""

    name = "fpgm"

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.cdist(rows, rows).sum(1)


@register_criterion
class BNScale(Criterion):
    """|gamma| of the norm after each channel (Network Slimming); groups without a norm fall
    back to L1."""

    name = "bn_scale"
    role = "scale"

    def member_scores(self, model: nn.Module, member: Member) -> np.ndarray | None:
        weight = getattr(model.get_submodule(member.module), "weight", None)
        return None if weight is None else weight.detach().abs().float().numpy()

    def add_weight_scores(self, model: nn.Module, graph: ChannelGraph, scorer: Scorer) -> None:
        empty = scorer.empty_channels()
        for member in graph.members:
            if member.role == "scale":
                values = self.member_scores(model, member)
                if values is not None:
                    scorer.add_unscored(member.atoms, values, empty)
        L1_ROWS.add_weight_scores(model, graph, scorer)


@register_criterion
class Random(Criterion):
    """Uniform random scores, seeded by the Pruner's seed: the control."""

    name = "random"

    def scores(self, model: nn.Module, graph: ChannelGraph, stats: Any = None,
               seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {g.name: rng.random(g.size) for g in graph.groups}


class GroupMagnitude(Criterion):
    """Every member of a channel counts: the sum of |w|^p over each member's slice (weights,
    scales, per-channel parameters; biases and running statistics don't), averaged over the
    members of the channel."""

    power = 1

    def add_weight_scores(self, model: nn.Module, graph: ChannelGraph, scorer: Scorer) -> None:
        for member in graph.members:
            rows = weight_rows(model, member)
            if rows is not None:
                scorer.add(member.atoms, rows.abs().pow(self.power).sum(1).numpy())


@register_criterion
class GroupL1(GroupMagnitude):
    """Group magnitude with p = 1."""

    name = "group_l1"
    power = 1


@register_criterion
class GroupL2(GroupMagnitude):
    """Group magnitude with p = 2 (squared L2 norm)."""

    name = "group_l2"
    power = 2
