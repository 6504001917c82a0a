"""Prove a removal exact: zero the channels to be removed, run, remove them, run again, compare.

Zeroing covers producers (filters, biases, norm scale and shift) and consumers (their input
weights), so an activation with f(0) != 0 between them can't hide a wrong index mapping.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.graph import ChannelGraph
from leannet.prune.labels import tree_leaves
from leannet.prune.surgery import cut, kept_indices, restore, snapshot

TOLERANCE = 1e-4


def run_model(model: nn.Module, inputs: Any) -> Any:
    """Call the model on a tensor or a tuple of positional inputs."""
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def relative_error(a: Any, b: Any) -> float:
    """Largest |a - b| over all output tensors, relative to the largest |a|."""
    la = [t for t in tree_leaves(_as_tree(a)) if isinstance(t, torch.Tensor)]
    lb = [t for t in tree_leaves(_as_tree(b)) if isinstance(t, torch.Tensor)]
    if len(la) != len(lb) or any(x.shape != y.shape for x, y in zip(la, lb)):
        return float("inf")
    worst = 0.0
    for x, y in zip(la, lb):
        scale = max(float(x.detach().abs().max()), 1e-6) if x.numel() else 1.0
        diff = float((x.detach().float() - y.detach().float()).abs().max()) if x.numel() else 0.0
        worst = max(worst, diff / scale)
    return worst


def _as_tree(x: Any) -> Any:
    return dict(x) if isinstance(x, dict) else x


def remove_channels(model: nn.Module, graph: ChannelGraph, removed: np.ndarray,
                    example_inputs: Any, verify: bool = True, group_names: list[str] | None = None
                    ) -> None:
    """Remove the channels whose class roots are marked in `removed`; with verify, prove the
    result equal to the zeroed model or restore the model and raise naming the group."""
    keep = kept_indices(graph, removed)
    if not keep:
        return
    touched = {key.split(":", 1)[0] for key in keep}
    snap = snapshot(model, touched)
    if not verify:
        cut(model, graph, keep)
        return
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            cut(model, graph, keep, zero_only=True)
            zeroed = run_model(model, example_inputs)
            restore(snap)
            cut(model, graph, keep)
            error = _pruned_error(model, example_inputs, zeroed)
        if error >= TOLERANCE:
            restore(snap)
            culprit = _culprit(model, graph, removed, example_inputs, group_names or [])
            raise LeannetError(f"verification failed for channel group {culprit}: the pruned "
                               f"model differs from the zeroed one by {error:.2e} (relative, "
                               f"limit {TOLERANCE:g}); the model was left unchanged")
    except LeannetError:
        raise
    except Exception:
        restore(snap)
        raise
    finally:
        for m, mode in modes.items():
            m.training = mode


def _pruned_error(model: nn.Module, inputs: Any, zeroed: Any) -> float:
    try:
        return relative_error(zeroed, run_model(model, inputs))
    except Exception:  # noqa: BLE001 - a shape error is a failed verification
        return float("inf")


def _culprit(model, graph, removed, inputs, group_names) -> str:
    """Check group by group (model restored after each) to name the one that breaks."""
    for group in graph.groups:
        mask = np.zeros_like(removed)
        mask[group.channels] = removed[group.channels]
        if not mask.any():
            continue
        keep = kept_indices(graph, mask)
        snap = snapshot(model, {k.split(":", 1)[0] for k in keep})
        try:
            cut(model, graph, keep, zero_only=True)
            zeroed = run_model(model, inputs)
            restore(snap)
            cut(model, graph, keep)
            bad = _pruned_error(model, inputs, zeroed) >= TOLERANCE
        finally:
            restore(snap)
        if bad:
            return repr(group.name)
    return "(a combination of groups)"
