"""The `leannet train` job as a library call: validate, build, fit, measure, write result.json.

Bad input (epochs, unknown model or source, an existing output folder) is refused before any
output is written.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from leannet import checks, distributed
from leannet.errors import LeannetError
from leannet.files import check_out_dir
from leannet.models import get_model_entry, load_weights
from leannet.train.kinds import get_kind
from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.data.multihead import multihead_view
from leannet.files import atomic_write_json
from leannet.measure import measure
from leannet.models import model_input_shape
from leannet.train.build import build_for_source, remember_data
from leannet.train.evaluation import split_facts, test_metrics
from leannet.checkpoint import METRICS_FILE
from leannet.train.fit import AMP_DTYPES, fit
from leannet.train.transfer import frozen_backbone, scale_backbone_lr


@dataclass
class TrainJob:
    """Everything `leannet train` was asked to do."""

    model: str = "mobilenet_v2"
    data: str = "digits"
    data_root: Path | None = None
    epochs: int = 10
    batch_size: int = 64
    optimizer: str | None = None  # None: the task's recipe (see RECIPES)
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float = 0.0
    width_mult: float | None = None
    image_size: int | None = None
    seed: int = 0
    val_fraction: float = 0.1  # of the training set, carved as validation (selects the best epoch)
    out: Path = Path("runs/train")
    force: bool = False
    task: str | None = None
    head: str = "v3"
    sharing: str | None = None
    penalty: str | None = None
    strength: float | None = None
    weighting: str | None = None
    workers: int = 0
    device: str | None = None
    amp: str | None = None  # bf16 or fp16 autocast (fp16 with a GradScaler)
    channels_last: bool = False
    compile: bool = False
    weights: str | None = None  # a file, DEFAULT, an enum name or zoo:ENUM (see models/weights.py)
    freeze_epochs: int = 0  # transfer learning: first epochs train only the new head
    backbone_lr_scale: float | None = None  # pretrained layers' lr factor [0.1 after freezing]
    tasks: str | None = None  # multi-head: which labelled tasks of the source, e.g. detect,segment


OPTIMIZER_DEFAULTS = {"sgd": {"lr": 0.05, "weight_decay": 5e-4},
                      "adamw": {"lr": 3e-3, "weight_decay": 0.05}}


def with_recipe(job: TrainJob, task: str) -> TrainJob:
    """Fill what the user left unset from the task kind's recipe, then the optimizer's defaults."""
    recipe = {"optimizer": "sgd", "warmup_epochs": 1.0, **get_kind(task).recipe}
    optimizer = job.optimizer or recipe["optimizer"]
    defaults = OPTIMIZER_DEFAULTS.get(optimizer, OPTIMIZER_DEFAULTS["sgd"])
    warmup = recipe["warmup_epochs"]
    return replace(
        job, optimizer=optimizer,
        lr=job.lr if job.lr is not None else defaults["lr"],
        weight_decay=job.weight_decay if job.weight_decay is not None else defaults["weight_decay"],
        warmup_epochs=(job.warmup_epochs if job.warmup_epochs is not None
                       else min(warmup, job.epochs / 5)))


def check_job(job: TrainJob) -> None:
    """Refuse impossible settings and an existing output folder before any work is done."""
    if job.epochs < 1:
        raise LeannetError(f"--epochs must be at least 1, got {job.epochs}")
    if job.batch_size < 1:
        raise LeannetError(f"--batch-size must be at least 1, got {job.batch_size}")
    if job.optimizer is not None and job.optimizer not in OPTIMIZER_DEFAULTS:
        raise LeannetError(f"unknown optimizer {job.optimizer!r}; expected sgd or adamw")
    if job.lr is not None:
        checks.number("--lr", job.lr, low=0, low_open=True, high=10)
    if job.weight_decay is not None:
        checks.number("--weight-decay", job.weight_decay, low=0, high=10)
    if job.warmup_epochs is not None:
        checks.number("--warmup-epochs", job.warmup_epochs, low=0, high=job.epochs)
    checks.number("--label-smoothing", job.label_smoothing, low=0, high=1, high_open=True)
    if job.width_mult is not None:
        checks.number("--width-mult", job.width_mult, low=0, low_open=True, high=8)
    if job.image_size is not None:
        checks.number("--image-size", job.image_size, low=8, high=2048, integer=True)
    checks.number("--workers", job.workers, low=0, high=64, integer=True)
    checks.number("--seed", job.seed, low=0, high=2**63 - 1, integer=True)
    checks.number("--val-fraction", job.val_fraction, low=0, high=1, low_open=True, high_open=True)
    checks.device(job.device)
    if job.amp is not None and job.amp not in AMP_DTYPES:
        raise LeannetError(f"--amp {job.amp!r}: expected bf16 or fp16")
    if job.freeze_epochs:
        checks.number("--freeze-epochs", job.freeze_epochs, low=0, high=job.epochs - 1,
                      integer=True)
        if job.weights is None:
            raise LeannetError("--freeze-epochs freezes pretrained layers: pass --weights too")
    if job.backbone_lr_scale is not None:
        checks.number("--backbone-lr-scale", job.backbone_lr_scale, low=0, low_open=True, high=1)
        if job.weights is None:
            raise LeannetError("--backbone-lr-scale scales pretrained layers: pass --weights too")
    check_out_dir(job.out, job.force)


def _model_image_size(job: TrainJob) -> int | None:
    """For a folder of photos with no --image-size, the model's own input size (never the first
    image's, which may be 4000 px); sources of a fixed size (MNIST, CIFAR) ignore it."""
    if not job.data.startswith("imagefolder:"):
        return None
    try:
        return get_model_entry(job.model).default_image_size  # a zoo model's too
    except LeannetError:
        return None


