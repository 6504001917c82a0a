"""Cost of a model: parameters, MACs, file size, and latency: the one timing function
(`time_latency`) that every command, report and benchmark uses, with its spread.

Latency is only worth printing with its conditions and its noise: a median alone on a busy
machine swung 9.7 -> 42 ms between steps of one run. So a `Latency` carries runtime, precision,
threads and batch size, the quartiles and the extremes, and says when it is too noisy to trust.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leannet.errors import LeannetError

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


DEFAULT_THREADS = 1  # the phone-like case: one big core; more threads mostly measure contention
NOISY_IQR = 0.25  # IQR above this fraction of the median: the machine was busy, say so


@dataclass(frozen=True)
class Latency:
    """Wall time of one call in milliseconds, with the conditions it was measured under."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    runtime: str
    precision: str
    threads: int
    batch: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @property
    def noisy(self) -> bool:
        """True when the interquartile range exceeds NOISY_IQR of the median."""
        return self.iqr_ms > NOISY_IQR * self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus iqr_ms and noisy."""
        return {**asdict(self), "iqr_ms": round(self.iqr_ms, 4), "noisy": self.noisy}

    def short(self) -> str:
        """`1.23 ms (IQR 1.20-1.31)`: the number and its spread, for table cells."""
        return f"{_ms(self.median_ms)} ms (IQR {_ms(self.q1_ms)}-{_ms(self.q3_ms)})"

    def conditions(self) -> str:
        """`onnxruntime int8, 1 thread, batch 1`."""
        return (f"{self.runtime} {self.precision}, {self.threads} thread"
                f"{'s' if self.threads != 1 else ''}, batch {self.batch}")

    def __str__(self) -> str:
        return (f"{self.short()}, min-max {_ms(self.min_ms)}-{_ms(self.max_ms)}, "
                f"{self.runs} runs; {self.conditions()}" + ("; NOISY" if self.noisy else ""))


def latency_from_dict(data: dict[str, Any]) -> Latency:
    """A Latency back from its `to_dict()` form (e.g. read from result.json)."""
    return Latency(**{k: data[k] for k in Latency.__dataclass_fields__})


def _ms(value: float) -> str:
    """Three significant figures, whatever the scale (0.187, 3.58, 42.1)."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def check_threads(threads: Any) -> int:
    """A positive whole thread count, or LeannetError (NaN, 0, -1, 1.5 and 'two' are refused)."""
    try:
        value = float(threads)
    except (TypeError, ValueError):
        raise LeannetError(f"threads must be a positive whole number, got {threads!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise LeannetError(f"threads must be a positive whole number, got {threads!r}")
    return int(value)


def time_latency(call: Callable[[], Any], *, runtime: str, precision: str, threads: int,
                 batch: int, runs: int = 50, warmup: int = 5, min_seconds: float = 0.0,
                 set_threads: Callable[[int], Any] | None = None,
                 warn: bool = True) -> Latency:
    """Time `call()` `runs` times after `warmup` untimed calls; the one latency function.

    `set_threads(threads)` pins the runtime's thread pool first (torch's is restored after).
    `min_seconds` keeps timing past `runs` until that much time was measured, so that tiny
    models get enough samples for a stable median. Warns when the spread is large.
    """
    threads = check_threads(threads)
    if runs < 1 or warmup < 0:
        raise LeannetError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # torch ops around the call (e.g. tensor copies) too
    try:
        if set_threads is not None:
            set_threads(threads)
        for _ in range(warmup):
            call()
        times: list[float] = []
        began = time.perf_counter()
        while len(times) < runs or (time.perf_counter() - began < min_seconds
                                    and len(times) < 100 * runs):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    q1, median, q3 = (statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1
                      else (times[0],) * 3)
    result = Latency(round(median, 4), round(q1, 4), round(q3, 4), round(min(times), 4),
                     round(max(times), 4), len(times), warmup, runtime, precision, threads, batch)
    if warn and result.noisy:
        warnings.warn(f"latency is noisy (IQR {result.iqr_ms:.3g} ms on a median of "
                      f"{result.median_ms:.3g} ms): the machine is busy; compare ratios from "
                      "one run", stacklevel=2)
    return result


def torch_latency(model: nn.Module, inputs: InputSpec, runs: int = 30, warmup: int = 5,
                  threads: int = DEFAULT_THREADS, warn: bool = True) -> Latency:
    """Latency of one eager forward pass of `model` on `inputs` (shape or tensor)."""
    example = _example(model, inputs)
    synchronize = torch.cuda.synchronize if example.is_cuda else (lambda: None)

    def call() -> None:
        model(example)
        synchronize()

    with _eval_mode(model):
        return time_latency(call, runtime="torch", precision="fp32", threads=threads,
                            batch=int(example.shape[0]), runs=runs, warmup=warmup, warn=warn)


def latency_ms(model: nn.Module, inputs: InputSpec, runs: int = 30, warmup: int = 5,
               threads: int | None = DEFAULT_THREADS) -> float:
    """Median eager latency in milliseconds (`torch_latency(...).median_ms`), on one thread
    unless told otherwise; kept for callers that log one number per step."""
    return torch_latency(model, inputs, runs, warmup, threads or DEFAULT_THREADS,
                         warn=False).median_ms


def measure(model: nn.Module, inputs: InputSpec, path: str | Path | None = None,
            runs: int = 30, threads: int | None = None) -> dict[str, Any]:
    """Parameters, MACs, file size (when `path` is given) and eager latency of one model:
    `latency_ms` is the median, `latency` the full `Latency.to_dict()` with its spread."""
    latency = torch_latency(model, inputs, runs=runs, threads=threads or DEFAULT_THREADS)
    return {
        "params": count_params(model),
        "macs": count_macs(model, inputs),
        "size_bytes": file_size(path) if path is not None else None,
        "latency_ms": latency.median_ms,
        "latency": latency.to_dict(),
    }
