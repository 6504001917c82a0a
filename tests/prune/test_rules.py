"""Every built-in layer rule (torch.nn, torchvision, timm) prunes, verifies, keeps output shapes
and replays its plan; a user's own rule plugs in with `rules=[...]`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leannet.errors import UnreachableTarget
from leannet.prune import Pruner, Target
from leannet.prune.capture.labels import canon, channel_atoms
from leannet.prune.rules import LayerRule, MemberKind

from .helpers import prune_check, randomize_norms

timm = pytest.importorskip("timm")
layers = timm.layers


class Tokens(nn.Module):
    """nn.Embedding -> Linear -> Softmax over tokens -> mean -> Linear."""

    def __init__(self, softmax_dim=1):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.fc = nn.Linear(16, 12)
        self.attn = nn.Softmax(dim=softmax_dim)
        self.head = nn.Linear(12, 3)

    def forward(self, ids):
        h = self.fc(self.embed(ids))
        return self.head((h * self.attn(h)).mean(1))


def test_embedding_columns_follow_the_channel_and_softmax_protects_its_dim():
    model = Tokens()
    prune_check(model, torch.randint(0, 20, (2, 5)))
    assert model.embed.embedding_dim == model.fc.in_features == 8
    assert model.embed.weight.shape == (20, 8)
    assert model.fc.out_features == 6  # a softmax over tokens leaves channels alone
    across_channels = Pruner(Tokens(softmax_dim=-1), torch.randint(0, 20, (2, 5)))
    assert {g.name: g.prunable for g in across_channels.groups}["fc"] == 0


class Stochastic(nn.Module):
    """torchvision's StochasticDepth on a residual branch."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import StochasticDepth
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(16, 24, 1), nn.ReLU(), nn.Conv2d(24, 16, 1))
        self.drop = StochasticDepth(0.2, "row")
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.drop(self.branch(x)))


def test_stochastic_depth_passes_channels():
    model = Stochastic()
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.branch[0].out_channels == 12 and model.stem.out_channels == 8


class TimmLayers(nn.Module):
    """timm's fused and 'same' layers in one chain."""

    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2dSame(3, 16, 3, stride=2)
        self.bn = layers.BatchNormAct2d(16, act_layer=nn.SiLU)
        self.blur = layers.BlurPool2d(16, filt_size=3, stride=2)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.gn = layers.GroupNormAct(24, num_groups=4, act_layer=layers.activations.GELU)
        self.pool = layers.AvgPool2dSame(3, stride=1)
        self.drop = layers.DropPath(0.1)
        self.act = layers.activations.HardSwish()
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        x = self.blur(self.bn(self.conv(x)))
        x = self.pool(self.gn(self.conv2(x)))
        x = x + self.drop(self.act(x))
        return self.head(x.mean((2, 3)))


def test_timm_fused_same_and_blur_layers():
    model = TimmLayers()
    randomize_norms(model)
    pruner, _ = prune_check(model, torch.randn(2, 3, 17, 17))
    assert model.conv.out_channels == model.bn.num_features == 8
    assert model.blur.channels == 8 and model.blur.filt.shape[0] == 8
    assert model.conv2.in_channels == 8
    assert (model.gn.num_channels, model.gn.num_groups) == (12, 2)  # whole norm groups go
    assert model.head.in_features == 12


def test_fused_norm_is_an_activation_point_for_data_criteria():
    model = TimmLayers()
    pruner = Pruner(model, torch.randn(2, 3, 17, 17))
    observed = {name for name in pruner.graph.points}
    assert {"bn", "gn", "act"} <= observed


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_100", "regnetx_002",
                                  "ghostnet_100"])
def test_timm_models_from_the_issue_prune_and_verify(name):
    model = timm.create_model(name, num_classes=10)
    randomize_norms(model)
    pruner, plan = prune_check(model, torch.randn(1, 3, 64, 64))
    assert plan.removed_channels > 0
    assert pruner.plan is not None


def test_timm_model_reaches_half_the_macs():
    model = timm.create_model("mobilenetv3_small_100", num_classes=10)
    pruner = Pruner(model, torch.randn(1, 3, 64, 64))
    plan = pruner.plan(Target(macs=0.5))
    assert plan.meta["macs_fraction"] <= 0.5


class Scale(nn.Module):
    """A per-channel scale the built-in rules don't know (traced into: `x * self.gamma.view`
    with a fixed view protects nothing, but `torch.einsum` is an unknown op)."""

    def __init__(self, channels):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x):
        return torch.einsum("nchw,c->nchw", x, self.gamma)


