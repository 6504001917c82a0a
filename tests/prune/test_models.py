"""leannet's own models and a few torchvision ones: targets reached, verified, replayable,
saved and loaded through model folders with identical outputs."""
from __future__ import annotations

import pytest
import torch
import torchvision

import leannet
from leannet.measure import count_macs, count_params
from leannet.models import create_model

from .helpers import prune_check, randomize_norms

LEANNET = [
    ("resnet20", {}, (2, 3, 32, 32)),
    ("mobilenet_v1", {"small_input": True, "width_mult": 0.25, "num_classes": 10}, (2, 3, 32, 32)),
    ("mobilenet_v2", {"small_input": True, "width_mult": 0.35, "num_classes": 10}, (2, 3, 32, 32)),
    ("simple_cnn", {"bottleneck": 16}, (2, 1, 28, 28)),
]


@pytest.mark.parametrize("name,kwargs,shape", LEANNET, ids=[n for n, _, _ in LEANNET])
@pytest.mark.parametrize("kind", ["macs", "params"])
def test_leannet_models_reach_target(name, kwargs, shape, kind):
    model = create_model(name, **kwargs)
    randomize_norms(model)
    x = torch.randn(shape)
    macs0, params0 = count_macs(model, x[:1]), count_params(model)
    target = leannet.Target(**{kind: 0.5})
    _, plan = prune_check(model, x, target, global_ranking=True)
    fraction = (count_macs(model, x[:1]) / macs0) if kind == "macs" else \
        count_params(model) / params0
    # within 2% of the model (MACs counted independently by torch's flop counter)
    assert 0.46 <= fraction <= 0.52, fraction
    assert plan.meta[f"{kind}_fraction"] == pytest.approx(fraction, abs=0.02)


def test_pruned_model_saves_and_loads_with_identical_outputs(tmp_path):
    model = create_model("mobilenet_v2", small_input=True, width_mult=0.35, num_classes=10)
    randomize_norms(model)
    x = torch.randn(2, 3, 32, 32)
    for fraction in (0.7, 0.5):  # two successive plans, replayed in order
        pruner = leannet.Pruner(model, x, criterion="l2")
        plan = pruner.plan(leannet.Target(macs=fraction, round_to=4))
        pruner.apply(plan)  # records the plan in model.leannet_config
    leannet.save(model, tmp_path / "model")
    loaded = leannet.load(tmp_path / "model")
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert count_params(loaded) == count_params(model)


TORCHVISION = ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_0",
               "efficientnet_b0", "regnet_y_400mf"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models(name):
    model = torchvision.models.get_model(name, num_classes=10)
    randomize_norms(model)
    x = torch.randn(1, 3, 64, 64)
    macs0 = count_macs(model, x)
    prune_check(model, x, leannet.Target(channels=0.5))
    assert count_macs(model, x) < 0.6 * macs0
