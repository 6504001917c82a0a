"""Analytic cost of a model as a function of the channels it keeps: MACs of conv/linear layers
and parameter counts, updated incrementally as channels are removed."""
from __future__ import annotations

import numpy as np
from torch import nn

from leannet.prune.capture.graph import ChannelGraph


class CostModel:
    """Kept-index counts per member and the MACs / params they imply."""

    def __init__(self, model: nn.Module, graph: ChannelGraph) -> None:
        self.graph = graph
        self.keys = [m.key for m in graph.members]
        self.position = {k: i for i, k in enumerate(self.keys)}
        self.full = np.array([len(m.atoms) for m in graph.members], dtype=np.int64)
        self.kept = self.full.copy()
        self.total_params = sum(p.numel() for p in model.parameters())
        self.param_members = self._param_members(model)
        # every index of every member: which member, which class
        self.which = np.concatenate([np.full(len(m.atoms), i) for i, m in
                                     enumerate(graph.members)]) if graph.members else \
            np.zeros(0, dtype=np.int64)
        self.classes = graph.uf.roots(np.concatenate([m.atoms for m in graph.members])) \
            if graph.members else np.zeros(0, dtype=np.int64)
        self.removed = np.zeros(graph.uf.size, dtype=bool)
        self.macs0, self.params0 = self.macs(), self.params()

    def _param_members(self, model: nn.Module) -> list[tuple[int, int]]:
        """(member position, parameters per index) for members whose rule recorded no cost
        (a layer scale, a user rule's slices): what their sliced parameters hold per index."""
        costed = {layer.module for layer in self.graph.layers}
        out = []
        for i, m in enumerate(self.graph.members):
            if m.module in costed:
                continue
            module = model.get_submodule(m.module)
            per = sum(t.numel() // t.shape[dim] for name, dim in m.slices
                      if isinstance(t := getattr(module, name, None), nn.Parameter))
            if per:
                out.append((i, per))
        return out

    def _n(self, key: str | None, full: int) -> int:
        return int(self.kept[self.position[key]]) if key in self.position else full

    def macs(self) -> float:
        """MACs of every conv/linear call with the current kept counts."""
        return float(sum(layer.macs * self._n(layer.out_key, layer.full_out)
                         * self._n(layer.in_key, layer.full_in) for layer in self.graph.layers))

    def params(self) -> float:
        """Parameters: the model's total minus what the removed indices carried."""
        removed, seen = 0, set()
        for layer in self.graph.layers:
            if layer.module in seen:
                continue
            seen.add(layer.module)
            n_out, n_in = self._n(layer.out_key, layer.full_out), self._n(layer.in_key, layer.full_in)
            if layer.params_per_channel:
                removed += layer.params_per_channel * (layer.full_out - n_out)
                continue
            removed += layer.weight * (layer.full_out * layer.full_in - n_out * n_in)
            removed += (layer.full_out - n_out) if layer.bias else 0
        for i, per in self.param_members:
            removed += per * int(self.full[i] - self.kept[i])
        return float(self.total_params - removed)

    def remove(self, roots) -> None:
        """Account for removing these channel classes."""
        self.removed[np.asarray(roots, dtype=np.int64)] = True
        gone = self.removed[self.classes]
        self.kept = self.full - np.bincount(self.which[gone], minlength=len(self.full))

    def reset(self) -> None:
        self.removed[:] = False
        self.kept = self.full.copy()

    def value(self, kind: str) -> float:
        return self.macs() if kind == "macs" else self.params()
