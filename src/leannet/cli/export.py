"""`leannet export MODEL_DIR --format onnx|executorch [--precision int8] [--nms]`: a deployable
file (BatchNorm folded; int8 calibrated on the model's data), checked against torch (parity for
fp32, agreement for int8) before it appears; writes the file and result.json, never over another
run's output unless --force. `--nms` ends a detector's ONNX file in box decoding and NMS."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()
FORMATS = {"onnx": "onnxruntime", "executorch": "executorch"}  # format -> runtime that runs it


def export_paths(model_dir: Path, out: Path | None, suffix: str = ".onnx",
                 precision: str = "fp32") -> tuple[Path, Path]:
    """(model file, result.json): `--out` ending in the format's suffix is the file itself, any
    other `--out` a folder; the default is the folder `MODEL_DIR/export`."""
    if out is not None and out.suffix == suffix:
        return out, out.parent / "result.json"
    folder = out if out is not None else model_dir / "export"
    name = "model" if precision == "fp32" else f"model-{precision}"
    return folder / f"{name}{suffix}", folder / "result.json"


def register(app: typer.Typer) -> None:
    """Add the `export` command."""

    @app.command("export")
    def export(
        model_dir: Path = typer.Argument(..., help="A model folder (config.json + weights)."),
        format: str = typer.Option("onnx", "--format", "-f",
                                   help="Export format: onnx or executorch (.pte, XNNPACK)."),
        precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 or int8."),
        data: Optional[str] = typer.Option(
            None, "--data", help="int8 calibration data [default: the model's training source]."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Data files."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Output file or folder [default: MODEL_DIR/export]."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (13 or newer)."),
        nms: bool = typer.Option(False, "--nms", help="Detectors, ONNX: decode boxes and run "
                                 "class-aware NMS inside the file (batch 1; outputs boxes, "
                                 "scores, labels)."),
        conf: float = typer.Option(0.25, "--conf", help="With --nms: confidence threshold."),
        iou: float = typer.Option(0.45, "--iou", help="With --nms: NMS IoU threshold."),
        max_det: int = typer.Option(100, "--max-det", help="With --nms: detections kept."),
        force: bool = typer.Option(False, "--force", help="Replace existing output."),
    ) -> None:
        """Export a model folder to ONNX or ExecuTorch, fp32 or int8, and check it."""
        from leannet.deploy.runtimes import PRECISIONS, get_runtime
        from leannet.errors import LeannetError
        from leannet.files import atomic_write_json
        from leannet.checkpoint import read_config

        if format not in FORMATS:
            raise LeannetError(f"unknown export format {format!r}; expected one of "
                               f"{', '.join(FORMATS)}")
        if precision not in PRECISIONS:
            raise LeannetError(f"unknown precision {precision!r}; expected one of "
                               f"{', '.join(PRECISIONS)}")
        if not nms and (conf, iou, max_det) != (0.25, 0.45, 100):
            raise LeannetError("--conf, --iou and --max-det shape the NMS of --nms; add --nms "
                               "(a detector's ONNX file) or drop them")
        if nms and format != "onnx":
            raise LeannetError(f"--nms works with --format onnx only; ExecuTorch has no NMS "
                               f"kernel, so a {format} file ends in the raw head maps")
        runtime = get_runtime(FORMATS[format])
        runtime.check(precision)
        path, result_path = export_paths(model_dir, out, runtime.suffix, precision)
        read_config(model_dir)
        for existing in (path, result_path):
            if existing.exists() and not force:
                raise LeannetError(f"{existing} already exists; pass --force to replace it")
        with console.status(f"exporting to {format} {precision} and checking it"):
            if nms:
                info = _with_nms(model_dir, path, precision, opset, data, data_root,
                                 (conf, iou, max_det))
            elif format == "onnx" and precision == "fp32":
                info = _onnx_fp32(model_dir, path, opset)
            else:
                info = _deploy(model_dir, runtime.name, precision, path, data, data_root)
        atomic_write_json(result_path, {"command": "export", "model_dir": str(model_dir),
                                        "format": format, "precision": precision, **info})
        _print(path, info)
        console.print(f"result: {result_path}")


def _onnx_fp32(model_dir: Path, path: Path, opset: int) -> dict:
    """ONNX fp32 at any opset, parity-checked at batch 1 and 4 (dynamic batch)."""
    from leannet.export import export_checked
    from leannet.checkpoint import load
    from leannet.models import model_input_shape

    model = load(model_dir)
    return export_checked(model, path, model_input_shape(model, 1), opset=opset)


def _inputs(model_dir: Path, precision: str, data: str | None, data_root: Path | None):
    """(model, real check inputs, calibration batches) from the model's data source when it
    records one or --data names one; int8 refuses to go without."""
    from leannet.checkpoint import load, read_config
    from leannet.deploy.quantize import calibration_batches
    from leannet.errors import LeannetError
    from leannet.jobs.prune import open_workbench

    recorded = (read_config(model_dir).get("data") or {}).get("name")
    if precision == "int8" or data is not None or recorded:
        if data is None and not recorded:
            raise LeannetError(f"int8 needs real calibration data and the model in {model_dir} "
                               "records no data source; pass --data")
        bench = open_workbench(model_dir, data, data_root, batch_size=64)
        return (bench.model, next(iter(bench.val_loader))[0][:32],
                calibration_batches(bench.train_loader, 8))
    return load(model_dir), None, None


def _deploy(model_dir: Path, runtime: str, precision: str, path: Path, data: str | None,
            data_root: Path | None) -> dict:
    """Any other format or int8: through leannet.deploy, calibrated and checked on real data."""
    import torch

    from leannet.deploy.matrix import deploy_one
    from leannet.models import model_input_shape

    model, check_inputs, calibration = _inputs(model_dir, precision, data, data_root)
    example = torch.zeros(model_input_shape(model, 1))
    # force: the checks above already refused existing files unless --force was given
    return deploy_one(model, runtime, precision, path, example, calibration=calibration,
                      check_inputs=check_inputs, force=True, runs=20)


def _with_nms(model_dir: Path, path: Path, precision: str, opset: int, data: str | None,
              data_root: Path | None, nms: tuple[float, float, int]) -> dict:
    """A detector's ONNX file ending in decoding + NMS, checked on real inputs."""
    import torch

    from leannet.deploy.nms import deploy_with_detections, detections_head
    from leannet.models import model_input_shape

    model, check_inputs, calibration = _inputs(model_dir, precision, data, data_root)
    head = detections_head(model, *nms)  # a non-detector is refused before any work
    return deploy_with_detections(model, path, precision, head,
                                  torch.zeros(model_input_shape(model, 1)), opset=opset,
                                  calibration=calibration, check_inputs=check_inputs)


