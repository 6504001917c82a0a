"""The demo's last step: the final model in int8 in an on-device runtime, with accuracy and
latency (spread and conditions) against the trained fp32 model, and the summary that prints it."""
from __future__ import annotations

from rich.console import Console

from leannet.cli.demo import deploy_rows
from leannet.jobs.demo import DemoConfig, deploy_stage


def test_deploy_stage_ships_int8_with_accuracy_and_speedup(digits_model, tmp_path):
    config = DemoConfig(deploy_runtimes=("torch", "onnxruntime"), deploy_runs=20)
    deploy = deploy_stage(tmp_path, config, digits_model, digits_model)
    int8 = deploy["final"]["onnxruntime/int8"]
    assert int8["path"].endswith("model-onnxruntime-int8.onnx") and int8["size_bytes"] > 0
    fp32 = deploy["trained"]["onnxruntime"]
    assert fp32["accuracy"] > 0.8 and abs(int8["accuracy"] - fp32["accuracy"]) < 0.05
    assert int8["size_bytes"] < 0.45 * deploy["final"]["onnxruntime/fp32"]["size_bytes"]
    assert deploy["speedup_vs_trained_fp32"]["onnxruntime/int8"] > 0
    assert set(deploy["trained"]) == {"torch", "onnxruntime"}
    rows = deploy_rows(deploy)
    console = Console(width=200, record=True)
    for row in rows:
        console.print(" | ".join(row))
    text = console.export_text()
    assert "onnxruntime int8, 1 thread, batch 1: latency ms (IQR)" in text
    assert "torch fp32, 1 thread, batch 1" in text and "(IQR " in text
    assert "onnxruntime int8 vs trained fp32: speed-up" in text
