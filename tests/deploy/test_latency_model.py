"""Latency-targeted pruning on a per-layer table: the table's arithmetic (what a plan is
estimated to cost), the planner's trade (importance per millisecond), the iterative loop steered
by the estimate, the table measured in ONNX Runtime, and `leannet prune --target-latency` in a
runtime through the real entry point on a real digits classifier."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from leannet.deploy.latency import layer_latency_model
from leannet.errors import LeannetError
from leannet.iterative import iterative_prune
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.prune import LatencyModel, Pruner, Target
from leannet.prune.cost import CostModel
from tests.helpers import run_cli as cli


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes=10, in_channels=1, image_size=32).eval()


def _convs(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def test_estimate_is_the_tables_sum_and_round_trips(model):
    x = torch.randn(2, 1, 32, 32)
    names = _convs(model)
    table = LatencyModel({n: (0.01 * i, 1e-6) for i, n in enumerate(names)}, other_ms=0.5)
    cost = CostModel(model, Pruner(model, x).graph, table)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    linear_macs = sum(count_macs(model.get_submodule(n), torch.randn(1, m.in_features))
                      for n in linears for m in [model.get_submodule(n)])
    # every conv at 1e-6 ms/MAC plus its fixed cost; linear layers get the median slope (1e-6)
    expected = 0.5 + sum(0.01 * i for i in range(len(names))) + 1e-6 * cost.macs0
    assert linear_macs > 0 and cost.latency0 == pytest.approx(expected, rel=1e-9)
    assert LatencyModel.from_dict(json.loads(json.dumps(table.to_dict()))).layers == table.layers


@pytest.mark.parametrize("bad", [
    {"layers": {"a": {"fixed_ms": math.nan, "ms_per_mac": 1.0}}},
    {"layers": {"a": {"fixed_ms": 0.0, "ms_per_mac": -1.0}}},
    {"layers": {}},
    {"layers": {"a": {"ms_per_mac": 1.0}}},
    {"layers": {"a": {"fixed_ms": 0.0, "ms_per_mac": 1.0}}, "other_ms": math.inf},
])
def test_bad_tables_are_one_clear_error(bad):
    with pytest.raises(LeannetError, match="latency table"):
        LatencyModel.from_dict(bad)


def test_layers_dear_per_mac_lose_more_under_a_latency_target(model):
    """The first conv costs 10x per MAC what the others do. At the same estimated latency, a
    latency target takes more of its channels than a MACs target does (importance per
    millisecond, not per MAC), and reaches the estimated fraction it was asked for."""
    x = torch.randn(2, 1, 32, 32)
    dear = _convs(model)[0]
    table = LatencyModel({n: (0.0, 1e-5 if n == dear else 1e-6) for n in _convs(model)})
    pruner = Pruner(copy.deepcopy(model), x, criterion="l1", latency_model=table)
    by_latency = pruner.plan(Target(latency=0.6))
    assert by_latency.meta["latency_fraction"] <= 0.6 + 1e-9
    low, high = 0.05, 1.0  # the largest MACs target whose plan is estimated as fast
    for _ in range(12):
        middle = (low + high) / 2
        if pruner.plan(Target(macs=middle)).meta["latency_fraction"] <= 0.6:
            low = middle
        else:
            high = middle
    by_macs = pruner.plan(Target(macs=low))
    assert by_macs.meta["latency_fraction"] <= 0.6 + 1e-9
    group = pruner.graph.by_name[dear]  # the group of its output channels

    def kept(plan):
        entry = plan.groups.get(group.name)
        return len(entry["keep"]) if entry else group.size
    assert kept(by_latency) < kept(by_macs) - 4  # measured: 10 against 20 of 32
    # a softer trade keeps more of the dear layer, importance alone the most; all reach 0.6
    softer = pruner.plan(Target(latency=0.6, latency_tradeoff=0.25))
    alone = pruner.plan(Target(latency=0.6, latency_tradeoff=0.0))
    assert kept(by_latency) < kept(softer) < kept(alone)  # measured: 10, 12, 16 or more
    assert max(p.meta["latency_fraction"] for p in (softer, alone)) <= 0.6 + 1e-9
    for bad in (float("nan"), -0.5, 5.0):
        with pytest.raises(LeannetError, match="latency_tradeoff"):
            pruner.plan(Target(latency=0.6, latency_tradeoff=bad))


def test_iterative_run_is_steered_by_the_estimate(model):
    x = torch.randn(2, 1, 32, 32)
    table = LatencyModel({n: (0.001, 2e-6) for n in _convs(model)}, other_ms=0.01)
    result = iterative_prune(copy.deepcopy(model), lambda m: None, lambda m: 1.0,
                             Target(latency=0.6), x, steps=2, max_drop=0.1,
                             pruner_options={"latency_model": table})
    assert result.target_reached
    assert result.baseline["latency"] == result.baseline["latency_estimated_ms"]
    assert result.final["latency_estimated_ms"] <= 0.6 * result.baseline["latency"] * 1.01
    assert all(s["achieved_fraction"] <= s["target_fraction"] + 0.02 for s in result.steps)


def test_table_measured_in_onnxruntime_adds_up_to_the_model(model):
    x = torch.randn(2, 1, 32, 32)
    table = layer_latency_model(model, x, "onnxruntime", "fp32", runs=6, rounds=2)
    assert set(table.layers) == set(_convs(model)) | {
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert all(f >= 0 and s >= 0 for f, s in table.layers.values())
    assert table.meta["runtime"] == "onnxruntime" and table.meta["model_ms"] > 0
    estimate = CostModel(model, Pruner(model, x).graph, table).latency0
    assert estimate == pytest.approx(table.meta["model_ms"], rel=1e-3)


def test_prune_cli_plans_a_latency_target_in_the_runtime(digits_model, tmp_path, monkeypatch,
                                                         capsys):
    """The CLI's wiring: --runtime/--precision choose the table, which is saved in the run folder
    and steers the loop. The table is a fixed one here (a measured table of an 8 px model is
    mostly timer noise, so the test could not fail for the right reason); measuring one is the
    test above."""
    asked = []

    def fixed_table(model, example, runtime, precision, threads=1):
        asked.append((runtime, precision, threads))
        layers = {n: (0.001, 2e-5 if n == "features.0.0" else 1e-6)  # the stem: dear per MAC
                  for n, m in model.named_modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        return LatencyModel(layers, 0.001, {"runtime": runtime, "precision": precision})

    monkeypatch.setattr("leannet.jobs.prune.layer_latency_model", fixed_table)
    out = tmp_path / "lat"
    code, text, err = cli(monkeypatch, capsys, "prune", str(digits_model), "--target-latency",
                          "0.7", "--runtime", "onnxruntime", "--precision", "fp32", "--steps",
                          "1", "--finetune-epochs", "1", "--max-drop", "0.5", "--out", str(out))
    assert code == 0, err
    assert asked == [("onnxruntime", "fp32", 1)]
    table = LatencyModel.from_dict(json.loads((out / "latency_table.json").read_text()))
    assert table.meta == {"runtime": "onnxruntime", "precision": "fp32"}
    state = json.loads((out / "state.json").read_text())
    assert state["baseline"]["latency"] == state["baseline"]["latency_estimated_ms"] > 0
    assert state["current"]["latency_estimated_ms"] <= 0.7 * state["baseline"]["latency"] * 1.02
    assert json.loads((out / "result.json").read_text())["latency_tradeoff"] == 1.0
    # the trade-off reaches the planner: importance alone (0) also cuts the fc layer, which saves
    # too little time for importance per millisecond (1) to touch
    alone = tmp_path / "alone"
    code, text, err = cli(monkeypatch, capsys, "prune", str(digits_model), "--target-latency",
                          "0.7", "--runtime", "onnxruntime", "--precision", "fp32", "--steps",
                          "1", "--finetune-epochs", "1", "--max-drop", "0.5", "--latency-tradeoff",
                          "0", "--out", str(alone))
    assert code == 0, err
    result = json.loads((alone / "result.json").read_text())
    assert result["latency_tradeoff"] == 0.0
    by_ratio = json.loads((out / "result.json").read_text())["final"]
    assert result["final"]["params"] != by_ratio["params"]  # measured: the fc layer cut too
