"""The `leannet prune` job: a model folder and a data source in, a guarded iterative run out.

This is the glue the pruning core deliberately lacks: it builds the fine-tune, evaluate and
calibrate callables from leannet's own data and training code, runs `iterative_prune`, then saves
the pruned model folder, `result.json` and the report.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from leannet import io
from leannet.errors import LeannetError
from leannet.measure import file_size
from leannet.prune.iterative import (DATA_DRIVEN, STATE_FILE, IterativeResult, iterative_prune,
                                     schedule_fractions, target_cost)

SENSITIVITY_FILE = "sensitivity.json"


@dataclass
class PruneJob:
    """Everything `leannet prune` was asked to do."""

    model_dir: Path
    data: str | None  # None: the source recorded in the model folder
    out: Path
    data_root: Path | None = None
    criterion: str = "l1"
    target: dict[str, float] = field(default_factory=lambda: {"macs": 0.5})
    max_drop: float | dict[str, float] = 0.01
    steps: int = 5
    schedule: str = "equal"
    finetune_epochs: int = 1
    lr: float = 0.01
    optimizer: str = "sgd"
    batch_size: int = 64
    calibration_batches: int = 8
    round_to: int = 1
    min_fraction: float = 0.0
    task_weights: dict[str, float] | None = None
    resume: bool = False
    force: bool = False
    seed: int = 0
    sensitivity_dir: Path | None = None  # a `leannet sensitivity` run whose layer ratios to use


@dataclass
class Workbench:
    """The model, its data and task, and the loaders built for one job."""

    model: nn.Module
    source: Any
    task: Any
    train_loader: Any
    val_loader: Any
    example_inputs: torch.Tensor
    data: str  # the data source's name


def open_workbench(model_dir: Path, data: str | None, data_root: Path | None, batch_size: int,
                   seed: int = 0) -> Workbench:
    """Load the model folder and the data source, and check that they fit each other."""
    from leannet.data import get_source
    from leannet.data.loaders import make_loaders
    from leannet.train.tasks import task_for

    model = io.load(model_dir)
    if data is None:  # the source the model was trained on, as `leannet train` recorded it
        recorded = model.leannet_config.get("data") or {}
        if not recorded.get("name"):
            raise LeannetError(f"the model in {model_dir} does not record its data source; "
                               "pass --data")
        data, data_root = recorded["name"], data_root or recorded.get("root")
    channels, height, _ = model.leannet_config["input_shape"]
    source = get_source(data, data_root, image_size=height)
    if source.in_channels != channels:
        raise LeannetError(f"data source {data!r} has {source.in_channels} channel(s) but the model "
                           f"in {model_dir} expects {channels}")
    task = task_for(model, source)
    train_loader, val_loader = make_loaders(source, batch_size, seed=seed)
    inputs, _ = next(iter(val_loader))
    _check_outputs(model, inputs[:2], source, data, model_dir)
    return Workbench(model, source, task, train_loader, val_loader, inputs[:2].clone(), data)


def _check_outputs(model: nn.Module, inputs: torch.Tensor, source: Any, data: str,
                   model_dir: Path) -> None:
    """Run one batch; a classifier's logits must have one column per class of the source."""
    try:
        with torch.no_grad():
            outputs = model.eval()(inputs)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise LeannetError(f"data source {data!r} does not fit the model in {model_dir}: {first}"
                           ) from None
    if isinstance(outputs, dict) and source.task not in ("multitask", "detect"):
        raise LeannetError(f"the model in {model_dir} is multi-task (tasks {', '.join(outputs)}) "
                           f"but data source {data!r} is not; pass a multi-task --data such as "
                           "multi-digits")
    if source.task == "classify" and outputs.shape[-1] != source.num_classes:
        raise LeannetError(f"data source {data!r} has {source.num_classes} classes but the model "
                           f"in {model_dir} predicts {outputs.shape[-1]}")


