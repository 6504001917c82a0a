"""Which channel counts a runtime's kernels like: time one inverted-residual-like block (1x1
expand, 3x3 depthwise, 1x1 project) at several widths and compare the time per MAC.

This is the measurement behind each runtime's `channel_multiples` (the default of `leannet
prune --round-to`): ONNX Runtime's int8 and fp32 kernels pack channels in blocks, so a width
just below a multiple of 16 can cost as much as the next multiple or more, while XNNPACK pads
cheaply. benchmarks/deploy.py --case alignment runs it and records the numbers.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch
from torch import nn

from leannet.deploy.matrix import build_matrix
from leannet.deploy.runtimes import get_runtime
from leannet.errors import LeannetError
from leannet.measure import count_macs, time_latencies
from leannet.prune import Pruner, Target

DEFAULT_WIDTHS = (64, 63, 60, 56, 48, 47, 40, 32)
OVERSHOOT = 0.1  # coarser rounding may not remove more than 10% of the target beyond it
STEP = 8  # nor be coarser than an eighth of the median layer width


def block(width: int, expand: int = 4) -> nn.Module:
    """A MobileNetV2-like unit whose every channel count is a multiple of `width`'s."""
    hidden = width * expand
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(width, hidden, 1), nn.ReLU6(),
        nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.ReLU6(),
        nn.Conv2d(hidden, width, 1)).eval()


def measure_alignment(runtime: str, precision: str, widths: Sequence[int] = DEFAULT_WIDTHS,
                      size: int = 28, threads: int = 1, runs: int = 30, rounds: int = 5,
                      seed: int = 0) -> dict[str, Any]:
    """Median ms and ms per MMAC of `block(w)` for each width, every file timed together
    (interleaved rounds); `per_mmac_vs_best` is 1.0 for the most efficient width."""
    torch.manual_seed(seed)
    example = torch.randn(1, 3, size, size)
    calibration = [torch.randn(8, 3, size, size) for _ in range(2)]
    rows: dict[int, dict[str, Any]] = {}
    items = {}
    for width in widths:
        model = block(width)
        built, timed = build_matrix(model, example, [runtime], [precision], threads=threads,
                                    calibration=calibration)
        if built and "skipped" in built[0]:
            return {"runtime": runtime, "precision": precision, "skipped": built[0]["skipped"]}
        rows[width] = {"macs": count_macs(model, example)}
        items[width] = timed[0]
    for width, latency in time_latencies(items, threads=threads, runs=runs,
                                         rounds=rounds).items():
        rows[width] |= {"latency": latency.to_dict(),
                        "ms_per_mmac": latency.median_ms / (rows[width]["macs"] / 1e6)}
    best = min(r["ms_per_mmac"] for r in rows.values())
    for r in rows.values():
        r["per_mmac_vs_best"] = round(r["ms_per_mmac"] / best, 3)
    return {"runtime": runtime, "precision": precision, "size": size, "threads": threads,
            "widths": {str(w): r for w, r in rows.items()}}


def auto_round_to(model: nn.Module, example_inputs: Any, target: Target, runtime: str,
                  precision: str) -> tuple[int, str]:
    """`leannet prune`'s default --round-to: the runtime's channel multiple for `precision`,
    halved until it is at most an eighth of the median layer width and the target is reachable
    with it, the plan landing within 10% of it (a model whose layers are narrow for the multiple
    could otherwise not be pruned at all, only far past the target, or in steps too coarse to
    fine-tune back). Returns (multiple, why)."""
    wanted = get_runtime(runtime).channel_multiple(precision)
    kind, fraction = target.kind()
    if kind == "latency":  # planned by MACs, measured afterwards
        target = dataclasses.replace(target, latency=None, macs=fraction)
    kind, fraction = target.kind()
    pruner = Pruner(copy.deepcopy(model), example_inputs, criterion="l1")
    try:
        widths = sorted(g.size for g in pruner.groups if not g.protected.all())
    except LeannetError as err:  # the run itself will say why it cannot prune this model
        return 1, f"no rounding: {err}".splitlines()[0]
    typical = widths[len(widths) // 2] if widths else 1
    multiple = wanted
    while multiple > 1 and multiple > typical / STEP:  # a rounding step of at most 1/8 layer
        multiple //= 2
    while multiple > 1:
        try:
            plan = pruner.plan(dataclasses.replace(target, round_to=multiple))
            landed = plan.meta.get(f"{kind}_fraction", fraction)
            if landed >= (1 - OVERSHOOT) * fraction:
                break
        except LeannetError:  # unreachable with this rounding (or not plannable)
            pass
        multiple //= 2
    why = f"{runtime} {precision} kernels run best at multiples of {wanted}"
    if multiple != wanted:
        why += (f"; {max(multiple, 1)} is the largest power of two at most 1/{STEP} of the "
                f"median layer ({typical} channels) that reaches the target within "
                f"{OVERSHOOT:.0%} here")
    return max(multiple, 1), why
