"""A torchvision and a timm model through `leannet train` (from local weights) -> `prune` ->
`export` -> `report`, on a few real CIFAR-10 images at 32 px, and back from their model folders."""
from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import leannet
from tests.helpers import run_cli, shared_data
from tests.zoo.conftest import randomise

CIFAR = shared_data() / "cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat")
pytestmark = pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """imagefolder: 4 classes, 8 training and 3 validation images each (copies in a temp dir)."""
    root = tmp_path_factory.mktemp("cifar_slice")
    for split, source, count in (("train", "train", 8), ("val", "test", 3)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for path in sorted((CIFAR / source / name).iterdir())[:count]:
                shutil.copy(path, root / split / name / path.name)
    return root


def _weights(name: str, folder) -> str:
    """Pretrained weights as a user would have them: a safetensors file or a .pth checkpoint."""
    if name.startswith("torchvision:"):
        path = folder / "pretrained.safetensors"
        save_file(randomise(torchvision.models.mobilenet_v3_small()).state_dict(), str(path))
    else:
        import timm

        path = folder / "pretrained.pth"
        torch.save({"state_dict": randomise(timm.create_model("resnet10t")).state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("name", [
    "torchvision:mobilenet_v3_small",
    pytest.param("timm:resnet10t", marks=pytest.mark.skipif(
        importlib.util.find_spec("timm") is None, reason="timm is optional"))])
def test_zoo_model_train_prune_export_report(name, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))
    weights = _weights(name, tmp_path)
    code, out, err = run_cli(
        monkeypatch, capsys, "train", "--model", name, "--weights", weights, "--freeze-epochs",
        "1", "--epochs", "2", "--data", f"imagefolder:{images}", "--image-size", "32",
        "--batch-size", "16", "--out", str(tmp_path / "run"))
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    transfer = result["transfer"]
    assert transfer["fraction_loaded"] > 0.99 and len(transfer["fresh"]) == 2  # the new head
    assert len(transfer["frozen_history"]) == 1 and transfer["backbone_lr_scale"] == 0.1
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["name"] == name and config["kwargs"]["num_classes"] == 4
    assert config["input_shape"] == [3, 32, 32] and config["zoo"]["constructor"]

    code, out, err = run_cli(monkeypatch, capsys, "prune", str(tmp_path / "run" / "model"),
                             "--target-macs", "0.6", "--steps", "1", "--max-drop", "1",
                             "--batch-size", "16", "--out", str(tmp_path / "pruned"))
    assert code == 0, err
    pruned = json.loads((tmp_path / "pruned" / "result.json").read_text())
    assert pruned["final"]["macs"] <= 0.61 * pruned["baseline"]["macs"]
    model = leannet.load(tmp_path / "pruned" / "model")
    assert leannet.measure.count_macs(model, (1, 3, 32, 32)) == pruned["final"]["macs"]

    code, out, err = run_cli(monkeypatch, capsys, "export", str(tmp_path / "pruned" / "model"),
                             "--out", str(tmp_path / "export"))
    assert code == 0, err
    exported = json.loads((tmp_path / "export" / "result.json").read_text())
    assert exported["max_rel_diff"] < 1e-3 and (tmp_path / "export" / "model.onnx").is_file()

    code, out, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "pruned"))
    assert code == 0, err
    assert "MACs" in (tmp_path / "pruned" / "report.md").read_text()
