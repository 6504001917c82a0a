"""Zoo models by name (torchvision:, timm:): metadata, pruning and model-folder round trips."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

import leannet
from leannet.errors import LeannetError
from leannet.models import get_model_entry, model_input_shape
from leannet.prune import Pruner, Target

HAVE_TIMM = importlib.util.find_spec("timm") is not None
ZOO = ["torchvision:mobilenet_v3_small",
       pytest.param("timm:resnet10t", marks=pytest.mark.skipif(not HAVE_TIMM, reason="no timm"))]


def test_metadata_comes_from_the_zoo():
    model = leannet.create_model("torchvision:mobilenet_v3_small")
    config = model.leannet_config
    assert config["input_shape"] == [3, 224, 224]  # the DEFAULT weights' crop size
    assert model.classifier[-1].out_features == 1000  # len(meta["categories"])
    assert config["normalization"] == {"mean": [0.485, 0.456, 0.406],
                                       "std": [0.229, 0.224, 0.225]}
    assert config["zoo"]["constructor"] == "torchvision.models.mobilenet_v3_small"
    assert get_model_entry("torchvision:resnet18").default_image_size == 224
    pytest.importorskip("timm")
    entry = get_model_entry("timm:resnet10t")
    assert entry.default_image_size == 176  # timm's pretrained_cfg input_size (3, 176, 176)
    model = leannet.create_model("timm:resnet10t", num_classes=7, in_channels=1, image_size=32)
    assert model.fc.out_features == 7 and model_input_shape(model) == (1, 1, 32, 32)


@pytest.mark.parametrize("name", ZOO)
def test_pruned_zoo_model_round_trips_through_a_model_folder(name, tmp_path):
    torch.manual_seed(0)
    model = leannet.create_model(name, num_classes=10, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    pruner = Pruner(model, x)
    pruner.apply(pruner.plan(Target(macs=0.6)))
    before = leannet.measure.count_macs(model, (1, 3, 32, 32))
    folder = leannet.save(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == name and len(config["plans"]) == 1 and "zoo" in config
    loaded = leannet.load(folder)
    assert torch.equal(model(x), loaded(x))
    assert leannet.measure.count_macs(loaded, (1, 3, 32, 32)) == before


def test_unknown_zoo_names_and_missing_zoo_are_one_line():
    cases = [("torchvision:resnet_nope", "unknown torchvision classifier 'resnet_nope'"),
             ("torchvision:fasterrcnn_resnet50_fpn", "unknown torchvision classifier"),
             ("hub:resnet18", "unknown model zoo 'hub'"),
             ("torchvision:", "names no architecture")]
    for name, message in cases:
        with pytest.raises(LeannetError, match=message) as info:
            leannet.create_model(name)
        assert "\n" not in str(info.value)
    with pytest.raises(LeannetError, match="takes 3-channel images"):
        leannet.create_model("torchvision:resnet18", in_channels=1)


def test_timm_missing_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(LeannetError, match=r"need timm, which is not installed \(pip install timm"):
        leannet.create_model("timm:efficientnet_b0")


def test_saving_a_module_leannet_cannot_rebuild_offers_the_plan_route(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(LeannetError) as info:
        leannet.save(model, tmp_path / "m")
    message = str(info.value)
    assert "cannot rebuild" in message and "torchvision:NAME" in message
    assert "plan.to_dict()" in message and "apply_plan" in message and "\n" not in message
    assert not (tmp_path / "m").exists()
