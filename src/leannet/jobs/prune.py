"""The `leannet prune` job: a model folder and a data source in, a guarded iterative run out.

This is the glue the pruning core deliberately lacks: it builds the fine-tune, evaluate and
calibrate callables from leannet's own data and training code, runs `iterative_prune`, then saves
the pruned model folder, `result.json` and the report.
"""
from __future__ import annotations

import copy
import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from leannet import checkpoint, files
from leannet import checks, distributed
from leannet.errors import LeannetError
from leannet.models import model_config
from leannet.files import check_out_dir, output_folder
from leannet.train.build import check_fits, source_for_model
from leannet.train.kinds import planner_for
from leannet.measure import file_size
from leannet.iterative import (DATA_DRIVEN, STATE_FILE, CostMeter, IterativeResult, RunSettings,
                               iterative_prune)
from leannet.data.loaders import calibration_loader, make_loaders
from leannet.deploy.alignment import auto_round_to
from leannet.deploy.latency import layer_latency_model
from leannet.deploy.runtimes import PRECISIONS, get_runtime
from leannet.train.distill import DistillConfig, distilling, frozen_teacher
from leannet.train.evaluation import split_facts, test_metrics
from leannet.train.fit import AMP_DTYPES, evaluate, fit
from leannet.prune import LatencyModel, Pruner, Target
from leannet.prune.plan import MAX_LATENCY_TRADEOFF
from leannet.prune.depth import plan_depth, remove_blocks
from leannet.prune.sensitivity import ratios_from_sensitivity, sensitivity_analysis
from leannet.report import plot_sensitivity
from leannet.report import write_report

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
    calibration_batches: int | None = None  # None: all of the calibration split
    calib_split: str = "val"  # data-driven criteria read validation (the guide's), or train
    val_fraction: float = 0.1  # of the training set, carved as validation (guard, selection)
    round_to: int | None = None  # None: the deployment runtime's channel multiple (auto)
    runtime: str = "onnxruntime"  # where the pruned model will run: sets the auto round_to
    precision: str = "int8"
    rounding: dict[str, Any] = field(default_factory=dict)  # the round_to used, and why
    min_fraction: float = 0.0
    latency_tradeoff: float = 1.0  # --target-latency ranks by importance / (ms saved) ** this
    task_weights: dict[str, float] | None = None
    resume: bool = False
    force: bool = False
    seed: int = 0
    sensitivity_dir: Path | None = None  # a `leannet sensitivity` run whose layer ratios to use
    device: str | None = None  # fine-tuning, calibration and evaluation (None: CUDA if present)
    amp: str | None = None  # fine-tuning in bf16 or fp16 autocast
    channels_last: bool = False
    compile: bool = False
    workers: int = 0  # DataLoader worker processes
    distill: DistillConfig | None = None  # fine-tune distilled from the unpruned model
    remove_blocks: int | None = None  # depth pruning: remove this many residual blocks instead


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
                   seed: int = 0, val_fraction: float = 0.1) -> Workbench:
    """Load the model folder and the data source (by default the one it was trained on), and
    check that they fit each other (the same checks as `leannet eval`)."""
    model = checkpoint.load(model_dir)
    where = f"the model in {model_dir}"
    source, task = source_for_model(model, data, data_root, val_fraction, where)
    train_loader, val_loader = make_loaders(source, batch_size, seed=seed)
    inputs, _ = next(iter(val_loader))
    check_fits(model, inputs[:2], source, where)
    name = data or (model_config(model).get("data") or {}).get("name") or source.name
    return Workbench(model, source, task, train_loader, val_loader, inputs[:2].clone(), name)


def guard_metrics(task: Any, metrics: dict[str, float]) -> dict[str, float]:
    """The numbers the guard watches: one per task of a multi-task model, else the main metric."""
    subtasks = getattr(task, "subtasks", None)
    if subtasks:
        return {name: metrics[f"{name}/{sub.main_metric}"] for name, sub in subtasks.items()}
    return {task.main_metric: metrics[task.main_metric]}


