"""Cost of a model: parameters, MACs, file size, and latency: the one timing function
(`time_latency`) that every command, report and benchmark uses, with its spread.

Latency is only worth printing with its conditions and its noise: a median alone on a busy
machine swung 9.7 -> 42 ms between steps of one run. So a `Latency` carries runtime, precision,
threads and batch size, the quartiles and the extremes, and says when it is too noisy to trust.
"""
from __future__ import annotations

import copy
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


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (or, lacking any, buffers) are; the CPU for neither."""
    first: torch.Tensor | None = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else torch.device("cpu")


def _example(model: nn.Module, inputs: InputSpec) -> torch.Tensor:
    """A tensor on the model's device from a shape (N, C, H, W) or a given tensor (moved there:
    example inputs follow the model, which fine-tuning may have put on a GPU)."""
    device = model_device(model)
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    return torch.randn(*inputs, device=device)


def latency_device(device: str | torch.device | None) -> torch.device:
    """The device latency is timed on: the CPU unless asked (phone-like numbers), else `device`."""
    if device is None:
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LeannetError(f"latency on {dev}: this machine has no CUDA GPU that torch can use")
    if dev.type not in ("cpu", "cuda"):
        raise LeannetError(f"latency on {dev}: expected cpu or cuda")
    return dev


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


@dataclass(frozen=True)
class Timed:
    """One thing to time: the call, what it runs in, and how to pin its thread pool."""

    call: Callable[[], Any]
    runtime: str
    precision: str
    batch: int
    set_threads: Callable[[int], Any] | None = None


def time_latencies(items: dict[Any, Timed], *, threads: int, runs: int = 50, warmup: int = 5,
                   rounds: int = 5, min_seconds: float = 0.0, warn: bool = True
                   ) -> dict[Any, Latency]:
    """Time several calls interleaved: `rounds` rounds, each giving every call its share of the
    `runs` timed calls, so that a burst of load from other jobs hits all of them alike and their
    ratios stay fair. The one latency function (time_latency is this with one item).

    Threads are pinned (torch's restored after); `warmup` untimed calls precede each item's
    first round; `min_seconds` keeps timing tiny calls until that much time was measured.
    """
    threads = check_threads(threads)
    if runs < 1 or warmup < 0 or rounds < 1:
        raise LeannetError(f"runs and rounds must be >= 1 and warmup >= 0, got runs={runs} "
                           f"rounds={rounds} warmup={warmup}")
    rounds = min(rounds, runs)
    times: dict[Any, list[float]] = {key: [] for key in items}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # torch ops around the call (e.g. tensor copies) too
    try:
        for index in range(rounds):
            share = runs // rounds + (index < runs % rounds)
            for key, item in items.items():
                if item.set_threads is not None:
                    item.set_threads(threads)
                for _ in range(warmup if index == 0 else 0):
                    item.call()
                _sample(item.call, share, min_seconds / rounds, times[key])
    finally:
        torch.set_num_threads(previous)
    return {key: _summarise(times[key], item, warmup, threads, warn)
            for key, item in items.items()}


def _sample(call: Callable[[], Any], count: int, min_seconds: float, into: list[float]) -> None:
    began = time.perf_counter()
    done = 0
    while done < count or (time.perf_counter() - began < min_seconds and done < 100 * count):
        start = time.perf_counter()
        call()
        into.append((time.perf_counter() - start) * 1000.0)
        done += 1


def _summarise(times: list[float], item: Timed, warmup: int, threads: int, warn: bool
               ) -> Latency:
    q1, median, q3 = (statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1
                      else (times[0],) * 3)
    result = Latency(round(median, 4), round(q1, 4), round(q3, 4), round(min(times), 4),
                     round(max(times), 4), len(times), warmup, item.runtime, item.precision,
                     threads, item.batch)
    if warn and result.noisy:
        warnings.warn(f"latency is noisy (IQR {result.iqr_ms:.3g} ms on a median of "
                      f"{result.median_ms:.3g} ms, {result.conditions()}): the machine is busy; "
                      "compare ratios from one run", stacklevel=3)
    return result


def time_latency(call: Callable[[], Any], *, runtime: str, precision: str, threads: int,
                 batch: int, runs: int = 50, warmup: int = 5, min_seconds: float = 0.0,
                 set_threads: Callable[[int], Any] | None = None,
                 warn: bool = True) -> Latency:
    """Time one call: `time_latencies` with a single item in a single round."""
    item = Timed(call, runtime, precision, batch, set_threads)
    return time_latencies({0: item}, threads=threads, runs=runs, warmup=warmup, rounds=1,
                          min_seconds=min_seconds, warn=warn)[0]


def torch_latency(model: nn.Module, inputs: InputSpec, runs: int = 30, warmup: int = 5,
                  threads: int = DEFAULT_THREADS, warn: bool = True,
                  device: str | torch.device | None = None) -> Latency:
    """Latency of one eager forward pass of `model` on `inputs` (shape or tensor), timed on
    `device`: the CPU by default, wherever the model is (a copy is timed there); on CUDA each
    call ends with a synchronisation, so the time is the kernels' and not their launch."""
    where = latency_device(device)
    timed = model if model_device(model) == where else copy.deepcopy(model).to(where)
    example = _example(timed, inputs)
    synchronize = (lambda: torch.cuda.synchronize(where)) if where.type == "cuda" \
        else (lambda: None)

    def call() -> None:
        timed(example)
        synchronize()

    runtime = "torch" if where.type == "cpu" else f"torch {where.type}"
    with _eval_mode(timed):
        return time_latency(call, runtime=runtime, precision="fp32", threads=threads,
                            batch=int(example.shape[0]), runs=runs, warmup=warmup, warn=warn)


def latency_ms(model: nn.Module, inputs: InputSpec, runs: int = 30, warmup: int = 5,
               threads: int | None = DEFAULT_THREADS, device: str | torch.device | None = None
               ) -> float:
    """Median eager latency in milliseconds (`torch_latency(...).median_ms`), on one thread
    unless told otherwise; kept for callers that log one number per step."""
    return torch_latency(model, inputs, runs, warmup, threads or DEFAULT_THREADS,
                         warn=False, device=device).median_ms


def measure(model: nn.Module, inputs: InputSpec, path: str | Path | None = None,
            runs: int = 30, threads: int | None = None,
            device: str | torch.device | None = None) -> dict[str, Any]:
    """Parameters, MACs, file size (when `path` is given) and eager latency of one model:
    `latency_ms` is the median, `latency` the full `Latency.to_dict()` with its spread; latency
    is timed on `device` (the CPU by default, wherever the model is)."""
    latency = torch_latency(model, inputs, runs=runs, threads=threads or DEFAULT_THREADS,
                            device=device)
    return {
        "params": count_params(model),
        "macs": count_macs(model, inputs),
        "size_bytes": file_size(path) if path is not None else None,
        "latency_ms": latency.median_ms,
        "latency": latency.to_dict(),
    }
