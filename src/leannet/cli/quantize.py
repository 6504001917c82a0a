"""`leannet quantize MODEL_DIR`: int8 by PT2E (post-training, or quantization-aware with
--qat), calibrated on the model's own data, deployed to ONNX Runtime and ExecuTorch; accuracy
before and after, size and latency per runtime in result.json."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `quantize` command."""

    @app.command("quantize")
    def quantize(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        data: Optional[str] = typer.Option(
            None, "--data", help="Data source for calibration and scoring [default: the model's "
                                 "training source]."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Data files."),
        runtime: str = typer.Option("torch,onnxruntime,executorch", "--runtime", "-r",
                                    help="Comma-separated runtimes to deploy to."),
        qat: bool = typer.Option(False, "--qat", help="Quantization-aware fine-tuning."),
        epochs: int = typer.Option(1, "--epochs", help="QAT epochs (with --qat)."),
        lr: float = typer.Option(0.0005, "--lr", help="QAT learning rate (AdamW)."),
        calibration_batches: int = typer.Option(8, "--calibration-batches",
                                                help="Training batches of 64 for calibration."),
        threads: str = typer.Option("1", "--threads", help="CPU threads for latency."),
        runs: int = typer.Option(50, "--runs", help="Timed runs (median and IQR reported)."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Output folder [default: MODEL_DIR/quantized]."),
        force: bool = typer.Option(False, "--force", help="Replace an earlier result here."),
    ) -> None:
        """Quantize a model folder to int8 and deploy it: accuracy, size, latency per runtime."""
        from leannet.cli.bench import deploy_table
        from leannet.jobs.deploy import DeployJob, run_deploy_job
        from leannet.errors import LeannetError

        if qat and epochs < 1:
            raise LeannetError(f"--epochs must be at least 1 with --qat, got {epochs}")
        job = DeployJob(model_dir, out if out is not None else model_dir / "quantized", data,
                        data_root, runtime, threads=threads, runs=runs,
                        calibration_batches=calibration_batches, qat_epochs=epochs if qat else 0,
                        lr=lr, force=force, command="quantize")
        with console.status("quantizing") as status:
            result = run_deploy_job(job, on_stage=lambda s: status.update(s))
        console.print(deploy_table(result))
        console.print(f"result: {job.out / 'result.json'}")
