"""A detector's ONNX file with box decoding and NMS inside: the app feeds an image and reads final
boxes, scores and labels, with no YOLO decoding to re-implement on the phone.

The detector's own file (fp32, or int8 from onnxruntime's quantizer) is left exactly as it was
built and checked; the decoding + NMS graph (`detect.postprocess.Detections`, exported on its
own) is appended with `onnx.compose.merge_models`, so int8 quantization never touches box
arithmetic. The merged file takes batch 1 (the phone case). It is checked against the torch
model's own detections (`detect.decode`) on real inputs: fp32 must give the same boxes, scores
and labels (up to rank swaps of near-equal scores); int8 is scored by mAP@0.5 of its boxes with
the torch model's as ground truth.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import compose
from torch import nn

from leannet.deploy.matrix import build_one, timed
from leannet.deploy.runtimes import get_runtime
from leannet.deploy.runtimes.base import Session
from leannet.detect.decode import decode
from leannet.detect.metrics import mean_average_precision
from leannet.detect.postprocess import DETECTION_OUTPUTS, Detections
from leannet.errors import LeannetError
from leannet.export import export_checked, flatten_outputs
from leannet.files import atomic_write
from leannet.measure import time_latencies

BOX_ATOL = 1e-3  # pixels: fp32 files reorder sums, nothing more
FP32_AGREEMENT = 0.99  # mAP@0.5 of an fp32 file's detections against torch's


def detections_head(model: nn.Module, conf: float, iou: float, max_detections: int
                    ) -> Detections:
    """The decoding + NMS module for `model`, refused with one line for a non-detector."""
    spec = getattr(model, "detect_spec", None)
    if spec is None:
        raise LeannetError("--nms needs a YOLO detector (the model has no detect_spec)")
    return Detections(spec, conf, iou, max_detections)


def deploy_with_detections(model: nn.Module, path: Path, precision: str, head: Detections,
                           example: torch.Tensor, *, opset: int = 17,
                           calibration: list[torch.Tensor] | None = None,
                           check_inputs: torch.Tensor | None = None) -> dict[str, Any]:
    """The detector's checked ONNX file (fp32, or int8 from `calibration`), decoding + NMS
    appended, the merged file checked against torch's detections on `check_inputs` (real images;
    seeded noise when None) and timed at one thread; it appears at `path` only when all passed."""
    if check_inputs is None:
        check_inputs = torch.randn(8, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="leannet-nms-") as tmp:
        plain = Path(tmp) / "plain.onnx"
        info = (export_checked(model, plain, tuple(example.shape), opset=opset)
                if precision == "fp32" else
                build_one(model, "onnxruntime", precision, plain, example,
                          calibration=calibration, check_inputs=check_inputs)[0])

        def write(staging: str) -> None:
            info.update(append_detections(plain, Path(staging), model, head, example))
            session = get_runtime("onnxruntime").load(Path(staging), threads=1)
            info["nms"]["check"] = check_detections(session, model, head, check_inputs, precision)
            info["latency"] = time_latencies({0: timed(session, "onnxruntime", precision, example)},
                                             threads=1, runs=20, rounds=1)[0].to_dict()
            info["size_bytes"] = Path(staging).stat().st_size

        atomic_write(path, write)
    return {**info, "path": str(path)}


def append_detections(plain: Path, path: Path, model: nn.Module, head: Detections,
                      example: torch.Tensor) -> dict[str, Any]:
    """Write `plain` (the model's checked ONNX file) followed by `head` to `path`."""
    body = onnx.load(str(plain))
    opset = max(o.version for o in body.opset_import if o.domain in ("", "ai.onnx"))
    with torch.no_grad():
        outputs = dict(flatten_outputs(model.eval()(example[:1])))
    keys = list(head.spec.keys)
    if [o.name for o in body.graph.output] != list(outputs) or not set(keys) <= set(outputs):
        raise LeannetError(f"{plain} outputs {[o.name for o in body.graph.output]}, expected the "
                           f"detector's {list(outputs)}")
    with tempfile.TemporaryDirectory(prefix="leannet-nms-") as tmp:
        torch.onnx.export(head, tuple(outputs[k] for k in keys), f"{tmp}/nms.onnx",
                          input_names=keys, output_names=list(DETECTION_OUTPUTS),
                          opset_version=opset, dynamo=False)
        tail = onnx.load(f"{tmp}/nms.onnx")
    tail = compose.add_prefix(tail, "nms/", rename_inputs=False, rename_outputs=False)
    tail.ir_version = body.ir_version
    for entry in tail.opset_import:  # one default-domain version in the merged file
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    extra = [name for name in outputs if name not in keys]  # e.g. a count head: kept as it is
    merged = compose.merge_models(body, tail, io_map=[(k, k) for k in keys],
                                  outputs=[*DETECTION_OUTPUTS, *extra])
    order = {name: i for i, name in enumerate([*DETECTION_OUTPUTS, *extra])}
    ranked = sorted(merged.graph.output, key=lambda o: order[o.name])  # detections first
    del merged.graph.output[:]
    merged.graph.output.extend(ranked)
    merged.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # batch 1 only
    onnx.checker.check_model(merged)
    onnx.save(merged, str(path))
    return {"nms": {"conf": head.conf, "iou": head.iou, "max_detections": head.max_detections,
                    "pre_nms": head.pre_nms, "outputs": [*DETECTION_OUTPUTS, *extra], "batch": 1}}


def check_detections(session: Session, model: nn.Module, head: Detections, inputs: torch.Tensor,
                     precision: str) -> dict[str, Any]:
    """The merged file against torch's `decode` on each of `inputs`, one image at a time: the
    fraction of images with identical detections, and mAP@0.5 of the file's detections with the
    torch model's as ground truth. fp32 below FP32_AGREEMENT raises LeannetError (near-equal
    scores may swap ranks at the max-detections cut, so exact equality is reported, not
    required); int8 is reported as it is."""
    spec = head.spec
    got, expected = [], []
    with torch.no_grad():
        for image in inputs:
            x = image.unsqueeze(0)
            boxes, scores, labels = session.run(x.numpy())[:3]
            got.append({"boxes": torch.from_numpy(boxes), "scores": torch.from_numpy(scores),
                        "labels": torch.from_numpy(labels).long()})
            expected.extend(decode(model.eval()(x), spec, head.conf, head.iou,
                                   head.max_detections, head.pre_nms))
    same = [len(w["boxes"]) == len(h["boxes"]) and torch.equal(w["labels"], h["labels"])
            and bool(torch.allclose(w["boxes"], h["boxes"], atol=BOX_ATOL))
            for w, h in zip(expected, got)]
    found = sum(len(e["boxes"]) for e in expected)
    agreement = None
    if found:
        targets = [{"boxes": e["boxes"], "labels": e["labels"]} for e in expected]
        agreement = float(mean_average_precision(got, targets, spec.num_classes)["map50"])
    if precision == "fp32" and not all(same) and (agreement or 0.0) < FP32_AGREEMENT:
        raise LeannetError(f"the ONNX file's detections differ from the torch model's: mAP@0.5 "
                           f"against torch {agreement}, expected at least {FP32_AGREEMENT}")
    return {"images": len(inputs), "torch_detections": found,
            "file_detections": int(sum(len(g["boxes"]) for g in got)),
            "identical_images": sum(same) / len(same), "map50_vs_torch": agreement}
