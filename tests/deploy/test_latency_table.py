"""Runtime-targeted pruning: the per-layer latency table (NetAdapt) measured in ONNX Runtime,
and a latency target planned and checked in that runtime."""
from __future__ import annotations

import copy

import pytest
import torch

from leannet.models import create_model
from leannet.prune import Pruner, Target, apply_plan
from leannet.deploy.latency import latency_table, runtime_latency_ms, runtime_measure
from leannet.prune.latency import plan_for_latency


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes=10, in_channels=1, image_size=32).eval()


def test_latency_table_measures_each_layer_in_the_runtime(model):
    x = torch.randn(2, 1, 32, 32)
    table = latency_table(model, x, runtime="onnxruntime", keep=0.5, round_to=8, runs=15)
    assert table["runtime"] == "onnxruntime" and table["base_ms"] > 0
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert set(table["layers"]) and set(table["layers"]) <= set(convs)
    for row in table["layers"].values():
        assert 0 < row["macs_saved"] < table["base_macs"]
        assert row["ms_per_mmac"] == pytest.approx(row["ms_saved"] / (row["macs_saved"] / 1e6),
                                                   rel=1e-2, abs=1e-3)
    # halving every layer at once saves more than any one layer alone (measured, not modelled)
    best_single = max(r["ms_saved"] for r in table["layers"].values())
    halved = copy.deepcopy(model)
    apply_plan(halved, Pruner(halved, x).plan(Target(channels=0.5, round_to=8)), x)
    assert runtime_latency_ms(halved, x[:1], "onnxruntime", runs=15) < table["base_ms"]
    assert best_single < table["base_ms"]


def test_latency_target_is_planned_in_the_runtime(model):
    x = torch.randn(2, 1, 32, 32)
    pruner = Pruner(copy.deepcopy(model), x, criterion="l1")
    label = {"runtime": "onnxruntime", "precision": "fp32"}
    plan = plan_for_latency(pruner, Target(latency=0.8, round_to=8), steps=4,
                            measure=runtime_measure(x[:1], "onnxruntime"), label=label)
    assert plan.meta["target"] == {"latency": 0.8}
    assert plan.meta["latency_runtime"] == {"runtime": "onnxruntime", "precision": "fp32"}
    assert plan.meta["latency_fraction"] <= 0.8
