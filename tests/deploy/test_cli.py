"""`leannet quantize`, `bench` and `export` for int8 and ExecuTorch through the real entry point
on a real digits classifier; bad input is one `error:` line and exit 2, and no command writes
over another run's output without --force."""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli as cli


def test_quantize_writes_files_and_accuracy_before_after(digits_model, tmp_path, monkeypatch,
                                                         capsys):
    out = tmp_path / "q"
    code, text, err = cli(monkeypatch, capsys, "quantize", str(digits_model), "--runtime",
                          "onnxruntime,executorch", "--runs", "5", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["data"] == "digits" and result["int8_method"] == "PT2E PTQ"
    fp32 = result["fp32_metrics"]["accuracy"]
    assert fp32 > 0.8 and abs(result["int8_reference_metrics"]["accuracy"] - fp32) < 0.03
    rows = {(r["runtime"], r["precision"]): r for r in result["runtimes"]}
    assert set(rows) == {(r, p) for r in ("onnxruntime", "executorch") for p in ("fp32", "int8")}
    for (runtime, precision), row in rows.items():
        assert (out / f"model-{runtime}-{precision}{'.onnx' if runtime == 'onnxruntime' else '.pte'}"
                ).stat().st_size == row["size_bytes"]
        assert abs(row["metrics"]["accuracy"] - fp32) < 0.05
        assert row["latency"]["threads"] == 1 and row["latency"]["q3_ms"] >= row["latency"][
            "median_ms"]
    assert "executorch/int8 vs executorch/fp32" in result["speedups"]
    assert "accuracy: fp32" in text and "int8" in text
    before = (out / "result.json").read_text()
    code, _, err = cli(monkeypatch, capsys, "quantize", str(digits_model), "--out", str(out))
    assert code == 2 and "already exists (another run's result); pass --force" in err
    assert err.count("\n") == 1 and (out / "result.json").read_text() == before


@pytest.mark.parametrize("args, message", [
    (("--threads", "nan"), "threads must be a positive whole number, got 'nan'"),
    (("--threads", "-1"), "threads must be a positive whole number, got '-1'"),
    (("--runtime", "tflite"), "unknown runtime 'tflite'; expected one or more of executorch"),
    (("--precision", "int4"), "unknown precision 'int4'"),
    (("--runs", "0"), "--runs must be a positive whole number"),
])
def test_bench_bad_input_is_one_line(digits_model, tmp_path, monkeypatch, capsys, args, message):
    code, _, err = cli(monkeypatch, capsys, "bench", str(digits_model), "--out",
                       str(tmp_path / "b"), *args)
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_missing_model_folder_and_missing_data(tmp_path, monkeypatch, capsys, digits_model):
    for command in ("bench", "quantize", "export"):
        code, _, err = cli(monkeypatch, capsys, command, str(tmp_path / "absent"))
        assert code == 2 and "is not a model folder" in err and err.count("\n") == 1
    code, _, err = cli(monkeypatch, capsys, "quantize", str(digits_model), "--data", "nope")
    assert code == 2 and "unknown data source 'nope'" in err


def test_export_executorch_int8_and_missing_toolchain(digits_model, tmp_path, monkeypatch,
                                                      capsys):
    target = tmp_path / "phone" / "digits.pte"
    code, text, err = cli(monkeypatch, capsys, "export", str(digits_model), "--format",
                          "executorch", "--precision", "int8", "--out", str(target))
    assert code == 0, err
    result = json.loads((target.parent / "result.json").read_text())
    assert result["format"] == "executorch" and result["precision"] == "int8"
    assert result["agreement"]["top1_agreement"] >= 0.9 and result["delegates"] >= 1
    assert target.stat().st_size == result["size_bytes"]
    assert "top-1 agreement" in text and "executorch int8, 1 thread, batch 1" in text
    code, _, err = cli(monkeypatch, capsys, "export", str(digits_model), "--format",
                       "executorch", "--precision", "int8", "--out", str(target))
    assert code == 2 and "already exists" in err
    import leannet.deploy.runtimes.executorch as et

    monkeypatch.setattr(et, "_MISSING", "runtime executorch needs the executorch package; "
                                        'install it with: pip install "leannet[deploy]"')
    code, _, err = cli(monkeypatch, capsys, "export", str(digits_model), "--format",
                       "executorch", "--out", str(tmp_path / "x"))
    assert code == 2 and err.count("\n") == 1 and 'pip install "leannet[deploy]"' in err
    assert not (tmp_path / "x").exists()


def test_export_onnx_int8_is_qdq_and_agrees(digits_model, tmp_path, monkeypatch, capsys):
    import onnx

    out = tmp_path / "onnx-int8"
    code, text, err = cli(monkeypatch, capsys, "export", str(digits_model), "--precision", "int8",
                          "--out", str(out))
    assert code == 0, err
    path = out / "model-int8.onnx"
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    result = json.loads((out / "result.json").read_text())
    assert result["precision"] == "int8" and result["agreement"]["top1_agreement"] >= 0.9
    assert result["latency"]["runtime"] == "onnxruntime" and "IQR" in text


def test_export_nms_refuses_a_classifier(digits_model, tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "export", str(digits_model), "--nms", "--out",
                       str(tmp_path / "n.onnx"))
    assert code == 2 and "--nms needs a YOLO detector" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
    code, _, err = cli(monkeypatch, capsys, "export", str(digits_model), "--conf", "0.5",
                       "--out", str(tmp_path / "n.onnx"))  # an NMS option without --nms
    assert code == 2 and "add --nms" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
