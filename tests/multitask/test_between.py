"""Cross-stitch and MTAN on the multi-head model, each on its defining behaviour: identity
stitches leave the columns independent and mixing ones carry one task's gradient into another's
column; MTAN's task features are its mask times the shared features, and each task's attention
learns only from its own loss. Both prune to half their MACs with the stitched channels tied."""
import pytest
import torch

from leannet.errors import LeannetError
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.prune import Pruner, Target

HEADS = {"segment": {"kind": "segment", "classes": 3}, "classify": {"kind": "classify",
                                                                      "classes": 4, "tap": 1}}
SHAPE = (2, 1, 64, 64)


def _model(sharing):
    torch.manual_seed(0)
    return create_model("multi_head", heads=HEADS, backbone_kwargs={"width_mult": 0.25},
                        in_channels=1, image_size=64, sharing=sharing)


def _first_conv(column):
    return next(m for m in column.modules() if isinstance(m, torch.nn.Conv2d))


def test_cross_stitch_identity_keeps_columns_apart_and_mixing_shares_gradients():
    model = _model("cross_stitch").eval()
    stitch = model.backbone
    assert torch.allclose(stitch.alpha[0], torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    x = torch.rand(SHAPE)
    with torch.no_grad():
        stitch.alpha.copy_(torch.eye(2).repeat(len(stitch.taps), 1, 1))
        alone = stitch.columns[1](x)  # the classify column run by itself
        assert torch.allclose(stitch(x)[1][-1], alone, atol=1e-6)
    model.zero_grad()
    model(x)["segment"].pow(2).mean().backward()
    assert _first_conv(stitch.columns[1]).weight.grad.abs().sum() == 0  # independent columns
    with torch.no_grad():
        stitch.alpha.copy_(torch.tensor([[0.9, 0.1], [0.1, 0.9]]).repeat(len(stitch.taps), 1, 1))
    model.zero_grad()
    model(x)["segment"].pow(2).mean().backward()
    assert _first_conv(stitch.columns[1]).weight.grad.abs().sum() > 0  # shared through the stitch
    assert stitch.alpha.grad is not None and stitch.alpha.grad.abs().sum() > 0  # alphas learn


def test_mtan_masks_the_shared_features_per_task():
    model = _model("mtan").eval()
    x = torch.rand(SHAPE)
    with torch.no_grad():
        shared = model.backbone(x)
        per_task = model.task_features(x)
        for task in HEADS:
            for attention, feature, attended in zip(model.attention[task], shared, per_task[task]):
                mask = attention.mask(feature)
                assert ((mask > 0) & (mask < 1)).all()
                assert torch.allclose(attended, mask * feature)
    model.zero_grad()
    model(x)["classify"].pow(2).mean().backward()
    own = [p.grad for p in model.attention["classify"].parameters()]
    other = [p.grad for p in model.attention["segment"].parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in own)
    assert all(g is None or g.abs().sum() == 0 for g in other)  # a task's attention is its own
    assert _first_conv(model.backbone).weight.grad.abs().sum() > 0  # the backbone is shared


@pytest.mark.parametrize("sharing", ["mtan", "cross_stitch"])
def test_prunes_to_half_the_macs_with_stitched_channels_tied(sharing):
    model = _model(sharing).eval()
    x = torch.rand(SHAPE)
    shapes = {k: v.shape for k, v in model(x).items()}
    macs = count_macs(model, (1, 1, 64, 64))
    pruner = Pruner(model, x, criterion="l1")
    pruner.apply(pruner.plan(Target(macs=0.5)), verify=True)
    assert count_macs(model, (1, 1, 64, 64)) <= 0.55 * macs
    assert {k: v.shape for k, v in model(x).items()} == shapes
    if sharing == "cross_stitch":
        taps = [[f.shape[1] for f in column] for column in model.backbone(x)]
        assert taps[0] == taps[1]  # the stitch sums columns channel by channel: same channels


def test_unknown_sharing_is_one_line():
    with pytest.raises(LeannetError, match="unknown multi-head sharing 'soft'"):
        _model("soft")
