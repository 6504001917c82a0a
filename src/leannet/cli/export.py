"""`leannet export MODEL_DIR --format onnx`: ONNX with BN folded, checked against torch in
onnxruntime; writes the file and result.json."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def export_paths(model_dir: Path, out: Path | None) -> tuple[Path, Path]:
    """(ONNX file, result.json): `--out` ending in .onnx is the file itself, any other `--out` a
    folder; the default is the folder `MODEL_DIR/export`."""
    if out is not None and out.suffix == ".onnx":
        return out, out.parent / "result.json"
    folder = out if out is not None else model_dir / "export"
    return folder / "model.onnx", folder / "result.json"


def register(app: typer.Typer) -> None:
    """Add the `export` command."""

    @app.command("export")
    def export(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        format: str = typer.Option("onnx", "--format", "-f", help="Export format: onnx."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Output .onnx file or folder [default: MODEL_DIR/export]."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (13 or newer)."),
    ) -> None:
        """Export a model folder to ONNX (BN folded, dynamic batch) and check parity."""
        from leannet.errors import LeannetError
        from leannet.export import EXPORT_FORMATS, export_checked
        from leannet.io import atomic_write_json, load
        from leannet.models import model_input_shape

        if format not in EXPORT_FORMATS:
            raise LeannetError(f"unknown export format {format!r}; expected one of "
                               f"{', '.join(EXPORT_FORMATS)}")
        onnx_path, result_path = export_paths(model_dir, out)
        model = load(model_dir)
        with console.status("exporting to ONNX and checking parity in onnxruntime"):
            info = export_checked(model, onnx_path, model_input_shape(model, 1), opset=opset)
        result = {"command": "export", "model_dir": str(model_dir), "format": format, **info}
        atomic_write_json(result_path, result)
        console.print(f"wrote [bold]{onnx_path}[/] (opset {info['opset']}, "
                      f"{info['folded_batchnorms']} BatchNorms folded, outputs "
                      f"{', '.join(info['outputs'])})")
        console.print(f"onnxruntime parity at batch {', '.join(map(str, info['batches']))}: "
                      f"max abs diff {info['max_abs_diff']:.3g}, max rel diff "
                      f"{info['max_rel_diff']:.3g}")
        console.print(f"result: {result_path}")
