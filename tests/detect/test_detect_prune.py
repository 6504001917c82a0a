"""Pruning a YOLO detector: prediction convs (model outputs) keep their channels, the rest
shrinks to the MAC target, the result verifies, and the model folder replays the plan."""
import torch

from leannet.detect.losses import yolo_loss
from leannet.checkpoint import load, save
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.prune import Pruner, Target


def test_yolo_prunes_to_half_the_macs_with_heads_protected(tmp_path):
    torch.manual_seed(0)
    model = create_model("yolo", backbone="mobilenet_v2", backbone_kwargs={"width_mult": 0.25},
                         head="v3", num_classes=10, in_channels=1, image_size=64,
                         neck_channels=16, count_classes=5)
    model.eval()
    x = torch.rand(2, 1, 64, 64)
    shapes = {k: v.shape for k, v in model(x).items()}
    macs = count_macs(model, (1, 1, 64, 64))
    pruner = Pruner(model, x, criterion="l1")
    pruner.apply(pruner.plan(Target(macs=0.5)), verify=True)
    assert count_macs(model, (1, 1, 64, 64)) <= 0.55 * macs
    out = model(x)
    assert {k: v.shape for k, v in out.items()} == shapes
    assert [conv.out_channels for conv in model.predict] == [45, 45, 45]
    target = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 34.0]]), "labels": torch.tensor([4])}] * 2
    loss, _ = yolo_loss(out, target, model.detect_spec)
    assert torch.isfinite(loss)
    save(model, tmp_path / "pruned")
    again = load(tmp_path / "pruned")
    assert all(torch.allclose(out[k], again(x)[k], atol=1e-5) for k in out)