class ScaleRule(LayerRule):
    """The user's rule: gamma follows the channel."""

    types = (Scale,)
    kinds = {"gamma": MemberKind((("gamma", 0),), "scale")}

    def label(self, call):
        atoms = channel_atoms(call.ctx.uf, call.label, 1, call.module.gamma.shape[0])
        call.ctx.add_member(self, call.name, "gamma", atoms)
        return canon(call.ctx.uf, call.label)


class WithScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.scale, self.b = nn.Conv2d(3, 16, 3), Scale(16), nn.Conv2d(16, 4, 3)

    def forward(self, x):
        return self.b(F.relu(self.scale(self.a(x))))


def test_a_user_rule_frees_the_channels_an_unknown_op_protected():
    x = torch.randn(2, 3, 9, 9)
    with pytest.raises(UnreachableTarget, match=r"einsum inside 'scale' \(Scale\)"):
        Pruner(WithScale(), x).plan(Target(channels=0.5))
    model = WithScale()
    _, plan = prune_check(model, x, rules=[ScaleRule()])
    assert model.a.out_channels == model.scale.gamma.shape[0] == model.b.in_channels == 8
    scores = Pruner(WithScale(), x, criterion="bn_scale", rules=[ScaleRule]).scores()["a"]
    assert np.isclose(scores.mean(), 1.0)


def test_unreachable_target_names_what_protects_the_most_channels():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten(), nn.LayerNorm(16 * 36),
                          nn.Linear(16 * 36, 4))
    with pytest.raises(UnreachableTarget) as err:
        Pruner(model, torch.randn(1, 3, 8, 8)).plan(Target(macs=0.5))
    message = str(err.value)
    assert "16 channels: module '2' (LayerNorm) mixes channels" in message
    assert "the model's outputs keep every channel" in message


class Mixer(nn.Module):
    """A transformer-style MLP block: LayerNorm -> Linear -> GELU -> Linear, residual, head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.norm = nn.LayerNorm(16)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head_norm = layers.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.embed(x)
        x = x + self.fc2(F.gelu(self.fc1(self.norm(x))))
        return self.head(self.head_norm(x).mean(1))


def test_layer_norm_policy_prunes_norm_channels_and_measures_the_change():
    x = torch.randn(2, 5, 6)
    exact = Pruner(Mixer(), x)
    assert {g.name: g.prunable for g in exact.groups}["embed"] == 0   # the default: protected
    model = Mixer()
    randomize_norms(model)
    pruner, plan = prune_check(model, x, layer_norm="prune")
    assert model.embed.out_features == model.norm.normalized_shape[0] == 8
    assert model.norm.weight.shape == (8,) and model.head_norm.normalized_shape == (8,)
    assert model.fc1.out_features == 16
    assert plan.meta["layer_norm"] == "prune"
    assert 0 < pruner.output_change == plan.meta["output_change"] < 10


class Signals(nn.Module):
    """1-d convs, InstanceNorm, Hardswish, upsampling, reflection padding, Flatten/Unflatten."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 16, 3)
        self.norm = nn.InstanceNorm1d(16, affine=True)
        self.act, self.up, self.pad = nn.Hardswish(), nn.Upsample(scale_factor=2), \
            nn.ReflectionPad1d(1)
        self.conv2 = nn.Conv1d(16, 12, 3)
        self.flat, self.unflat = nn.Flatten(), nn.Unflatten(1, (12, 12))
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        x = self.conv2(self.pad(self.up(self.act(self.norm(self.conv1(x))))))
        return self.head(self.unflat(self.flat(x)).mean(-1))


def test_one_dimensional_layers_and_a_fixed_unflatten():
    model = Signals()
    pruner, _ = prune_check(model, torch.randn(2, 2, 8))
    assert model.conv1.out_channels == model.norm.num_features == model.conv2.in_channels == 8
    assert model.norm.weight.shape == (8,)
    assert model.conv2.out_channels == 12   # Unflatten to a fixed (12, 12): protected


class Volumes(nn.Module):
    """Conv3d, BatchNorm3d, MaxPool3d, then a LocalResponseNorm that protects its input."""

    def __init__(self):
        super().__init__()
        self.a, self.bn, self.pool = nn.Conv3d(1, 8, 3, padding=1), nn.BatchNorm3d(8), \
            nn.MaxPool3d(2)
        self.b, self.lrn = nn.Conv3d(8, 6, 1), nn.LocalResponseNorm(3)
        self.head = nn.Conv3d(6, 2, 1)

    def forward(self, x):
        return self.head(self.lrn(self.b(self.pool(F.relu(self.bn(self.a(x)))))))


def test_three_dimensional_layers_and_local_response_norm():
    model = Volumes()
    randomize_norms(model)
    prune_check(model, torch.randn(1, 1, 4, 4, 4))
    assert model.a.out_channels == model.bn.num_features == model.b.in_channels == 4
    assert model.b.out_channels == 6        # LRN mixes neighbouring channels: protected
