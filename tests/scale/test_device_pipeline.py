"""The whole pipeline on a device parameter: train -> prune one step (data criterion, so
calibration runs too) -> evaluate -> export, on the CPU here and on CUDA when present.

On a GPU machine the model is fine-tuned, calibrated and evaluated on the GPU while example
inputs start on the CPU; latency is still timed on the CPU (phone-like), and export takes a CPU
copy: a device mismatch anywhere fails this test.
"""
import json

import pytest
import torch

from leannet.export import check_onnx_parity, export_onnx
from leannet.jobs.prune import PruneJob, run_prune_job
from leannet.jobs.train import TrainJob, run_train
from leannet.checkpoint import load
from leannet.measure import torch_latency
from leannet.train.evaluation import evaluate_folder
from tests.scale.conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_train_prune_evaluate_export_on_a_device(device, tmp_path):
    trained = run_train(TrainJob(model="simple_cnn", data="digits", image_size=8, epochs=1,
                                 batch_size=32, out=tmp_path / "train", device=device),
                        progress=False)
    assert trained["accuracy"] > 0.3 and trained["latency"]["runtime"] == "torch"
    pruned = run_prune_job(PruneJob(tmp_path / "train" / "model", None, tmp_path / "pruned",
                                    criterion="taylor", target={"macs": 0.6}, steps=1,
                                    schedule="oneshot", max_drop=1.0, batch_size=32,
                                    calibration_batches=2, device=device))
    assert pruned["steps"][0]["status"] == "accepted"
    assert pruned["final"]["macs"] < 0.7 * pruned["baseline"]["macs"]
    assert pruned["final"]["latency_detail"]["runtime"] == "torch"  # CPU unless asked
    scored = evaluate_folder(tmp_path / "pruned" / "model")
    # eval reports the test split, as result.json's test_metrics (the guard watched validation)
    assert scored["accuracy"] == pytest.approx(pruned["final"]["test_metrics"]["accuracy"],
                                               abs=1e-9)
    model = load(tmp_path / "pruned" / "model").to(device)
    shape = json.loads((tmp_path / "pruned" / "model" / "config.json").read_text())["input_shape"]
    info = export_onnx(model, tmp_path / "pruned.onnx", (1, *shape))
    assert info["path"] and next(model.parameters()).device.type == device  # a copy went to CPU
    assert check_onnx_parity(model, tmp_path / "pruned.onnx", (1, *shape))["max_rel_diff"] < 1e-3
    if device == "cuda":  # latency on the GPU when asked, synchronised
        assert torch_latency(model, (1, *shape), runs=5, device="cuda").runtime == "torch cuda"


def test_latency_device_is_checked():
    from leannet.errors import LeannetError

    model = torch.nn.Conv2d(1, 2, 3)
    assert torch_latency(model, (1, 1, 8, 8), runs=3, warmup=1, warn=False).runtime == "torch"
    if not torch.cuda.is_available():
        with pytest.raises(LeannetError, match="no CUDA GPU"):
            torch_latency(model, (1, 1, 8, 8), runs=3, device="cuda")
    with pytest.raises(LeannetError, match="expected cpu or cuda"):
        torch_latency(model, (1, 1, 8, 8), runs=3, device="meta")
