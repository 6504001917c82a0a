"""Rules for timm's layers, registered only when timm is installed (it stays optional).

Fused norm + activation layers (`BatchNormAct2d`, `SyncBatchNormAct`, `GroupNormAct`,
`GroupNorm1Act`, and timm's plain `GroupNorm`/`GroupNorm1`) are norms whose output passes an
elementwise activation; the LayerNorm/RmsNorm/SimpleNorm family protects its channels; `Conv2dSame` and the
`*Same` pools are a conv or a pool behind a spatial padding; `DropPath`, `DropBlock2d` and
timm's own activations are elementwise; `BlurPool2d` is a fixed depthwise blur whose per-channel
filter follows the channel. timm's list of modules and functions that fx can't trace is used as
trace hints (those modules become leaves, protected unless a rule knows them).

Blocks needing no rule, because they are traced into and every part has one: `ConvNormAct`,
`SqueezeExcite`, `EffectiveSEModule`, RepVGG/MobileOne blocks, GhostNet's ghost modules (their
`[:, :out_chs]` slice reaches the end), `create_conv2d` outputs. Exactness protects what can't be
cut exactly: `EcaModule` (a conv across channels), `MixedConv2d` inputs (fixed split sizes),
`CondConv2d` (expert weights reshaped at run time), ReXNet's partial residual (a fixed slice),
LayerNorm-like norms (statistics over channels), mambaout's gated conv (a fixed-size split).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from leannet.prune.capture.labels import channel_atoms
from leannet.prune.capture.opcall import OpCall
from leannet.prune.capture.tensor_ops import coupled_along, spatial
from leannet.prune.rules.base import LayerRule, MemberKind, add_trace_hints, register
from leannet.prune.rules.torch_nn import (BatchNorm, Conv, Elementwise, GroupNorm, Spatial,
                                          prunable_norm, prune_mixing_norm)

try:
    import timm.layers as layers
    from timm.layers import _fx as timm_fx
    from timm.layers import activations, activations_me
    from timm.layers.pool2d_same import MaxPool2dSame
except ImportError:  # timm is optional: without it, no timm rules
    layers = None  # type: ignore[assignment]


def _then_activation(call: OpCall, label: Any, module: nn.Module) -> Any:
    """A fused layer's `drop` and `act` submodules: elementwise ones pass channels through; any
    other protects them."""
    for part in (getattr(module, "drop", None), getattr(module, "act", None)):
        if part is not None and not isinstance(call.ctx.rules.find(part), Elementwise):
            call.ctx.protect(label.numpy(), call.node,
                             f"applies {type(part).__name__}, which has no elementwise rule")
    return label


def _is_activation(module: nn.Module, rules: Any) -> bool:
    act = getattr(module, "act", None)
    rule = rules.find(act) if act is not None else None
    return rule is not None and rule.is_activation(act)


class NormAct(BatchNorm):
    """timm's BatchNorm + drop + activation in one module (a BatchNorm2d subclass)."""

    leaf = True

    def label(self, call: OpCall) -> Any:
        label = super().label(call)
        return None if label is None else _then_activation(call, label, call.module)

    def is_activation(self, module: nn.Module) -> bool:
        act = getattr(module, "act", None)
        return act is not None and not isinstance(act, nn.Identity)


class GroupNormAct(GroupNorm):
    """timm's GroupNorm + drop + activation (GroupNorm1Act: one norm group)."""

    leaf = True

    def label(self, call: OpCall) -> Any:
        label = super().label(call)
        return None if label is None else _then_activation(call, label, call.module)

    def is_activation(self, module: nn.Module) -> bool:
        act = getattr(module, "act", None)
        return act is not None and not isinstance(act, nn.Identity)


class ConvSame(Conv):
    """A conv behind a 'same' padding computed from the input size: channels as a conv."""

    leaf = True


class PoolSame(Spatial):
    """A pool behind a 'same' padding."""

    leaf = True


