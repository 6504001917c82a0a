"""`leannet bench MODEL_DIR`: the model in every runtime x precision (torch eager, ONNX Runtime,
ExecuTorch; fp32 and int8) side by side: latency with its spread, speed-up, size, parity."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `bench` command."""

    @app.command("bench")
    def bench(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        runtime: str = typer.Option("torch,onnxruntime,executorch", "--runtime", "-r",
                                    help="Comma-separated runtimes."),
        precision: str = typer.Option("fp32,int8", "--precision", "-p",
                                      help="Comma-separated precisions: fp32, int8."),
        data: Optional[str] = typer.Option(
            None, "--data", help="Data source for int8 calibration and scoring [default: the "
                                 "model's training source]."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Data files."),
        batch_size: int = typer.Option(1, "--batch-size", "-b", help="Input batch size."),
        threads: str = typer.Option("1", "--threads", help="CPU threads for every runtime."),
        runs: int = typer.Option(50, "--runs", help="Timed runs (median and IQR reported)."),
        score: bool = typer.Option(False, "--score/--no-score",
                                   help="Also score every file on the validation split."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Folder for files and result.json [default: MODEL_DIR/bench]."),
        force: bool = typer.Option(False, "--force", help="Replace an earlier result here."),
    ) -> None:
        """Measure a model folder in every runtime and precision, side by side."""
        from leannet.jobs.deploy import DeployJob, run_deploy_job

        job = DeployJob(model_dir, out if out is not None else model_dir / "bench", data,
                        data_root, runtime, precision, threads, batch_size, runs, score=score,
                        force=force, command="bench")
        with console.status("benchmarking") as status:
            result = run_deploy_job(job, on_stage=lambda s: status.update(s))
        console.print(deploy_table(result))
        console.print(f"result: {job.out / 'result.json'}")


def deploy_table(result: dict) -> Table:
    """One row per runtime x precision: latency median (IQR) and min-max, speed-up against
    torch fp32, file size, parity (fp32) or agreement (int8), and metric when scored."""
    threads = result["threads"]
    shape = "x".join(map(str, result["input_shape"]))
    table = Table(title=f"input {shape} (batch {result['input_shape'][0]}), {threads} "
                        f"thread{'s' if threads != 1 else ''}; latency: median (IQR), min-max, "
                        "from one run")
    metric_name = next(iter(result.get("fp32_metrics") or {}), None)
    columns = ["runtime", "precision", "latency ms", "min-max", "speed-up", "size",
               "parity / agreement", *([metric_name] if metric_name else [])]
    for column in columns:
        table.add_column(column, justify="left" if column in ("runtime", "precision") else "right")
    base = next((r["latency"]["median_ms"] for r in result["runtimes"]
                 if "latency" in r and (r["runtime"], r["precision"]) == ("torch", "fp32")), None)
    for row in result["runtimes"]:
        if "skipped" in row:
            table.add_row(row["runtime"], row["precision"], f"skipped: {row['skipped']}",
                          *[""] * (len(columns) - 3))
            continue
        lat = row["latency"]
        size = f"{row['size_bytes'] / 1024:,.1f} KiB" if row.get("size_bytes") else "-"
        table.add_row(row["runtime"], row["precision"],
                      f"{lat['median_ms']:.3g} ({lat['q1_ms']:.3g}-{lat['q3_ms']:.3g})"
                      + (" noisy" if lat["noisy"] else ""),
                      f"{lat['min_ms']:.3g}-{lat['max_ms']:.3g}",
                      f"{base / lat['median_ms']:.2f}x" if base else "-", size, _check(row),
                      *([_metric(row, metric_name)] if metric_name else []))
    if metric_name and "int8_reference_metrics" in result:
        ref = result["int8_reference_metrics"][metric_name]
        table.caption = (f"{metric_name}: fp32 {result['fp32_metrics'][metric_name]:.4f}, int8 "
                         f"torch reference {ref:.4f} ({result.get('int8_method', 'PT2E')})")
    return table


def _check(row: dict) -> str:
    if "parity" in row:
        return f"max rel diff {row['parity']['max_rel_diff']:.1e}"
    agreement = row.get("agreement", {})
    top1 = agreement.get("top1_agreement")
    return (f"top-1 agree {top1:.1%}" if top1 is not None
            else f"max rel diff {agreement.get('max_rel_diff', float('nan')):.1e}")


def _metric(row: dict, name: str) -> str:
    value = (row.get("metrics") or {}).get(name)
    return f"{value:.4f}" if value is not None else "-"
