"""Inference export: BatchNorm folding, ONNX export with a dynamic batch axis, onnxruntime parity
and latency.

Export uses torch's classic TorchScript exporter (`dynamo=False`) first: on torch 2.14 it writes
opset 17 exactly in a fraction of a second, whereas the dynamo exporter refuses opsets below 18,
fails its own down-conversion and takes seconds; the dynamo exporter is the fallback.
"""
from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from leannet.errors import LeannetError
from leannet.files import follow_umask
from leannet.measure import count_macs, count_params, file_size, latency_ms

PARITY_RTOL = 1e-4
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ---------------------------------------------------------------------------------- BN folding

def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every Conv->BN (and Linear->BN1d) pair folded into one
    layer, found by torch.fx tracing so any traceable architecture works; outputs are unchanged."""
    source = copy.deepcopy(model).eval()
    try:
        graph_module = fx.symbolic_trace(source)
    except Exception as err:  # fx raises many types; the user needs one clear line
        raise LeannetError(f"cannot fold BatchNorm: torch.fx could not trace "
                           f"{type(model).__name__} ({type(err).__name__}: {err})".splitlines()[0]
                           ) from err
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        producer = _foldable_producer(node, modules)
        if producer is None:
            continue
        layer, bn = modules[str(producer.target)], modules[str(node.target)]
        fused = (fuse_conv_bn_eval(layer, bn) if isinstance(layer, _CONVS)
                 else fuse_linear_bn_eval(layer, bn))
        _set_submodule(graph_module, str(producer.target), fused)
        modules[str(producer.target)] = fused
        node.replace_all_uses_with(producer)
        graph_module.graph.erase_node(node)
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    if hasattr(model, "leannet_config"):
        graph_module.leannet_config = copy.deepcopy(model.leannet_config)
    return graph_module


def _foldable_producer(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The conv/linear node feeding BN `node` when the pair can be folded, else None."""
    if node.op != "call_module" or not isinstance(modules.get(str(node.target)), _BNS):
        return None
    bn = modules[str(node.target)]
    if not bn.track_running_stats or bn.running_mean is None or len(node.args) != 1:
        return None
    producer = node.args[0]
    if not isinstance(producer, fx.Node) or producer.op != "call_module":
        return None
    layer = modules.get(str(producer.target))
    if len(producer.users) != 1:  # the un-normalised output is used elsewhere too
        return None
    if isinstance(layer, _CONVS) and not getattr(layer, "transposed", False):
        return producer
    if isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
        return producer
    return None


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path `target`."""
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, module)


# -------------------------------------------------------------------------------- output naming

def flatten_outputs(output: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a model output: a tensor is `output`, a dict uses its keys, a tuple
    or list its indices (`output_0`), nested with `_`."""
    if isinstance(output, torch.Tensor):
        return [(prefix or "output", output)]
    if isinstance(output, dict):
        items = [(str(k), v) for k, v in output.items()]
    elif isinstance(output, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(output)]
        prefix = prefix or "output"
    else:
        raise LeannetError(f"cannot export an output of type {type(output).__name__}; "
                           "expected tensors, tuples, lists or dicts of tensors")
    return [pair for key, v in items
            for pair in flatten_outputs(v, f"{prefix}_{key}" if prefix else key)]


