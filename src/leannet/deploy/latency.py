"""Latency in the runtime that ships, for pruning: a `measure(model) -> ms` clock for
`leannet.prune.latency.plan_for_latency`, and NetAdapt's per-layer latency table.

Each measurement exports a pruned copy to the runtime at the chosen precision (through
`leannet.deploy.matrix.deploy_one`: parity checked, timed with `leannet.measure` on pinned
threads), so "half the latency" means half in ONNX Runtime or ExecuTorch, not in torch eager,
where small models time Python dispatch and pruning barely shows. This lives here, not in
`prune/`, because the engine (floor 3) must not import the runtimes (floor 6); it takes the
clock as a callable instead.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

from leannet.deploy.matrix import deploy_one
from leannet.errors import LeannetError
from leannet.measure import count_macs
from leannet.prune import Pruner, Target, apply_plan
from leannet.prune.latency import Measure, single_input


def runtime_latency_ms(model: nn.Module, example: torch.Tensor, runtime: str = "torch",
                       precision: str = "fp32", threads: int = 1, runs: int = 10,
                       calibration: Sequence[torch.Tensor] | None = None) -> float:
    """Median latency of `model` at batch 1 in `runtime` (exported to a temporary file)."""
    row = deploy_one(model, runtime, precision, None, single_input(example), threads=threads,
                     runs=runs, warmup=3, calibration=calibration)
    return row["latency"]["median_ms"]


def runtime_measure(example: torch.Tensor, runtime: str = "onnxruntime",
                    precision: str = "fp32", threads: int = 1, runs: int = 10,
                    calibration: Sequence[torch.Tensor] | None = None) -> Measure:
    """The clock `plan_for_latency(..., measure=...)` takes: a model's median ms in
    `runtime` at `precision` (int8 needs `calibration`, batches of real inputs)."""
    if precision == "int8" and not calibration:
        raise LeannetError(f"{runtime} int8 latency needs calibration batches of real inputs")

    def measure(model: nn.Module) -> float:
        return runtime_latency_ms(model, example, runtime, precision, threads, runs, calibration)
    return measure


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
    example = single_input(example_inputs)
    model = model.eval()
    names = list(layers) if layers is not None else [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    measure = runtime_measure(example, runtime, precision, threads, runs, calibration)
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
