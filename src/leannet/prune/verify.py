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
from leannet.prune.capture.graph import ChannelGraph
from leannet.prune.capture.labels import tree_leaves
from leannet.prune.surgery import remove, restore, snapshot_for, zeroed

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


def removal_error(model: nn.Module, graph: ChannelGraph, removed: np.ndarray,
                  inputs: Any) -> float:
    """Cut the channels and return how far the result is from the zeroed model (relative). The
    model is left cut; a shape error counts as an infinite error."""
    with zeroed(model, graph, removed):
        reference = run_model(model, inputs)
    remove(model, graph, removed)
    try:
        return relative_error(reference, run_model(model, inputs))
    except Exception:  # noqa: BLE001 - a shape error is a failed verification
        return float("inf")


def remove_channels(model: nn.Module, graph: ChannelGraph, removed: np.ndarray,
                    example_inputs: Any, verify: bool = True) -> float | None:
    """Remove the channels whose class roots are marked in `removed`; with verify, prove the
    result equal to the zeroed model or restore the model and raise naming the group.

    Channels whose removal is not exact (LayerNorm channels under `layer_norm="prune"`) can't be
    proven: they are cut after the exact ones are verified, and the relative change of the
    outputs they cause is measured and returned (None when there are none, or without verify)."""
    if not removed.any():
        return None
    if not verify:
        remove(model, graph, removed)
        return None
    loose = removed & graph.inexact_mask()
    exact = removed & ~loose
    modes = {m: m.training for m in model.modules()}
    model.eval()
    snap = snapshot_for(model, graph, removed)
    try:
        with torch.no_grad():
            before = run_model(model, example_inputs) if loose.any() else None
            error = removal_error(model, graph, exact, example_inputs) if exact.any() else 0.0
        if error >= TOLERANCE:
            restore(snap)
            culprit = _culprit(model, graph, exact, example_inputs)
            raise LeannetError(f"verification failed for channel group {culprit}: the pruned "
                               f"model differs from the zeroed one by {error:.2e} (relative, "
                               f"limit {TOLERANCE:g}); the model was left unchanged")
        if before is None:
            return None
        remove(model, graph, loose)
        with torch.no_grad():
            return relative_error(before, run_model(model, example_inputs))
    except LeannetError:
        raise
    except Exception:
        restore(snap)
        raise
    finally:
        for m, mode in modes.items():
            m.training = mode


def _culprit(model: nn.Module, graph: ChannelGraph, removed: np.ndarray, inputs: Any) -> str:
    """Check group by group (model restored after each) to name the one that breaks."""
    for group in graph.groups:
        mask = np.zeros_like(removed)
        mask[group.channels] = removed[group.channels]
        if not mask.any():
            continue
        snap = snapshot_for(model, graph, mask)
        try:
            with torch.no_grad():
                bad = removal_error(model, graph, mask, inputs) >= TOLERANCE
        finally:
            restore(snap)
        if bad:
            return repr(group.name)
    return "(a combination of groups)"
