"""`leannet data`: the data sources leannet knows and whether each is available on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `data` command."""

    @app.command("data")
    def data(
        data_root: Optional[Path] = typer.Option(
            None, "--data-root", help="Check availability in this folder instead of standard places."),
    ) -> None:
        """List data sources and whether each can be loaded here (nothing is downloaded)."""
        from leannet.data.registry import list_sources

        table = Table(title="data sources")
        table.add_column("name")
        table.add_column("available", justify="center")
        table.add_column("description")
        for name, entry in list_sources().items():
            try:
                ok = bool(entry.available(data_root))
            except Exception:  # an availability check must never break the listing
                ok = False
            table.add_row(name + ("PATH" if name.endswith(":") else ""),
                          "[green]yes[/]" if ok else "[red]no[/]", entry.description)
        console.print(table)