def make_callables(bench: Workbench, job: PruneJob) -> tuple[Callable, Callable, Callable | None]:
    """Fine-tune, evaluate and (for data-driven criteria) calibrate, from leannet's training code."""

    device = distributed.local_device(job.device)  # under torchrun: this rank's GPU

    teacher = frozen_teacher(bench.model) if job.distill is not None else None  # unpruned

    def finetune(model: nn.Module) -> None:
        if job.finetune_epochs == 0:  # --finetune-epochs 0: judge the pruned model as it is
            return
        seed = int(torch.randint(0, 2**31 - 1, (1,)))  # drawn from the attempt's reseeded RNG
        train_loader, _ = make_loaders(bench.source, job.batch_size, seed=seed,
                                       workers=job.workers)
        with _finetune_task(model, teacher, bench, job) as task:
            fit(model, train_loader, bench.val_loader, task, job.finetune_epochs, lr=job.lr,
                optimizer=job.optimizer, seed=None, progress=False, restore_best=True,
                device=device, amp=job.amp, channels_last=job.channels_last,
                compile=job.compile)

    def score(model: nn.Module) -> dict[str, float]:
        return guard_metrics(bench.task, evaluate(model, bench.val_loader, bench.task, device))

    def calibrate(pruner: Any) -> None:
        # per-task losses (a dict) let the Pruner weight each task by --task-weights; the batch
        # order comes from the attempt's reseeded RNG, so a resumed run calibrates identically
        # (un-augmented, sharded under torchrun: the sums over ranks are one process's sums)
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        batches = calibration_count(bench.source, job)
        loader = calibration_loader(bench.source, job.batch_size, seed, batches, job.workers,
                                    split=job.calib_split)
        loss_fn = getattr(bench.task, "task_losses", bench.task.loss)
        pruner.calibrate(loader, loss_fn=loss_fn, max_batches=batches)

    needs_data = job.criterion in DATA_DRIVEN or job.task_weights
    return finetune, score, (calibrate if needs_data else None)


def calibration_count(source: Any, job: PruneJob) -> int:
    """Batches of calibration: `--calib-batches`, else every batch of the calibration split."""
    if job.calibration_batches is not None:
        return job.calibration_batches
    return max(1, math.ceil(len(source.split(job.calib_split)) / job.batch_size))


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


