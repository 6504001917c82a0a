"""Planning strategies for one pruning step: `planner(pruner, target) -> PruningPlan`.

The iterative loop takes a planner instead of knowing strategies: by score (the default, global
ranking of normalised channel scores), by per-layer ratios (from sensitivity analysis, here), or a
model's own (soft-sharing columns tied together, in `leannet.multitask.prune`).
"""
from __future__ import annotations

from typing import Callable, Mapping

from leannet.errors import UnreachableTarget
from leannet.prune.plan import PruningPlan, Target
from leannet.prune.pruner import Pruner

Planner = Callable[[Pruner, Target], PruningPlan]


def by_score(pruner: Pruner, target: Target) -> PruningPlan:
    """The pruner's own plan: the least important channels first, across all groups."""
    return pruner.plan(target)


def by_layer_ratios(layer_keep: Mapping[str, Mapping[str, float]]) -> Planner:
    """A planner that prunes each listed group in proportion to its allowed ratio.

    `layer_keep` is {group: {"size": original channels, "keep": fraction}} (e.g. from
    sensitivity analysis). Group g may lose (1 - keep_g) * scale of its original channels;
    `scale` is bisected so that the plan just reaches the step's target. Fragile groups (keep 1.0)
    lose nothing. The target must constrain macs or params.
    """

    def plan(pruner: Pruner, target: Target) -> PruningPlan:
        kind, wanted = target.kind()
        fraction_key = f"{kind}_fraction"

        def plan_at(scale: float) -> PruningPlan:
            overrides = dict(target.overrides)
            for name, spec in layer_keep.items():
                group = pruner.graph.by_name.get(name)
                if group is not None:
                    count = spec["size"] * (1 - min(1.0, (1 - spec["keep"]) * scale))
                    overrides[name] = min(1.0, max(1.0, count) / group.size)
            return pruner.plan(target.keeping(kind, 1.0, overrides=overrides))

        low, high = 0.0, 1.0 / max(1e-6, 1 - min(s["keep"] for s in layer_keep.values()))
        if plan_at(high).meta[fraction_key] > wanted + 1e-9:
            raise UnreachableTarget(f"the per-layer ratios cannot reach {kind}={wanted:.3f} even "
                                    "at their limits; allow a larger --max-drop in sensitivity")
        for _ in range(20):
            middle = (low + high) / 2
            low, high = (middle, high) if plan_at(middle).meta[fraction_key] > wanted else \
                (low, middle)
        return plan_at(high)

    return plan