class _FlatOutputs(nn.Module):
    """Wraps a model so that it returns a flat tuple of tensors in `flatten_outputs` order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for _, t in flatten_outputs(self.model(x)))


# ------------------------------------------------------------------------------------ ONNX export

def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
                opset: int = 17, dynamic_batch: bool = True, fold_bn: bool = True) -> dict:
    """Write `model` as ONNX to `path` atomically; returns {path, opset, inputs, outputs, exporter,
    folded_batchnorms}. `input_shape` is (N, C, H, W) or (C, H, W)."""
    if opset < 13:
        raise LeannetError(f"opset {opset} is too old; expected 13 or newer (17 recommended)")
    shape = _full_shape(input_shape)
    path = Path(path)
    if path.suffix != ".onnx":
        raise LeannetError(f"ONNX output path must end in .onnx, got {str(path)!r}")
    n_bn = _count_bn(model)
    ready = (fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()).cpu()
    example = torch.randn(*shape)
    with torch.no_grad():
        names = [name for name, _ in flatten_outputs(ready(example))]
    if len(set(names)) != len(names) or "input" in names:
        raise LeannetError(f"model outputs have clashing names {names}; use distinct dict keys "
                           "other than 'input'")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        exporter = _export(_FlatOutputs(ready).eval(), example, tmp, names, opset, dynamic_batch)
        written_opset = _opset_of(tmp)
        follow_umask(tmp)  # mkstemp makes 0600 files; an export is for sharing
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"path": str(path), "opset": written_opset, "input_shape": list(shape),
            "inputs": ["input"], "outputs": names, "dynamic_batch": dynamic_batch, "exporter": exporter,
            "folded_batchnorms": n_bn - _count_bn(ready)}


def _export(module: nn.Module, example: torch.Tensor, path: str, names: list[str], opset: int,
            dynamic_batch: bool) -> str:
    """Run torch.onnx.export, classic exporter first, dynamo as fallback; returns which one ran."""
    axes = {name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), path, input_names=["input"], output_names=names,
                              opset_version=opset, dynamo=False, dynamic_axes=axes,
                              do_constant_folding=True)
        return "torchscript"
    except Exception as classic_err:
        dims = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
        try:
            torch.onnx.export(module, (example,), path, input_names=["input"], output_names=names,
                              opset_version=opset, dynamo=True, dynamic_shapes=dims,
                              external_data=False)
        except Exception as err:
            raise LeannetError(f"ONNX export failed: {type(classic_err).__name__}: "
                               f"{classic_err}".splitlines()[0]) from err
        return "dynamo"


def _opset_of(path: str) -> int:
    """The default-domain opset an ONNX file declares (the dynamo exporter may raise it)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    return max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _full_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """(N, C, H, W) from (C, H, W) or (N, C, H, W), checking every size is positive."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise LeannetError(f"bad input shape {list(input_shape)}; expected positive (N, C, H, W)")
    return shape


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the caller's training flag back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, _BNS) for m in model.modules())


# --------------------------------------------------------------------------- onnxruntime checks

def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for `path`; a clear error when the file is not valid ONNX."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise LeannetError(f"no ONNX file at {str(path)!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise LeannetError(f"{str(path)!r} is not a loadable ONNX model: "
                           f"{err}".splitlines()[0]) from err


def check_onnx_parity(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
                      batches: Sequence[int] = (1, 4), seed: int = 0,
                      rtol: float = PARITY_RTOL) -> dict:
    """Compare torch and onnxruntime on random inputs at each batch size; returns max_abs_diff and
    max_rel_diff (max |diff| over max |torch output|, per output) and raises LeannetError when
    max_rel_diff exceeds `rtol`."""
    shape = _full_shape(input_shape)[1:]
    session = onnx_session(path, threads=1)  # a correctness check: no thread pool to start or spin
    names = [o.name for o in session.get_outputs()]
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters(), torch.empty(0)).device
    max_abs = max_rel = 0.0
    for batch in batches:
        x = torch.randn(batch, *shape, generator=generator)
        with torch.no_grad(), _evaluating(model):
            expected = dict(flatten_outputs(model(x.to(device))))
        try:
            got = dict(zip(names, session.run(None, {"input": x.numpy()})))
        except Exception as err:  # onnxruntime raises its own types, e.g. a fixed batch size
            raise LeannetError(f"onnxruntime failed on a batch of {batch}: "
                               f"{err}".splitlines()[0]) from err
        if set(got) != set(expected):
            raise LeannetError(f"ONNX outputs {sorted(got)} do not match the model's "
                               f"{sorted(expected)}")
        for name, ref in expected.items():
            ref_np = ref.detach().cpu().numpy()
            if got[name].shape != ref_np.shape:
                raise LeannetError(f"ONNX output {name!r} has shape {list(got[name].shape)} at "
                                   f"batch {batch}; torch gives {list(ref_np.shape)}")
            diff = float(np.max(np.abs(got[name] - ref_np))) if ref_np.size else 0.0
            scale = float(np.max(np.abs(ref_np))) if ref_np.size else 0.0
            max_abs = max(max_abs, diff)
            max_rel = max(max_rel, diff / max(scale, 1e-12))
    if max_rel > rtol:
        raise LeannetError(f"ONNX parity failed: max relative difference {max_rel:.3g} "
                           f"(max abs {max_abs:.3g}) is above {rtol:g}")
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "batches": list(batches)}


def onnx_latency_ms(path: str | os.PathLike, input_shape: Sequence[int], runs: int = 50,
                    warmup: int = 5, threads: int | None = None) -> float:
    """Median onnxruntime CPU latency in milliseconds of one forward pass on `input_shape`."""
    if runs < 1 or warmup < 0:
        raise LeannetError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    session = onnx_session(path, threads)
    feed = {"input": np.random.default_rng(0).standard_normal(_full_shape(input_shape),
                                                              dtype=np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


# ---------------------------------------------------------------------------- one-call export

EXPORT_FORMATS = ("onnx",)


def export_checked(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
                   opset: int = 17, batches: Sequence[int] = (1, 4)) -> dict:
    """Export to ONNX and check onnxruntime parity before the file appears at `path`: a model
    that fails parity leaves nothing behind. Returns export info plus max_abs_diff/max_rel_diff."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise LeannetError(f"ONNX output path must end in .onnx, got {str(path)!r}")
    staging = path.with_name(f".{path.stem}.staging-{os.getpid()}.onnx")
    try:
        info = export_onnx(model, staging, input_shape, opset=opset)
        parity = check_onnx_parity(model, staging, input_shape, batches=batches)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return {**info, "path": str(path), **parity, "size_bytes": path.stat().st_size}