def _print(path: Path, info: dict) -> None:
    console.print(f"wrote [bold]{path}[/] ({info.get('size_bytes', 0) / 1024:,.1f} KiB)")
    if "max_abs_diff" in info:  # the ONNX fp32 path
        console.print(f"onnxruntime parity at batch {', '.join(map(str, info['batches']))}: "
                      f"max abs diff {info['max_abs_diff']:.3g}, max rel diff "
                      f"{info['max_rel_diff']:.3g}")
    elif "parity" in info:
        console.print(f"parity with torch: max rel diff {info['parity']['max_rel_diff']:.3g}")
    else:
        agree = info["agreement"]
        top1 = agree.get("top1_agreement")
        console.print(f"int8 against fp32 on {info.get('check_inputs', '?')} real inputs: "
                      + (f"top-1 agreement {top1:.1%}, " if top1 is not None else "")
                      + f"max rel diff {agree['max_rel_diff']:.3g}")
    if "nms" in info:
        check = info["nms"]["check"]
        agreement = check["map50_vs_torch"]
        console.print(f"decoding + NMS in the file, on {check['images']} real inputs: "
                      f"{check['identical_images']:.0%} of images give torch's exact detections; "
                      "mAP@0.5 against torch's detections "
                      + (f"{agreement:.3f}" if agreement is not None
                         else "not defined (torch found no boxes)"))
    if "latency" in info:
        from leannet.measure import latency_from_dict

        console.print(f"latency: {latency_from_dict(info['latency'])}")
