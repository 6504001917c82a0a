"""Channel importance: eight built-in criteria (or any callable), combined over every member of a
group and normalised per group so that ranking channels across layers is fair.

Weight criteria read the parameters: `l1`, `l2` (mean norm of each filter), `fpgm` (distance to
the other filters: near the geometric median = redundant), `bn_scale` (|gamma|), `random`.
Data criteria need `Pruner.calibrate(loader)`: `mean_activation` (mean |input| of the consumers),
`apoz` (1 - fraction of zeros after the activation), `taylor` (|activation x gradient|), each
accumulated over the whole calibration loader.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from leannet.errors import LeannetError
from leannet.prune.graph import ChannelGraph, Member

WEIGHT_CRITERIA = ("l1", "l2", "fpgm", "bn_scale", "random")
DATA_CRITERIA = ("mean_activation", "apoz", "taylor")
CRITERIA = WEIGHT_CRITERIA + DATA_CRITERIA


def check_criterion(criterion: Any) -> None:
    """Refuse unknown criterion names, listing the valid ones."""
    if callable(criterion):
        return
    if criterion not in CRITERIA:
        raise LeannetError(f"unknown criterion {criterion!r}; expected one of "
                           f"{', '.join(CRITERIA)} or a callable(group, model) -> scores")


def _rows(model: nn.Module, member: Member) -> torch.Tensor | None:
    """The member's weight, one row per index (a filter, or a consumer's input slice)."""
    m = model.get_submodule(member.module)
    name, dim = member.slices[0]
    t = getattr(m, name, None)
    if not isinstance(t, torch.Tensor):
        return None
    return t.detach().float().movedim(dim, 0).reshape(t.shape[dim], -1)


def _weight_scores(rows: torch.Tensor, criterion: str) -> torch.Tensor:
    if criterion == "l2":
        return rows.pow(2).mean(1).sqrt()
    if criterion == "fpgm":
        return torch.cdist(rows, rows).sum(1)
    return rows.abs().mean(1)


def member_scores(model: nn.Module, member: Member, criterion: str) -> np.ndarray | None:
    """Per-index scores of one member for a weight criterion, or None if it doesn't apply."""
    if criterion == "bn_scale":
        if member.role != "scale":
            return None
        weight = getattr(model.get_submodule(member.module), "weight", None)
        return None if weight is None else weight.detach().abs().float().numpy()
    rows = _rows(model, member)
    return None if rows is None else _weight_scores(rows, criterion).numpy()


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
        where = self.index[self.graph.uf.roots(atoms)]
        ok = where >= 0
        np.add.at(self.sums, where[ok], np.asarray(scores, dtype=float)[ok])
        np.add.at(self.counts, where[ok], 1)

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


def weight_scores(model: nn.Module, graph: ChannelGraph, criterion: str,
                  scorer: Scorer | None = None) -> Scorer:
    """Score groups by a weight criterion: filters (or norms for bn_scale) first; a group with
    none of those is scored by its consumers' input slices. Groups already scored are skipped."""
    scorer = scorer or Scorer(graph)
    primary = "scale" if criterion == "bn_scale" else "filter"
    fallback = "l1" if criterion == "bn_scale" else criterion
    for role, crit in ((primary, criterion), ("input", fallback)):
        empty = scorer.empty_channels()
        for member in graph.members:
            if member.role != role:
                continue
            scores = member_scores(model, member, crit)
            if scores is None:
                continue
            where = scorer.index[graph.uf.roots(member.atoms)]
            sel = (where >= 0) & empty[np.maximum(where, 0)]
            scorer.add(member.atoms[sel], scores[sel])
    return scorer


