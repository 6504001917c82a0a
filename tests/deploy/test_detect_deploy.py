"""A YOLO v3 detector through `leannet quantize`: ONNX Runtime fp32 and int8 files of a tiny
detector trained on real digits canvases, scored with mAP by the task's own meter, and
checked box for box against the torch model (mAP@0.5 of the file's detections with torch
fp32's as ground truth), so the check means something even for a barely trained detector."""
from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from leannet.checkpoint import save
from leannet.data import get_source, registry
from leannet.data.detection import digits_detect
from leannet.data.loaders import make_loaders
from leannet.detect.setup import build
from leannet.train import fit
from leannet.train.build import remember_data
from tests.helpers import run_cli as cli


def _small_source(patch: pytest.MonkeyPatch) -> None:
    """digits-detect with 96 training and 32 validation/test canvases (the real digits)."""
    entry = registry.list_sources()["digits-detect"]
    patch.setitem(registry._SOURCES, "digits-detect", registry.SourceEntry(
        partial(digits_detect, num_train=96, num_val=32), entry.description, entry.available))


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """YOLO v3 on MobileNetV2 x0.25 (neck 16), 64 px, four AdamW epochs (about 8 CPU seconds;
    after one or two its objectness is near 0 everywhere, so there is no box to compare),
    saved with its source."""
    with pytest.MonkeyPatch.context() as patch:
        _small_source(patch)
        torch.manual_seed(0)
        torch.set_num_threads(1)
        source = get_source("digits-detect", image_size=64)
        model, task = build(source, "mobilenet_v2", {"width_mult": 0.25, "neck_channels": 16},
                            "v3")
        remember_data(model, "digits-detect", None)
        train, val = make_loaders(source, 16, seed=0)
        fit(model, train, val, task, 4, optimizer="adamw", lr=3e-3, seed=0, progress=False)
        return save(model.eval(), tmp_path_factory.mktemp("detect") / "model")


def test_quantize_a_detector_scores_map_and_agreement(detector, tmp_path, monkeypatch, capsys):
    _small_source(monkeypatch)
    out = tmp_path / "q"
    code, text, err = cli(monkeypatch, capsys, "quantize", str(detector), "--runtime",
                          "onnxruntime", "--runs", "3", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["data"] == "digits-detect" and result["metrics_split"] == "test"
    torch_map = result["fp32_metrics"]["map50"]
    rows = {r["precision"]: r for r in result["runtimes"]}
    assert set(rows) == {"fp32", "int8"}
    for precision, row in rows.items():
        assert row["outputs"] == ["s8", "s16", "s32", "count"]
        assert set(row["metrics"]) == {"map50", "map50_vs_torch_fp32"}
        assert (out / f"model-onnxruntime-{precision}.onnx").stat().st_size == row["size_bytes"]
        latency = row["latency"]
        assert latency["threads"] == 1 and latency["batch"] == 1
        assert latency["q1_ms"] <= latency["median_ms"] <= latency["q3_ms"]
    fp32, int8 = rows["fp32"], rows["int8"]
    assert fp32["parity"]["max_rel_diff"] < 1e-4
    assert abs(fp32["metrics"]["map50"] - torch_map) < 1e-6  # the file scores as torch does
    assert fp32["metrics"]["map50_vs_torch_fp32"] > 0.99  # same boxes, classes, ranking
    assert 0.5 < int8["metrics"]["map50_vs_torch_fp32"] <= 1.0  # int8 moves some boxes
    assert abs(int8["metrics"]["map50"] - torch_map) < 0.1
    print(json.dumps({p: r["metrics"] for p, r in rows.items()}))  # shown with -s
    assert int8["size_bytes"] < 0.7 * fp32["size_bytes"]
    assert "map50" in text and "(batch 1), 1 thread" in text


def test_export_nms_ends_the_file_in_final_detections(detector, tmp_path, monkeypatch, capsys):
    """`export --nms`: the ONNX file takes an image and returns boxes, scores and labels; fp32
    gives torch's detections (decode + NMS), int8 nearly the same; nothing is replaced
    without --force, and a non-detector or another format is refused in one line."""
    import numpy as np
    import onnxruntime as ort

    from leannet.checkpoint import load
    from leannet.detect.decode import decode

    _small_source(monkeypatch)
    out = tmp_path / "nms.onnx"
    code, text, err = cli(monkeypatch, capsys, "export", str(detector), "--nms", "--conf", "0.001",
                          "--out", str(out))
    assert code == 0, err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["nms"]["outputs"] == ["boxes", "scores", "labels", "count"]
    check = result["nms"]["check"]
    assert check["torch_detections"] > 0 and check["map50_vs_torch"] > 0.99
    assert f"mAP@0.5 against torch's detections {check['map50_vs_torch']:.3f}" in text

    model = load(detector).eval()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()][:3] == ["boxes", "scores", "labels"]
    image = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    boxes, scores, labels, _ = session.run(None, {"input": image.numpy()})
    with torch.no_grad():
        want = decode(model(image), model.detect_spec, 0.001, 0.45)[0]
    assert boxes.shape == (len(want["boxes"]), 4) and len(want["boxes"]) > 0

    def rows(b, s, lab):  # near-equal scores may swap ranks: compare as sorted sets of rows
        table = np.concatenate([np.asarray(lab, np.float32)[:, None], np.asarray(b),
                                np.asarray(s)[:, None]], 1)
        return table[np.lexsort(table.T[::-1])]
    np.testing.assert_allclose(rows(boxes, scores, labels),
                               rows(want["boxes"], want["scores"], want["labels"]), atol=1e-3)
    assert (np.diff(scores) <= 0).all()  # best first

    before = out.read_bytes()
    code, _, err = cli(monkeypatch, capsys, "export", str(detector), "--nms", "--out", str(out))
    assert code == 2 and "already exists" in err and out.read_bytes() == before

    int8 = tmp_path / "int8" / "nms-int8.onnx"
    code, text, err = cli(monkeypatch, capsys, "export", str(detector), "--nms", "--conf", "0.001",
                          "--precision", "int8", "--out", str(int8))
    assert code == 0, err
    check = json.loads((int8.parent / "result.json").read_text())["nms"]["check"]
    assert 0.5 < check["map50_vs_torch"] <= 1.0 and check["file_detections"] > 0
    assert int8.stat().st_size < 0.7 * out.stat().st_size

    for bad in (("--conf", "nan"), ("--iou", "0"), ("--max-det", "0")):
        code, _, err = cli(monkeypatch, capsys, "export", str(detector), "--nms", *bad, "--out",
                           str(tmp_path / "bad" / "bad.onnx"))
        assert code == 2 and ("out of range" in err or "must be at least 1" in err), err
        assert err.count("\n") == 1 and not (tmp_path / "bad").exists()
    code, _, err = cli(monkeypatch, capsys, "export", str(detector), "--nms", "--format",
                       "executorch", "--out", str(tmp_path / "x"))
    assert code == 2 and "--nms works with --format onnx only" in err
    assert not (tmp_path / "x").exists()