# ----------------------------------------------------------------------------------- benchmark

def benchmark_runtimes(model: nn.Module, input_shape: Sequence[int], runs: int = 50,
                       warmup: int = 5, threads: int | None = None,
                       weights_path: str | os.PathLike | None = None,
                       on_stage: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Params, MACs, file size and median latency of `model` in torch, in torch with BatchNorm
    folded, and in onnxruntime (exported to a temporary file, parity-checked), side by side."""
    if runs < 1 or warmup < 0:
        raise LeannetError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    shape = _full_shape(input_shape)
    stage = on_stage or (lambda name: None)
    stage("torch")
    rows = {"torch": {"params": count_params(model), "macs": count_macs(model, shape),
                      "size_bytes": file_size(Path(weights_path)) if weights_path else None,
                      "latency_ms": latency_ms(model, shape, runs, warmup, threads)}}
    stage("torch, BatchNorm folded")
    folded = fold_batchnorm(model)
    rows["torch_folded_bn"] = {"params": count_params(folded), "macs": count_macs(folded, shape),
                               "size_bytes": None,
                               "latency_ms": latency_ms(folded, shape, runs, warmup, threads)}
    stage("onnxruntime")
    with tempfile.TemporaryDirectory(prefix="leannet-bench-") as tmp:
        info = export_checked(model, Path(tmp) / "model.onnx", shape)
        rows["onnxruntime"] = {**{k: rows["torch_folded_bn"][k] for k in ("params", "macs")},
                               "size_bytes": info["size_bytes"],
                               "latency_ms": onnx_latency_ms(info["path"], shape, runs, warmup,
                                                             threads),
                               "max_abs_diff": info["max_abs_diff"],
                               "max_rel_diff": info["max_rel_diff"]}
    return rows