def score_groups(model: nn.Module, graph: ChannelGraph, criterion: Any,
                 stats: "ActivationStats | None" = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Normalised importance of every channel of every group (higher = keep)."""
    if callable(criterion):
        return _callable_scores(model, graph, criterion)
    if criterion == "random":
        rng = np.random.default_rng(seed)
        return {g.name: rng.random(g.size) for g in graph.groups}
    if criterion in DATA_CRITERIA:
        if stats is None or stats.criterion != criterion:
            raise LeannetError(f"criterion {criterion!r} is data-driven: call "
                               "pruner.calibrate(loader) with calibration data before plan()")
        scorer = Scorer(graph)
        stats.add_to(scorer)
        return weight_scores(model, graph, "l1", scorer).per_group()
    scorer = weight_scores(model, graph, criterion)
    if criterion == "bn_scale":
        weight_scores(model, graph, "l1", scorer)
    return scorer.per_group()


def _callable_scores(model, graph, criterion) -> dict[str, np.ndarray]:
    out = {}
    for group in graph.groups:
        scores = np.asarray(torch.as_tensor(criterion(group, model)).detach().float().cpu(),
                            dtype=float).reshape(-1)
        if scores.shape != (group.size,):
            raise LeannetError(f"criterion callable returned {scores.shape[0]} scores for group "
                               f"{group.name!r}; expected {group.size}")
        mean = scores.mean()
        out[group.name] = scores / mean if mean > 0 else scores
    return out


def split_batch(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) from a loader batch: a tensor, or a (inputs, targets, ...) sequence."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


class ActivationStats:
    """Per channel: sum of |x|, non-zeros, or |sum(x * dL/dx)| per sample, accumulated over a
    whole calibration loader at every activation output (and, for channels that pass no
    activation, at their consumers' inputs)."""

    def __init__(self, criterion: str) -> None:
        self.criterion = criterion
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, float] = {}
        self.atoms: dict[str, np.ndarray] = {}
        self.batches = 0

    def _accumulate(self, key: str, per_channel: torch.Tensor, count: float) -> None:
        values = per_channel.detach().double().cpu().numpy()
        self.sums[key] = self.sums.get(key, 0) + values
        self.counts[key] = self.counts.get(key, 0) + count

    def observe(self, key: str, dim: int, x: torch.Tensor, grad: torch.Tensor | None) -> None:
        """Add one batch of observations at one point (and its gradient, for taylor)."""
        x = x.detach().movedim(dim, -1)
        n, c = x.shape[0], x.shape[-1]
        if self.criterion == "taylor":
            prod = (x * grad.detach().movedim(dim, -1)).reshape(n, -1, c).sum(1).abs()
            self._accumulate(key, prod.sum(0), n)
        elif self.criterion == "apoz":
            flat = x.reshape(-1, c)
            self._accumulate(key, (flat != 0).sum(0).double(), flat.shape[0])
        else:
            flat = x.reshape(-1, c)
            self._accumulate(key, flat.abs().sum(0), flat.shape[0])

    def add_to(self, scorer: Scorer) -> None:
        """Feed the averages into a Scorer (apoz: fraction of non-zeros = 1 - APoZ):
        activation points first, consumer inputs only for channels still unscored."""
        for key in [k for k in self.sums if k.startswith("act:")]:
            scorer.add(self.atoms[key], self.sums[key] / max(self.counts[key], 1))
        for key in [k for k in self.sums if k.startswith("in:")]:
            where = scorer.index[scorer.graph.uf.roots(self.atoms[key])]
            fresh = (where >= 0) & (scorer.counts[np.maximum(where, 0)] == 0)
            scorer.add(self.atoms[key][fresh],
                       (self.sums[key] / max(self.counts[key], 1))[fresh])


class _Capture(fx.Interpreter):
    """Runs the traced graph, handing activation outputs to a callback."""

    def __init__(self, gm: fx.GraphModule, points: dict, seen: Callable) -> None:
        super().__init__(gm)
        self.points, self.seen = points, seen

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        if n.name in self.points and isinstance(value, torch.Tensor):
            self.seen(f"act:{n.name}", self.points[n.name][0], value)
        return value


def calibrate(model: nn.Module, graph: ChannelGraph, loader: Any, criterion: str,
              loss_fn: Callable | None = None, max_batches: int | None = None,
              task_weights: dict[str, float] | None = None) -> ActivationStats:
    """Run the calibration loader through the traced graph, observing every activation output
    and every consumer's input."""
    from leannet.prune.progress import progress_iter

    stats = ActivationStats(criterion)
    captured: list[tuple[str, int, torch.Tensor]] = []

    def seen(key: str, dim: int, x: torch.Tensor) -> None:
        if criterion != "taylor":
            stats.observe(key, dim, x, None)
        elif x.requires_grad:
            captured.append((key, dim, x))

    for name, (dim, atoms) in graph.points.items():
        stats.atoms[f"act:{name}"] = atoms
    handles = []
    for member in (m for m in graph.members if m.feature is not None):
        dim, atoms = member.feature
        stats.atoms[f"in:{member.key}"] = atoms
        handles.append(model.get_submodule(member.module).register_forward_pre_hook(
            lambda module, inputs, key=f"in:{member.key}", dim=dim: seen(key, dim, inputs[0])))
    runner = _Capture(graph.gm, graph.points, seen)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for index, batch in enumerate(progress_iter(loader, "calibrating", max_batches)):
            if max_batches is not None and index >= max_batches:
                break
            inputs, targets = split_batch(batch)
            inputs, targets = _to(inputs, device), _to(targets, device)
            captured.clear()
            with torch.set_grad_enabled(criterion == "taylor"):
                outputs = runner.run(*(inputs if isinstance(inputs, (tuple, list)) else [inputs]))
                if criterion == "taylor":
                    _taylor_step(stats, captured, _loss(outputs, targets, loss_fn, task_weights))
            stats.batches += 1
    finally:
        captured.clear()
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if stats.batches == 0:
        raise LeannetError("the calibration loader gave no batches; pass a loader with data")
    return stats


def _taylor_step(stats: ActivationStats, captured: list, loss: torch.Tensor) -> None:
    """Gradients of the loss at every captured point, accumulated as |a * g|."""
    if not captured:
        return
    grads = torch.autograd.grad(loss, [x for _, _, x in captured], allow_unused=True)
    for (key, dim, x), g in zip(captured, grads):
        stats.observe(key, dim, x, g if g is not None else torch.zeros_like(x))

def _loss(outputs: Any, targets: Any, loss_fn: Callable | None,
          task_weights: dict[str, float] | None) -> torch.Tensor:
    """The loss for taylor: loss_fn's value, per-task dicts weighted by task_weights."""
    if loss_fn is None:
        if isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) \
                and not targets.is_floating_point():
            return F.cross_entropy(outputs, targets)
        if isinstance(outputs, dict) and isinstance(targets, dict):
            value = {k: F.cross_entropy(outputs[k], targets[k]) for k in outputs if k in targets}
        else:
            raise LeannetError("criterion 'taylor' needs a loss: pass loss_fn(outputs, targets) "
                               "to calibrate (the default, cross-entropy, needs class targets)")
    else:
        value = loss_fn(outputs, targets)
    if isinstance(value, dict):
        weights = task_weights or {}
        return sum(float(weights.get(k, 1.0)) * v for k, v in value.items())
    return value
