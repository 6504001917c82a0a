"""The task-agnostic training loop: `fit` trains and keeps the best checkpoint, `evaluate` scores.

Tasks supply the loss and metrics (see `leannet.train.task`), so the same loop trains classifiers,
multi-task models and detectors. Inputs and targets may be tensors, dicts, lists or tuples of them.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

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


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, task: Any, device: str | torch.device | None = None
             ) -> dict[str, float]:
    """The task's metrics of `model` over `loader`, in eval mode (the training flag is restored)."""
    device = pick_device(device)
    if isinstance(task, nn.Module):
        task.to(device)
    meter = task.meter()
    with eval_mode(model.to(device)):
        for inputs, targets in loader:
            outputs = model(to_device(inputs, device))
            meter.update(outputs, to_device(targets, device))
    return {k: float(v) for k, v in meter.compute().items()}


def _check(epochs: int, loader: Iterable) -> int:
    """Validate the epoch count and return the number of steps per epoch."""
    if not isinstance(epochs, int) or epochs < 1:
        raise LeannetError(f"epochs must be a positive integer, got {epochs}")
    steps = len(loader)  # type: ignore[arg-type]
    if steps == 0:
        raise LeannetError("the training loader yields no batches")
    return steps


def _train_epoch(model, loader, task, optimizer, scheduler, device, epoch, bar) -> float:
    """One pass over `loader`; returns the mean training loss."""
    model.train()
    if isinstance(task, nn.Module):
        task.train()
    total, count = 0.0, 0
    auxiliary = getattr(model, "auxiliary_loss", None)
    for step, (inputs, targets) in enumerate(loader):
        outputs = model(to_device(inputs, device))
        loss = task.loss(outputs, to_device(targets, device))
        if callable(auxiliary):
            loss = loss + auxiliary()
        if not torch.isfinite(loss):
            raise LeannetError(f"training loss became {loss.item()} at epoch {epoch} step {step}; "
                               "try a lower learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        count += 1
        bar.advance(loss=total / count)
    return total / max(1, count)


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable, task: Any, epochs: int, *,
        optimizer: str = "sgd", lr: float = 0.05, weight_decay: float = 5e-4,
        momentum: float = 0.9, warmup_epochs: float = 0.0, label_smoothing: float | None = None,
        seed: int | None = 0, device: str | torch.device | None = None,
        out_dir: str | Path | None = None, progress: bool = True, restore_best: bool = False
        ) -> list[dict[str, float]]:
    """Train `model` for `epochs`, evaluating after each; return the history (one dict per epoch).

    The schedule is per step: linear warm-up over `warmup_epochs`, then cosine decay to zero.
    With `out_dir`, writes `history.jsonl` and keeps the best model (by `task.main_metric`) in
    `out_dir/model`; `restore_best` loads the best weights back into `model` at the end.
    `label_smoothing`, when given, overrides the task's own (if it has that attribute).
    """
    steps = _check(epochs, train_loader)
    if seed is not None:
        seed_everything(seed)
    use_all_threads()
    device = pick_device(device)
    model.to(device)
    if label_smoothing is not None and hasattr(task, "label_smoothing"):
        task.label_smoothing = label_smoothing
    modules = [model] + ([task.to(device)] if isinstance(task, nn.Module) else [])
    opt = make_optimizer(modules, optimizer, lr, weight_decay, momentum)
    scheduler = warmup_cosine(opt, epochs * steps, int(round(warmup_epochs * steps)))
    out = Path(out_dir) if out_dir is not None else None
    history: list[dict[str, float]] = []
    best_value, best_state = -math.inf, None
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        with epoch_progress(epoch, epochs, steps, enabled=progress) as bar:
            loss = _train_epoch(model, train_loader, task, opt, scheduler, device, epoch, bar)
        metrics = evaluate(model, val_loader, task, device)
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
        if progress:
            print_epoch(record, task.main_metric, improved)
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history


def _write_outputs(out: Path, model: nn.Module, history: list[dict], record: dict,
                   improved: bool) -> None:
    """Rewrite history.jsonl atomically and save the model folder when it is the best so far."""

    text = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write_text(out / "history.jsonl", text)
    if improved:
        save(model, out / "model", metrics=record)
