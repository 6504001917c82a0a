"""Data criteria and calibration: `mean_activation`, `apoz` and `taylor` observe activations (and
gradients) over a whole calibration loader, at every activation output and, for channels that
pass no activation, at their consumers' inputs.

APoZ (average percentage of zeros) is defined for every channel as the fraction of values that
are not positive: after a ReLU that is the fraction of zeros; where no ReLU follows (linear
bottlenecks, SiLU/GELU/Hardswish outputs) it is the fraction a ReLU would zero. The score is its
complement, the fraction of positive values. (Counting exact zeros there would give every
channel the same score, and the plan would cut the lowest-numbered ones.)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from leannet import distributed
from leannet.errors import LeannetError
from leannet.prune.capture.graph import ChannelGraph
from leannet.prune.criteria.base import Criterion, Scorer, register_criterion
from leannet.prune.progress import progress_iter


@register_criterion
class MeanActivation(Criterion):
    """Mean |activation| of each channel."""

    name = "mean_activation"
    needs_data = True

    def observe(self, x: torch.Tensor, grad: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        flat = x.reshape(-1, x.shape[-1])
        return flat.abs().sum(0), flat.shape[0]


@register_criterion
class APoZ(Criterion):
    """1 - APoZ: the fraction of positive activations (see the module docstring)."""

    name = "apoz"
    needs_data = True

    def observe(self, x: torch.Tensor, grad: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        flat = x.reshape(-1, x.shape[-1])
        return (flat > 0).sum(0).double(), flat.shape[0]


@register_criterion
class Taylor(Criterion):
    """First-order Taylor: |sum over positions of activation x gradient| per sample, averaged
    (Molchanov et al., 2019)."""

    name = "taylor"
    needs_data = True
    needs_gradients = True

    def observe(self, x: torch.Tensor, grad: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        n, c = x.shape[0], x.shape[-1]
        g = grad if grad is not None else torch.zeros_like(x)
        return (x * g).reshape(n, -1, c).sum(1).abs().sum(0), n


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
    """Per channel and observation point: the criterion's per-batch sums and counts, accumulated
    over a whole calibration loader at every activation output (and, for channels that pass no
    activation, at their consumers' inputs)."""

    def __init__(self, criterion: Criterion) -> None:
        self.criterion = criterion
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, float] = {}
        self.atoms: dict[str, np.ndarray] = {}
        self.batches = 0

    def observe(self, key: str, dim: int, x: torch.Tensor, grad: torch.Tensor | None) -> None:
        """Add one batch of observations at one point (and its gradient, for taylor)."""
        x = x.detach().movedim(dim, -1)
        g = grad.detach().movedim(dim, -1) if grad is not None else None
        per_channel, count = self.criterion.observe(x, g)
        values = per_channel.detach().double().cpu().numpy()
        self.sums[key] = self.sums.get(key, 0) + values
        self.counts[key] = self.counts.get(key, 0) + count

    def sum_over_ranks(self) -> None:
        """Under torchrun, add every rank's sums and counts (each rank calibrated on its shard),
        so every rank holds the statistics of the whole calibration set and plans alike."""
        if not distributed.active():
            return
        empty, = distributed.all_sum_floats([float(self.batches == 0)])
        if empty:
            raise LeannetError(f"{int(empty)} rank(s) got no calibration batch; use more "
                               "calibration batches or fewer processes")
        keys = sorted(self.sums)
        sizes = [np.size(self.sums[k]) for k in keys]
        flat = np.concatenate([np.ravel(self.sums[k]) for k in keys]
                              + [np.array([self.counts[k] for k in keys] + [self.batches])])
        total = distributed.all_sum(torch.from_numpy(flat.astype(np.float64))).numpy()
        start = 0
        for key, size in zip(keys, sizes):
            self.sums[key] = total[start:start + size].copy()
            start += size
        for key in keys:
            self.counts[key] = float(total[start])
            start += 1
        self.batches = int(total[start])

    def add_to(self, scorer: Scorer) -> None:
        """Feed the averages into a Scorer: activation points first, consumer inputs only for
        channels still unscored."""
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


def calibrate(model: nn.Module, graph: ChannelGraph, loader: Any, criterion: Criterion,
              loss_fn: Callable | None = None, max_batches: int | None = None,
              task_weights: dict[str, float] | None = None) -> ActivationStats:
    """Run the calibration loader through the traced graph, observing every activation output
    and every consumer's input."""
    stats = ActivationStats(criterion)
    gradients = criterion.needs_gradients
    captured: list[tuple[str, int, torch.Tensor]] = []

    def seen(key: str, dim: int, x: torch.Tensor) -> None:
        if not gradients:
            stats.observe(key, dim, x, None)
        elif x.requires_grad:
            captured.append((key, dim, x))

    for name, (_, atoms) in graph.points.items():
        stats.atoms[f"act:{name}"] = atoms
    handles = []
    for member in graph.members:
        if member.feature is None:
            continue
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
            with torch.set_grad_enabled(gradients):
                outputs = runner.run(*(inputs if isinstance(inputs, (tuple, list)) else [inputs]))
                if gradients:
                    _gradient_step(stats, captured, _loss(outputs, targets, loss_fn, task_weights))
            stats.batches += 1
    finally:
        captured.clear()
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    stats.sum_over_ranks()
    if stats.batches == 0:
        raise LeannetError("the calibration loader gave no batches; pass a loader with data")
    return stats


def _gradient_step(stats: ActivationStats, captured: list, loss: torch.Tensor) -> None:
    """Gradients of the loss at every captured point, observed with the activations."""
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
        return torch.stack([float(weights.get(k, 1.0)) * v for k, v in value.items()]).sum()
    return value