def check_prune_job(job: PruneJob) -> None:
    """Refuse bad settings, and an output folder that would swallow the input, before any work."""
    drops = job.max_drop.values() if isinstance(job.max_drop, dict) else [job.max_drop]
    for value in drops:
        checks.number("--max-drop", value, low=0)
    checks.number("--steps", job.steps, low=1, high=100, integer=True)
    checks.number("--finetune-epochs", job.finetune_epochs, low=0, integer=True)
    checks.number("--lr", job.lr, low=0, low_open=True, high=10)
    checks.number("--batch-size", job.batch_size, low=1, integer=True)
    if job.calibration_batches is not None:
        checks.number("--calib-batches", job.calibration_batches, low=1, integer=True)
    if job.calib_split not in ("val", "train"):
        raise LeannetError(f"--calib-split must be val or train, got {job.calib_split!r}")
    checks.number("--val-fraction", job.val_fraction, low=0, high=1, low_open=True,
                  high_open=True)
    if job.round_to is not None:
        checks.number("--round-to", job.round_to, low=1, high=1024, integer=True)
    get_runtime(job.runtime)  # a known runtime name, or one line naming them
    if job.precision not in PRECISIONS:
        raise LeannetError(f"--precision {job.precision!r}: expected one of "
                           f"{', '.join(PRECISIONS)}")
    checks.number("--min-fraction", job.min_fraction, low=0, high=1, high_open=True)
    checks.number("--latency-tradeoff", job.latency_tradeoff, low=0, high=MAX_LATENCY_TRADEOFF)
    if job.latency_tradeoff != 1.0 and ("latency" not in job.target or job.runtime == "torch"):
        raise LeannetError("--latency-tradeoff only shapes a --target-latency planned on a "
                           "runtime's table (--runtime onnxruntime or executorch); add "
                           "--target-latency, or drop --latency-tradeoff")
    checks.number("--seed", job.seed, low=0, integer=True)
    checks.number("--workers", job.workers, low=0, high=64, integer=True)
    checks.device(job.device)
    if job.amp is not None and job.amp not in AMP_DTYPES:
        raise LeannetError(f"--amp {job.amp!r}: expected bf16 or fp16")
    for name, weight in (job.task_weights or {}).items():
        checks.number(f"--task-weights {name}", weight, low=0)
    if job.optimizer not in ("sgd", "adamw"):
        raise LeannetError(f"unknown optimizer {job.optimizer!r}; expected sgd or adamw")
    out, source = Path(job.out).resolve(), Path(job.model_dir).resolve()
    if source == out or out in source.parents:
        raise LeannetError(f"--out {job.out} holds the model being pruned ({job.model_dir}); "
                           "choose another output folder (--force cannot replace the input)")
    if job.remove_blocks is not None:
        checks.number("--remove-blocks", job.remove_blocks, low=1, integer=True)
        if job.target:
            raise LeannetError("--remove-blocks removes whole blocks on its own; drop the "
                               f"--target-{next(iter(job.target))} option, and prune channels "
                               "of its output model with a second `leannet prune`")
        if job.resume or job.sensitivity_dir is not None:
            raise LeannetError("--remove-blocks is one step: --resume and --sensitivity do not "
                               "apply to it")
    if not job.resume:
        check_out_dir(job.out, job.force)


def run_prune_job(job: PruneJob, on_attempt: Callable[[dict], Any] | None = None
                  ) -> dict[str, Any]:
    """Run the whole job and return what `result.json` holds.

    Everything is checked before any work; the run folder appears only when the run completes
    (or, killed, as a resumable folder), and a run that fails leaves nothing behind.
    """

    check_prune_job(job)
    if job.remove_blocks is not None:
        return run_depth_job(job, on_attempt)
    distributed.init_from_env(job.device)  # under torchrun: join the group (else nothing)
    distributed.barrier()  # every rank checked --out before rank 0 writes it
    if distributed.active() and "latency" in job.target:
        raise LeannetError("--target-latency under torchrun: each process would time its own "
                           "copy and plan differently; prune by --target-macs, or in one process")
    kinds: dict[str, Any] = dict(job.target)  # {kind: fraction}; Target checks it
    target = Target(round_to=job.round_to or 1, min_fraction=job.min_fraction,
                    latency_tradeoff=job.latency_tradeoff, **kinds)
    target.reduction()  # the one place a target is checked, before any work
    options = {"task_weights": job.task_weights} if job.task_weights else {}
    settings = RunSettings(criterion=job.criterion, schedule=job.schedule, steps=job.steps,
                           max_drop=job.max_drop, seed=job.seed, pruner_options=options)
    bench = open_workbench(job.model_dir, job.data, job.data_root, job.batch_size, job.seed,
                           job.val_fraction)
    _check_task_names(bench.task, job)
    bench.model.to(distributed.local_device(job.device))  # inputs and copies follow it
    if job.round_to is None:  # kernels like aligned widths: round to the runtime's multiple
        target.round_to, why = auto_round_to(bench.model, bench.example_inputs, target,
                                             job.runtime, job.precision)
        job.rounding = {"value": target.round_to, "from": why}
    else:
        job.rounding = {"value": job.round_to, "from": "--round-to"}
    finetune, score, calibrate = make_callables(bench, job)
    marker = STATE_FILE if job.resume else None
    with distributed.output_folder(job.out, job.force, resume_marker=marker) as work:
        settings.layer_keep = _layer_keep(job, work)
        settings.run_label = _run_label(job, bench.data)
        if "latency" in job.target and job.runtime != "torch":
            settings.pruner_options["latency_model"] = _latency_model(job, bench, work)
        outcome = iterative_prune(
            bench.model, finetune, score, target, bench.example_inputs, settings=settings,
            calibrate=calibrate, checkpoint_dir=work, resume=job.resume, on_attempt=on_attempt,
            planner=planner_for(bench.model))
        result = finish_run(job, work, bench.model, outcome, bench.data, bench)
    return result


