"""--weights: files (safetensors, weights_only checkpoints), torchvision's and timm's caches,
the offline failure, and leannet's MobileNetV2 taking torchvision's weights exactly."""
from __future__ import annotations

import os
import pickle
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import leannet
from leannet.errors import LeannetError
from leannet.models import load_weights
from tests.zoo.conftest import randomise


def test_mobilenet_v2_takes_torchvision_weights_with_identical_outputs(torch_home):
    reference = randomise(torchvision.models.mobilenet_v2())
    url = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2.url
    torch_home.mkdir(parents=True)
    torch.save(reference.state_dict(), torch_home / os.path.basename(url))  # as a download would
    model = leannet.create_model("mobilenet_v2")
    report = load_weights(model, "torchvision:IMAGENET1K_V2")
    assert report["fresh"] == [] and report["fraction_loaded"] == 1.0
    x = torch.randn(2, 3, 64, 64)
    expected = reference(x)
    assert expected.abs().mean() > 0.05  # outputs that would show a wrong tensor
    assert torch.equal(model.eval()(x), expected)


def test_offline_download_fails_in_one_line_naming_the_place(torch_home, monkeypatch):
    def offline(*args, **kwargs):  # what urlopen does without a network (also on a CI that has one)
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    model = leannet.create_model("torchvision:mobilenet_v3_small", num_classes=10, image_size=32)
    with pytest.raises(LeannetError) as info:
        load_weights(model, "DEFAULT")
    message = str(info.value)
    place = torch_home / os.path.basename(
        torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url)
    assert "cannot download torchvision mobilenet_v3_small DEFAULT weights" in message
    assert f"put the file at {place}" in message and "\n" not in message


def test_zoo_enum_from_the_torch_hub_cache_gets_a_new_head(torch_home):
    reference = randomise(torchvision.models.mobilenet_v3_small())
    torch_home.mkdir(parents=True)
    url = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.url
    torch.save(reference.state_dict(), torch_home / os.path.basename(url))
    model = leannet.create_model("torchvision:mobilenet_v3_small", num_classes=4, image_size=32)
    report = load_weights(model, "IMAGENET1K_V1")
    assert report["fresh"] == ["classifier.3.bias", "classifier.3.weight"]  # the new head
    assert model.leannet_config["weights"]["source"] == "IMAGENET1K_V1"
    assert torch.equal(model.features[0][0].weight, reference.features[0][0].weight)
    with pytest.raises(LeannetError, match="no 'IMAGENET9K' weights for mobilenet_v3_small; "
                                           "expected one of IMAGENET1K_V1, DEFAULT"):
        load_weights(model, "IMAGENET9K")


def test_weight_files_safetensors_and_weights_only_checkpoints(tmp_path):
    reference = randomise(leannet.create_model("resnet20"))
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v
                                           for k, v in reference.state_dict().items()}},
               tmp_path / "w.pth")
    x = torch.randn(2, 3, 32, 32)
    for name in ("w.safetensors", "w.pth"):
        model = leannet.create_model("resnet20")
        assert load_weights(model, str(tmp_path / name))["fresh"] == []
        assert torch.equal(model.eval()(x), reference(x))
    # one input channel: the RGB stem is summed over its channels, as timm adapts it
    grey = leannet.create_model("resnet20", in_channels=1)
    load_weights(grey, str(tmp_path / "w.safetensors"))
    assert torch.allclose(grey.stem[0].weight, reference.stem[0].weight.sum(1, keepdim=True))


class Planted:
    def __reduce__(self):
        return (os.system, ("echo planted > /dev/null",))


def test_bad_weight_files_are_refused_in_one_line(tmp_path):
    model = leannet.create_model("resnet20")
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"fc.weight": Planted()}))
    torch.save(leannet.create_model("mobilenet_v1").state_dict(), tmp_path / "other.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    cases = [("evil.pth", "only tensors are loaded, with weights_only=True"),
             ("other.pth", "match those weights by name and shape"),
             ("bad.safetensors", "is not a valid safetensors file"),
             ("missing.pth", "no such file")]
    for name, message in cases:
        with pytest.raises(LeannetError, match=message) as info:
            load_weights(model, str(tmp_path / name))
        assert "\n" not in str(info.value)
    with pytest.raises(LeannetError, match="a weight name needs a zoo model"):
        load_weights(model, "DEFAULT")


def _hf_cache(root, repo: str, tensors: dict) -> None:
    """A Hugging Face hub cache entry, laid out as hf_hub_download leaves it."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file(tensors, str(folder / "snapshots" / revision / "model.safetensors"))


def test_timm_default_weights_come_from_the_hub_cache_or_fail_in_one_line(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")  # comes with timm

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no 20 s of retries in a test
    reference = randomise(timm.create_model("resnet10t"))
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    _hf_cache(tmp_path / "hf", repo, reference.state_dict())
    model = leannet.create_model("timm:resnet10t", num_classes=3, image_size=32)
    assert load_weights(model, "DEFAULT")["fresh"] == ["fc.bias", "fc.weight"]
    assert torch.equal(model.conv1[0].weight, reference.conv1[0].weight)
    other = leannet.create_model("timm:efficientnet_b0", num_classes=3, image_size=32)
    with pytest.raises(LeannetError) as info:
        load_weights(other, "DEFAULT")
    message = str(info.value)
    assert "cannot download timm weights efficientnet_b0" in message and "\n" not in message
    assert f"put model.safetensors at {tmp_path / 'hf' / 'hub'}/models--timm--efficientnet_b0" \
        in message


def test_a_classifier_model_folder_fills_a_detector_backbone(tmp_path):
    """Transfer to detection: the YOLO model's `backbone.features.*` take a classifier's
    `features.*`; the neck and prediction convolutions are the fresh head."""
    classifier = randomise(leannet.create_model("mobilenet_v2", num_classes=10, width_mult=0.25,
                                                small_input=True, image_size=32))
    leannet.save(classifier, tmp_path / "cls")
    detector = leannet.create_model("yolo", backbone="mobilenet_v2", num_classes=3,
                                    backbone_kwargs={"width_mult": 0.25}, image_size=64)
    report = load_weights(detector, str(tmp_path / "cls"))  # a model folder is a weights source
    mine, theirs = detector.state_dict(), classifier.state_dict()
    backbone = [k for k in mine if k.startswith("backbone.")]
    assert backbone and all(torch.equal(mine[k], theirs[k[len("backbone."):]]) for k in backbone)
    assert {k.split(".")[0] for k in report["fresh"]} == {"neck", "predict"}
