"""What a runtime is: export a model to its file format, load that file, run it on numpy inputs.

`export` writes an fp32 file, or an int8 one from a model already quantized by PT2E
(`leannet.deploy.quantize`) or, for runtimes with their own quantizer, from calibration batches.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.export import flatten_outputs

PRECISIONS = ("fp32", "int8")


class Session(ABC):
    """A loaded model in a runtime: numpy in, the flat list of numpy outputs out."""

    fixed_batch: int | None = None  # a file compiled for one batch size; run() splits bigger ones

    @abstractmethod
    def _run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """One call of the runtime on `inputs` (the batch it accepts)."""

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Outputs for any batch size: a file compiled for a fixed batch runs fixed-size chunks
        (the last one zero-padded, its padding dropped) and concatenates them."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        step, count = self.fixed_batch, inputs.shape[0]
        if step is None or count == step:
            return self._run(inputs)
        pad = -count % step
        if pad:
            inputs = np.concatenate([inputs, np.zeros((pad, *inputs.shape[1:]), np.float32)])
        parts = [self._run(inputs[i:i + step]) for i in range(0, inputs.shape[0], step)]
        return [np.concatenate(outs)[:count] for outs in zip(*parts)]

    def set_threads(self, threads: int) -> None:  # noqa: B027 (optional hook)
        """Pin the runtime's thread pool (sessions that fix it at load time ignore this)."""
        return None


class Runtime(ABC):
    """One inference runtime: its name, file suffix, precisions, export and load."""

    name: str = ""
    suffix: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    on_device: bool = True  # false for the host-only reference (torch eager)
    quantizes_itself: bool = False  # int8 from calibration batches, not from a PT2E model
    # channel counts this runtime's kernels run best at, per precision: `leannet prune`'s
    # default --round-to (measured by benchmarks/deploy.py --case alignment)
    channel_multiples: dict[str, int] = {"fp32": 1, "int8": 1}

    def channel_multiple(self, precision: str) -> int:
        """The multiple kept channel counts should be rounded to for `precision`."""
        return int(self.channel_multiples.get(precision, 1))

    def available(self) -> str | None:
        """None when usable here, else why not (one line, with the install hint)."""
        return None

    def check(self, precision: str) -> None:
        """LeannetError unless this runtime is installed and supports `precision`."""
        if precision not in PRECISIONS:
            raise LeannetError(f"unknown precision {precision!r}; expected one of "
                               f"{', '.join(PRECISIONS)}")
        missing = self.available()
        if missing:
            raise LeannetError(missing)
        if precision not in self.precisions:
            raise LeannetError(f"runtime {self.name} has no {precision}; it supports "
                               f"{', '.join(self.precisions)}")

    @abstractmethod
    def export(self, model: nn.Module, path: Path, example: torch.Tensor, precision: str,
               calibration: Iterable[torch.Tensor] | None = None) -> dict[str, Any]:
        """Write `model` to `path` (the caller makes that atomic); returns facts about the file.

        For int8, `model` is the PT2E-quantized module unless `quantizes_itself`, in which case
        it is the fp32 model and `calibration` yields real input batches."""

    @abstractmethod
    def load(self, path: Path, threads: int) -> Session:
        """A session on the file at `path` using `threads` threads."""

    def build(self, model: nn.Module, path: Path, example: torch.Tensor, precision: str,
              threads: int, calibration: Iterable[torch.Tensor] | None = None
              ) -> tuple[Session, dict[str, Any]]:
        """Export to `path` and load it: (session, export facts). Runtimes without a file
        format (torch eager) override this."""
        info = self.export(model, path, example, precision, calibration)
        return self.load(path, threads), info


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Flat output names of `model`, in the order every runtime returns them."""
    with torch.no_grad():
        return [name for name, _ in flatten_outputs(model(example))]
