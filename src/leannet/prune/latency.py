"""Latency targets, measured in the runtime that ships: a whole-model search over the MACs
fraction, and a NetAdapt-style per-layer latency table.

Both measure pruned deep copies through `leannet.deploy` (export to the runtime, parity check,
`leannet.measure.time_latency` on one thread), so "half the latency" means half in ONNX Runtime
or ExecuTorch at the chosen precision, not in torch eager, where small models time Python
dispatch and pruning barely shows. Only the public pruning API is used (Pruner.plan with
Target overrides, apply_plan).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from leannet.deploy.matrix import deploy_one
from leannet.errors import LeannetError, UnreachableTarget
from leannet.measure import count_macs
from leannet.prune.plan import PruningPlan, Target


def _single(inputs: Any) -> torch.Tensor:
    if isinstance(inputs, (tuple, list)):
        if len(inputs) != 1:
            raise LeannetError("latency targets support single-input models only; use macs instead")
        inputs = inputs[0]
    return inputs[:1]


def runtime_latency_ms(model: nn.Module, example: torch.Tensor, runtime: str = "torch",
                       precision: str = "fp32", threads: int = 1, runs: int = 10,
                       calibration: Sequence[torch.Tensor] | None = None) -> float:
    """Median latency of `model` at batch 1 in `runtime` (exported to a temporary file)."""
    row = deploy_one(model, runtime, precision, None, example, threads=threads, runs=runs,
                     warmup=3, calibration=calibration)
    return row["latency"]["median_ms"]


def _latency(model: nn.Module, inputs: Any, runs: int, runtime: str = "torch",
             precision: str = "fp32", calibration: Sequence[torch.Tensor] | None = None) -> float:
    """The measurement the search uses (one place, so tests can substitute a cost model)."""
    return runtime_latency_ms(model, _single(inputs), runtime, precision, runs=runs,
                              calibration=calibration)


def plan_for_latency(pruner: Any, target: Target, steps: int = 6, runs: int = 10,
                     runtime: str = "torch", precision: str = "fp32",
                     calibration: Sequence[torch.Tensor] | None = None) -> PruningPlan:
    """Bisection on MACs: keep the plan with the largest MACs whose latency in `runtime`
    meets the target fraction of the unpruned model's."""
    _single(pruner.example_inputs)
    goal = target.latency

    options = ({} if (runtime, precision, calibration) == ("torch", "fp32", None) else
               {"runtime": runtime, "precision": precision, "calibration": calibration})

    def measure(model: nn.Module) -> float:
        return _latency(model, pruner.example_inputs, runs, **options)

    base = measure(pruner.model)
    from leannet.prune.pruner import apply_plan

    def trial(fraction: float) -> tuple[PruningPlan, float]:
        plan = pruner.plan(dataclasses.replace(target, latency=None, macs=max(fraction, 1e-3)))
        model = copy.deepcopy(pruner.model)
        apply_plan(model, plan, pruner.example_inputs)
        return plan, measure(model) / base

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
    plan.meta["latency_runtime"] = {"runtime": runtime, "precision": precision}
    plan.meta["latency_fraction"] = measured
    return plan


def latency_table(model: nn.Module, example_inputs: Any, runtime: str = "onnxruntime",
                  precision: str = "fp32", keep: float = 0.5, round_to: int = 8,
                  layers: Sequence[str] | None = None, threads: int = 1, runs: int = 20,
                  calibration: Sequence[torch.Tensor] | None = None) -> dict[str, Any]:
    """NetAdapt's lookup table, measured: for each conv layer (its channel group), the latency
    and MACs saved when that layer alone keeps `keep` of its channels rounded to `round_to`.

    Returns {"base_ms", "base_macs", "layers": {name: {ms_saved, macs_saved, ms_per_mmac}}};
    layers whose channels cannot go (protected, or already at the floor) are left out. A high
    `ms_per_mmac` marks the layers where the runtime pays most for each MAC: the ones to prune
    for speed rather than for MACs.
    """
    from leannet.prune.pruner import Pruner, apply_plan

    example = _single(example_inputs)
    model = model.eval()
    names = list(layers) if layers is not None else [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]

    def measure(candidate: nn.Module) -> float:
        return runtime_latency_ms(candidate, example, runtime, precision, threads, runs,
                                  calibration)

    base_ms, base_macs = measure(model), count_macs(model, example)
    pruner = Pruner(copy.deepcopy(model), example_inputs, criterion="l1")
    table: dict[str, dict[str, float]] = {}
    for name in names:
        try:
            plan = pruner.plan(Target(macs=1.0, overrides={name: keep}, round_to=round_to))
        except LeannetError:
            continue
        candidate = copy.deepcopy(model)
        apply_plan(candidate, plan, example_inputs)
        macs_saved = base_macs - count_macs(candidate, example)
        if macs_saved <= 0:
            continue
        ms_saved = base_ms - measure(candidate)
        table[name] = {"ms_saved": round(ms_saved, 4), "macs_saved": macs_saved,
                       "ms_per_mmac": round(ms_saved / (macs_saved / 1e6), 4)}
    return {"runtime": runtime, "precision": precision, "threads": threads, "keep": keep,
            "round_to": round_to, "base_ms": base_ms, "base_macs": base_macs, "layers": table}
