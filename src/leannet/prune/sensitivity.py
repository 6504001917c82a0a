"""Sensitivity analysis: the metric after pruning each channel group alone, without fine-tuning.

Each group's weakest channels (by the criterion) are zeroed in place (producers' filters, biases,
norm scale and shift, and consumers' input weights), the model is evaluated, and the tensors are
put back. Zeroing is exactly equivalent to removal (that is what `verify=True` proves), and it
needs one trace for the whole analysis instead of one per group and ratio.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.pruner import Pruner
from leannet.prune.surgery import zeroed

DEFAULT_RATIOS = (0.25, 0.5, 0.75)


def _weakest_mask(graph: Any, group: Any, scores: np.ndarray, ratio: float) -> np.ndarray:
    """Mask over atoms marking the `ratio` weakest unprotected channels of one group."""
    unprotected = np.nonzero(~group.protected)[0]
    count = min(len(unprotected), int(round(ratio * group.size)))
    if count >= group.size:
        count = group.size - 1  # a layer never loses every channel
    order = unprotected[np.argsort(scores[unprotected], kind="stable")]
    removed = np.zeros(graph.uf.size, dtype=bool)
    removed[group.channels[order[:count]]] = True
    return removed


def _evaluate_zeroed(model: nn.Module, graph: Any, removed: np.ndarray,
                     evaluate: Callable[[nn.Module], float]) -> float:
    """Evaluate with the marked channels zeroed, then restore every touched tensor."""
    with zeroed(model, graph, removed):
        return float(evaluate(model))


def sensitivity_analysis(model: nn.Module, evaluate: Callable[[nn.Module], float],
                         example_inputs: Any, ratios: Sequence[float] = DEFAULT_RATIOS,
                         criterion: Any = "l1", calibrate: Callable[[Any], Any] | None = None,
                         metric_name: str = "metric",
                         on_group: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """For each prunable group, the metric at each pruned ratio; the model is left unchanged.

    Returns the `sensitivity.json` form: {"metric_name", "baseline", "ratios", "criterion",
    "groups": {group: [metric per ratio]}, "sizes": {group: channels}}.
    """
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise LeannetError(f"sensitivity ratios must be fractions in (0, 1), got {list(ratios)}")
    pruner = Pruner(model, example_inputs, criterion=criterion)
    if calibrate is not None:
        calibrate(pruner)
    scores, graph = pruner.scores(), pruner.graph
    groups: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for group in graph.groups:
        if group.prunable == 0:
            continue
        groups[group.name] = [
            _evaluate_zeroed(model, graph, _weakest_mask(graph, group, scores[group.name], r),
                             evaluate) for r in ratios]
        sizes[group.name] = group.size
        if on_group is not None:
            on_group(group.name)
    return {"metric_name": metric_name, "baseline": float(evaluate(model)),
            "ratios": [float(r) for r in ratios], "criterion": str(criterion),
            "groups": groups, "sizes": sizes}


def ratios_from_sensitivity(sensitivity: dict[str, Any], max_drop: float) -> dict[str, float]:
    """Per-group fractions to keep: the largest pruned ratio whose drop stays within `max_drop`.

    Robust groups lose more, fragile ones keep everything; the result is `Target.overrides`.
    """
    if max_drop < 0:
        raise LeannetError(f"max_drop must be >= 0, got {max_drop}")
    baseline, ratios = sensitivity["baseline"], sensitivity["ratios"]
    keep: dict[str, float] = {}
    for name, values in sensitivity["groups"].items():
        safe = [r for r, v in zip(ratios, values) if baseline - v <= max_drop]
        keep[name] = round(1.0 - max(safe), 6) if safe else 1.0
    return keep
