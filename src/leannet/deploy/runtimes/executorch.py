"""ExecuTorch with the XNNPACK delegate: the `.pte` files PyTorch's on-device runtime runs on
Android and iOS, timed and checked here through ExecuTorch's Python runtime.

fp32 lowers the (BatchNorm-folded) model; int8 lowers a model quantized by PT2E with the
XNNPACKQuantizer (`leannet.deploy.quantize`), so quantize and lower agree on the int8 scheme.
The file is compiled for the example's batch size; `Session.run` splits larger batches.
ExecuTorch is the optional `leannet[deploy]` extra; without it this runtime says so in one line.
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
from leannet.export import fold_batchnorm

try:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings.portable_lib import (_threadpool_get_thread_count,
                                                             _unsafe_reset_threadpool)
    from executorch.runtime import Runtime as _EtRuntime
    _MISSING = None
except ImportError as err:  # the [deploy] extra is not installed
    _MISSING = (f"runtime executorch needs the executorch package ({err.name or err}); "
                'install it with: pip install "leannet[deploy]"')


class ExecuTorchSession(Session):
    def __init__(self, path: Path, threads: int, batch: int) -> None:
        if not path.is_file():
            raise LeannetError(f"no ExecuTorch file at {str(path)!r}")
        self.set_threads(threads)
        try:
            program = _EtRuntime.get().load_program(path)
            self.method = program.load_method("forward")
        except Exception as err:  # the runtime raises RuntimeError/ValueError variants
            raise LeannetError(f"{str(path)!r} is not a loadable ExecuTorch program: "
                               f"{err}".splitlines()[0]) from err
        self.fixed_batch = batch

    def _run(self, inputs: np.ndarray) -> list[np.ndarray]:
        outputs = self.method.execute([torch.from_numpy(inputs)])
        return [o.numpy() for o in outputs]

    def set_threads(self, threads: int) -> None:
        if _threadpool_get_thread_count() != threads:  # XNNPACK's pool: one per process
            _unsafe_reset_threadpool(int(threads))


class ExecuTorch(Runtime):
    name = "executorch"
    suffix = ".pte"
    precisions = ("fp32", "int8")
    channel_multiples = {"fp32": 8, "int8": 8}  # measured: benchmarks/deploy.py --case alignment

    def available(self) -> str | None:
        return _MISSING

    def export(self, model: nn.Module, path: Path, example: torch.Tensor, precision: str,
               calibration: Iterable[torch.Tensor] | None = None) -> dict[str, Any]:
        self.check(precision)
        ready = fold_batchnorm(model) if precision == "fp32" else model
        try:
            exported = torch.export.export(ready, (example.cpu(),))
            program = to_edge_transform_and_lower(
                exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as err:  # export and lowering raise many types; one line for the user
            raise LeannetError(f"ExecuTorch lowering failed: {type(err).__name__}: "
                               f"{err}".splitlines()[0]) from err
        path.write_bytes(program.buffer)
        delegated = sum(1 for _ in program.executorch_program.execution_plan[0].delegates)
        return {"path": str(path), "input_shape": list(example.shape), "backend": "XNNPACK",
                "delegates": delegated}

    def load(self, path: Path, threads: int) -> Session:
        self.check("fp32")
        batch = _batch_of(path)
        return ExecuTorchSession(path, threads, batch)


def _batch_of(path: Path) -> int:
    """The batch size the program was compiled for (its first input's first dimension)."""
    try:
        program = _EtRuntime.get().load_program(path)
        return int(program.metadata("forward").input_tensor_meta(0).sizes()[0])
    except Exception:  # older metadata APIs: assume the default export batch
        return 1


register(ExecuTorch())
