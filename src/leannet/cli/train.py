"""`leannet train`: train a registry model on a data source; keeps the best checkpoint, writes
history.jsonl and result.json in the output folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from leannet.distributed import is_main
from leannet.measure import latency_from_dict

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `train` command."""

    @app.command("train")
    def train(
        model: str = typer.Option("mobilenet_v2", "--model", "-m", help="Registered model name, "
                                  "or a zoo's: torchvision:NAME, timm:NAME."),
        weights: Optional[str] = typer.Option(
            None, "--weights", help="Pretrained weights: a .safetensors/.pth file, DEFAULT or an "
            "enum (IMAGENET1K_V1) of the model's zoo, or torchvision:ENUM for mobilenet_v2; "
            "layers of another shape (the head) start fresh."),
        freeze_epochs: int = typer.Option(
            0, "--freeze-epochs", help="With --weights: train only the new head for the first N "
            "of --epochs (pretrained BatchNorm kept in eval mode)."),
        backbone_lr_scale: Optional[float] = typer.Option(
            None, "--backbone-lr-scale", help="With --weights: the pretrained layers' learning "
            "rate factor [default: 0.1 after --freeze-epochs, else 1]."),
        data: str = typer.Option("digits", "--data", "-d", help="Data source (see `leannet data`)."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of the data."),
        epochs: int = typer.Option(10, "--epochs", "-e", help="Training epochs (>= 1)."),
        batch_size: int = typer.Option(64, "--batch-size", "-b", help="Batch size."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate "
                                           "[default: 0.05 for sgd, 0.003 for adamw]."),
        optimizer: Optional[str] = typer.Option(
            None, "--optimizer", help="sgd (Nesterov) or adamw [default: sgd; adamw to detect]."),
        weight_decay: Optional[float] = typer.Option(
            None, "--weight-decay", help="Weight decay [default: 5e-4 for sgd, 0.05 for adamw]."),
        warmup_epochs: Optional[float] = typer.Option(
            None, "--warmup-epochs", help="Linear warm-up [default: min(1, epochs/5); "
            "min(3, epochs/5) to detect]."),
        label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="0 to <1."),
        width_mult: Optional[float] = typer.Option(None, "--width-mult", help="Width multiplier."),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Resize images to N px."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same history)."),
        val_fraction: float = typer.Option(
            0.1, "--val-fraction", help="Fraction of the training set carved as validation "
            "(picks the best epoch; the test split only reports)."),
        out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing output folder."),
        task: Optional[str] = typer.Option(None, "--task", help="classify or detect "
                                           "[default: the source's task]."),
        head: str = typer.Option("v3", "--head", help="YOLO head for detection: v1, v2 or v3."),
        sharing: Optional[str] = typer.Option(
            None, "--sharing", help="Multi-task: hard or soft; with --tasks: hard, mtan or "
            "cross_stitch."),
        penalty: Optional[str] = typer.Option(None, "--penalty", help="Soft sharing: l2 or trace."),
        strength: Optional[float] = typer.Option(None, "--strength", help="Soft-sharing strength."),
        weighting: Optional[str] = typer.Option(
            None, "--weighting", help="Multi-task loss weights: fixed, uncertainty, dwa, "
            "gradnorm, or gradient balancing: pcgrad, cagrad, imtl, aligned, nash."),
        tasks: Optional[str] = typer.Option(
            None, "--tasks", help="Multi-head: the source's tasks to learn on one backbone, "
            "e.g. detect,segment,classify (digits-detect)."),
        workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda [default: auto]."),
        amp: Optional[str] = typer.Option(None, "--amp", help="Mixed precision: bf16 or fp16."),
        channels_last: bool = typer.Option(False, "--channels-last",
                                           help="Channels-last (NHWC) memory format."),
        compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    ) -> None:
        """Train MODEL on DATA; the best checkpoint goes to OUT/model."""
        from leannet.jobs.train import TrainJob, run_train

        job = TrainJob(model=model, data=data, data_root=data_root, epochs=epochs,
                       batch_size=batch_size, optimizer=optimizer, lr=lr,
                       weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                       label_smoothing=label_smoothing, width_mult=width_mult,
                       image_size=image_size, seed=seed, out=out, force=force, task=task,
                       head=head, sharing=sharing, penalty=penalty, strength=strength,
                       weighting=weighting, workers=workers, device=device,
                       amp=amp, channels_last=channels_last, compile=compile, tasks=tasks,
                       val_fraction=val_fraction)
        job.weights, job.freeze_epochs = weights, freeze_epochs
        job.backbone_lr_scale = backbone_lr_scale
        result = run_train(job)
        if is_main():  # under torchrun, one table
            console.print(result_table(result))
            console.print(f"model: {result['model_dir']}   result: {out / 'result.json'}")


def result_table(result: dict) -> Table:
    """Best epoch's metrics and the model's size and speed."""
    table = Table(title=f"{result['model']} on {result['data']} (best of {result['epochs']} epochs)")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        if key not in ("epoch", "lr", "seconds"):
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            table.add_row(f"{key} (val)" if key != "loss" else "train loss", shown)
    for key, value in (result.get("test_metrics") or {}).items():
        table.add_row(f"{key} (test)", f"{value:.4f}")
    table.add_row("best epoch", str(result["best_epoch"]))
    table.add_row("parameters", f"{result['params']:,}")
    table.add_row("MACs", f"{result['macs'] / 1e6:,.2f}M")
    if result.get("latency"):
        latency = latency_from_dict(result["latency"])
        table.add_row(f"latency ({latency.conditions()})", latency.short())
    else:
        table.add_row("latency (torch fp32, batch 1)", f"{result['latency_ms']:.2f} ms")
    table.add_row("training time", f"{result['seconds']:.1f} s")
    return table