LATENCY_TABLE = "latency_table.json"


def _latency_model(job: PruneJob, bench: Workbench, work: Path) -> LatencyModel:
    """The per-layer latency table of the unpruned model in --runtime at --precision (one
    thread, batch 1), measured once and kept in the run folder, so a resumed run plans on the
    same table: a --target-latency is then a fraction of the latency there, not in torch."""
    path = work / LATENCY_TABLE
    if job.resume and path.is_file():
        try:
            return LatencyModel.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise LeannetError(f"{path} is not a readable latency table ({err}); resume "
                               "needs the table the run was planned on") from None
    table = layer_latency_model(bench.model, bench.example_inputs, job.runtime, job.precision,
                                threads=1)
    files.atomic_write_json(path, table.to_dict())
    return table


def run_depth_job(job: PruneJob, on_attempt: Callable[[dict], Any] | None = None
                  ) -> dict[str, Any]:
    """`leannet prune --remove-blocks N`: remove the N residual blocks whose branch adds least
    on the calibration split (`plan_depth`), fine-tune, and keep the result only if the guard
    (--max-drop against the unpruned model, validation split) holds; else the model is kept
    whole and `target_reached` is false. One step, so one record in result.json's `steps`.

    The saved model folder records the depth plan, so `eval`, `quantize`, `bench` and
    `predict` reopen it, and a later `leannet prune` can narrow what is left.
    """
    assert job.remove_blocks is not None
    if distributed.active():
        raise LeannetError("--remove-blocks under torchrun is not supported; run it in one "
                           "process")
    bench = open_workbench(job.model_dir, job.data, job.data_root, job.batch_size, job.seed,
                           job.val_fraction)
    _check_task_names(bench.task, job)
    device = distributed.local_device(job.device)
    bench.model.to(device)
    # a model without removable blocks, or fewer than asked, is refused before any work
    plan_depth(bench.model, [bench.example_inputs.to(device)], job.remove_blocks)
    finetune, score, _ = make_callables(bench, job)
    meter = CostMeter(bench.example_inputs, lambda m: Pruner(
        m, bench.example_inputs, criterion="l1").graph.prunable_channels())
    job.rounding = {"value": None, "from": "--remove-blocks (whole blocks; no channel rounding)"}
    with output_folder(job.out, job.force) as work:
        started = time.perf_counter()
        metrics = score(bench.model)
        baseline = meter.snapshot(bench.model) | {"metric": _mean(metrics), "metrics": metrics}
        loader = calibration_loader(bench.source, job.batch_size, job.seed,
                                    calibration_count(bench.source, job), job.workers,
                                    split=job.calib_split)
        names = plan_depth(bench.model, (x.to(device) for x, _ in loader), job.remove_blocks)
        candidate = remove_blocks(copy.deepcopy(bench.model), names)
        torch.manual_seed(job.seed)
        before = score(candidate)
        finetune(candidate)
        after = score(candidate)
        limits = (job.max_drop if isinstance(job.max_drop, dict)
                  else {k: job.max_drop for k in metrics})
        broken = sorted(k for k, limit in limits.items()
                        if not math.isfinite(after[k]) or metrics[k] - after[k] > limit + 1e-9)
        snapshot = meter.snapshot(candidate)
        fraction = round(snapshot["macs"] / baseline["macs"], 6)
        record = snapshot | {
            "step": 1, "cost": "macs", "target_fraction": fraction,
            "target_macs_fraction": fraction, "achieved_fraction": fraction,
            "removed_blocks": names, "metric_before_finetune": _mean(before),
            "metric": _mean(after), "metrics": after, "metrics_before_finetune": before,
            "status": "rolled_back" if broken else "accepted", "guard_broken_by": broken,
            "seconds": round(time.perf_counter() - started, 3)}
        if on_attempt is not None:
            on_attempt(record)
        final_model, final = ((bench.model, baseline) if broken else
                              (candidate, snapshot | {"metric": record["metric"],
                                                      "metrics": after}))
        outcome = IterativeResult(baseline, final, [record], not broken, "macs", fraction,
                                  final_model)
        result = finish_run(job, work, bench.model, outcome, bench.data, bench)
    return result


