"""Cross-stitch and MTAN on the multi-head model, each on its defining behaviour: identity
stitches leave the columns independent and mixing ones carry one task's gradient into another's
column; MTAN's task features are its mask times the shared features, and each task's attention
learns only from its own loss. Both prune to half their MACs with the stitched channels tied;
the cross-stitch planner also ties the channels inside each stage, column by column."""
import pytest
import torch

from leannet.errors import LeannetError
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.multitask.prune import stitched_plan
from leannet.prune import Pruner, Target, apply_plan
from leannet.train.kinds import planner_for

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



def _depthwise(model):
    """Per expansion group inside the columns (`B.conv.0.0`, which the stitch does not sum),
    the depthwise conv it feeds in column 0 and in column 1: {group: (conv0, conv1)}."""
    first = dict(model.backbone.columns[0].named_modules())
    second = dict(model.backbone.columns[1].named_modules())
    return {name[:-len("1.0")] + "0.0": (conv, second[name]) for name, conv in first.items()
            if name.endswith("conv.1.0") and isinstance(conv, torch.nn.Conv2d)
            and conv.groups == conv.in_channels > 1}


def test_tied_plan_keeps_each_columns_channel_indices_and_square_stitches():
    model = _model("cross_stitch").eval()
    with torch.no_grad():  # columns that differ, so an untied ranking would differ too
        for p in model.backbone.columns[1].parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(SHAPE)
    before = {n: (c0.weight.detach().clone(), c1.weight.detach().clone())
              for n, (c0, c1) in _depthwise(model).items()}
    assert len(before) >= 10
    macs = count_macs(model, (1, 1, 64, 64))
    untied = Pruner(model, x, criterion="l1").plan(Target(macs=0.5))
    assert any(untied.groups.get(f"backbone.columns.0.{n}", {}).get("keep")
               != untied.groups.get(f"backbone.columns.1.{n}", {}).get("keep") for n in before)

    planner = planner_for(model)
    assert planner is stitched_plan  # the multihead kind's planner: what `leannet prune` uses
    pruner = Pruner(model, x, criterion="l1")
    plan = planner(pruner, Target(macs=0.5))
    pruned = 0
    for name in before:
        first, second = (plan.groups.get(f"backbone.columns.{c}.{name}") for c in (0, 1))
        assert first == second  # both absent, or the same size and the same kept indices
        pruned += first is not None
    assert pruned >= len(before) // 2
    pruner.apply(plan, verify=True)
    after = count_macs(model, (1, 1, 64, 64))
    assert after <= 0.55 * macs and plan.meta["macs_fraction"] == pytest.approx(after / macs)
    for name, (c0, c1) in _depthwise(model).items():  # the same original filters in each column
        keep = plan.groups.get(f"backbone.columns.0.{name}", {}).get("keep") or \
            list(range(before[name][0].shape[0]))
        assert torch.equal(c0.weight, before[name][0][keep])
        assert torch.equal(c1.weight, before[name][1][keep])
    shapes = {k[len("backbone.columns.0."):]: v.shape for k, v in model.state_dict().items()
              if k.startswith("backbone.columns.0.")}
    assert shapes == {k[len("backbone.columns.1."):]: v.shape for k, v in
                      model.state_dict().items() if k.startswith("backbone.columns.1.")}
    assert model.backbone.alpha.shape == (len(model.backbone.taps), 2, 2)  # stitches stay square
    replayed = apply_plan(_model("cross_stitch"), plan.to_dict(), x)  # what load does
    assert {k: v.shape for k, v in replayed.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in model(x).items()} == {"segment": (2, 3, 64, 64),
                                                                "classify": (2, 4)}
