"""Every structure the engine must follow, pruned with verification on tiny hand-built models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leannet.prune import Pruner

from .helpers import prune_check, randomize_norms


def cbr(cin, cout, k=3, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=True),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Plain(nn.Module):
    """conv-bn-relu, dropout, max/avg/adaptive pooling, identity, a linear head."""

    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 16), cbr(16, 24)
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.drop, self.ident = nn.Dropout2d(0.1), nn.Identity()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = self.pool1(self.drop(self.a(x)))
        x = self.ident(self.pool2(self.b(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def test_plain_chain_halves_every_prunable_conv():
    model = Plain()
    randomize_norms(model)
    pruner, plan = prune_check(model, torch.randn(2, 3, 16, 16))
    assert (model.a[0].out_channels, model.b[0].in_channels) == (8, 8)
    assert (model.b[0].out_channels, model.b[1].num_features, model.fc.in_features) == (12, 12, 12)
    assert model.fc.out_features == 5  # logits reach the output: protected
    assert model.b[1].running_mean.shape == (12,)


class Grouped(nn.Module):
    """A grouped conv (4 groups) then a depthwise conv with channel multiplier 2."""

    def __init__(self):
        super().__init__()
        self.a = cbr(3, 16)
        self.g = cbr(16, 32, groups=4)
        self.dw = nn.Conv2d(32, 64, 3, padding=1, groups=32)
        self.bn = nn.BatchNorm2d(64)
        self.pw = nn.Conv2d(64, 8, 1)

    def forward(self, x):
        return self.pw(F.relu(self.bn(self.dw(self.g(self.a(x))))))


def test_grouped_and_depthwise_convs_keep_groups_consistent():
    model = Grouped()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    g, dw = model.g[0], model.dw
    assert g.groups == 4 and g.in_channels % 4 == 0 and g.out_channels % 4 == 0
    assert g.in_channels == model.a[0].out_channels < 16
    assert dw.groups == dw.in_channels == g.out_channels < 32
    assert dw.out_channels == 2 * dw.in_channels == model.bn.num_features == model.pw.in_channels


class MLP(nn.Module):
    """Linear layers with BatchNorm1d, PReLU per channel and a LayerNorm."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn = nn.Linear(10, 32), nn.BatchNorm1d(32)
        self.act = nn.PReLU(32)
        self.fc2, self.ln, self.fc3 = nn.Linear(32, 16), nn.LayerNorm(16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc3(self.ln(self.fc2(self.act(self.bn(self.fc1(x))))))


def test_linear_batchnorm1d_prelu_and_layernorm_protection():
    model = MLP()
    randomize_norms(model)
    prune_check(model, torch.randn(4, 10))
    assert model.fc1.out_features == model.bn.num_features == model.act.num_parameters == 16
    # LayerNorm statistics mix all its features: removing one would change the rest.
    assert model.fc2.out_features == 16 and model.ln.normalized_shape == (16,)


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.gn = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.head(F.silu(self.gn(self.conv(x))))


def test_groupnorm_loses_whole_norm_groups():
    model = GroupNormNet()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.gn.num_channels == model.conv.out_channels == 8
    assert model.gn.num_groups == 2 and model.head.in_channels == 8


class Residual(nn.Module):
    """Two residual adds and an elementwise product of two branches."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1, self.b2 = cbr(16, 16), nn.Sequential(cbr(16, 8), nn.Conv2d(8, 16, 1))
        self.gate = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b1(x)
        x = self.b2(x) + x
        return self.head(x * torch.sigmoid(self.gate(x)))


def test_residual_adds_and_products_share_channels():
    model = Residual()
    randomize_norms(model)
    pruner, _ = prune_check(model, torch.randn(2, 3, 8, 8))
    width = model.stem[0].out_channels
    assert width < 16
    assert model.b1[0].out_channels == model.b2[1].out_channels == model.gate.out_channels == width
    assert model.gate.in_channels == model.head.in_channels == width


class SE(nn.Module):
    """Squeeze-and-excitation: pool, reduce, expand, hardsigmoid, scale (as in MobileNetV3)."""

    def __init__(self):
        super().__init__()
        self.conv = cbr(3, 32)
        self.fc1, self.fc2 = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head(F.hardswish(x * s))


def test_squeeze_excitation_scales_follow_their_channels():
    model = SE()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.fc2.out_channels == model.conv[0].out_channels == model.fc1.in_channels == 16
    assert model.fc1.out_channels == model.fc2.in_channels == 4  # its own group


class SpatialAttention(nn.Module):
    """A one-channel map broadcast over all channels must not couple them."""

    def __init__(self):
        super().__init__()
        self.conv, self.att, self.head = cbr(3, 16), nn.Conv2d(16, 1, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        return self.head(x * torch.sigmoid(self.att(x)))


def test_broadcast_map_keeps_its_single_channel():
    model = SpatialAttention()
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.conv[0].out_channels == 8 and model.att.out_channels == 1


class ConcatSplit(nn.Module):
    """Concat with offsets, torch.split by computed size, chunk, and narrow slices."""

    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(3, 12)
        self.mix = cbr(20, 16)
        self.left, self.right = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.mix(torch.cat([self.a(x), self.b(x)], dim=1))
        p, q = torch.chunk(y, 2, dim=1)
        return torch.cat([self.left(p), self.right(q)], 1)


def test_concat_offsets_and_chunk_pieces():
    model = ConcatSplit()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.mix[0].in_channels == model.a[0].out_channels + model.b[0].out_channels
    assert model.a[0].out_channels == 4 and model.b[0].out_channels == 6
    assert model.left.in_channels == model.right.in_channels == model.mix[0].out_channels // 2


class LiteralSlice(nn.Module):
    """Slicing channels with fixed bounds can't follow pruning: those channels are protected."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.conv(x)[:, :4])


def test_literal_channel_slice_is_protected():
    model = LiteralSlice()
    pruner = Pruner(model, torch.randn(1, 3, 4, 4))
    group = next(g for g in pruner.groups if g.name == "conv")
    assert group.prunable == 0


class FlattenHead(nn.Module):
    """A conv map flattened into a Linear: each channel owns H*W inputs."""

    def __init__(self):
        super().__init__()
        self.conv = cbr(1, 12)
        self.fc1, self.fc2 = nn.Linear(12 * 4 * 4, 20), nn.Linear(20, 3)

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 2)
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


