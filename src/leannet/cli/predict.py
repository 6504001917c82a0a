"""`leannet predict MODEL IMAGES... --out DIR`: draw a detector's boxes on images, list them
in detections.json."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `predict` command."""

    @app.command("predict")
    def predict(
        model_dir: Path = typer.Argument(..., help="A YOLO model folder (config.json + weights)."),
        images: List[Path] = typer.Argument(..., help="Image files (.jpg, .png, ...)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder for images + JSON."),
        conf: float = typer.Option(0.25, "--conf", help="Score threshold."),
        iou: float = typer.Option(0.45, "--iou", help="NMS IoU threshold (per class)."),
        force: bool = typer.Option(False, "--force", help="Write into a non-empty --out."),
    ) -> None:
        """Detect objects in IMAGES; write each with its boxes drawn and detections.json."""
        from leannet.detect.predict import predict_files
        from leannet.errors import LeannetError
        from leannet.files import prepare_out_dir
        from leannet.checkpoint import load

        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise LeannetError(f"--conf and --iou must be in [0, 1], got {conf} and {iou}")
        model = load(model_dir)
        if getattr(model, "detect_spec", None) is None:
            raise LeannetError(f"{model_dir} is not a detector; expected a YOLO model folder")
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            raise LeannetError(f"image file(s) not found: {', '.join(missing)}")
        out_dir = prepare_out_dir(out, force)
        entries = predict_files(model, images, out_dir, conf, iou)
        total = sum(len(e["detections"]) for e in entries)
        console.print(f"{total} detections in {len(entries)} image(s); wrote [bold]{out_dir}[/] "
                      "(images + detections.json)")