def _mean(metrics: dict[str, float]) -> float:
    """One number for tables: the single metric, or the mean over tasks (as the loop's)."""
    return float(np.mean(list(metrics.values())))


def _run_label(job: PruneJob, data: str) -> str:
    """Every setting outside `iterative_prune` that changes the result, for --resume's check."""
    fields: dict[str, Any] = {"model": str(job.model_dir.resolve()), "data": data,
              "data_root": str(job.data_root.resolve()) if job.data_root else None,
              "finetune_epochs": job.finetune_epochs, "optimizer": job.optimizer, "lr": job.lr,
              "batch_size": job.batch_size, "calibration_batches": job.calibration_batches,
              "calib_split": job.calib_split, "val_fraction": job.val_fraction,
              "sensitivity": str(job.sensitivity_dir) if job.sensitivity_dir else None}
    if job.distill is not None:
        fields["distill"] = asdict(job.distill)
    if job.amp or job.channels_last:  # only when set: older run folders still resume
        fields |= {"amp": job.amp, "channels_last": job.channels_last}
    return json.dumps(fields, sort_keys=True)


def _layer_keep(job: PruneJob, work: Path) -> dict[str, dict[str, float]]:
    """Per-group final keep fractions from a sensitivity run, copied into the run folder."""
    if job.sensitivity_dir is None:
        return {}
    path = Path(job.sensitivity_dir) / SENSITIVITY_FILE
    if not path.is_file():
        raise LeannetError(f"--sensitivity: {job.sensitivity_dir} has no {SENSITIVITY_FILE} "
                           "(run `leannet sensitivity` first)")
    sensitivity = _read_sensitivity(path)
    files.atomic_write_json(work / SENSITIVITY_FILE, sensitivity)  # the report plots it
    return {name: {"size": sensitivity["sizes"][name], "keep": keep}
            for name, keep in sensitivity["layer_keep"].items()}


