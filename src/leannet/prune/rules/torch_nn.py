"""Rules for torch.nn layers: convolutions, linears, embeddings, norms, activations, pooling,
padding, dropout, reshapes. Convs and linears make new channels and record who owns which slice;
norms and activations pass channels through."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from leannet.prune.capture.labels import canon, channel_atoms, fresh
from leannet.prune.capture.opcall import OpCall
from leannet.prune.capture.tensor_ops import coupled_along, passthrough, spatial
from leannet.prune.capture.view_ops import reshaping
from leannet.prune.rules.base import LayerRule, MemberKind, register

BIASED_FILTER = MemberKind((("weight", 0), ("bias", 0)), "filter")
NORM = MemberKind((("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)), "scale")


def out_label(ndim: int, dim: int, atoms: np.ndarray) -> torch.Tensor:
    """A label whose dimension `dim` holds `atoms` (size 1 elsewhere)."""
    shape = [1] * ndim
    shape[dim] = len(atoms)
    return torch.from_numpy(np.ascontiguousarray(atoms)).reshape(shape)


@register
class Conv(LayerRule):
    """Standard, grouped and depthwise convolutions (a depthwise one passes channels through)."""

    types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    kinds = {"conv_out": BIASED_FILTER, "conv_dw": BIASED_FILTER,
             "conv_in": MemberKind((("weight", 1),), "input")}
    attributes = ("in_channels", "out_channels", "groups")

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        ctx, name, m, value = call.ctx, call.name, call.module, call.value
        uf, cin, cout, g = ctx.uf, m.in_channels, m.out_channels, m.groups
        inputs = channel_atoms(uf, call.label, 1, cin)
        spatial_out = int(np.prod(value.shape[2:]))
        kernel = int(np.prod(m.kernel_size))
        if g > 1 and g == cin:  # depthwise (channel multiplier k): out o follows input o // k
            atoms = np.repeat(inputs, cout // cin)
            ctx.add_member(self, name, "conv_dw", atoms)
            ctx.add_layer(name, "conv_dw", None, macs=kernel * spatial_out, weight=kernel)
            return out_label(value.dim(), 1, atoms)
        _, atoms = fresh(uf, value.dim(), 1, cout, ctx.new_owner(name))
        if g > 1:  # grouped: position i of every group goes together, so groups stay equal
            uf.union_arrays(np.repeat(inputs.reshape(g, -1)[:1], g, 0), inputs.reshape(g, -1))
            uf.union_arrays(np.repeat(atoms.reshape(g, -1)[:1], g, 0), atoms.reshape(g, -1))
        ctx.add_member(self, name, "conv_in", inputs[: cin // g], feature=(1, inputs))
        ctx.add_member(self, name, "conv_out", atoms)
        ctx.add_layer(name, "conv_out", "conv_in", macs=kernel * spatial_out, weight=kernel)
        return out_label(value.dim(), 1, atoms)

    def resize(self, m: Any, kinds: set[str]) -> None:
        w = m.weight
        if "conv_dw" in kinds:
            m.groups = m.groups * w.shape[0] // m.out_channels
        m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


@register
class ConvTranspose(LayerRule):
    """Transposed convolutions (groups=1 only; grouped ones are an unknown op)."""

    types = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    kinds = {"convt_out": MemberKind((("weight", 1), ("bias", 0)), "filter"),
             "convt_in": MemberKind((("weight", 0),), "input")}
    attributes = ("in_channels", "out_channels")

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        ctx, m, name, value = call.ctx, call.module, call.name, call.value
        if m.groups != 1:
            return call.unknown()
        inputs = channel_atoms(ctx.uf, call.label, 1, m.in_channels)
        _, atoms = fresh(ctx.uf, value.dim(), 1, m.out_channels, ctx.new_owner(name))
        ctx.add_member(self, name, "convt_in", inputs, feature=(1, inputs))
        ctx.add_member(self, name, "convt_out", atoms)
        kernel = int(np.prod(m.kernel_size))
        ctx.add_layer(name, "convt_out", "convt_in", macs=kernel * int(np.prod(call.x.shape[2:])),
                      weight=kernel)
        return out_label(value.dim(), 1, atoms)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.in_channels, m.out_channels = m.weight.shape[0], m.weight.shape[1] * m.groups


@register
class Linear(LayerRule):
    """Linear layers act on the last dimension."""

    types = (nn.Linear,)
    kinds = {"linear_out": BIASED_FILTER, "linear_in": MemberKind((("weight", 1),), "input")}
    attributes = ("in_features", "out_features")

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        ctx, m, name, value = call.ctx, call.module, call.name, call.value
        inputs = channel_atoms(ctx.uf, call.label, -1, m.in_features)
        _, atoms = fresh(ctx.uf, value.dim(), value.dim() - 1, m.out_features, ctx.new_owner(name))
        ctx.add_member(self, name, "linear_in", inputs, feature=(-1, inputs))
        ctx.add_member(self, name, "linear_out", atoms)
        rows = int(np.prod(value.shape[1:-1])) if value.dim() > 2 else 1
        ctx.add_layer(name, "linear_out", "linear_in", macs=rows, weight=1)
        return out_label(value.dim(), value.dim() - 1, atoms)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.out_features, m.in_features = m.weight.shape


@register
class Embedding(LayerRule):
    """Embeddings make channels along the last dimension: one weight column per channel."""

    types = (nn.Embedding,)
    kinds = {"embed_out": MemberKind((("weight", 1),), "filter")}
    attributes = ("embedding_dim",)

    def label(self, call: OpCall) -> Any:
        ctx, m, name, value = call.ctx, call.module, call.name, call.value
        if call.label is not None:  # indices carry no channels; protect whatever they carry
            ctx.protect(call.label.numpy(), call.node, "indexes an embedding with it")
        _, atoms = fresh(ctx.uf, value.dim(), value.dim() - 1, m.embedding_dim,
                         ctx.new_owner(name))
        ctx.add_member(self, name, "embed_out", atoms)
        ctx.add_layer(name, None, None, params_per_channel=m.num_embeddings, member="embed_out")
        return out_label(value.dim(), value.dim() - 1, atoms)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.embedding_dim = m.weight.shape[1]


@register
class BatchNorm(LayerRule):
    """Per-channel norms: their parameters and running statistics follow the channel."""

    types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
             nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
    kinds = {"norm": NORM}
    attributes = ("num_features",)

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        m, ctx = call.module, call.ctx
        atoms = channel_atoms(ctx.uf, call.label, 1, m.num_features)
        if m.weight is not None or m.running_mean is not None:
            ctx.add_member(self, call.name, "norm", atoms)
            ctx.add_layer(call.name, None, None,
                          params_per_channel=2 if m.weight is not None else 0, member="norm")
        return canon(ctx.uf, call.label)

    def resize(self, m: Any, kinds: set[str]) -> None:
        ref = m.weight if m.weight is not None else m.running_mean
        m.num_features = ref.shape[0]


@register
class GroupNorm(LayerRule):
    """GroupNorm: channels of one norm group go together, so every kept group stays whole."""

    types = (nn.GroupNorm,)
    kinds = {"gn": MemberKind((("weight", 0), ("bias", 0)), "scale")}
    attributes = ("num_channels", "num_groups")

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        m, ctx = call.module, call.ctx
        atoms = channel_atoms(ctx.uf, call.label, 1, m.num_channels)
        rows = atoms.reshape(m.num_groups, -1)
        ctx.uf.union_arrays(np.repeat(rows[:, :1], rows.shape[1], 1), rows)
        if m.weight is not None:
            ctx.add_member(self, call.name, "gn", atoms)
            ctx.add_layer(call.name, None, None, params_per_channel=2, member="gn")
        return canon(ctx.uf, call.label)

    def resize(self, m: Any, kinds: set[str]) -> None:
        per_group = m.num_channels // m.num_groups
        m.num_channels = m.weight.shape[0] if m.weight is not None else m.num_channels
        m.num_groups = m.num_channels // per_group


def prune_mixing_norm(rule: LayerRule, call: OpCall, dim: int) -> Any:
    """The non-exact LayerNorm policy: the norm's channels along `dim` stay prunable, and its
    scale and shift follow them in a member whose kind is not exact (statistics change)."""
    ctx, m = call.ctx, call.module
    atoms = channel_atoms(ctx.uf, call.label, dim, m.weight.shape[0])
    ctx.add_member(rule, call.name, "ln", atoms)
    ctx.add_layer(call.name, None, None, member="ln",
                  params_per_channel=2 if getattr(m, "bias", None) is not None else 1)
    return canon(ctx.uf, call.label)


def prunable_norm(call: OpCall) -> bool:
    """Whether the non-exact policy applies: asked for, one normalised dim, a scale to slice."""
    m = call.module
    return (call.ctx.rules.layer_norm == "prune" and call.label is not None
            and len(getattr(m, "normalized_shape", ())) == 1
            and isinstance(getattr(m, "weight", None), torch.Tensor))


@register
class LayerNorm(LayerRule):
    """LayerNorm mixes channels in its statistics: removing one changes the rest, so the
    normalised channels are protected (exact equivalence is the rule). With
    `layer_norm="prune"` they are pruned (scale and shift follow the channel) and the output
    change is measured."""

    types = (nn.LayerNorm,)
    kinds = {"ln": MemberKind((("weight", 0), ("bias", 0)), "scale", exact=False)}
    attributes = ("normalized_shape",)

    def label(self, call: OpCall) -> Any:
        if prunable_norm(call):
            return prune_mixing_norm(self, call, -1)
        dims = [int(d) for d in -1 - np.arange(len(call.module.normalized_shape))]
        return coupled_along(call.only(call.x, call.label), dims)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.normalized_shape = (m.weight.shape[0],)


@register
class LocalResponseNorm(LayerRule):
    """Local response norms mix neighbouring channels: protected."""

    types = (nn.LocalResponseNorm, nn.CrossMapLRN2d)

    def label(self, call: OpCall) -> Any:
        return coupled_along(call.only(call.x, call.label), [1])


@register
class PReLU(LayerRule):
    """PReLU with one slope per channel: the slope follows the channel."""

    types = (nn.PReLU,)
    kinds = {"prelu": MemberKind((("weight", 0),), "param")}
    attributes = ("num_parameters",)

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        m, ctx = call.module, call.ctx
        if m.num_parameters > 1:
            ctx.add_member(self, call.name, "prelu",
                           channel_atoms(ctx.uf, call.label, 1, m.num_parameters))
            ctx.add_layer(call.name, None, None, params_per_channel=1, member="prelu")
        return canon(ctx.uf, call.label)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.num_parameters = m.weight.shape[0]

    def is_activation(self, module: nn.Module) -> bool:
        return True


@register
class Softmax(LayerRule):
    """Softmax modules mix values along their dim."""

    types = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)

    def label(self, call: OpCall) -> Any:
        m = call.module
        dim = -3 if isinstance(m, nn.Softmax2d) else m.dim
        return coupled_along(call.only(call.x, call.label), dim)


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Hardswish, nn.Hardtanh, nn.RReLU)


class Elementwise(LayerRule):
    """Unary elementwise layers (activations, dropout, identity): channels pass through."""

    types = ACTIVATIONS + (nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
                           nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink,
                           nn.Softshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                           nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity)
    activations: tuple[type, ...] = ACTIVATIONS

    def __init__(self, types: tuple[type, ...] | None = None,
                 activations: tuple[type, ...] | None = None, leaf: bool = False) -> None:
        super().__init__(types)
        if activations is not None:
            self.activations = activations
        self.leaf = leaf  # type: ignore[misc]

    def label(self, call: OpCall) -> Any:
        return passthrough(call.only(call.x, call.label))

    def is_activation(self, module: nn.Module) -> bool:
        return isinstance(module, self.activations)


register(Elementwise())


@register
class Spatial(LayerRule):
    """Pooling, upsampling and padding: dims >= 2 change, batch and channels stay."""

    types = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
             nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d,
             nn.LPPool2d, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
             nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
             nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d)

    def label(self, call: OpCall) -> Any:
        return spatial(call.only(call.x, call.label))


@register
class Reshape(LayerRule):
    """nn.Flatten / nn.Unflatten: the view rules of view_ops."""

    types = (nn.Flatten, nn.Unflatten)

    def label(self, call: OpCall) -> Any:
        return reshaping(call.only(call.x, call.label), module=call.module)
