"""Cost of a model: parameters, MACs, file size and measured latency (median of timed runs)."""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

InputSpec = Sequence[int] | torch.Tensor


def _example(model: nn.Module, inputs: InputSpec) -> torch.Tensor:
    """A tensor on the model's device from a shape (N, C, H, W) or a given tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    return torch.randn(*inputs, device=device)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode without gradients, then restore the model's training flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: InputSpec) -> int:
    """Multiply-accumulates of one forward pass (FLOPs / 2 from torch's flop counter)."""
    with _eval_mode(model), FlopCounterMode(display=False) as counter:
        model(_example(model, inputs))
    return int(counter.get_total_flops() // 2)


def file_size(path: str | Path) -> int:
    """Bytes on disk: the weights file of a model folder, or the file itself."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.name == "weights.safetensors")
    return path.stat().st_size


def latency_ms(model: nn.Module, inputs: InputSpec, runs: int = 30, warmup: int = 5,
               threads: int | None = None) -> float:
    """Median wall time of one forward pass in milliseconds, after warm-up runs."""
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    example = _example(model, inputs)
    synchronize = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    times = []
    try:
        with _eval_mode(model):
            for _ in range(warmup):
                model(example)
            for _ in range(runs):
                synchronize()
                start = time.perf_counter()
                model(example)
                synchronize()
                times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(times)


def measure(model: nn.Module, inputs: InputSpec, path: str | Path | None = None,
            runs: int = 30, threads: int | None = None) -> dict[str, Any]:
    """Parameters, MACs, file size (when `path` is given) and median latency of one model."""
    return {
        "params": count_params(model),
        "macs": count_macs(model, inputs),
        "size_bytes": file_size(path) if path is not None else None,
        "latency_ms": round(latency_ms(model, inputs, runs=runs, threads=threads), 4),
    }
