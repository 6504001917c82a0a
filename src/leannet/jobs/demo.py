"""`leannet demo`: the whole pipeline on scikit-learn's bundled digits, with no download.

1. train a small-input MobileNetV2 (width 0.5) on `digits` at 16 px, keep the best checkpoint;
2. prune it iteratively to half its MACs, fine-tuning after each step, with a guard of one
   accuracy point against the baseline (rollback and smaller steps when a step costs more);
3. export the pruned model to ONNX (BatchNorm folded) and check onnxruntime parity;
4. write the pruning report with plots;
5. quantize the final model to int8 (PT2E / onnxruntime static QDQ, calibrated on digits) and
   deploy it in an on-device runtime (ONNX Runtime; ExecuTorch too when asked and installed):
   accuracy and latency (1 thread, batch 1, median and IQR) against the trained fp32 model in
   the same runtime; `result.json` gets every number.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from leannet.checkpoint import load
from leannet.export import export_checked
from leannet.files import atomic_write_json, prepare_out_dir
from leannet.jobs.deploy import DeployJob, run_deploy_job
from leannet.jobs.prune import PruneJob, run_prune_job
from leannet.jobs.train import TrainJob, run_train
from leannet.measure import measure
from leannet.models import model_input_shape

DEMO_MODEL = "mobilenet_v2"
DEMO_DATA = "digits"


@dataclass
class DemoConfig:
    """The demo's training recipe: fast on 2 CPU cores and >= 95% validation accuracy."""

    epochs: int = 10
    batch_size: int = 64
    image_size: int = 16
    width_mult: float = 0.5
    optimizer: str = "adamw"
    lr: float = 0.005
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0
    prune: bool = True
    target_macs: float = 0.5
    max_drop: float = 0.01
    prune_steps: int = 2
    finetune_epochs: int = 3
    finetune_optimizer: str = "adamw"  # a fifth of the training rate: SGD at 0.01 undid training
    finetune_lr: float = 0.001
    criterion: str = "taylor"
    deploy: bool = True
    deploy_runtimes: tuple[str, ...] = ("torch", "onnxruntime")  # + "executorch": ~1 min more
    deploy_runs: int = 100


