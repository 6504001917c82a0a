"""Latency targets: a whole-model search over the MACs fraction whose pruned copy meets a
latency target, with the clock supplied by the caller.

The pruning engine sits below the runtimes (floor 3; `leannet.deploy` is floor 6), so it does
not know how a model is exported or timed: the search takes a `measure(model) -> ms` callable.
Without one it times torch eager on one thread (`leannet.measure.torch_latency`);
`leannet.deploy.latency.runtime_measure("onnxruntime", "int8", ...)` gives the clock of an
on-device runtime, where pruning shows (at small sizes torch eager times Python dispatch), and
`leannet.deploy.latency.latency_table` is NetAdapt's per-layer table measured there.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from leannet.errors import LeannetError, UnreachableTarget
from leannet.measure import torch_latency
from leannet.prune.plan import PruningPlan, Target

Measure = Callable[[nn.Module], float]  # median latency (ms) of a model at batch 1


def single_input(inputs: Any) -> torch.Tensor:
    """The one input tensor of a single-input model, at batch 1 (latency is per image)."""
    if isinstance(inputs, (tuple, list)):
        if len(inputs) != 1:
            raise LeannetError("latency targets support single-input models only; use macs instead")
        inputs = inputs[0]
    return inputs[:1]


def _latency(model: nn.Module, inputs: Any, runs: int) -> float:
    """The default clock: torch eager, one thread (one place, so tests can substitute a cost
    model)."""
    return torch_latency(model, single_input(inputs), runs=runs, warmup=3, warn=False).median_ms


def plan_for_latency(pruner: Any, target: Target, steps: int = 6, runs: int = 10,
                     measure: Measure | None = None, label: dict[str, Any] | None = None
                     ) -> PruningPlan:
    """Bisection on MACs: keep the plan with the largest MACs whose latency, as `measure`
    times it (torch eager by default), meets the target fraction of the unpruned model's.
    `label` (e.g. {"runtime": "onnxruntime", "precision": "int8"}) is recorded in the plan."""
    single_input(pruner.example_inputs)
    _, goal = target.kind()  # the latency fraction, checked
    clock: Measure = measure or (lambda m: _latency(m, pruner.example_inputs, runs))
    base = clock(pruner.model)

    def trial(fraction: float) -> tuple[PruningPlan, float]:
        plan = pruner.plan(dataclasses.replace(target, latency=None, macs=max(fraction, 1e-3)))
        model = pruner.pruned_copy(plan)
        return plan, clock(model) / base

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
    plan.meta["latency_runtime"] = label or {"runtime": "torch", "precision": "fp32"}
    plan.meta["latency_fraction"] = measured
    return plan
