"""The evidence experiments' plumbing: honest splits, batches, model twins, derived tasks, verdicts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from leannet.measure import count_macs, count_params
from leannet.models import create_model

EVIDENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence"
sys.path.insert(0, str(EVIDENCE))
import bottleneck  # noqa: E402
import common  # noqa: E402
import pooling  # noqa: E402
import sharing  # noqa: E402

sys.path.remove(str(EVIDENCE))


def test_carved_validation_is_disjoint_stratified_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)[torch.randperm(1000)]
    train, val = common.stratified_split(labels, 500, 200, seed=3)
    assert len(train) == 500 and len(val) == 200
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(labels[val].bincount(), torch.full((10,), 20))
    again = common.stratified_split(labels, 500, 200, seed=3)
    other = common.stratified_split(labels, 500, 200, seed=4)
    assert torch.equal(again[1], val) and not torch.equal(other[1], val)


def test_batches_cover_every_item_once_and_reshuffle_each_epoch():
    x = torch.arange(10).float().unsqueeze(1)
    batches = common.Batches(x, {"a": torch.arange(10)}, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    first = [b for b in batches]
    second = [b for b in batches]
    seen = torch.cat([inputs.flatten() for inputs, _ in first])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(inputs.flatten().long(), y["a"]) for inputs, y in first)
    assert not torch.equal(seen, torch.cat([inputs.flatten() for inputs, _ in second]))


def test_mean_std_and_the_spread_rule():
    stat = common.mean_std([0.80, 0.82, 0.84])
    assert stat["mean"] == pytest.approx(0.82) and stat["std"] == pytest.approx(0.02)
    assert common.pm(stat) == "82.0 ± 2.0"
    assert not common.separated(stat, common.mean_std([0.83, 0.85, 0.87]))
    assert common.separated(stat, common.mean_std([0.90, 0.91, 0.92]))


def test_full_conv_twin_replaces_every_depthwise_block_and_costs_about_8x():
    separable = create_model("mobilenet_v1", num_classes=10, width_mult=0.25)
    twin = bottleneck.full_conv_twin(create_model("mobilenet_v1", num_classes=10, width_mult=0.25))
    assert not any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in twin.modules())
    x = torch.randn(2, 3, 32, 32)
    assert twin.eval()(x).shape == separable.eval()(x).shape == (2, 10)
    ratio = count_macs(twin, (1, 3, 32, 32)) / count_macs(separable, (1, 3, 32, 32))
    assert 7 < ratio < 9  # 1 / (1/out + 1/9) per block, less the shared stem and classifier


def test_pooling_variants_share_the_classifier_but_not_the_cost():
    models = {p: pooling.build(p, 1, 28) for p in pooling.POOLS}
    for model in models.values():
        assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    params = {p: count_params(m) for p, m in models.items()}
    assert params["max"] == params["avg"] == params["strided"]
    assert params["none"] - params["max"] == (28 * 28 - 7 * 7) * 64 * 128  # fc1 sees 28x28 maps
    macs = {p: count_macs(m, (1, 1, 28, 28)) for p, m in models.items()}
    assert macs["strided"] < macs["max"] == macs["avg"] < macs["none"]


def test_derived_tasks_of_multimnist_pairs():
    labels = {"left": torch.tensor([3, 0, 9]), "right": torch.tensor([5, 0, 2])}
    tasks = sharing.with_tasks(labels)
    assert tasks["sum"].tolist() == [8, 0, 11] and tasks["diff"].tolist() == [2, 0, 7]
    assert max(tasks["sum"].tolist()) < sharing.TASKS["sum"]
