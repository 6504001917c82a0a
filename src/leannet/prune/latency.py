"""Latency targets: search the MACs fraction whose pruned model measures the wanted fraction of
the original's median CPU latency (leannet.measure.latency_ms on deep copies)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from leannet.errors import LeannetError, UnreachableTarget
from leannet.prune.plan import PruningPlan, Target


def _latency(model, inputs: Any, runs: int) -> float:
    from leannet.measure import latency_ms
    single = inputs if not isinstance(inputs, (tuple, list)) else inputs[0]
    return latency_ms(model, single, runs=runs, warmup=3)


def plan_for_latency(pruner: Any, target: Target, steps: int = 6, runs: int = 10) -> PruningPlan:
    """Bisection on macs: keep the plan with the largest MACs whose latency meets the target."""
    if isinstance(pruner.example_inputs, (tuple, list)) and len(pruner.example_inputs) != 1:
        raise LeannetError("latency targets support single-input models only; use macs instead")
    goal = target.latency
    base = _latency(pruner.model, pruner.example_inputs, runs)
    from leannet.prune.pruner import apply_plan

    def trial(fraction: float) -> tuple[PruningPlan, float]:
        plan = pruner.plan(dataclasses.replace(target, latency=None, macs=max(fraction, 1e-3)))
        model = copy.deepcopy(pruner.model)
        apply_plan(model, plan, pruner.example_inputs)
        return plan, _latency(model, pruner.example_inputs, runs) / base

    best, lowest = None, 1.0
    low, high = 0.0, 1.0
    fraction = goal
    for _ in range(steps):
        try:
            plan, measured = trial(fraction)
        except UnreachableTarget:  # that many MACs can't go: ask for fewer removals
            low, fraction = fraction, (fraction + high) / 2
            continue
        lowest = min(lowest, measured)
        if measured <= goal:
            best, low = (plan, measured), fraction
        else:
            high = fraction
        fraction = (low + high) / 2
    if best is None:
        raise LeannetError(f"target latency={goal:g} was not reached by pruning (the fastest "
                           f"try kept {lowest:.2f} of the latency); ask for a larger fraction")
    plan, measured = best
    plan.meta["target"] = {"latency": goal}
    plan.meta["latency_fraction"] = measured
    return plan
