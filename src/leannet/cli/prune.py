"""`leannet prune` and `leannet sensitivity`: iterative guarded pruning of a model folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from leannet.distributed import is_main
from leannet.errors import LeannetError
from leannet.measure import latency_from_dict

console = Console()


def _target(macs: float | None, params: float | None, latency: float | None,
            channels: float | None) -> dict[str, float]:
    """The target options given, as {kind: fraction to keep}; `Target` checks them."""
    return {k: v for k, v in (("macs", macs), ("params", params), ("latency", latency),
                              ("channels", channels)) if v is not None}


def print_attempt(record: dict) -> None:
    """One line per attempt, as the run goes."""
    status = {"accepted": "[green]accepted[/]", "rolled_back": "[red]rolled back[/]"}.get(
        record["status"], f"[yellow]{record['status']}[/]")
    if "metric" not in record:
        console.print(f"step {record['step']}: {status} ({record.get('reason', '')})")
        return
    console.print(
        f"step {record['step']}: {record['cost']} {record['achieved_fraction']:.3f} of baseline "
        f"(asked {record['target_fraction']:.3f}), metric {record['metric_before_finetune']:.4f} "
        f"-> {record['metric']:.4f} after fine-tuning, {status}, {record['seconds']:.1f}s")


def print_summary(result: dict) -> None:
    """Baseline against final: metric, params, MACs, size and latency."""
    table = Table(title=f"pruned to {result['final']['macs'] / result['baseline']['macs']:.1%} "
                        f"of MACs; target reached: {result['target_reached']}")
    detail = result["baseline"].get("latency_detail")
    where = f" ({latency_from_dict(detail).conditions()})" if detail else ""
    for column in ("", "metric (val)", "params", "MACs", "size (KB)", f"latency{where}"):
        table.add_column(column, justify="right")
    test = all(result[label].get("test_metrics") for label in ("baseline", "final"))
    if test:
        table.add_column("test", justify="right")
    for label in ("baseline", "final"):
        row = result[label]
        extra = [f"{_main(row['test_metrics'], row['metrics']):.4f}"] if test else []
        table.add_row(label, f"{row['metric']:.4f}", f"{row['params']:,}", f"{row['macs']:,}",
                      f"{row['size_bytes'] / 1024:.1f}",
                      latency_from_dict(row["latency_detail"]).short()
                      if row.get("latency_detail") else f"{row['latency_ms']:.3f} ms", *extra)
    console.print(table)
    if test:
        console.print("metric: validation (the guard chose on it); test: the held-out split")


def _main(test: dict, guarded: dict) -> float:
    """The test value of the guarded metric (the first one for multi-task models)."""
    name = next(iter(guarded))
    return test.get(name, test.get(f"{name}/accuracy", float("nan")))


def prune(
    model: Path = typer.Argument(..., help="model folder to prune"),
    data: Optional[str] = typer.Option(None, help="data source for fine-tuning and evaluation "
                                                  "[default: the one the model was trained on]"),
    data_root: Optional[Path] = typer.Option(None, help="where the data source's files are"),
    criterion: str = typer.Option("l1", help="l1, l2, mean_activation, apoz, taylor, bn_scale, "
                                             "fpgm or random"),
    target_macs: Optional[float] = typer.Option(None, help="fraction of MACs to keep"),
    target_params: Optional[float] = typer.Option(None, help="fraction of parameters to keep"),
    target_latency: Optional[float] = typer.Option(
        None, help="fraction of the latency to keep in --runtime at --precision, planned on a "
                   "per-layer table measured there (--runtime torch: torch eager, by MACs)"),
    target_channels: Optional[float] = typer.Option(None, help="fraction of channels to keep"),
    remove_blocks: Optional[int] = typer.Option(
        None, help="depth pruning instead of a target: remove this many residual / inverted-"
                   "residual blocks (those whose branch adds least on --calib-split), then "
                   "fine-tune; guarded by --max-drop"),
    max_drop: str = typer.Option("0.01", help="allowed absolute metric drop from the baseline; "
                                              "per task as 'left=0.01,right=0.01'"),
    steps: int = typer.Option(5, help="number of pruning steps"),
    schedule: str = typer.Option("equal", help="oneshot, equal or geometric"),
    finetune_epochs: int = typer.Option(1, help="fine-tuning epochs after each step"),
    lr: float = typer.Option(0.01, help="fine-tuning learning rate"),
    distill: bool = typer.Option(False, help="fine-tune distilled from the unpruned model "
                                             "(logits: KL at --distill-temperature; other "
                                             "outputs: MSE per head)"),
    distill_alpha: float = typer.Option(0.5, help="weight of the distillation term (the task "
                                                  "loss gets 1 - alpha)"),
    distill_temperature: float = typer.Option(4.0, help="softening temperature of the logits"),
    distill_features: Optional[str] = typer.Option(
        None, help="layers whose features are matched too (1x1 adapters), e.g. layer2,layer3"),
    distill_feature_weight: float = typer.Option(1.0, help="weight of the feature term"),
    optimizer: str = typer.Option("sgd", help="fine-tuning optimizer: sgd or adamw"),
    batch_size: int = typer.Option(64),
    round_to: Optional[int] = typer.Option(
        None, help="round kept channel counts to a multiple of this [default: what --runtime's "
                   "kernels run best at, e.g. 16 for onnxruntime, where the target allows]"),
    runtime: str = typer.Option("onnxruntime", help="where the pruned model will run "
                                                    "(onnxruntime, executorch, torch): sets the "
                                                    "default --round-to"),
    precision: str = typer.Option("int8", help="the precision it will run at: fp32 or int8"),
    min_fraction: float = typer.Option(0.0, help="never keep less than this fraction per layer"),
    latency_tradeoff: float = typer.Option(
        1.0, help="with --target-latency and its table: rank channels by importance / (ms "
                  "saved) ** this; 1 importance per millisecond (HALP), 0 importance alone"),
    task_weights: Optional[str] = typer.Option(None, help="importance weight per task, "
                                                          "'left=1,right=2'"),
    seed: int = typer.Option(0),
    sensitivity: Optional[Path] = typer.Option(
        None, help="a `leannet sensitivity` run folder: its per-layer ratios fix each layer's share"),
    out: Path = typer.Option(Path("runs/pruned"), help="run folder"),
    resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
    force: bool = typer.Option(False, help="overwrite --out"),
    device: Optional[str] = typer.Option(None, help="fine-tuning/calibration device: cpu, cuda "
                                                    "[default: cuda when present]"),
    amp: Optional[str] = typer.Option(None, help="fine-tune in mixed precision: bf16 or fp16"),
    channels_last: bool = typer.Option(False, help="fine-tune in channels-last memory format"),
    compile: bool = typer.Option(False, help="fine-tune a torch.compile'd model"),
    workers: int = typer.Option(0, help="DataLoader worker processes"),
    calib_split: str = typer.Option("val", help="what data-driven criteria (taylor, apoz, "
                                                "mean_activation) read: val or train"),
    calib_batches: Optional[int] = typer.Option(
        None, help="batches of --calib-split to calibrate on [default: all of it]"),
    val_fraction: float = typer.Option(0.1, help="fraction of the training set carved as "
                                                 "validation (guard, best epoch, calibration)"),
) -> None:
    """Prune iteratively (prune, fine-tune, evaluate, repeat) with a guard on the metric.

    The guard and the best fine-tuning epoch use the validation split; result.json also scores
    the baseline and the pruned model on the test split, which chose nothing."""
    from leannet.jobs.prune import PruneJob, parse_task_values, run_prune_job

    weights = parse_task_values(task_weights, "--task-weights")
    if weights is not None and not isinstance(weights, dict):
        raise LeannetError("--task-weights needs names, e.g. 'left=1,right=2'")
    drop = parse_task_values(max_drop, "--max-drop")
    if drop is None:
        raise LeannetError("--max-drop needs a number, or one per task like 'left=0.01,right=0.01'")
    job = PruneJob(model, data, out, data_root=data_root, criterion=criterion,
                   target=_target(target_macs, target_params, target_latency, target_channels),
                   max_drop=drop, steps=steps,
                   schedule=schedule, finetune_epochs=finetune_epochs, lr=lr,
                   optimizer=optimizer, batch_size=batch_size, round_to=round_to,
                   runtime=runtime, precision=precision,
                   min_fraction=min_fraction, latency_tradeoff=latency_tradeoff,
                   task_weights=weights, resume=resume, force=force,
                   seed=seed, sensitivity_dir=sensitivity, device=device, amp=amp,
                   channels_last=channels_last, compile=compile, workers=workers,
                   calib_split=calib_split, calibration_batches=calib_batches,
                   val_fraction=val_fraction, remove_blocks=remove_blocks)
    if distill:
        from leannet.train.distill import DistillConfig

        features = tuple(f.strip() for f in (distill_features or "").split(",") if f.strip())
        job.distill = DistillConfig(distill_alpha, distill_temperature, features,
                                    distill_feature_weight).check()
    result = run_prune_job(job, on_attempt=print_attempt if is_main() else None)
    if is_main():  # under torchrun, one summary
        print_summary(result)
        if "removed_blocks" in result:
            removed = ", ".join(result["removed_blocks"]) or "none (the guard rolled it back)"
            console.print(f"removed blocks: {removed}")
        console.print(f"model: {result['model']}   report: {result['report']}")


def sensitivity(
    model: Path = typer.Argument(..., help="model folder to analyse"),
    data: Optional[str] = typer.Option(None, help="data source to evaluate on [default: the one "
                                                  "the model was trained on]"),
    data_root: Optional[Path] = typer.Option(None, help="where the data source's files are"),
    criterion: str = typer.Option("l1", help="which channels of a group go first"),
    ratios: str = typer.Option("0.25,0.5,0.75", help="pruned fractions to try per group"),
    max_drop: float = typer.Option(0.01, help="drop allowed per layer when deriving layer ratios"),
    batch_size: int = typer.Option(64),
    out: Path = typer.Option(Path("runs/sensitivity"), help="output folder"),
    force: bool = typer.Option(False, help="overwrite --out"),
) -> None:
    """Metric after pruning each channel group alone (no fine-tuning), and per-layer ratios."""
    from rich.progress import Progress

    from leannet.jobs.prune import run_sensitivity

    try:
        fractions = tuple(float(r) for r in ratios.split(","))
    except ValueError:
        raise LeannetError(f"--ratios {ratios!r} should be fractions like 0.25,0.5,0.75") from None
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("groups", total=None)
        result = run_sensitivity(model, data, out, data_root, fractions, criterion, max_drop,
                                 batch_size, force, on_group=lambda name: progress.advance(bar))
    table = Table(title=f"sensitivity ({result['metric_name']}, baseline "
                        f"{result['baseline']:.4f})")
    for column in ("group", "channels", *[f"-{r:.0%}" for r in result["ratios"]], "keep"):
        table.add_column(column, justify="right")
    for name, values in result["groups"].items():
        table.add_row(name, str(result["sizes"][name]), *[f"{v:.4f}" for v in values],
                      f"{result['layer_keep'][name]:.2f}")
    console.print(table)
    console.print(f"written: {out / 'sensitivity.json'}, {result['plot']}; use it with "
                  f"`leannet prune ... --sensitivity {out}`")


def register(app: typer.Typer) -> None:
    """Add `prune` and `sensitivity` to the CLI."""
    app.command()(prune)
    app.command()(sensitivity)
