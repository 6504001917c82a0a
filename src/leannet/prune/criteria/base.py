"""The Criterion interface, the per-group Scorer every criterion feeds, and the registry.

A criterion scores the channels of every group: it may read weights (`member_scores`, per member
of a group: filters, norm scales, consumers' inputs) or need data (`needs_data`: it observes
activations, and with `needs_gradients` their gradients, during `Pruner.calibrate`). Scores of
the members of a group are averaged per channel, then divided by the group's mean, so that
ranking channels across groups is fair. A plain callable `(group, model) -> scores` is wrapped
and gets the same combination and normalisation.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.capture.graph import ChannelGraph, ChannelGroup, Member


class Scorer:
    """Accumulates per-channel scores over all groups, then normalises each group."""

    def __init__(self, graph: ChannelGraph) -> None:
        self.graph = graph
        self.index = np.full(graph.uf.size, -1, dtype=np.int64)
        self.offsets, total = [], 0
        for group in graph.groups:
            self.index[group.channels] = np.arange(total, total + group.size)
            self.offsets.append(total)
            total += group.size
        self.sums = np.zeros(total)
        self.counts = np.zeros(total)

    def add(self, atoms: np.ndarray, scores: np.ndarray) -> None:
        """Add one score per atom (to the channel class it belongs to)."""
        where = self.index[self.graph.uf.roots(atoms)]
        ok = where >= 0
        np.add.at(self.sums, where[ok], np.asarray(scores, dtype=float)[ok])
        np.add.at(self.counts, where[ok], 1)

    def add_unscored(self, atoms: np.ndarray, scores: np.ndarray,
                     empty: np.ndarray | None = None) -> None:
        """Add scores only for channels of groups that had none (fallbacks)."""
        empty = self.empty_channels() if empty is None else empty
        where = self.index[self.graph.uf.roots(atoms)]
        sel = (where >= 0) & empty[np.maximum(where, 0)]
        self.add(np.asarray(atoms)[sel], np.asarray(scores)[sel])

    def empty_channels(self) -> np.ndarray:
        """True for every channel of a group that has no score at all yet."""
        out = np.zeros(len(self.counts), dtype=bool)
        for group, start in zip(self.graph.groups, self.offsets):
            if not self.counts[start:start + group.size].any():
                out[start:start + group.size] = True
        return out

    def per_group(self) -> dict[str, np.ndarray]:
        """Mean score per channel, divided by the group's mean (unscored channels get 1)."""
        out = {}
        for group, start in zip(self.graph.groups, self.offsets):
            s, c = self.sums[start:start + group.size], self.counts[start:start + group.size]
            mean = np.where(c > 0, s / np.maximum(c, 1), np.nan)
            scale = np.nanmean(mean) if np.isfinite(mean).any() else 1.0
            mean = np.where(np.isnan(mean), scale, mean)
            out[group.name] = mean / scale if scale > 0 else mean
        return out


def weight_rows(model: nn.Module, member: Member) -> torch.Tensor | None:
    """The member's first sliced tensor, one row per index (a filter, a consumer's input slice,
    a norm's scale)."""
    m = model.get_submodule(member.module)
    name, dim = member.slices[0]
    t = getattr(m, name, None)
    if not isinstance(t, torch.Tensor):
        return None
    return t.detach().float().movedim(dim, 0).reshape(t.shape[dim], -1)


