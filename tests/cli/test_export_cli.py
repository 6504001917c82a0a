"""The export, bench, models and report commands, run through the real CLI entry point."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from leannet.checkpoint import load, save
from leannet.models import create_model
from tests.helpers import run_cli as _cli


@pytest.fixture
def model_dir(tmp_path):
    """A saved resnet20 with non-trivial BatchNorm statistics and logits."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1, width_mult=0.5,
                         image_size=16)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-0.5, 0.5)
    return save(model.eval(), tmp_path / "model")


def test_export_writes_onnx_and_result(monkeypatch, capsys, model_dir):
    code, out, err = _cli(monkeypatch, capsys, "export", str(model_dir), "--format", "onnx")
    assert code == 0, err
    result = json.loads((model_dir / "export" / "result.json").read_text())
    onnx_path = model_dir / "export" / "model.onnx"
    assert result["path"] == str(onnx_path) and result["opset"] == 17
    assert result["folded_batchnorms"] == 21 and 0 <= result["max_abs_diff"] < 1e-4
    assert "max abs diff" in out
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        expected = load(model_dir)(x).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_export_to_named_file_with_opset(monkeypatch, capsys, model_dir, tmp_path):
    target = tmp_path / "deploy" / "net.onnx"
    code, _, err = _cli(monkeypatch, capsys, "export", str(model_dir), "--out", str(target),
                        "--opset", "18")
    assert code == 0, err
    result = json.loads((target.parent / "result.json").read_text())
    assert result["opset"] == 18 and result["path"] == str(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["net.onnx", "result.json"]


def test_export_bad_inputs(monkeypatch, capsys, model_dir, tmp_path):
    code, _, err = _cli(monkeypatch, capsys, "export", str(model_dir), "--format", "tflite")
    assert code == 2 and "unknown export format 'tflite'; expected one of onnx, executorch" in err
    assert not (model_dir / "export").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(monkeypatch, capsys, "export", str(tmp_path / "empty"))
    assert code == 2 and "not a leannet model folder" in err
    code, _, err = _cli(monkeypatch, capsys, "export", str(tmp_path / "absent"))
    assert code == 2 and "is not a model folder" in err
    assert err.count("\n") == 1


def test_export_never_overwrites_without_force(monkeypatch, capsys, model_dir):
    code, _, err = _cli(monkeypatch, capsys, "export", str(model_dir))
    assert code == 0, err
    onnx_path, result_path = model_dir / "export" / "model.onnx", model_dir / "export" / "result.json"
    before = onnx_path.read_bytes(), result_path.read_text()
    code, _, err = _cli(monkeypatch, capsys, "export", str(model_dir))
    assert code == 2 and "already exists; pass --force" in err and err.count("\n") == 1
    assert (onnx_path.read_bytes(), result_path.read_text()) == before
    code, _, err = _cli(monkeypatch, capsys, "export", str(model_dir), "--force")
    assert code == 0, err
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["model.onnx", "result.json"]


def test_bench_reports_runtimes_with_spread(monkeypatch, capsys, model_dir):
    code, out, err = _cli(monkeypatch, capsys, "bench", str(model_dir), "--runs", "3",
                          "--threads", "1", "--batch-size", "2", "--runtime",
                          "torch,onnxruntime", "--precision", "fp32")
    assert code == 0, err
    result = json.loads((model_dir / "bench" / "result.json").read_text())
    rows = {r["runtime"]: r for r in result["runtimes"]}
    assert result["input_shape"] == [2, 1, 16, 16] and result["threads"] == 1
    assert set(rows) == {"torch", "onnxruntime"}
    assert result["params"] == 68_642  # resnet20 at half width, 1 input channel
    assert result["size_bytes"] == (model_dir / "weights.safetensors").stat().st_size
    for row in rows.values():
        latency = row["latency"]
        assert latency["min_ms"] <= latency["q1_ms"] <= latency["median_ms"] <= latency["q3_ms"]
        assert (latency["threads"], latency["batch"], latency["precision"]) == (1, 2, "fp32")
        assert row["parity"]["max_rel_diff"] < 1e-4
    assert rows["onnxruntime"]["size_bytes"] > 0
    assert "onnxruntime" in out and "IQR" in out and "2x1x16x16 (batch 2), 1 thread" in out
    # no recorded data source: int8 needs calibration data, so it is skipped with the reason
    code, _, err = _cli(monkeypatch, capsys, "bench", str(model_dir), "--runs", "2",
                        "--runtime", "onnxruntime", "--out", str(model_dir / "b2"))
    assert code == 0, err
    rows = json.loads((model_dir / "b2" / "result.json").read_text())["runtimes"]
    assert rows[1] == {"runtime": "onnxruntime", "precision": "int8",
                       "skipped": "int8 needs calibration data (pass --data)"}


def test_models_lists_params_and_macs(monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "models")
    assert code == 0, err
    line = next(row for row in out.splitlines() if " resnet20 " in row)
    assert "272,474" in line and "40.8M" in line and "3x32x32" in line
    assert "3,504,872" in next(row for row in out.splitlines() if " mobilenet_v2 " in row)


def test_report_command(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    entry = {"metric": 0.9, "params": 10, "macs": 2_000_000, "size_bytes": 100, "latency_ms": 1.0}
    step = {**entry, "step": 1, "status": "accepted", "target_macs_fraction": 0.5,
            "macs": 1_000_000, "metric_before_finetune": 0.8, "metrics": {}, "seconds": 1.0}
    (run / "result.json").write_text(json.dumps(
        {"baseline": entry, "final": step, "steps": [step], "target_reached": True,
         "channels_before": {"conv": 8}, "channels_after": {"conv": 4}}))
    code, out, err = _cli(monkeypatch, capsys, "report", str(run))
    assert code == 0, err
    assert (run / "report.md").is_file() and "channels.png" in out
    code, _, err = _cli(monkeypatch, capsys, "report", str(tmp_path))
    assert code == 2 and "no result.json" in err
