"""`leannet eval MODEL_DIR`: evaluate a model folder on one split (test by default, or val) of a
data source (by default the one it was trained on) and print the metrics; with --out, also write
OUT/result.json."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `eval` command."""

    @app.command("eval")
    def eval_command(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        data: Optional[str] = typer.Option(None, "--data", "-d",
                                           help="Data source [default: the training source]."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder of the data."),
        batch_size: int = typer.Option(256, "--batch-size", "-b", help="Batch size."),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Folder for result.json [default: none written]."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing result.json."),
        split: str = typer.Option("test", "--split", help="test (held out, reports) or val "
                                  "(carved from training, selects)."),
    ) -> None:
        """Evaluate MODEL_DIR on the test split (or --split val)."""
        from leannet.train.evaluation import evaluate_folder

        result = evaluate_folder(model_dir, data, data_root, batch_size, out, force, split)
        table = Table(title=f"{model_dir} on {result['data']}, {result['split']} split "
                            f"({result['samples']:,} samples)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in result["metrics"].items():
            table.add_row(key, f"{value:.4f}")
        console.print(table)
        if out is not None:
            console.print(f"result: {out / 'result.json'}")
