"""The `leannet quantize` and `leannet bench` jobs: a model folder (and its data source) in, a
runtime x precision table with accuracy, size and latency out, written to `result.json`.

Calibration and scoring use the model's own data source (the one `leannet train` recorded, or
`--data`): int8 ranges from real training batches, metrics on the validation split, int8
agreement checked on real validation inputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from leannet import checkpoint, files
from leannet.data.loaders import split_loader
from leannet.deploy.score import detection_agreement, evaluate_session
from leannet.deploy.matrix import deploy_matrix
from leannet.deploy.quantize import calibration_batches, quantize_ptq, quantize_qat
from leannet.deploy.runtimes import PRECISIONS, get_runtime, list_runtimes
from leannet.errors import LeannetError
from leannet.measure import DEFAULT_THREADS, check_threads, count_macs, count_params
from leannet.models import model_input_shape
from leannet.jobs.prune import Workbench, guard_metrics, open_workbench
from leannet.train.fit import evaluate, fit

DEFAULT_RUNTIMES = ("torch", "onnxruntime", "executorch")


@dataclass
class DeployJob:
    """What `leannet quantize` / `leannet bench` were asked to do."""

    model_dir: Path
    out: Path
    data: str | None = None  # None: the source recorded in the model folder, if any
    data_root: Path | None = None
    runtimes: str | tuple[str, ...] = DEFAULT_RUNTIMES  # 'a,b' from the CLI, checked to a tuple
    precisions: str | tuple[str, ...] = PRECISIONS
    threads: int | str = DEFAULT_THREADS
    batch_size: int = 1  # the batch size latency is measured at
    runs: int = 50
    calibration_batches: int = 8
    score: bool = True  # accuracy of every deployed file on the validation split
    qat_epochs: int = 0  # > 0: quantization-aware fine-tuning instead of PTQ
    lr: float = 0.0005
    force: bool = False
    seed: int = 0
    command: str = "quantize"
    extra: dict[str, Any] = field(default_factory=dict)


def parse_list(text: str | tuple[str, ...], what: str, known: list[str] | tuple[str, ...]
               ) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'), each checked against `known`; one clear line when one is not."""
    items = tuple(text.split(",")) if isinstance(text, str) else tuple(text)
    items = tuple(i.strip() for i in items if i.strip())
    unknown = [i for i in items if i not in known]
    if unknown or not items:
        raise LeannetError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; "
                           f"expected one or more of {', '.join(known)}")
    return items


def check_job(job: DeployJob) -> None:
    """Every argument checked before anything is loaded or written."""
    job.runtimes = parse_list(job.runtimes, "runtime", list_runtimes())
    job.precisions = parse_list(job.precisions, "precision", PRECISIONS)
    job.threads = check_threads(job.threads)
    for name, value in (("--batch-size", job.batch_size), ("--runs", job.runs),
                        ("--calibration-batches", job.calibration_batches)):
        if not isinstance(value, int) or value < 1:
            raise LeannetError(f"{name} must be a positive whole number, got {value!r}")
    if job.qat_epochs < 0:
        raise LeannetError(f"--epochs must be >= 0, got {job.qat_epochs}")
    result = job.out / "result.json"
    if result.exists() and not job.force:
        raise LeannetError(f"{result} already exists (another run's result); pass --force to "
                           "replace it or choose another --out")
    checkpoint.read_config(job.model_dir)  # a missing or foreign folder fails here, before any work


def _workbench(job: DeployJob) -> Workbench | None:
    """Model plus data when a source is given or recorded; None when neither (fp32 only)."""
    recorded = (checkpoint.read_config(job.model_dir).get("data") or {}).get("name")
    if job.data is None and not recorded:
        return None
    return open_workbench(job.model_dir, job.data, job.data_root, batch_size=64, seed=job.seed)


