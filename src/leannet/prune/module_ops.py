"""How channel labels flow through leaf modules, keyed by layer type (a registry, so a new layer
type plugs in without touching the core): convs and linears make new channels and record who
owns which slice; norms and activations pass channels through."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from leannet.prune.labels import canon, channel_atoms, fresh
from leannet.prune.tensor_ops import coupled_along, passthrough, spatial

MODULES: dict[type, Callable] = {}


def register_module(*types: type) -> Callable:
    """Decorator: handle these module types (subclasses included)."""
    def decorate(fn: Callable) -> Callable:
        for t in types:
            MODULES[t] = fn
        return fn
    return decorate


def find_module_handler(module: nn.Module) -> Callable | None:
    """The handler registered for the module's type or its nearest base class."""
    for cls in type(module).__mro__:
        if cls in MODULES:
            return MODULES[cls]
    return None


def _out_label(ndim: int, dim: int, atoms: np.ndarray) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = len(atoms)
    return torch.from_numpy(np.ascontiguousarray(atoms)).reshape(shape)


@register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(ctx, node, name, m, x, label, value):
    """Standard, grouped and depthwise convolutions."""
    if label is None:
        return None
    uf, cin, cout, g = ctx.uf, m.in_channels, m.out_channels, m.groups
    inputs = channel_atoms(uf, label, 1, cin)
    spatial_out = int(np.prod(value.shape[2:]))
    kernel = int(np.prod(m.kernel_size))
    if g > 1 and g == cin:  # depthwise (with channel multiplier k): out o follows input o // k
        atoms = np.repeat(inputs, cout // cin)
        ctx.add_member(name, "conv_dw", atoms)
        ctx.add_layer(name, "conv_dw", None, macs=kernel * spatial_out, weight=kernel)
        return _out_label(value.dim(), 1, atoms)
    _, atoms = fresh(uf, value.dim(), 1, cout, ctx.new_owner(name))
    if g > 1:  # grouped: position i of every group goes together, so groups stay equal
        uf.union_arrays(np.repeat(inputs.reshape(g, -1)[:1], g, 0), inputs.reshape(g, -1))
        uf.union_arrays(np.repeat(atoms.reshape(g, -1)[:1], g, 0), atoms.reshape(g, -1))
    ctx.add_member(name, "conv_in", inputs[: cin // g], feature=(1, inputs))
    ctx.add_member(name, "conv_out", atoms)
    ctx.add_layer(name, "conv_out", "conv_in", macs=kernel * spatial_out, weight=kernel)
    return _out_label(value.dim(), 1, atoms)


@register_module(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(ctx, node, name, m, x, label, value):
    """Transposed convolutions (groups=1 only; grouped ones are treated as unknown)."""
    if label is None:
        return None
    if m.groups != 1:
        return ctx.unknown(node, [label], {}, value)
    inputs = channel_atoms(ctx.uf, label, 1, m.in_channels)
    _, atoms = fresh(ctx.uf, value.dim(), 1, m.out_channels, ctx.new_owner(name))
    ctx.add_member(name, "convt_in", inputs, feature=(1, inputs))
    ctx.add_member(name, "convt_out", atoms)
    kernel = int(np.prod(m.kernel_size))
    ctx.add_layer(name, "convt_out", "convt_in", macs=kernel * int(np.prod(x.shape[2:])),
                  weight=kernel)
    return _out_label(value.dim(), 1, atoms)


@register_module(nn.Linear)
def linear(ctx, node, name, m, x, label, value):
    """Linear layers act on the last dimension."""
    if label is None:
        return None
    inputs = channel_atoms(ctx.uf, label, -1, m.in_features)
    _, atoms = fresh(ctx.uf, value.dim(), value.dim() - 1, m.out_features, ctx.new_owner(name))
    ctx.add_member(name, "linear_in", inputs, feature=(-1, inputs))
    ctx.add_member(name, "linear_out", atoms)
    rows = int(np.prod(value.shape[1:-1])) if value.dim() > 2 else 1
    ctx.add_layer(name, "linear_out", "linear_in", macs=rows, weight=1)
    return _out_label(value.dim(), value.dim() - 1, atoms)


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
                 nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def batch_norm(ctx, node, name, m, x, label, value):
    """Per-channel norms: their parameters and running statistics follow the channel."""
    if label is None:
        return None
    atoms = channel_atoms(ctx.uf, label, 1, m.num_features)
    if m.weight is not None or m.running_mean is not None:
        ctx.add_member(name, "norm", atoms)
        ctx.add_layer(name, None, None, params_per_channel=2 if m.weight is not None else 0,
                      member="norm")
    return canon(ctx.uf, label)


@register_module(nn.GroupNorm)
def group_norm(ctx, node, name, m, x, label, value):
    """GroupNorm: channels of one norm group go together, so every kept group stays whole."""
    if label is None:
        return None
    atoms = channel_atoms(ctx.uf, label, 1, m.num_channels)
    rows = atoms.reshape(m.num_groups, -1)
    ctx.uf.union_arrays(np.repeat(rows[:, :1], rows.shape[1], 1), rows)
    if m.weight is not None:
        ctx.add_member(name, "gn", atoms)
        ctx.add_layer(name, None, None, params_per_channel=2, member="gn")
    return canon(ctx.uf, label)


@register_module(nn.LayerNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d)
def layer_norm(ctx, node, name, m, x, label, value):
    """LayerNorm/LRN mix channels in their statistics: removing one changes the rest, so the
    normalised channels are protected (exact equivalence is the rule)."""
    dims = -1 - np.arange(len(m.normalized_shape)) if isinstance(m, nn.LayerNorm) else [1]
    return coupled_along(ctx, node, [x], {}, [label], {}, value, [int(d) for d in dims])


@register_module(nn.PReLU)
def prelu(ctx, node, name, m, x, label, value):
    """PReLU with one slope per channel: the slope follows the channel."""
    if label is None:
        return None
    if m.num_parameters > 1:
        ctx.add_member(name, "prelu", channel_atoms(ctx.uf, label, 1, m.num_parameters))
    return canon(ctx.uf, label)


@register_module(nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)
def softmax_module(ctx, node, name, m, x, label, value):
    """Softmax modules mix values along their dim."""
    dim = -3 if isinstance(m, nn.Softmax2d) else m.dim
    return coupled_along(ctx, node, [x], {}, [label], {}, value, dim)


_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
                nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
                nn.Hardshrink, nn.Softshrink, nn.RReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity)
_SPATIAL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d,
            nn.LPPool2d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
            nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
            nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d)


def _elementwise_module(ctx, node, name, m, x, label, value):
    return passthrough(ctx, node, [x], {}, [label], {}, value)


def _spatial_module(ctx, node, name, m, x, label, value):
    return spatial(ctx, node, [x], {}, [label], {}, value)


for _t in _ELEMENTWISE:
    MODULES[_t] = _elementwise_module
for _t in _SPATIAL:
    MODULES[_t] = _spatial_module
try:  # torchvision's per-sample stochastic depth: elementwise, traced as a leaf
    from torchvision.ops import StochasticDepth
    MODULES[StochasticDepth] = _elementwise_module
except ImportError:  # pragma: no cover
    pass


def _reshape_module(ctx, node, name, m, x, label, value):
    from leannet.prune.view_ops import reshaping
    return reshaping(ctx, node, [x], {}, [label], {}, value, module=m)


MODULES[nn.Flatten] = _reshape_module
MODULES[nn.Unflatten] = _reshape_module
