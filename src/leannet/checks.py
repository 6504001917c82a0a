"""Checks for values that enter from outside (options, JSON fields): one clear line when wrong.

Ground floor. NaN and infinity are bad input everywhere: a NaN compares false with every bound,
so an unchecked `--max-drop nan` or `--lr nan` slips past `if x < 0` tests and silently turns a
guard off or a run into garbage.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from leannet.errors import LeannetError


def number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    """`value` as a finite number within [low, high] (open ends where asked), or LeannetError."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LeannetError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise LeannetError(f"{name} must be a finite number, got {value}")
    if integer and value != int(value):
        raise LeannetError(f"{name} must be an integer, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise LeannetError(f"{name} must be {_span(low, high, low_open, high_open)}, got {value}")
    return value


def _span(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """'>= 0', '< 1' or 'in (0, 1]': the allowed range in words a user reads at a glance."""
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def device(name: str | None) -> torch.device:
    """A device the machine has: None means CUDA when present, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise LeannetError(f"--device {name!r} is not a device; expected cpu, cuda or cuda:N") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LeannetError(f"--device {name}: this machine has no CUDA GPU that torch can use; "
                               "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LeannetError(f"--device {name}: only {torch.cuda.device_count()} CUDA "
                               "device(s) here")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise LeannetError(f"--device {name}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise LeannetError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    return dev