def train_stage(out_dir: Path, config: DemoConfig, progress: bool = True
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the demo model into `out_dir/model` (a train job); return (model, stage result)."""
    job = TrainJob(model=DEMO_MODEL, data=DEMO_DATA, epochs=config.epochs,
                   batch_size=config.batch_size, optimizer=config.optimizer, lr=config.lr,
                   weight_decay=config.weight_decay, warmup_epochs=config.warmup_epochs,
                   width_mult=config.width_mult, image_size=config.image_size, seed=config.seed,
                   out=out_dir, force=True)  # out_dir is the demo's own, fresh folder
    start = time.perf_counter()
    trained = run_train(job, progress=progress)
    stage = {"accuracy": trained[trained["main_metric"]], "best_epoch": trained["best_epoch"],
             "accuracy_split": trained.get("main_metric_split", "val"),
             "train_seconds": round(time.perf_counter() - start, 2)}
    return load(out_dir / "model"), stage


def prune_stage(out_dir: Path, config: DemoConfig,
                on_attempt: Callable[[dict], Any] | None = None) -> dict[str, Any]:
    """Prune the trained model iteratively into `out_dir/pruned` (model, result, report)."""

    job = PruneJob(out_dir / "model", DEMO_DATA, out_dir / "pruned", criterion=config.criterion,
                   target={"macs": config.target_macs}, max_drop=config.max_drop,
                   steps=config.prune_steps, finetune_epochs=config.finetune_epochs,
                   lr=config.finetune_lr, optimizer=config.finetune_optimizer,
                   batch_size=config.batch_size, seed=config.seed)
    return run_prune_job(job, on_attempt=on_attempt)


def export_stage(model_dir: Path, onnx_path: Path) -> dict[str, Any]:
    """Export a model folder to ONNX and check parity; returns path and max_abs_diff."""

    model = load(model_dir)
    info = export_checked(model, onnx_path, model_input_shape(model, 1))
    return {"path": info["path"], "max_abs_diff": info["max_abs_diff"],
            "max_rel_diff": info["max_rel_diff"], "opset": info.get("opset"),
            "size_bytes": info["size_bytes"]}


def deploy_stage(out_dir: Path, config: DemoConfig, trained_dir: Path, final_dir: Path
                 ) -> dict[str, Any]:
    """The trained model in fp32 and the final one in fp32 and int8, in each runtime: accuracy,
    size, latency with spread; `speedup` is trained fp32 over final int8 in the same runtime."""

    def job(folder: Path, name: str, precisions: tuple[str, ...]) -> dict[str, Any]:
        return run_deploy_job(DeployJob(folder, out_dir / "deploy" / name, DEMO_DATA,
                                        runtimes=config.deploy_runtimes, precisions=precisions,
                                        runs=config.deploy_runs, command="demo"))

    trained, final = job(trained_dir, "trained", ("fp32",)), job(final_dir, "final",
                                                                  ("fp32", "int8"))
    base = {r["runtime"]: r for r in trained["runtimes"] if "latency" in r}
    rows = {f"{r['runtime']}/{r['precision']}": r for r in final["runtimes"] if "latency" in r}
    speedups = {name: round(base[row["runtime"]]["latency"]["median_ms"]
                            / row["latency"]["median_ms"], 3)
                for name, row in rows.items() if row["runtime"] in base}
    return {"trained": {r: _deployed(row) for r, row in base.items()},
            "final": {name: _deployed(row) for name, row in rows.items()},
            "skipped": [r for r in final["runtimes"] if "skipped" in r],
            "speedup_vs_trained_fp32": speedups,
            "int8_reference_accuracy": (final.get("int8_reference_metrics") or {}).get("accuracy"),
            "dirs": [str(out_dir / "deploy" / "trained"), str(out_dir / "deploy" / "final")]}


def _deployed(row: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": (row.get("metrics") or {}).get("accuracy"), "latency": row["latency"],
            "size_bytes": row.get("size_bytes"), "path": row.get("path")}


def _numbers(entry: dict[str, Any]) -> dict[str, Any]:
    """The summary numbers of a baseline or final entry of a prune result."""
    return {k: entry.get(k) for k in ("metric", "params", "macs", "size_bytes", "latency_ms",
                                      "latency_detail")}  # the median, and its spread


def run_demo(out_dir: str | Path = "runs/demo", force: bool = False,
             config: DemoConfig | None = None, progress: bool = True,
             on_stage: Callable[[str], Any] | None = None,
             on_attempt: Callable[[dict], Any] | None = None) -> dict[str, Any]:
    """Run the demo into `out_dir` (refused if it exists and is not empty, unless `force`).

    Returns and writes `result.json`: model, data, accuracy, params, macs, latency_ms of the
    trained model, and with pruning on, `baseline`, `final`, `onnx` and `report`.
    """
    config = config or DemoConfig()
    stage_note = on_stage or (lambda text: None)
    out = prepare_out_dir(out_dir, force)
    start = time.perf_counter()
    stage_note(f"training {DEMO_MODEL} on {DEMO_DATA} for {config.epochs} epochs")
    model, stage = train_stage(out, config, progress)
    numbers = measure(model.eval(), model_input_shape(model, 1), path=out / "model")
    result = {"command": "demo", "model": DEMO_MODEL, "data": DEMO_DATA, **stage, **numbers,
              "model_dir": str(out / "model"), "config": asdict(config)}
    if config.prune:
        stage_note(f"pruning to {config.target_macs:.0%} of MACs by {config.criterion}, "
                   f"at most {config.max_drop:.0%} accuracy lost")
        pruned = prune_stage(out, config, on_attempt)
        stage_note("exporting the pruned model to ONNX and checking onnxruntime parity")
        result |= {"baseline": _numbers(pruned["baseline"]), "final": _numbers(pruned["final"]),
                   "target_reached": pruned["target_reached"], "steps": len(pruned["steps"]),
                   "pruned_model_dir": pruned["model"], "report": pruned["report"],
                   "onnx": export_stage(Path(pruned["model"]), out / "model.onnx")}
    if config.deploy:
        final_dir = Path(result.get("pruned_model_dir", out / "model"))
        stage_note(f"int8 on device: quantizing and timing in {', '.join(config.deploy_runtimes)}")
        result["deploy"] = deploy_stage(out, config, out / "model", final_dir)
    result["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out / "result.json", result)
    return result
