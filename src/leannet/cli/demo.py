"""`leannet demo`: train a small MobileNetV2 on the bundled digits and print a summary table."""
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
    ) -> None:
        """Train small-input MobileNetV2 on scikit-learn's digits (no download) and report it."""
        from leannet.demo import DemoConfig, run_demo
        from leannet.errors import LeannetError

        if epochs < 1:
            raise LeannetError(f"--epochs must be at least 1, got {epochs}")
        result = run_demo(out, force=force, config=DemoConfig(epochs=epochs))
        console.print(summary_table(result))
        console.print(f"result: {out / 'result.json'}")


def summary_table(result: dict) -> Table:
    """The demo's numbers as a two-column table."""
    table = Table(title=f"leannet demo: {result['model']} on {result['data']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [("validation accuracy", f"{result['accuracy']:.2%}"),
            ("best epoch", str(result["best_epoch"])),
            ("parameters", f"{result['params']:,}"),
            ("MACs", f"{result['macs'] / 1e6:,.2f}M"),
            ("weights file", f"{(result.get('size_bytes') or 0) / 1024:,.1f} KiB"),
            ("latency (batch 1)", f"{result['latency_ms']:.2f} ms"),
            ("total time", f"{result['seconds']:.1f} s")]
    for what, value in rows:
        table.add_row(what, value)
    return table