def _read_sensitivity(path: Path) -> dict[str, Any]:
    """sensitivity.json, checked: per-layer keep fractions in [0, 1] and sizes for each layer."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LeannetError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("layer_keep"), dict) \
            or not isinstance(data.get("sizes"), dict):
        raise LeannetError(f"{path} lacks the 'layer_keep' and 'sizes' objects of a sensitivity "
                           "run")
    for name, keep in data["layer_keep"].items():
        checks.number(f"{path}: layer_keep[{name!r}]", keep, low=0, high=1)
        checks.number(f"{path}: sizes[{name!r}]", data["sizes"].get(name), low=1, integer=True)
    return data


def run_sensitivity(model_dir: Path, data: str | None, out: Path, data_root: Path | None = None,
                    ratios: tuple[float, ...] = (0.25, 0.5, 0.75), criterion: str = "l1",
                    max_drop: float = 0.01, batch_size: int = 64, force: bool = False,
                    on_group: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Sensitivity of every prunable group, with per-layer keep fractions for `max_drop`."""

    for ratio in ratios:
        checks.number("--ratios", ratio, low=0, high=1, low_open=True, high_open=True)
    checks.number("--max-drop", max_drop, low=0)
    checks.number("--batch-size", batch_size, low=1, integer=True)
    check_out_dir(out, force)
    bench = open_workbench(model_dir, data, data_root, batch_size)
    job = PruneJob(model_dir, data, out, data_root, criterion, batch_size=batch_size)
    _, score, calibrate = make_callables(bench, job)
    with output_folder(out, force) as work:
        result = sensitivity_analysis(
            bench.model, lambda m: float(np.mean(list(score(m).values()))), bench.example_inputs,
            ratios, criterion, calibrate, metric_name=bench.task.main_metric, on_group=on_group)
        result |= {"max_drop": max_drop, "layer_keep": ratios_from_sensitivity(result, max_drop),
                   "model": str(model_dir), "data": bench.data}
        files.atomic_write_json(work / SENSITIVITY_FILE, result)
        plot_sensitivity(result, work / "sensitivity.png")
        result["plot"] = str(Path(out) / "sensitivity.png")
        files.atomic_write_json(work / "result.json", result)
    return result


def finish_run(job: PruneJob, work: Path, original: nn.Module, outcome: IterativeResult,
               data: str, bench: Workbench | None = None) -> dict[str, Any]:
    """Save the pruned model, write result.json and the report into `work` (the run folder, or
    its staging folder until the run completes); return the result, with the final paths.

    The guard and the best fine-tuning epoch used validation; with `bench`, the baseline and the
    pruned model are also scored once on the test split, which chose nothing.
    """

    assert outcome.model is not None  # iterative_prune always returns its final model
    checkpoint.save(outcome.model, work / "model", metrics=outcome.final["metrics"])
    model_dir = job.out / "model"
    result = outcome.to_dict()
    if bench is not None:
        device = distributed.local_device(job.device)
        for key, model in (("baseline", original), ("final", outcome.model)):
            result[key]["test_metrics"] = test_metrics(model, bench.source, bench.task,
                                                       device=device)
        result["splits"] = split_facts(bench.source) | {
            "guard": "val", "calibration": job.calib_split if job.criterion in DATA_DRIVEN
            or job.task_weights else None,
            "calibration_batches": calibration_count(bench.source, job)}
    result["baseline"]["size_bytes"] = file_size(job.model_dir)
    result["final"]["size_bytes"] = file_size(work / "model")
    result |= {"model": str(model_dir), "source_model": str(job.model_dir),
               "data": data,
               "metric_name": "/".join(outcome.baseline["metrics"]),
               "criterion": job.criterion, "max_drop": job.max_drop, "seed": job.seed,
               "round_to": job.rounding,
               "distill": asdict(job.distill) if job.distill is not None else None,
               "channels_before": _conv_channels(original),
               "channels_after": _conv_channels(outcome.model)}
    if "latency" in job.target:  # how the latency target traded importance for time
        result["latency_tradeoff"] = job.latency_tradeoff
    if job.remove_blocks is not None:  # depth pruning: the blocks the kept model lost
        result["removed_blocks"] = [name for step in outcome.steps if step["status"] == "accepted"
                                    for name in step.get("removed_blocks", [])]
    files.atomic_write_json(work / "result.json", result)
    result["report"] = str(job.out / write_report(work).relative_to(work))
    files.atomic_write_json(work / "result.json", result)
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


def _finetune_task(model: nn.Module, teacher: nn.Module | None, bench: Workbench, job: PruneJob
                   ) -> Any:
    """The task fine-tuning trains: the model's own, or distilled from the unpruned teacher."""
    if teacher is None or job.distill is None:
        return nullcontext(bench.task)
    return distilling(model, teacher, bench.task, bench.example_inputs, job.distill)
