"""Runtimes on a real digits classifier: fp32 files match torch, int8 files (ONNX QDQ and
ExecuTorch XNNPACK from PT2E) agree with it and keep its accuracy, are about 4x smaller, and are
timed with their conditions; the registry and its errors."""
from __future__ import annotations

import pytest
import torch

from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.deploy.score import evaluate_session
from leannet.deploy.matrix import deploy_matrix, deploy_one
from leannet.deploy.quantize import calibration_batches, quantize_ptq
from leannet.deploy.runtimes import get_runtime, list_runtimes
from leannet.errors import LeannetError
from leannet.checkpoint import load
from leannet.train.fit import evaluate
from leannet.train.tasks import task_for


@pytest.fixture(scope="module")
def setup(digits_model):
    model = load(digits_model)
    source = get_source("digits", image_size=8)
    train_loader, val_loader = make_loaders(source, 64, seed=0)
    task = task_for(model, source)
    return {"model": model, "val": val_loader, "task": task,
            "calibration": calibration_batches(train_loader, 4),
            "inputs": next(iter(val_loader))[0][:32], "example": torch.zeros(1, 1, 8, 8)}


def test_registry_lists_runtimes_and_refuses_unknown_ones():
    assert list_runtimes() == ["executorch", "onnxruntime", "torch"]
    with pytest.raises(LeannetError, match="unknown runtime 'tflite'; expected one of executorch"):
        get_runtime("tflite")
    with pytest.raises(LeannetError, match="unknown precision 'int4'"):
        get_runtime("onnxruntime").check("int4")
    with pytest.raises(LeannetError, match="runtime torch has no int8"):
        get_runtime("torch").check("int8")


def test_fp32_files_match_torch_and_keep_accuracy(setup, tmp_path):
    fp32 = evaluate(setup["model"], setup["val"], setup["task"])["accuracy"]
    assert fp32 > 0.8
    for runtime in ("onnxruntime", "executorch"):
        suffix = get_runtime(runtime).suffix
        row = deploy_one(setup["model"], runtime, "fp32", tmp_path / f"m{suffix}",
                         setup["example"], check_inputs=setup["inputs"], runs=5, warmup=1,
                         evaluate=lambda s: evaluate_session(s, setup["model"], setup["val"],
                                                             setup["task"]))
        assert row["parity"]["max_rel_diff"] < 1e-4 and row["parity"]["top1_agreement"] == 1.0
        assert row["metrics"]["accuracy"] == pytest.approx(fp32, abs=1e-9)
        assert row["latency"]["runtime"] == runtime and row["latency"]["threads"] == 1
        assert row["latency"]["batch"] == 1 and row["latency"]["median_ms"] > 0
        assert row["size_bytes"] == (tmp_path / f"m{suffix}").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pte"]  # no staging left


def test_int8_agrees_keeps_accuracy_and_is_smaller(setup):
    model, quantized = setup["model"], quantize_ptq(setup["model"], setup["example"],
                                                    setup["calibration"])
    fp32 = evaluate(model, setup["val"], setup["task"])["accuracy"]
    reference = evaluate(quantized, setup["val"], setup["task"])["accuracy"]
    assert abs(reference - fp32) < 0.03
    assert any("quantize_per" in str(n.target) for n in quantized.graph.nodes)

    def score(session):
        return evaluate_session(session, model, setup["val"], setup["task"])

    rows = deploy_matrix(model, setup["example"], ["onnxruntime", "executorch"], ["fp32", "int8"],
                         runs=5, warmup=1, calibration=setup["calibration"],
                         check_inputs=setup["inputs"], evaluate=score, quantized=quantized)
    by = {(r["runtime"], r["precision"]): r for r in rows}
    assert set(by) == {(r, p) for r in ("onnxruntime", "executorch") for p in ("fp32", "int8")}
    for runtime in ("onnxruntime", "executorch"):
        int8, fp = by[(runtime, "int8")], by[(runtime, "fp32")]
        assert int8["agreement"]["top1_agreement"] >= 0.9
        assert 0 < int8["agreement"]["max_rel_diff"] < 0.2  # really quantized, still close
        assert abs(int8["metrics"]["accuracy"] - fp32) < 0.05
        assert int8["size_bytes"] < 0.45 * fp["size_bytes"]
        assert int8["latency"]["precision"] == "int8"
    # ExecuTorch lowers the PT2E model itself: it matches the int8 torch reference closely
    assert by[("executorch", "int8")]["vs_int8_reference"]["top1_agreement"] == 1.0
    assert by[("executorch", "int8")]["metrics"]["accuracy"] == pytest.approx(reference, abs=0.01)


def test_existing_file_is_refused_then_replaced_with_force(setup, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"someone else's file")
    with pytest.raises(LeannetError, match="already exists; pass --force"):
        deploy_one(setup["model"], "onnxruntime", "fp32", path, setup["example"], runs=2)
    assert path.read_bytes() == b"someone else's file"
    with pytest.raises(LeannetError, match="int8 needs calibration"):
        deploy_one(setup["model"], "onnxruntime", "int8", path, setup["example"], force=True)
    assert path.read_bytes() == b"someone else's file"
    deploy_one(setup["model"], "onnxruntime", "fp32", path, setup["example"], runs=2, force=True)
    assert path.read_bytes()[:2] != b"so" and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.onnx"]
    with pytest.raises(LeannetError, match="executorch files end in .pte"):
        deploy_one(setup["model"], "executorch", "fp32", tmp_path / "m.onnx", setup["example"])


def test_missing_toolchain_is_one_clear_line(setup, monkeypatch):
    import leannet.deploy.runtimes.executorch as et

    monkeypatch.setattr(et, "_MISSING", "runtime executorch needs the executorch package")
    with pytest.raises(LeannetError, match="needs the executorch package"):
        deploy_one(setup["model"], "executorch", "fp32", None, setup["example"])
    rows = deploy_matrix(setup["model"], setup["example"], ["executorch"], ["fp32"], runs=2)
    assert rows == [{"runtime": "executorch", "precision": "fp32",
                     "skipped": "runtime executorch needs the executorch package"}]


def test_fixed_batch_file_runs_any_batch(setup):
    from leannet.deploy.matrix import build_one

    example = torch.zeros(2, 1, 8, 8)  # a .pte compiled for batches of 2
    row, session = build_one(setup["model"], "executorch", "fp32", None, example,
                             check_inputs=setup["inputs"][:5])
    assert session.fixed_batch == 2 and row["parity"]["max_rel_diff"] < 1e-3
    (out,) = session.run(setup["inputs"][:5].numpy())
    with torch.no_grad():
        expected = setup["model"](setup["inputs"][:5]).numpy()
    assert out.shape == (5, 10) and abs(out - expected).max() < 1e-3 * abs(expected).max()
