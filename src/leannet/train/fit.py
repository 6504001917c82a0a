"""The task-agnostic training loop: `fit` trains and keeps the best checkpoint, `evaluate` scores.

Tasks supply the loss and metrics (see `leannet.train.task`), so the same loop trains classifiers,
multi-task models and detectors. Inputs and targets may be tensors, dicts, lists or tuples of them.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from leannet import distributed
from leannet._torch import eval_mode, seed_all, to_device
from leannet.errors import LeannetError
from leannet.train.optim import make_optimizer, warmup_cosine
from leannet.train.progress import epoch_progress, print_epoch
from leannet.files import atomic_write_text
from leannet.checkpoint import save


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_all_threads() -> None:
    """Use every CPU core for torch unless the user pinned a count (OMP/MKL_NUM_THREADS)."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        torch.set_num_threads(os.cpu_count() or 1)


seed_everything = seed_all  # the name fit's callers know


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--amp` on `device` (None: full fp32), or one clear line.

    fp16 is probed with one tiny convolution forward and backward: CPUs (and old torch builds)
    that cannot run it say so here, not as a traceback mid-epoch.
    """
    if amp is None or amp == "fp32":
        return None
    if amp not in AMP_DTYPES:
        raise LeannetError(f"--amp {amp!r}: expected bf16 or fp16")
    problem = _amp_problem(amp, str(device))
    if problem:
        other = "use --amp bf16 or drop --amp" if amp == "fp16" else "drop --amp"
        raise LeannetError(f"--amp {amp} is not supported on {device.type} by this torch build "
                           f"({problem}); {other}")
    return AMP_DTYPES[amp]


@functools.lru_cache(maxsize=None)
def _amp_problem(amp: str, device: str) -> str:
    """Why autocast at `amp` fails on `device` ('' when it works), probed once per pair."""
    dtype, where = AMP_DTYPES[amp], torch.device(device)
    try:
        with torch.enable_grad():
            probe = nn.Conv2d(1, 1, 1).to(where)
            with torch.autocast(where.type, dtype=dtype):
                out = probe(torch.ones(1, 1, 2, 2, device=where))
            out.float().sum().backward()
        if dtype == torch.float16:
            torch.amp.GradScaler(where.type)
    except (RuntimeError, AssertionError, ValueError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return ""


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast for `dtype`, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _prepare(inputs: Any, device: torch.device, channels_last: bool) -> Any:
    """Inputs on `device`; 4-d image batches in channels-last memory format when asked."""
    inputs = to_device(inputs, device)
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _additive(meter: Any) -> list[str] | None:
    """Names of a meter's fields when they are all plain sums (ints and floats), so that sums
    over ranks are the single-process state; None for meters that keep lists or sub-meters."""
    declared = getattr(meter, "additive", None)
    fields = {k: v for k, v in vars(meter).items() if k != "additive"}
    numeric = [k for k, v in fields.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if declared is False or not fields or len(numeric) != len(fields):
        return None
    return sorted(numeric)


def _full_loader(loader: Any) -> Any:
    """The unsharded twin of a sharded DataLoader (every rank then sees every sample)."""
    return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, task: Any, device: str | torch.device | None = None,
             *, amp: str | None = None, channels_last: bool = False) -> dict[str, float]:
    """The task's metrics of `model` over `loader`, in eval mode (the training flag is restored).

    Under torchrun, each rank scores its shard of a sharded loader and the meter's sums are
    added over ranks, so every rank returns the same numbers (those of one process). Meters that
    are not plain sums (lists of detections, sub-meters) score the whole loader on every rank.
    """
    device = pick_device(device) if device is not None else _model_device(model)
    dtype = check_amp(amp, device)
    if isinstance(task, nn.Module):
        task.to(device)
    meter = task.meter()
    fields = _additive(meter)
    sharded = isinstance(getattr(loader, "sampler", None), distributed.ShardSampler) \
        and distributed.active()
    if sharded and fields is None:
        loader = _full_loader(loader)
    with eval_mode(model.to(device)):
        for inputs, targets in loader:
            with _autocast(device, dtype):
                outputs = model(_prepare(inputs, device, channels_last))
            meter.update(_float(outputs), to_device(targets, device))
    if sharded and fields is not None:
        sums = distributed.all_sum_floats([getattr(meter, k) for k in fields])
        for key, value in zip(fields, sums):
            setattr(meter, key, type(getattr(meter, key))(value))
    return {k: float(v) for k, v in meter.compute().items()}


def _float(outputs: Any) -> Any:
    """Outputs back in float32 (autocast gives bf16/fp16), so meters compute in full precision."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _float(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_float(v) for v in outputs)
    return outputs


def _model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are; a model without any goes by pick_device."""
    first = next(model.parameters(), None)
    return first.device if first is not None else pick_device(None)


def _check(epochs: int, loader: Iterable) -> int:
    """Validate the epoch count and return the number of steps per epoch."""
    if not isinstance(epochs, int) or epochs < 1:
        raise LeannetError(f"epochs must be a positive integer, got {epochs}")
    steps = len(loader)  # type: ignore[arg-type]
    if steps == 0:
        raise LeannetError("the training loader yields no batches")
    return steps


Backward = Callable[[torch.Tensor, nn.Module], Any]


@dataclass
class Step:
    """How one training step runs: device, precision, memory format, and who does backward."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False
    scaler: Any = None  # a GradScaler for fp16
    backward: Backward | None = None  # the task's own backward (e.g. PCGrad), else loss.backward
    extra_params: list[nn.Parameter] = field(default_factory=list)  # a task's own, DDP-averaged


def _train_epoch(model, loader, task, optimizer, scheduler, device, epoch, bar,
                 step_config: Step | None = None) -> float:
    """One pass over `loader`; returns the mean training loss (averaged over ranks)."""
    how = step_config or Step(device)
    model.train()
    if isinstance(task, nn.Module):
        task.train()
    set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
    if callable(set_epoch):  # a new shard order each epoch, the same on every rank
        set_epoch(epoch)
    total, count = 0.0, 0
    auxiliary = getattr(distributed.unwrap(model), "auxiliary_loss", None)
    for step, (inputs, targets) in enumerate(loader):
        with _autocast(how.device, how.dtype):
            outputs = model(_prepare(inputs, how.device, how.channels_last))
            loss = task.loss(outputs, to_device(targets, how.device))
            if callable(auxiliary):
                loss = loss + auxiliary()
        loss = loss.float()
        if not torch.isfinite(loss):
            raise LeannetError(f"training loss became {loss.item()} at epoch {epoch} step {step}; "
                               "try a lower learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaled = how.scaler.scale(loss) if how.scaler is not None else loss
        if how.backward is not None:
            how.backward(scaled, model)
        else:
            scaled.backward()
        if how.extra_params:
            distributed.average_grads(how.extra_params)
        if how.scaler is not None:
            how.scaler.step(optimizer)
            how.scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        count += 1
        bar.advance(loss=total / count)
    mean_loss, = distributed.all_sum_floats([total / max(1, count)])
    return mean_loss / distributed.world_size()


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable, task: Any, epochs: int, *,
        optimizer: str = "sgd", lr: float = 0.05, weight_decay: float = 5e-4,
        momentum: float = 0.9, warmup_epochs: float = 0.0, label_smoothing: float | None = None,
        seed: int | None = 0, device: str | torch.device | None = None,
        out_dir: str | Path | None = None, progress: bool = True, restore_best: bool = False,
        amp: str | None = None, channels_last: bool = False, compile: bool = False,
        backward: Backward | None = None) -> list[dict[str, float]]:
    """Train `model` for `epochs`, evaluating after each; return the history (one dict per epoch).

    The schedule is per step: linear warm-up over `warmup_epochs`, then cosine decay to zero.
    With `out_dir`, writes `history.jsonl` and keeps the best model (by `task.main_metric`) in
    `out_dir/model`; `restore_best` loads the best weights back into `model` at the end.
    `label_smoothing`, when given, overrides the task's own (if it has that attribute).

    Speed: `amp` ("bf16" or "fp16", autocast; fp16 with a GradScaler), `channels_last` (model
    and image batches in NHWC), `compile` (torch.compile of the forward). Under torchrun the
    model is wrapped in DistributedDataParallel (gradients averaged over ranks), the loaders
    should come from `make_loaders` (sharded), metrics are summed over ranks, and only rank 0
    writes `out_dir`. `backward(loss, model)` (or the task's own `backward` method) replaces
    `loss.backward()`, e.g. for gradient surgery across tasks; under fp16 the loss it receives
    is already scaled, and fit's scaler unscales the gradients before the step. `model` itself
    is trained in place and returned to the caller unwrapped.
    """
    steps = _check(epochs, train_loader)
    if seed is not None:
        seed_everything(seed)
    use_all_threads()
    device = distributed.local_device(device)
    dtype = check_amp(amp, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if label_smoothing is not None and hasattr(task, "label_smoothing"):
        task.label_smoothing = label_smoothing
    modules = [model] + ([task.to(device)] if isinstance(task, nn.Module) else [])
    opt = make_optimizer(modules, optimizer, lr, weight_decay, momentum)
    scheduler = warmup_cosine(opt, epochs * steps, int(round(warmup_epochs * steps)))
    runner = _wrap(model, device, compile)
    own_backward = backward or getattr(task, "backward", None)
    how = Step(device, dtype, channels_last,
               torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
               own_backward if callable(own_backward) else None,
               [p for p in task.parameters() if p.requires_grad]
               if isinstance(task, nn.Module) and distributed.active() else [])
    out = Path(out_dir) if out_dir is not None and distributed.is_main() else None
    history: list[dict[str, float]] = []
    best_value, best_state = -math.inf, None
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        with epoch_progress(epoch, epochs, steps, enabled=progress and distributed.is_main()
                            ) as bar:
            loss = _train_epoch(runner, train_loader, task, opt, scheduler, device, epoch, bar,
                                how)
        distributed.broadcast_module(model)  # batch-norm statistics as rank 0's
        metrics = evaluate(model, val_loader, task, device, amp=amp, channels_last=channels_last)
        record = {"epoch": epoch, "loss": loss, **metrics, "lr": lr_now,
                  "seconds": round(time.perf_counter() - start, 3)}
        history.append(record)
        if hasattr(task, "on_epoch_end"):
            task.on_epoch_end(history)
        value = metrics.get(task.main_metric, -math.inf)
        improved = value > best_value
        if improved:
            best_value = value
            if restore_best:
                best_state = copy.deepcopy(model.state_dict())
        if out is not None:
            _write_outputs(out, model, history, record, improved)
        if progress and distributed.is_main():
            print_epoch(record, task.main_metric, improved)
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    distributed.barrier()  # the other ranks wait until rank 0 has written out_dir
    return history


def _wrap(model: nn.Module, device: torch.device, compile: bool) -> nn.Module:
    """What the training step calls: the model, DDP-wrapped under torchrun, compiled if asked.

    The wrappers share the model's parameters, so training them trains `model`.
    """
    runner: nn.Module = model
    if distributed.active():
        ids = [device.index] if device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:
        try:
            runner = torch.compile(runner)  # type: ignore[assignment]
        except (RuntimeError, ImportError) as err:
            raise LeannetError(f"--compile: torch.compile is not available here "
                               f"({str(err).splitlines()[0]})") from None
    return runner


def _write_outputs(out: Path, model: nn.Module, history: list[dict], record: dict,
                   improved: bool) -> None:
    """Rewrite history.jsonl atomically and save the model folder when it is the best so far."""

    text = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write_text(out / "history.jsonl", text)
    if improved:
        save(model, out / "model", metrics=record)