class BlurPool(LayerRule):
    """A fixed binomial blur per channel (depthwise, stride 2): with `channels` set, its filter
    buffer has one row per channel that follows the channel."""

    kinds = {"filt": MemberKind((("filt", 0),), "param")}
    attributes = ("channels",)
    leaf = True

    def label(self, call: OpCall) -> Any:
        if call.label is None:
            return None
        label = spatial(call.only(call.x, call.label))
        m = call.module
        if m.channels is not None and label is not None:
            atoms = channel_atoms(call.ctx.uf, call.label, 1, m.channels)
            call.ctx.add_member(self, call.name, "filt", atoms)
            call.ctx.add_layer(call.name, None, None, member="filt",
                               macs=int(np.prod(m.filt.shape[2:])) * int(np.prod(call.value.shape[2:])))
        return label

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.channels = m.filt.shape[0]


class MixingNorm(LayerRule):
    """timm's LayerNorm / RmsNorm / SimpleNorm family (with or without a fused activation):
    statistics over the channels, so the channels are protected, as for nn.LayerNorm. The `2d`
    variants normalise dim 1 of NCHW tensors; the others the trailing `normalized_shape`."""

    leaf = True

    def __init__(self, types: tuple[type, ...], channels_first: bool) -> None:
        super().__init__(types)
        self.channels_first = channels_first

    kinds = {"ln": MemberKind((("weight", 0), ("bias", 0)), "scale", exact=False)}
    attributes = ("normalized_shape",)

    def label(self, call: OpCall) -> Any:
        if prunable_norm(call):
            label = prune_mixing_norm(self, call, 1 if self.channels_first else -1)
            return _then_activation(call, label, call.module)
        shape = getattr(call.module, "normalized_shape", (0,))
        dims = [1] if self.channels_first else [-1 - i for i in range(len(shape))]
        return coupled_along(call.only(call.x, call.label), dims)

    def resize(self, m: Any, kinds: set[str]) -> None:
        m.normalized_shape = (m.weight.shape[0],)

    def is_activation(self, module: nn.Module) -> bool:
        act = getattr(module, "act", None)
        return act is not None and not isinstance(act, nn.Identity)


def _types(*names: str) -> tuple[type, ...]:
    """The timm.layers classes of these names that this timm version has."""
    return tuple(getattr(layers, n) for n in names if hasattr(layers, n))


def _activation_types() -> tuple[type, ...]:
    """timm's own activation modules (plain and memory-efficient)."""
    found = []
    for module in (activations, activations_me):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, nn.Module) \
                    and value.__module__ == module.__name__ and not issubclass(value, nn.PReLU):
                found.append(value)
    return tuple(found)


if layers is not None:
    register(NormAct((layers.BatchNormAct2d, layers.SyncBatchNormAct)))
    register(GroupNormAct((layers.GroupNormAct, layers.GroupNorm1Act)))
    register(GroupNorm(_types("GroupNorm", "GroupNorm1")))
    register(MixingNorm(_types("LayerNorm", "LayerNormFp32", "RmsNorm", "RmsNormFp32",
                               "SimpleNorm", "SimpleNormFp32", "LayerNormAct", "LayerNormActFp32",
                               "RmsNormAct", "RmsNormActFp32"), channels_first=False))
    register(MixingNorm(_types("LayerNorm2d", "LayerNorm2dFp32", "RmsNorm2d", "RmsNorm2dFp32",
                               "SimpleNorm2d", "SimpleNorm2dFp32", "LayerNormAct2d",
                               "LayerNormAct2dFp32", "RmsNormAct2d", "RmsNormAct2dFp32"),
                        channels_first=True))
    register(ConvSame((layers.Conv2dSame,)))
    register(PoolSame((MaxPool2dSame, layers.AvgPool2dSame)))
    register(BlurPool((layers.BlurPool2d,)))
    register(Elementwise(_activation_types(), activations=_activation_types(), leaf=True))
    register(Elementwise((layers.DropPath, layers.DropBlock2d), activations=(), leaf=True))
    add_trace_hints(timm_fx.get_notrace_modules(), timm_fx.get_notrace_functions())
