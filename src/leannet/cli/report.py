"""`leannet report RUN_DIR`: report.md with the step table and PNG plots of a prune run."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `report` command."""

    @app.command("report")
    def report(run_dir: Path = typer.Argument(..., help="A train or prune run folder (result.json).")
               ) -> None:
        """Write report.md and plots into a run folder: a prune run's steps, a train run's epochs."""
        from leannet.report import write_report

        path = write_report(run_dir)
        plots = sorted(p.name for p in run_dir.glob("*.png"))
        console.print(f"wrote [bold]{path}[/]" + (f" with {', '.join(plots)}" if plots else ""))
