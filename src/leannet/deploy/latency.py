"""Latency in the runtime that ships, for pruning: a `measure(model) -> ms` clock for
`leannet.prune.latency.plan_for_latency`, and NetAdapt's per-layer latency table.

Each measurement exports a pruned copy to the runtime at the chosen precision (through
`leannet.deploy.matrix.deploy_one`: parity checked, timed with `leannet.measure` on pinned
threads), so "half the latency" means half in ONNX Runtime or ExecuTorch, not in torch eager,
where small models time Python dispatch and pruning barely shows. This lives here, not in
`prune/`, because the engine (floor 3) must not import the runtimes (floor 6); it takes the
clock as a callable instead.

`layer_latency_model` is the table `--target-latency` plans on: every conv and linear layer
alone, at its full width and at half, exported to the runtime and timed together with the
whole model, fitted to `fixed + ms_per_mac * MACs` per layer (`leannet.prune.LatencyModel`).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

from leannet.deploy.matrix import build_one, deploy_one, timed
from leannet.errors import LeannetError
from leannet.measure import Timed, count_macs, time_latencies
from leannet.prune import LatencyModel, Pruner, Target, apply_plan
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


def _layer_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[nn.Module, tuple]]:
    """Each conv/linear layer and the shape of its first call's input."""
    found: dict[str, tuple[nn.Module, tuple]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def hook(mod: nn.Module, args: tuple, name: str = name) -> None:
                if name not in found and args and isinstance(args[0], torch.Tensor):
                    found[name] = (mod, tuple(args[0].shape))
            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in hooks:
            handle.remove()
    return found


def _alone(module: nn.Module, shape: tuple, half: bool) -> tuple[nn.Module, torch.Tensor] | None:
    """The layer by itself (random weights, same configuration) at full width or with half its
    output channels (a depthwise conv: half its channels), with an input of the right shape;
    None when it cannot be halved."""
    if isinstance(module, nn.Linear):
        out = module.out_features // 2 if half else module.out_features
        if out < 1:
            return None
        return nn.Linear(module.in_features, out, module.bias is not None), torch.randn(1, *shape[1:])
    assert isinstance(module, nn.Conv2d)
    cin, cout, groups = module.in_channels, module.out_channels, module.groups
    if half:
        if groups == cin == cout:  # depthwise: fewer channels in and out
            cin = cout = groups = cin // 2
        elif groups == 1:
            cout //= 2
        else:
            return None
        if min(cin, cout) < 1:
            return None
    layer = nn.Conv2d(cin, cout, module.kernel_size, module.stride,  # type: ignore[arg-type]
                      module.padding, module.dilation,  # type: ignore[arg-type]
                      groups, module.bias is not None, module.padding_mode)
    return layer, torch.randn(1, cin, *shape[2:])


def layer_latency_model(model: nn.Module, example_inputs: Any, runtime: str = "onnxruntime",
                        precision: str = "fp32", threads: int = 1, runs: int = 30,
                        rounds: int = 3, on_stage: Any = None) -> LatencyModel:
    """NetAdapt's lookup table, measured in `runtime` at `precision` and fitted per layer.

    Every conv/linear layer is exported alone at its full width and at half, and timed together
    with the whole model and an empty call (interleaved rounds: load hits all alike). A layer's
    `ms_per_mac` is the slope between its two widths, its `fixed_ms` what is left at full width
    after the slope and the empty call; both are then scaled so the layers sum to the whole
    model's time less the empty call (`other_ms`): layers alone run from cache, and what lies
    between them (activations, adds, (de)quantization) grows with the same widths. int8 layers
    are calibrated on random inputs: this is a latency table, not an accuracy one.
    """
    example = single_input(example_inputs)
    model = copy.deepcopy(model).cpu().eval()
    layers = _layer_inputs(model, example)
    if not layers:
        raise LeannetError("a latency table needs a model with conv or linear layers")
    items: dict[Any, Timed] = {}
    macs: dict[Any, int] = {}

    def add(key: Any, module: nn.Module, x: torch.Tensor) -> None:
        calibration = [torch.randn(4, *x.shape[1:])] if precision == "int8" else None
        _, session = build_one(module, runtime, precision, None, x, threads=threads,
                               calibration=calibration)
        items[key] = timed(session, runtime, precision, x)
        macs[key] = count_macs(module, x)

    add("model", model, example)
    add("empty", nn.Conv2d(1, 1, 1), torch.randn(1, 1, 1, 1))
    for index, (name, (module, shape)) in enumerate(layers.items()):
        if on_stage is not None:
            on_stage(f"latency table: layer {index + 1}/{len(layers)} ({name})")
        for half in (False, True):
            alone = _alone(module, shape, half)
            if alone is not None:
                add((name, half), *alone)
    times = {k: v.median_ms for k, v in time_latencies(items, threads=threads, runs=runs,
                                                        warmup=3, rounds=rounds,
                                                        warn=False).items()}
    empty = times["empty"]
    table: dict[str, tuple[float, float]] = {}
    for name in layers:
        full_ms, full_macs = times[(name, False)] - empty, macs[(name, False)]
        if (name, True) in times and macs[(name, True)] < full_macs:
            slope = (full_ms - times[(name, True)] + empty) / (full_macs - macs[(name, True)])
        else:
            slope = full_ms / full_macs if full_macs else 0.0
        slope = max(slope, 0.0)
        table[name] = (round(max(full_ms - slope * full_macs, 0.0), 6), slope)
    summed = sum(f + s * macs[(n, False)] for n, (f, s) in table.items())
    # Alone, a layer's weights and activations sit in cache; in the model they stream, and the
    # activation ops between layers grow with the same widths. Spread the whole model's time
    # over its layers in proportion to their own times (measured: 2.0 of 6.4 ms summed alone
    # for MobileNetV2 x0.5 at 96 px in ONNX Runtime fp32).
    scale = max(times["model"] - empty, 1e-9) / summed if summed > 0 else 1.0
    table = {n: (round(f * scale, 6), s * scale) for n, (f, s) in table.items()}
    meta = {"runtime": runtime, "precision": precision, "threads": threads, "runs": runs,
            "rounds": rounds, "model_ms": times["model"], "empty_ms": empty,
            "layers_alone_ms": round(summed, 6), "in_model_scale": round(scale, 4),
            "input_shape": list(example.shape)}
    return LatencyModel(table, empty, meta)
