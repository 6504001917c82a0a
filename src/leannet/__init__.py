"""leannet: compact CNNs, multi-task learning and verified iterative structured pruning.

The public API is imported lazily so that `import leannet` and the CLI start fast.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

# PyTorch's OpenMP threads spin while they wait; on a small or busy machine that burns most of
# the CPU (measured: 5x the CPU time per ResNet-20 step under load). Sleep instead, unless the
# user chose otherwise. Must happen before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_PUBLIC = {
    "create_model": "leannet.models",
    "list_models": "leannet.models",
    "save": "leannet.checkpoint",
    "load": "leannet.checkpoint",
    "LeannetError": "leannet.errors",
    "Pruner": "leannet.prune",
    "Target": "leannet.prune",
    "PruningPlan": "leannet.prune",
    "apply_plan": "leannet.prune",
    "iterative_prune": "leannet.iterative",
    "HardSharing": "leannet.multitask",
    "SoftSharing": "leannet.multitask",
}

_SUBMODULES = {"measure", "checkpoint", "files", "checks", "models", "nn", "data", "train", "prune",
               "multitask", "detect", "deploy", "export", "report"}

__all__ = sorted(_PUBLIC) + ["__version__", "measure"]


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"leannet.{name}")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'leannet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