def test_flatten_into_linear_removes_blocks_of_inputs():
    model = FlattenHead()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 1, 8, 8))
    assert model.conv[0].out_channels == 6 and model.fc1.in_features == 6 * 16
    assert model.fc1.out_features == 10


class Shuffle(nn.Module):
    """ShuffleNet v2 unit: chunk, branch, concat, channel shuffle by view-transpose-view."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.branch = nn.Sequential(cbr(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                                    nn.BatchNorm2d(8), cbr(8, 8, 1))
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.head(x)


def test_channel_shuffle_and_chunk():
    model = Shuffle()
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.stem[0].out_channels % 2 == 0 and model.stem[0].out_channels < 16
    assert model.head.in_channels == model.stem[0].out_channels


class MultiHead(nn.Module):
    """One trunk, two task heads; tuple or dict outputs."""

    def __init__(self, as_dict: bool):
        super().__init__()
        self.as_dict = as_dict
        self.trunk = nn.Sequential(cbr(3, 16), cbr(16, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.cls = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))
        self.seg = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        f = self.trunk(x)
        out = (self.cls(self.pool(f)), self.seg(f))
        return {"cls": out[0], "seg": out[1]} if self.as_dict else out


@pytest.mark.parametrize("as_dict", [False, True])
def test_several_outputs(as_dict):
    model = MultiHead(as_dict)
    randomize_norms(model)
    prune_check(model, torch.randn(2, 3, 8, 8))
    assert model.trunk[1][0].out_channels == model.seg.in_channels == model.cls[1].in_features
    assert model.cls[3].out_features == 5 and model.seg.out_channels == 2


class LayerScale(nn.Module):
    """A learnable per-channel scale used directly (ConvNeXt's layer scale), a transposed conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1) + 0.5)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(F.relu(self.up(F.relu(self.conv(x) * self.gamma))))


def test_parameter_scale_and_transposed_conv():
    model = LayerScale()
    prune_check(model, torch.randn(2, 3, 4, 4))
    assert model.gamma.shape == (8, 1, 1) and model.up.in_channels == 8
    assert model.up.out_channels == model.head.in_channels == 4


class Unknown(nn.Module):
    """An op the engine doesn't know (a matmul over channels) protects what it touches."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = torch.einsum("nchw,ndhw->ncd", self.a(x), self.a(x)).sum()
        return self.head(F.relu(self.b(x))) + y


def test_unknown_op_protects_its_channels():
    model = Unknown()
    pruner = Pruner(model, torch.randn(1, 3, 4, 4))
    by_name = {g.name: g for g in pruner.groups}
    assert by_name["a"].prunable == 0 and by_name["b"].prunable == 8
    prune_check(model, torch.randn(1, 3, 4, 4))
    assert model.a.out_channels == 8 and model.b.out_channels == 4


class Shared(nn.Module):
    """One conv applied to two branches: its weights tie both branches' channels together."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        left = F.relu(self.shared(F.relu(self.a(x))))
        right = F.relu(self.shared(F.relu(self.b(x))))
        return self.head(torch.cat([left, right], 1))


def test_module_called_twice_ties_its_callers():
    model = Shared()
    prune_check(model, torch.randn(2, 3, 6, 6))
    assert model.a.out_channels == model.b.out_channels == model.shared.in_channels == 4
    assert model.head.in_channels == 2 * model.shared.out_channels == 8