def guard_metrics(task: Any, metrics: dict[str, float]) -> dict[str, float]:
    """The numbers the guard watches: one per task of a multi-task model, else the main metric."""
    subtasks = getattr(task, "subtasks", None)
    if subtasks:
        return {name: metrics[f"{name}/{sub.main_metric}"] for name, sub in subtasks.items()}
    return {task.main_metric: metrics[task.main_metric]}


def make_callables(bench: Workbench, job: PruneJob) -> tuple[Callable, Callable, Callable | None]:
    """Fine-tune, evaluate and (for data-driven criteria) calibrate, from leannet's training code."""
    from leannet.data.loaders import make_loaders
    from leannet.train.fit import evaluate, fit

    def finetune(model: nn.Module) -> None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))  # drawn from the attempt's reseeded RNG
        train_loader, _ = make_loaders(bench.source, job.batch_size, seed=seed)
        fit(model, train_loader, bench.val_loader, bench.task, job.finetune_epochs, lr=job.lr,
            optimizer=job.optimizer, seed=None, progress=False, restore_best=True)

    def score(model: nn.Module) -> dict[str, float]:
        return guard_metrics(bench.task, evaluate(model, bench.val_loader, bench.task))

    def calibrate(pruner: Any) -> None:
        # per-task losses (a dict) let the Pruner weight each task by --task-weights
        loss_fn = getattr(bench.task, "task_losses", bench.task.loss)
        pruner.calibrate(bench.train_loader, loss_fn=loss_fn,
                         max_batches=job.calibration_batches)

    needs_data = job.criterion in DATA_DRIVEN or job.task_weights
    return finetune, score, (calibrate if needs_data else None)


def _check_task_names(task: Any, job: PruneJob) -> None:
    """Task names in --max-drop and --task-weights must be the model's own."""
    names = list(getattr(task, "subtasks", None) or [task.main_metric])
    for option, value in (("--max-drop", job.max_drop), ("--task-weights", job.task_weights)):
        unknown = sorted(set(value) - set(names)) if isinstance(value, dict) else []
        if unknown:
            raise LeannetError(f"{option} names {', '.join(unknown)}, which the model does not "
                               f"have; its tasks are {', '.join(names)}")