def run_train(job: TrainJob, progress: bool = True) -> dict[str, Any]:
    """Train as `job` says; returns (and writes to OUT/result.json) what was done, with numbers."""

    check_job(job)
    distributed.init_from_env(job.device)  # under torchrun: join the group (else nothing)
    distributed.barrier()  # every rank checked the output folder before rank 0 writes it
    image_size = job.image_size or _model_image_size(job)
    options: dict[str, Any] = {"image_size": image_size} if image_size else {}
    options["val_fraction"] = job.val_fraction
    source = get_source(job.data, job.data_root, **options)
    if job.tasks:  # several labels per image, one per task (boxes, masks, labels)
        source = multihead_view(source, job.tasks)
    job = with_recipe(job, job.task or source.task)
    assert job.optimizer is not None and job.lr is not None  # filled by the recipe
    assert job.weight_decay is not None and job.warmup_epochs is not None
    torch.manual_seed(job.seed)
    model, task = build_for_source(
        source, job.model, width_mult=job.width_mult, task=job.task, head=job.head,
        sharing=job.sharing, penalty=job.penalty, strength=job.strength,
        weighting=job.weighting, label_smoothing=job.label_smoothing)
    remember_data(model, job.data, job.data_root)
    transfer = load_weights(model, job.weights) if job.weights else None
    train_loader, val_loader = make_loaders(source, job.batch_size, seed=job.seed,
                                            workers=job.workers)
    # the old output stays until this one is done; under torchrun only rank 0's is kept
    with distributed.output_folder(job.out, job.force) as out:
        start = time.perf_counter()
        if transfer is not None:  # the new head first (on a frozen backbone), then all, slower
            transfer = {**transfer} | _train_head(job, model, task, train_loader, val_loader,
                                                  transfer["fresh"], progress)
        history = fit(model, train_loader, val_loader, task, job.epochs - job.freeze_epochs,
                      optimizer=job.optimizer,
                      lr=job.lr, weight_decay=job.weight_decay, warmup_epochs=job.warmup_epochs,
                      seed=job.seed, device=job.device, out_dir=out, progress=progress,
                      restore_best=True, amp=job.amp, channels_last=job.channels_last,
                      compile=job.compile)
        seconds = time.perf_counter() - start
        best = max(history, key=lambda r: r.get(task.main_metric, float("-inf")))
        # the best epoch was chosen on validation; the number to report is the test split's
        held_out = test_metrics(model, source, task, device=job.device)
        reported = held_out if held_out is not None else best
        if distributed.is_main():
            atomic_write_json(out / "model" / METRICS_FILE,
                              {**best, "split": "val", "test": held_out})
        numbers = measure(model.cpu().eval(), model_input_shape(model, 1),
                          path=out / "model" if distributed.is_main() else None)
        result = {"command": "train", "model": job.model, "data": job.data,
                  "main_metric": task.main_metric, task.main_metric: reported.get(task.main_metric),
                  "main_metric_split": "test" if held_out is not None else "val",
                  "test_metrics": held_out, "splits": split_facts(source),
                  "metrics": best, "best_epoch": best["epoch"], "epochs": job.epochs, **numbers,
                  "seconds": round(seconds, 2), "processes": distributed.world_size(),
                  "model_dir": str(Path(job.out) / "model"), "transfer": transfer,
                  "config": {k: str(v) if isinstance(v, Path) else v
                             for k, v in asdict(job).items()}}
        atomic_write_json(out / "result.json", result)
    return result


def _train_head(job: TrainJob, model: torch.nn.Module, task: Any, train_loader: Any,
                val_loader: Any, fresh: list[str], progress: bool) -> dict[str, Any]:
    """`--freeze-epochs` on a frozen backbone (BatchNorm in eval mode), then set the backbone's
    learning-rate scale for the rest; returns what to record under result["transfer"]."""
    record: dict[str, Any] = {"freeze_epochs": job.freeze_epochs}
    if job.freeze_epochs:
        assert job.optimizer is not None and job.lr is not None and job.weight_decay is not None
        with frozen_backbone(model, fresh) as frozen:
            record["frozen_parameters"] = frozen
            record["frozen_history"] = fit(
                model, train_loader, val_loader, task, job.freeze_epochs,
                optimizer=job.optimizer, lr=job.lr, weight_decay=job.weight_decay,
                warmup_epochs=min(job.warmup_epochs or 0.0, job.freeze_epochs / 2),
                seed=job.seed, device=job.device, progress=progress)
    scale = job.backbone_lr_scale or (0.1 if job.freeze_epochs else 1.0)
    scale_backbone_lr(model, fresh, scale)
    record["backbone_lr_scale"] = scale
    return record
