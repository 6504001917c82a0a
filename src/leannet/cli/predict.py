"""`leannet predict MODEL IMAGES... --out DIR`: draw a detector's boxes on images, list them
in detections.json; a multi-head model's boxes and mask overlay are drawn together and its
labels printed (predictions.json)."""
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
        multihead = bool(getattr(model, "head_specs", None))
        if getattr(model, "detect_spec", None) is None and not multihead:
            raise LeannetError(f"{model_dir} is not a detector; expected a YOLO or multi-head "
                               "model folder")
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            raise LeannetError(f"image file(s) not found: {', '.join(missing)}")
        out_dir = prepare_out_dir(out, force)
        if multihead:
            from leannet.multitask.predict import predict_files as predict_heads

            for entry in predict_heads(model, images, out_dir, conf, iou):
                console.print(f"[bold]{entry['image']}[/] -> {entry['output']}")
                for task, found in entry["tasks"].items():
                    console.print(f"  {task}: {_describe(found)}")
            console.print(f"wrote [bold]{out_dir}[/] (images + predictions.json)")
            return
        entries = predict_files(model, images, out_dir, conf, iou)
        total = sum(len(e["detections"]) for e in entries)
        console.print(f"{total} detections in {len(entries)} image(s); wrote [bold]{out_dir}[/] "
                      "(images + detections.json)")


def _describe(found: object) -> str:
    """One line for a task's prediction: a label, boxes, labels present or mask areas."""
    if isinstance(found, dict) and "name" in found:
        return f"{found['name']} ({found['score']:.2f})"
    if isinstance(found, list):
        items = [f"{f['name']} {f['score']:.2f}" for f in found]
        return f"{len(found)}: " + ", ".join(items) if items else "none"
    if isinstance(found, dict):
        return ", ".join(f"{k} {v} px" for k, v in found.items()) or "background only"
    return str(found)
