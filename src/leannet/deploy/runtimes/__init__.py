"""Runtimes a model can be deployed to, by name: torch eager, onnxruntime, executorch, ...

Each module in this package defines one `Runtime` and calls `register` once; they are imported on
first lookup, so a new runtime is one file and never touches this one. A runtime whose toolchain
is not installed still registers, and says so in one line when used.
"""
from __future__ import annotations

import importlib
import pkgutil

from leannet.deploy.runtimes.base import PRECISIONS, Runtime, Session
from leannet.errors import LeannetError

_RUNTIMES: dict[str, Runtime] = {}

__all__ = ["PRECISIONS", "Runtime", "Session", "get_runtime", "list_runtimes", "register"]


def register(runtime: Runtime) -> Runtime:
    """Add a runtime under its name (a second one with the same name is a bug)."""
    if runtime.name in _RUNTIMES:
        raise LeannetError(f"runtime {runtime.name!r} is registered twice")
    _RUNTIMES[runtime.name] = runtime
    return runtime


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def list_runtimes() -> list[str]:
    """Registered runtime names, sorted."""
    _load_all()
    return sorted(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    """The runtime called `name`, or LeannetError naming the known ones."""
    _load_all()
    if name not in _RUNTIMES:
        raise LeannetError(f"unknown runtime {name!r}; expected one of {', '.join(sorted(_RUNTIMES))}")
    return _RUNTIMES[name]
