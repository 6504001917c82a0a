"""torch eager on the host CPU, BatchNorm folded: the reference every runtime is compared with.

Not an on-device runtime: at small sizes it times Python dispatch rather than convolution, which
is why pruning barely moves its latency. It has no file format; `build` wraps the model itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from leannet.deploy.runtimes import register
from leannet.deploy.runtimes.base import Runtime, Session
from leannet.errors import LeannetError
from leannet.export import flatten_outputs, fold_batchnorm


class TorchSession(Session):
    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def _run(self, inputs: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.model(torch.from_numpy(inputs))
        return [t.numpy() for _, t in flatten_outputs(out)]

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)


class TorchEager(Runtime):
    name = "torch"
    suffix = ""
    precisions = ("fp32",)
    on_device = False

    def export(self, model: nn.Module, path: Path, example: torch.Tensor, precision: str,
               calibration: Iterable[torch.Tensor] | None = None) -> dict[str, Any]:
        raise LeannetError("torch eager has no file format; export to onnxruntime or executorch")

    def load(self, path: Path, threads: int) -> Session:
        raise LeannetError("torch eager has no file format; load the model folder instead")

    def build(self, model: nn.Module, path: Path, example: torch.Tensor, precision: str,
              threads: int, calibration: Iterable[torch.Tensor] | None = None
              ) -> tuple[Session, dict[str, Any]]:
        try:
            ready = fold_batchnorm(model)
        except LeannetError:  # untraceable models run unfolded: still the reference
            ready = model
        return TorchSession(ready.cpu()), {"folded_batchnorms": True if ready is not model
                                           else False}


register(TorchEager())