def run_deploy_job(job: DeployJob, on_stage: Callable[[str], Any] | None = None
                   ) -> dict[str, Any]:
    """Quantize (when data is there), deploy to every runtime x precision, score and time each,
    write files and `result.json` into `job.out`; returns the result."""
    check_job(job)
    stage = on_stage or (lambda text: None)
    bench = _workbench(job)
    if bench is None and job.command == "quantize":
        raise LeannetError(f"the model in {job.model_dir} records no data source, and int8 "
                           "needs real calibration data; pass --data")
    model = bench.model if bench is not None else checkpoint.load(job.model_dir)
    model = model.cpu().eval()
    example = torch.randn(model_input_shape(model, job.batch_size),
                          generator=torch.Generator().manual_seed(job.seed))
    result: dict[str, Any] = {"command": job.command, "model_dir": str(job.model_dir),
                              "input_shape": list(example.shape), "threads": job.threads,
                              "params": count_params(model), "macs": count_macs(model, example),
                              "size_bytes": _weights_size(job.model_dir), **job.extra}
    calibration = quantized = check_inputs = evaluate_file = None
    if bench is not None:
        result["data"] = bench.data
        calibration = calibration_batches(bench.train_loader, job.calibration_batches)
        check_inputs = next(iter(bench.val_loader))[0][:32]
        if job.score:  # on test: validation chose the trained model (and the QAT epochs)
            stage("scoring the fp32 model in torch")
            report = split_loader(bench.source, "test", job.batch_size)
            result["metrics_split"] = "test"
            result["fp32_metrics"] = _metrics(bench, evaluate(model, report, bench.task))

            def evaluate_file(session) -> dict[str, float]:
                metrics = _metrics(bench, evaluate_session(session, model, report, bench.task))
                agreement = (detection_agreement(session, model, check_inputs, bench.task)
                             if check_inputs is not None else None)
                if agreement is not None:  # detectors: the file's boxes against torch fp32's
                    metrics["map50_vs_torch_fp32"] = agreement
                return metrics
        if "int8" in job.precisions and any(
                not get_runtime(r).quantizes_itself and not get_runtime(r).available()
                for r in job.runtimes if "int8" in get_runtime(r).precisions):
            stage("int8: quantization-aware fine-tuning" if job.qat_epochs else
                  f"int8: PT2E post-training quantization on {len(calibration)} batches")
            quantized = _quantize(job, bench, model, example, calibration)
            result["int8_method"] = (f"PT2E QAT, {job.qat_epochs} epochs" if job.qat_epochs
                                     else "PT2E PTQ")
            if job.score:
                result["int8_reference_metrics"] = _metrics(bench, evaluate(
                    quantized, report, bench.task, device="cpu"))
    files.prepare_out_dir(job.out, force=True)  # the result.json check above guards other runs
    result["runtimes"] = deploy_matrix(
        model, example, job.runtimes, job.precisions, threads=int(job.threads), runs=job.runs,
        calibration=calibration, check_inputs=check_inputs, out_dir=job.out, force=job.force,
        evaluate=evaluate_file, quantized=quantized, on_stage=lambda s: stage(f"deploying {s}"))
    result["speedups"] = speedups(result["runtimes"])
    result["job"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(job).items()}
    files.atomic_write_json(job.out / "result.json", result)
    return result


def _quantize(job: DeployJob, bench: Workbench, model: nn.Module, example: torch.Tensor,
              calibration: list[torch.Tensor]) -> nn.Module:
    if not job.qat_epochs:
        return quantize_ptq(model, example, calibration)

    def finetune(prepared: nn.Module) -> None:
        fit(prepared, bench.train_loader, bench.val_loader, bench.task, job.qat_epochs,
            lr=job.lr, optimizer="adamw", seed=job.seed, progress=False, restore_best=False)

    return quantize_qat(model, example, calibration, finetune)


def _metrics(bench: Workbench, metrics: dict[str, float]) -> dict[str, float]:
    """The main metric (one per task for multi-task models), as the prune guard watches it."""
    return guard_metrics(bench.task, metrics)


def _weights_size(model_dir: Path) -> int | None:
    weights = Path(model_dir) / checkpoint.WEIGHTS_FILE
    return weights.stat().st_size if weights.is_file() else None


def speedups(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median-latency ratios from one run: each row against torch fp32 and against the same
    runtime's fp32 (`runtime/precision` keys)."""
    times = {(r["runtime"], r["precision"]): r["latency"]["median_ms"]
             for r in rows if "latency" in r}
    out = {}
    for (runtime, precision), ms in times.items():
        if ("torch", "fp32") in times:
            out[f"{runtime}/{precision} vs torch/fp32"] = round(times[("torch", "fp32")] / ms, 3)
        if precision != "fp32" and (runtime, "fp32") in times:
            out[f"{runtime}/{precision} vs {runtime}/fp32"] = round(times[(runtime, "fp32")] / ms, 3)
    return out