def _conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution, by module name."""
    return {name: m.out_channels for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d)}


def _prepare_out(job: PruneJob) -> None:
    """A fresh output folder, or on --resume one that holds this kind of run."""
    if job.resume:
        if not (job.out / STATE_FILE).is_file():
            raise LeannetError(f"--resume: {job.out} holds no interrupted run ({STATE_FILE} missing)")
        return
    io.prepare_out_dir(job.out, job.force)
    for stale in ("result.json", STATE_FILE):
        (job.out / stale).unlink(missing_ok=True)


def run_prune_job(job: PruneJob, on_attempt: Callable[[dict], Any] | None = None
                  ) -> dict[str, Any]:
    """Run the whole job and return what `result.json` holds."""
    from leannet.prune import Target

    if isinstance(job.max_drop, (int, float)) and job.max_drop < 0:
        raise LeannetError(f"--max-drop must be >= 0, got {job.max_drop}")
    target = Target(**job.target, round_to=job.round_to, min_fraction=job.min_fraction)
    target_cost(target)
    schedule_fractions(0.5, job.steps, job.schedule)
    bench = open_workbench(job.model_dir, job.data, job.data_root, job.batch_size, job.seed)
    _check_task_names(bench.task, job)
    _prepare_out(job)
    finetune, score, calibrate = make_callables(bench, job)
    options = {"task_weights": job.task_weights} if job.task_weights else {}
    layer_keep = _layer_keep(job)
    outcome = iterative_prune(
        bench.model, finetune, score, target, bench.example_inputs, criterion=job.criterion,
        schedule=job.schedule, steps=job.steps, max_drop=job.max_drop, calibrate=calibrate,
        checkpoint_dir=job.out, resume=job.resume, seed=job.seed, pruner_options=options,
        on_attempt=on_attempt, layer_keep=layer_keep,
        run_label=f"{job.model_dir.resolve()}|{bench.data}|{job.finetune_epochs}|{job.optimizer}|{job.lr}")
    return finish_run(job, bench.model, outcome, bench.data)


def _layer_keep(job: PruneJob) -> dict[str, dict[str, float]]:
    """Per-group final keep fractions from a sensitivity run, copied into the run folder."""
    if job.sensitivity_dir is None:
        return {}
    path = Path(job.sensitivity_dir) / SENSITIVITY_FILE
    if not path.is_file():
        raise LeannetError(f"--sensitivity: {job.sensitivity_dir} has no {SENSITIVITY_FILE} "
                           "(run `leannet sensitivity` first)")
    sensitivity = json.loads(path.read_text())
    io.atomic_write_json(job.out / SENSITIVITY_FILE, sensitivity)  # the report plots it
    return {name: {"size": sensitivity["sizes"][name], "keep": keep}
            for name, keep in sensitivity["layer_keep"].items()}


def run_sensitivity(model_dir: Path, data: str | None, out: Path, data_root: Path | None = None,
                    ratios: tuple[float, ...] = (0.25, 0.5, 0.75), criterion: str = "l1",
                    max_drop: float = 0.01, batch_size: int = 64, force: bool = False,
                    on_group: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Sensitivity of every prunable group, with per-layer keep fractions for `max_drop`."""
    from leannet.prune.sensitivity import ratios_from_sensitivity, sensitivity_analysis
    from leannet.report import plot_sensitivity

    bench = open_workbench(model_dir, data, data_root, batch_size)
    io.prepare_out_dir(out, force)
    job = PruneJob(model_dir, data, out, data_root, criterion, batch_size=batch_size)
    _, score, calibrate = make_callables(bench, job)
    result = sensitivity_analysis(
        bench.model, lambda m: float(np.mean(list(score(m).values()))), bench.example_inputs,
        ratios, criterion, calibrate, metric_name=bench.task.main_metric, on_group=on_group)
    result |= {"max_drop": max_drop, "layer_keep": ratios_from_sensitivity(result, max_drop),
               "model": str(model_dir), "data": bench.data}
    io.atomic_write_json(out / SENSITIVITY_FILE, result)
    result["plot"] = str(plot_sensitivity(result, out / "sensitivity.png"))
    io.atomic_write_json(out / "result.json", result)
    return result


def finish_run(job: PruneJob, original: nn.Module, outcome: IterativeResult, data: str
               ) -> dict[str, Any]:
    """Save the pruned model, write result.json and the report; return the result."""
    from leannet.report import write_report

    model_dir = io.save(outcome.model, job.out / "model", metrics=outcome.final["metrics"])
    result = outcome.to_dict()
    result["baseline"]["size_bytes"] = file_size(job.model_dir)
    result["final"]["size_bytes"] = file_size(model_dir)
    result |= {"model": str(model_dir), "source_model": str(job.model_dir),
               "data": data,
               "metric_name": "/".join(outcome.baseline["metrics"]),
               "criterion": job.criterion, "max_drop": job.max_drop,
               "channels_before": _conv_channels(original),
               "channels_after": _conv_channels(outcome.model)}
    io.atomic_write_json(job.out / "result.json", result)
    result["report"] = str(write_report(job.out))
    io.atomic_write_json(job.out / "result.json", result)
    return result


def parse_task_values(text: str | None, what: str) -> float | dict[str, float] | None:
    """`0.01` -> 0.01; `left=0.01,right=0.02` -> {"left": 0.01, "right": 0.02}."""
    if text is None or text == "":
        return None
    try:
        if "=" not in text:
            return float(text)
        pairs = (item.split("=", 1) for item in text.split(","))
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise LeannetError(f"{what} {text!r} is not a number or a list like "
                           "'left=0.01,right=0.01'") from None
