"""`leannet demo`: train, prune, export and report on the bundled digits; print what happened."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing output folder."),
        epochs: int = typer.Option(10, "--epochs", help="Training epochs."),
        prune: bool = typer.Option(True, "--prune/--no-prune", help="Prune, export and report."),
    ) -> None:
        """Train MobileNetV2 on scikit-learn's digits, prune it to half its MACs, export, report."""
        from leannet.cli.prune import print_attempt
        from leannet.demo import DemoConfig, run_demo
        from leannet.errors import LeannetError

        if epochs < 1:
            raise LeannetError(f"--epochs must be at least 1, got {epochs}")
        stages = iter(range(1, 4 if prune else 2))

        def on_stage(text: str) -> None:
            console.rule(f"[bold]{next(stages, '')} {text}")

        result = run_demo(out, force=force, config=DemoConfig(epochs=epochs, prune=prune),
                          on_stage=on_stage, on_attempt=print_attempt)
        console.print(summary_table(result))
        console.print(f"result: {out / 'result.json'}"
                      + (f"   report: {result['report']}" if "report" in result else ""))


def summary_table(result: dict) -> Table:
    """Trained and (when pruned) final numbers side by side."""
    table = Table(title=f"leannet demo: {result['model']} on {result['data']}")
    pruned = "final" in result
    for column in ("", "trained", *(["pruned"] if pruned else [])):
        table.add_column(column, justify="right")
    final = result.get("final", {})
    rows = [("validation accuracy", f"{result['accuracy']:.2%}",
             f"{final.get('metric', 0):.2%}"),
            ("parameters", f"{result['params']:,}", f"{final.get('params', 0):,}"),
            ("MACs", f"{result['macs'] / 1e6:,.2f}M", f"{final.get('macs', 0) / 1e6:,.2f}M"),
            ("weights file", f"{(result.get('size_bytes') or 0) / 1024:,.1f} KiB",
             f"{(final.get('size_bytes') or 0) / 1024:,.1f} KiB"),
            ("latency (batch 1, torch)", f"{result['latency_ms']:.2f} ms",
             f"{final.get('latency_ms', 0):.2f} ms")]
    for what, trained, after in rows:
        table.add_row(what, trained, *([after] if pruned else []))
    if pruned:
        onnx = result["onnx"]
        table.add_row("ONNX parity (max abs diff)", "", f"{onnx['max_abs_diff']:.2e}")
        table.add_row("target reached", "", str(result["target_reached"]))
    table.add_row("total time", "", f"{result['seconds']:.1f} s")
    return table
