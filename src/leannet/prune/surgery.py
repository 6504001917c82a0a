"""Physically remove channels: slice weights, biases, running statistics and let each layer's rule
refresh its size attributes, so the model really is smaller and an optimizer can be rebuilt on it.

`zeroed` is the other half of the same operation: the removed channels set to zero in fresh
copies of the tensors, put back on exit. Verification (zeroed, then cut, compare) and sensitivity
analysis (zeroed, evaluate) both use it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from leannet.prune.capture.graph import ChannelGraph, Member

Snapshot = list[tuple[nn.Module, dict, dict, dict]]


def kept_indices(graph: ChannelGraph, removed: np.ndarray) -> dict[str, np.ndarray]:
    """For every member that loses something: the indices it keeps. `removed` is a bool mask
    over atoms (true at the class roots of removed channels)."""
    out = {}
    for member in graph.members:
        keep = ~removed[graph.member_classes(member)]
        if not keep.all():
            out[member.key] = np.nonzero(keep)[0]
    return out


def snapshot(model: nn.Module, graph: ChannelGraph, keys: Iterator[str] | set[str]) -> Snapshot:
    """Everything surgery may replace in the modules of these member keys (tensor objects and the
    size attributes their rules name)."""
    by_key = {m.key: m for m in graph.members}
    attributes: dict[str, set[str]] = {}
    for key in keys:
        member = by_key[key]
        attributes.setdefault(member.module, set()).update(member.rule.attributes)
    snap = []
    for name in sorted(attributes):
        m = model.get_submodule(name)
        snap.append((m, dict(m._parameters), dict(m._buffers),
                     {a: getattr(m, a) for a in attributes[name] if hasattr(m, a)}))
    return snap


def restore(snap: Snapshot) -> None:
    """Put back what `snapshot` saw."""
    for m, params, buffers, attrs in snap:
        m._parameters.update(params)
        m._buffers.update(buffers)
        for a, v in attrs.items():
            setattr(m, a, v)


def _replace(m: nn.Module, name: str, tensor: torch.Tensor) -> None:
    if name in m._parameters:
        old = m._parameters[name]
        m._parameters[name] = nn.Parameter(tensor, requires_grad=old is None or old.requires_grad)
    else:
        m._buffers[name] = tensor


def cut(model: nn.Module, graph: ChannelGraph, keep: dict[str, np.ndarray],
        zero_only: bool = False) -> None:
    """Slice (or, with zero_only, zero in fresh copies) every member's removed indices."""
    by_key = {m.key: m for m in graph.members}
    touched: dict[str, tuple[Member, set[str]]] = {}
    for key, kept in keep.items():
        member = by_key[key]
        m = model.get_submodule(member.module)
        touched.setdefault(member.module, (member, set()))[1].add(member.kind)
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
        for name, (member, kinds) in touched.items():
            member.rule.resize(model.get_submodule(name), kinds)


def snapshot_for(model: nn.Module, graph: ChannelGraph, removed: np.ndarray) -> Snapshot:
    """The snapshot of every module that removing these channels touches."""
    return snapshot(model, graph, set(kept_indices(graph, removed)))


@contextmanager
def zeroed(model: nn.Module, graph: ChannelGraph, removed: np.ndarray) -> Iterator[Snapshot]:
    """The model with the removed channels zeroed (producers' filters, biases, norm scale and
    shift, consumers' input weights); every touched tensor is put back on exit. Yields the
    snapshot of the original tensors."""
    keep = kept_indices(graph, removed)
    snap = snapshot(model, graph, set(keep))
    try:
        cut(model, graph, keep, zero_only=True)
        yield snap
    finally:
        restore(snap)


def remove(model: nn.Module, graph: ChannelGraph, removed: np.ndarray) -> Snapshot:
    """Cut the removed channels for real; returns the snapshot that `restore` undoes it with."""
    keep = kept_indices(graph, removed)
    snap = snapshot(model, graph, set(keep))
    cut(model, graph, keep)
    return snap
