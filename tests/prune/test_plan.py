"""Targets, floors, rounding, overrides, ignore lists, plan JSON, and every bad input: one-line
LeannetError and the model left unchanged."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.prune import Pruner, PruningPlan, Target, apply_plan
from leannet.prune import surgery as surgery_module


def resnet():
    return create_model("resnet20", width_mult=1.0), torch.randn(2, 3, 32, 32)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def kept_sizes(plan, pruner):
    return {g.name: len(plan.groups[g.name]["keep"]) if g.name in plan.groups else g.size
            for g in pruner.groups}


def test_floors_and_rounding():
    model, x = resnet()
    pruner = Pruner(model, x)
    plan = pruner.plan(Target(channels=0.3, round_to=8, min_fraction=0.25))
    for group in pruner.groups:
        kept = kept_sizes(plan, pruner)[group.name]
        if group.prunable:
            assert kept % 8 == 0 or kept == group.size
            assert kept >= 0.25 * group.size
    plan = pruner.plan(Target(channels=0.12, min_channels=3))
    kept = kept_sizes(plan, pruner)
    assert min(kept[g.name] for g in pruner.groups if g.prunable) == 3


def test_uniform_ranking_prunes_every_group_alike():
    model, x = resnet()
    pruner = Pruner(model, x, global_ranking=False)
    plan = pruner.plan(Target(channels=0.25))
    assert all(len(g["keep"]) == g["size"] // 4 for g in plan.groups.values())
    plan = pruner.plan(Target(macs=0.4))
    assert plan.meta["macs_fraction"] == pytest.approx(0.4, abs=0.03)


def test_overrides_and_ignore():
    model, x = resnet()
    pruner = Pruner(model, x, ignore=["layer3"])
    plan = pruner.plan(Target(macs=0.6, overrides={"layer1.0.conv1": 0.25}))
    assert len(plan.groups["layer1.0.conv1"]["keep"]) == 4
    assert not any(name.startswith("layer3") for name in plan.groups)
    pruner = Pruner(model, x, ignore=[nn.Conv2d])
    with pytest.raises(LeannetError, match="not reachable"):
        pruner.plan(Target(macs=0.5))


def test_plan_json_round_trip_and_replay_on_fresh_instance():
    model, x = resnet()
    fresh = copy.deepcopy(model)
    pruner = Pruner(model, x, criterion="l2")
    plan = pruner.plan(Target(params=0.5, round_to=2))
    text = json.dumps(plan.to_dict())
    again = PruningPlan.from_dict(json.loads(text))
    assert again.to_dict() == plan.to_dict()
    pruner.apply(plan)
    apply_plan(fresh, json.loads(text), x, verify=True)
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in model.parameters()]
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_full_target_plans_nothing_and_optimizer_can_be_rebuilt():
    model, x = resnet()
    pruner = Pruner(model, x)
    assert pruner.plan(Target(macs=1.0)).groups == {}
    pruner.apply(pruner.plan(Target(macs=0.5)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(x).sum()
    loss.backward()
    opt.step()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.parametrize("target,match", [
    (Target(), "exactly one"),
    (Target(macs=0.5, params=0.5), "exactly one"),
    (Target(macs=0.0), r"in \(0, 1\]"),
    (Target(channels=1.5), r"in \(0, 1\]"),
    (Target(macs=0.5, round_to=0), "round_to"),
    (Target(macs=0.5, min_channels=0), "min_channels"),
    (Target(macs=0.01, min_fraction=0.5), "not reachable.*keeps 0.2"),
])
def test_bad_targets(target, match):
    model, x = resnet()
    before = state(model)
    with pytest.raises(LeannetError, match=match) as err:
        Pruner(model, x).plan(target)
    assert "\n" not in str(err.value)
    assert_unchanged(model, before)


def test_plan_that_does_not_match_the_model():
    model, x = resnet()
    plan = Pruner(model, x).plan(Target(macs=0.5)).to_dict()
    other = create_model("resnet20", width_mult=0.5)
    before = state(other)
    with pytest.raises(LeannetError, match="does not match this model.*channels"):
        apply_plan(other, plan, x)
    with pytest.raises(LeannetError, match="no channel group"):
        apply_plan(create_model("mobilenet_v1", small_input=True, width_mult=0.25), plan, x)
    assert_unchanged(other, before)
    broken = json.loads(json.dumps(plan))
    name = next(iter(broken["groups"]))
    broken["groups"][name]["keep"] = [0, 0]
    with pytest.raises(LeannetError, match="distinct positions"):
        Pruner(model, x).apply(broken)
    with pytest.raises(LeannetError, match="'groups'"):
        Pruner(model, x).apply({"plan": []})
    protected = {"groups": {"fc": {"size": 10, "keep": [0, 1]}}}
    with pytest.raises(LeannetError, match="protected"):
        Pruner(model, x).apply(protected)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.gate = Gate()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.gate(self.conv(x)))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx can't trace it
            return x
        return -x


def test_untraceable_model_names_the_block_and_suggests_a_leaf():
    model = Branchy()
    with pytest.raises(LeannetError, match=r"module 'gate' \(Gate\) at test_plan.py:\d+ "
                                           r"`if x.sum\(\) > 0:`.*leaf_modules=\[Gate\]"):
        Pruner(model, torch.randn(1, 3, 4, 4))
    pruner = Pruner(model, torch.randn(1, 3, 4, 4), leaf_modules=[Gate])
    assert {g.name: g.prunable for g in pruner.groups}["conv"] == 0  # unknown leaf: protected


def test_verification_catches_wrong_surgery_and_restores(monkeypatch):
    model, x = resnet()
    before = state(model)
    pruner = Pruner(model, x)
    plan = pruner.plan(Target(macs=0.5))
    real_cut = surgery_module.cut
    target_key = next(m.key for m in pruner.graph.members if m.module == "layer2.1.conv1"
                      and m.kind == "conv_out")

    def wrong_cut(model, graph, keep, zero_only=False):
        if not zero_only and target_key in keep:  # an off-by-one index mapping in one layer
            keep = dict(keep)
            size = len(next(m for m in graph.members if m.key == target_key).atoms)
            keep[target_key] = np.sort((keep[target_key] + 1) % size)
        return real_cut(model, graph, keep, zero_only)

    monkeypatch.setattr(surgery_module, "cut", wrong_cut)
    with pytest.raises(LeannetError, match="verification failed for channel group "
                                           "'layer2.1.conv1'"):
        pruner.apply(plan, verify=True)
    assert_unchanged(model, before)
    assert model.layer2[1].conv1.out_channels == 32


def test_pruner_restores_train_mode_and_bad_arguments():
    model, x = resnet()
    model.train()
    pruner = Pruner(model, x)
    pruner.apply(pruner.plan(Target(macs=0.7)))
    assert model.training and all(m.training for m in model.modules())
    with pytest.raises(LeannetError, match="Target"):
        pruner.plan({"macs": 0.5})
    with pytest.raises(LeannetError, match="no module 'nope'"):
        Pruner(model, x, ignore=["nope"])
    with pytest.raises(LeannetError, match="example inputs failed"):
        Pruner(model, torch.randn(2, 5, 32, 32))
    with pytest.raises(LeannetError, match="dict of task outputs"):
        Pruner(model, x, task_weights={"a": 1.0})


def test_latency_target_searches_by_measurement(monkeypatch):
    """The search logic, with a deterministic stand-in for the clock (latency ~ MACs + 20%
    fixed overhead); real timings on a shared 2-core machine are too noisy to assert on."""
    from leannet.measure import count_macs
    from leannet.prune import latency as latency_module

    def fake_latency(model, inputs, runs):
        x = inputs if isinstance(inputs, torch.Tensor) else inputs[0]
        return 1.0 + 4.0 * count_macs(model, x) / 1e6

    monkeypatch.setattr(latency_module, "_latency", fake_latency)
    model = create_model("mobilenet_v1", small_input=True, width_mult=0.5, num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    base = fake_latency(model, x, 1)
    plan = Pruner(model, x).plan(Target(latency=0.7))
    assert plan.meta["target"] == {"latency": 0.7}
    assert 0.6 <= plan.meta["latency_fraction"] <= 0.7
    Pruner(model, x).apply(plan)
    assert fake_latency(model, x, 1) / base == pytest.approx(plan.meta["latency_fraction"])
    with pytest.raises(LeannetError, match="latency=0.01 was not reached"):
        Pruner(create_model("resnet20"), torch.randn(1, 3, 32, 32)).plan(
            Target(latency=0.01, min_fraction=0.5))
