"""Physically remove channels: slice weights, biases, running statistics and fix each module's
size attributes, so the model really is smaller and an optimizer can be rebuilt on it."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from leannet.prune.graph import ChannelGraph, Member

_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features",
          "num_features", "num_channels", "num_groups", "num_parameters")
# Per layer type: refresh size attributes from the (already sliced) tensors.
FIXERS: dict[type, Callable[[nn.Module, set[str]], None]] = {}


def _fix_conv(m: nn.Module, kinds: set[str]) -> None:
    w = m.weight
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
        return
    if "conv_dw" in kinds:
        m.groups = m.groups * w.shape[0] // m.out_channels
    m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


def _fix_linear(m: nn.Module, kinds: set[str]) -> None:
    m.out_features, m.in_features = m.weight.shape


def _fix_norm(m: nn.Module, kinds: set[str]) -> None:
    ref = m.weight if m.weight is not None else m.running_mean
    m.num_features = ref.shape[0]


def _fix_group_norm(m: nn.Module, kinds: set[str]) -> None:
    per_group = m.num_channels // m.num_groups
    m.num_channels = m.weight.shape[0]
    m.num_groups = m.num_channels // per_group


def _fix_prelu(m: nn.Module, kinds: set[str]) -> None:
    m.num_parameters = m.weight.shape[0]


FIXERS.update({nn.modules.conv._ConvNd: _fix_conv, nn.Linear: _fix_linear,
               nn.modules.batchnorm._NormBase: _fix_norm, nn.GroupNorm: _fix_group_norm,
               nn.PReLU: _fix_prelu})


def kept_indices(graph: ChannelGraph, removed: np.ndarray) -> dict[str, np.ndarray]:
    """For every member that loses something: the indices it keeps. `removed` is a bool mask
    over atoms (true at the class roots of removed channels)."""
    out = {}
    for member in graph.members:
        keep = ~removed[graph.member_classes(member)]
        if not keep.all():
            out[member.key] = np.nonzero(keep)[0]
    return out


def snapshot(model: nn.Module, names: set[str]) -> list[tuple[nn.Module, dict, dict, dict]]:
    """Everything surgery may replace in these modules (original tensor objects are kept)."""
    snap = []
    for name in sorted(names):
        m = model.get_submodule(name)
        snap.append((m, dict(m._parameters), dict(m._buffers),
                     {a: getattr(m, a) for a in _ATTRS if hasattr(m, a)}))
    return snap


def restore(snap: list[tuple[nn.Module, dict, dict, dict]]) -> None:
    """Put back what `snapshot` saw."""
    for m, params, buffers, attrs in snap:
        m._parameters.update(params)
        m._buffers.update(buffers)
        for a, v in attrs.items():
            setattr(m, a, v)


def _replace(m: nn.Module, name: str, tensor: torch.Tensor) -> None:
    if name in m._parameters:
        old = m._parameters[name]
        m._parameters[name] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        m._buffers[name] = tensor


def cut(model: nn.Module, graph: ChannelGraph, keep: dict[str, np.ndarray],
        zero_only: bool = False) -> None:
    """Slice (or, with zero_only, zero in fresh copies) every member's removed indices."""
    by_key = {m.key: m for m in graph.members}
    kinds: dict[str, set[str]] = {}
    for key, kept in keep.items():
        member: Member = by_key[key]
        m = model.get_submodule(member.module)
        kinds.setdefault(member.module, set()).add(member.kind)
        for tensor_name, dim in member.slices:
            t = getattr(m, tensor_name, None)
            if not isinstance(t, torch.Tensor) or (zero_only and tensor_name.startswith("running")):
                continue
            index = torch.as_tensor(kept, dtype=torch.long, device=t.device)
            with torch.no_grad():
                if zero_only:
                    mask = torch.ones(t.shape[dim], dtype=torch.bool, device=t.device)
                    mask[index] = False
                    new = t.detach().clone()
                    new[(slice(None),) * dim + (mask,)] = 0
                else:
                    new = t.detach().index_select(dim, index)  # a fresh copy already
            _replace(m, tensor_name, new)
    if not zero_only:
        for name, module_kinds in kinds.items():
            m = model.get_submodule(name)
            for cls in type(m).__mro__:
                if cls in FIXERS:
                    FIXERS[cls](m, module_kinds)
                    break
