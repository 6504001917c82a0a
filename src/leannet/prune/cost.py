"""Analytic cost of a model as a function of the channels it keeps: MACs of conv/linear layers,
parameter counts, and (given a measured per-layer table) latency in a runtime, updated
incrementally as channels are removed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.capture.graph import ChannelGraph


@dataclass
class LatencyModel:
    """NetAdapt's lookup table as a per-layer linear model, measured in one runtime and
    precision: a conv/linear layer costs `fixed_ms + ms_per_mac * its MACs`, the rest of the
    network (adds, pooling, (de)quantization, the runtime's call) `other_ms`.

    Why linear per layer rather than one ms-per-MAC: runtimes pay very different prices per MAC
    for different layers (a depthwise 3x3 at high resolution against a 1x1 at low resolution
    differ several-fold), which is exactly what a MACs target cannot see. Layers the table does
    not know cost the median `ms_per_mac`. Built by `leannet.deploy.latency.layer_latency_model`;
    a plain-JSON round trip (`to_dict` / `from_dict`).
    """

    layers: dict[str, tuple[float, float]]  # module name -> (fixed_ms, ms_per_mac)
    other_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # runtime, precision, threads, ...

    def slope(self, module: str) -> tuple[float, float]:
        if module in self.layers:
            return self.layers[module]
        slopes = sorted(s for _, s in self.layers.values())
        return 0.0, slopes[len(slopes) // 2] if slopes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"layers": {k: {"fixed_ms": f, "ms_per_mac": s} for k, (f, s) in
                           self.layers.items()}, "other_ms": self.other_ms, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyModel":
        """From JSON, checked: every number finite, slopes and fixed costs not negative."""
        try:
            layers = {str(k): (float(v["fixed_ms"]), float(v["ms_per_mac"]))
                      for k, v in dict(data["layers"]).items()}
            other = float(data.get("other_ms", 0.0))
        except (KeyError, TypeError, ValueError) as err:
            raise LeannetError(f"latency table: expected {{layers: {{name: {{fixed_ms, "
                               f"ms_per_mac}}}}, other_ms}}, got a bad entry ({err})") from None
        bad = [k for k, (f, s) in layers.items() if not (math.isfinite(f) and math.isfinite(s))
               or f < 0 or s < 0]
        if bad or not math.isfinite(other) or not layers:
            raise LeannetError(f"latency table: needs at least one layer, and finite, "
                               f"non-negative costs; bad: {bad[:3] or ['other_ms']}")
        return cls(layers, other, dict(data.get("meta", {})))


class CostModel:
    """Kept-index counts per member and the MACs / params they imply."""

    def __init__(self, model: nn.Module, graph: ChannelGraph,
                 latency_model: LatencyModel | None = None) -> None:
        self.graph = graph
        self.latency_model = latency_model
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
        self.latency0 = self.latency() if latency_model is not None else 0.0

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

    def latency(self) -> float:
        """Estimated ms with the current kept counts (needs a LatencyModel)."""
        table = self.latency_model
        if table is None:
            raise LeannetError("a latency estimate needs a measured per-layer latency table")
        total = table.other_ms
        for layer in self.graph.layers:  # each call of a layer pays its cost
            if not layer.macs:
                continue
            fixed, slope = table.slope(layer.module)
            total += fixed + slope * layer.macs * self._n(layer.out_key, layer.full_out) \
                * self._n(layer.in_key, layer.full_in)
        return float(total)

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
        if kind == "latency":
            return self.latency()
        return self.macs() if kind == "macs" else self.params()

    def base(self, kind: str) -> float:
        return {"macs": self.macs0, "params": self.params0, "latency": self.latency0}[kind]
