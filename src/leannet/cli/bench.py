"""`leannet bench MODEL_DIR`: params, MACs, file size and latency in torch and onnxruntime, side
by side; writes result.json."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
RUNTIMES = {"torch": "torch", "torch_folded_bn": "torch (BN folded)",
            "onnxruntime": "onnxruntime (BN folded)"}


def register(app: typer.Typer) -> None:
    """Add the `bench` command."""

    @app.command("bench")
    def bench(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Input batch size."),
        threads: Optional[int] = typer.Option(
            None, "--threads", min=1, help="CPU threads for torch and onnxruntime [default: all]."),
        runs: int = typer.Option(50, "--runs", min=1, help="Timed runs (median reported)."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Folder for result.json [default: MODEL_DIR/bench]."),
    ) -> None:
        """Measure a model folder in torch and onnxruntime side by side."""
        from rich.progress import Progress

        from leannet.export import benchmark_runtimes
        from leannet.io import atomic_write_json, load
        from leannet.models import model_input_shape

        model = load(model_dir)
        shape = model_input_shape(model, batch_size)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("benchmark", total=len(RUNTIMES))

            started: list[str] = []

            def on_stage(name: str) -> None:
                progress.update(task, completed=len(started), description=f"timing {name}")
                started.append(name)

            rows = benchmark_runtimes(model, shape, runs=runs, threads=threads,
                                      weights_path=model_dir, on_stage=on_stage)
        result = {"command": "bench", "model_dir": str(model_dir), "input_shape": list(shape),
                  "threads": threads, "runs": runs, "runtimes": rows}
        result_path = (out if out is not None else model_dir / "bench") / "result.json"
        atomic_write_json(result_path, result)
        console.print(_table(rows, shape, threads))
        console.print(f"result: {result_path}")


def _table(rows: dict[str, dict], shape: tuple[int, ...], threads: int | None) -> Table:
    """One row per runtime: params, MACs, file size, median latency."""
    table = Table(title=f"input {'x'.join(map(str, shape))}, "
                        f"{threads or 'all'} thread{'s' if threads != 1 else ''}")
    for column in ("runtime", "params", "MACs", "file size", "latency (ms)"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for key, label in RUNTIMES.items():
        row = rows[key]
        size = f"{row['size_bytes'] / 1024:,.1f} KiB" if row["size_bytes"] else "-"
        table.add_row(label, f"{row['params']:,}", f"{row['macs'] / 1e6:,.2f}M", size,
                      f"{row['latency_ms']:.3f}")
    return table