class Criterion:
    """Scores channels. Weight criteria implement `member_scores` (and set `role`, the members
    they read first); data criteria set `needs_data` and implement `observe`."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = False
    role: ClassVar[str] = "filter"     # members read first; groups without any use "input"

    def member_scores(self, model: nn.Module, member: Member) -> np.ndarray | None:
        """Per-index scores of one member, or None if the criterion doesn't read it."""
        return None

    def observe(self, x: torch.Tensor, grad: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """Data criteria: one batch at one point (channels last) -> (per-channel sum, count)."""
        raise NotImplementedError

    def scores(self, model: nn.Module, graph: ChannelGraph, stats: Any = None,
               seed: int = 0) -> dict[str, np.ndarray]:
        """Normalised importance of every channel of every group (higher = keep)."""
        scorer = Scorer(graph)
        if self.needs_data:
            if stats is None or stats.criterion is not self:
                raise LeannetError(f"criterion {self.name!r} is data-driven: call "
                                   "pruner.calibrate(loader) with calibration data before plan()")
            stats.add_to(scorer)
            L1_ROWS.add_weight_scores(model, graph, scorer)  # channels no point observed
        else:
            self.add_weight_scores(model, graph, scorer)
        return scorer.per_group()

    def add_weight_scores(self, model: nn.Module, graph: ChannelGraph, scorer: Scorer) -> None:
        """Members of `role` for groups still unscored, then consumers' inputs for the rest."""
        for role in dict.fromkeys((self.role, "input")):
            empty = scorer.empty_channels()
            for member in graph.members:
                if member.role == role:
                    values = self.member_scores(model, member)
                    if values is not None:
                        scorer.add_unscored(member.atoms, values, empty)

    def __repr__(self) -> str:
        return self.name or type(self).__name__


class _MeanAbsRows(Criterion):
    """Mean |w| of each row: the fallback for groups that have no member of a criterion's role."""

    def member_scores(self, model: nn.Module, member: Member) -> np.ndarray | None:
        rows = weight_rows(model, member)
        return None if rows is None else rows.abs().mean(1).numpy()


L1_ROWS = _MeanAbsRows()


class CallableCriterion(Criterion):
    """A user's function `(group, model) -> one score per channel` (None: the group falls back
    to L1), combined and normalised like the built-ins."""

    def __init__(self, fn: Callable[[ChannelGroup, nn.Module], Any]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)  # type: ignore[misc]

    def scores(self, model: nn.Module, graph: ChannelGraph, stats: Any = None,
               seed: int = 0) -> dict[str, np.ndarray]:
        scorer = Scorer(graph)
        for group in graph.groups:
            values = self.fn(group, model)
            if values is None:
                continue
            values = np.asarray(torch.as_tensor(values).detach().float().cpu(),
                                dtype=float).reshape(-1)
            if values.shape != (group.size,):
                raise LeannetError(f"criterion callable returned {values.shape[0]} scores for "
                                   f"group {group.name!r}; expected {group.size}")
            scorer.add(group.channels, values)
        L1_ROWS.add_weight_scores(model, graph, scorer)
        return scorer.per_group()


_CRITERIA: dict[str, type[Criterion]] = {}


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: make a criterion available by its `name`."""
    if not cls.name:
        raise LeannetError(f"criterion class {cls.__name__} has no name")
    _CRITERIA[cls.name] = cls
    return cls


def criterion_names(data: bool | None = None) -> tuple[str, ...]:
    """Registered names (only data-driven ones with data=True, only weight ones with False)."""
    return tuple(n for n, c in _CRITERIA.items() if data is None or c.needs_data == data)


def get_criterion(spec: Any) -> Criterion:
    """A Criterion from a name, a Criterion (class or instance) or a plain callable."""
    if isinstance(spec, Criterion):
        return spec
    if isinstance(spec, type) and issubclass(spec, Criterion):
        return spec()
    if isinstance(spec, str) and spec in _CRITERIA:
        return _CRITERIA[spec]()
    if callable(spec) and not isinstance(spec, str):
        return CallableCriterion(spec)
    raise LeannetError(f"unknown criterion {spec!r}; expected one of "
                       f"{', '.join(criterion_names())}, a Criterion or a "
                       "callable(group, model) -> scores")


def check_criterion(criterion: Any) -> None:
    """Refuse unknown criterion names, listing the valid ones."""
    get_criterion(criterion)

