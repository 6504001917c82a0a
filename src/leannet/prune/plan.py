"""Targets and plans: which channels of which group to keep, chosen to reach a cost fraction.

A PruningPlan is plain JSON: for every group that loses channels, its name, its size and the
positions kept. Group names and channel order come from the traced graph, so the same plan
replays on a fresh instance of the same architecture.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.capture.graph import ChannelGraph

PLAN_VERSION = 1
KINDS = ("macs", "params", "channels", "latency")
MAX_LATENCY_TRADEOFF = 4  # Target.latency_tradeoff lies in [0, this]


@dataclass
class Target:
    """What to keep: one of macs / params / channels / latency as a fraction of the model as
    given (macs=0.5 keeps half the MACs), with per-group floors and rounding of kept counts.

    macs counts conv and linear layers (analytically, from the traced shapes); params counts
    every parameter; channels counts the channels of the groups that can lose any; latency is
    measured (median CPU time of pruned trial copies). `overrides` maps a group name or a
    producing module's name to the fraction of its channels to keep.
    """

    macs: float | None = None
    params: float | None = None
    channels: float | None = None
    latency: float | None = None
    min_channels: int = 1
    min_fraction: float = 0.0
    round_to: int = 1
    overrides: dict[str, float] = field(default_factory=dict)
    floors: dict[str, int] = field(default_factory=dict)  # per group: never keep fewer channels
    # A latency target with a per-layer table ranks channels by importance / (ms saved) ** this:
    # 1 is HALP's importance per millisecond, 0 importance alone (time only decides when to stop)
    latency_tradeoff: float = 1.0

    def kind(self) -> tuple[str, float]:
        """The one constrained quantity and its fraction; a clear error otherwise."""
        chosen = [(k, getattr(self, k)) for k in KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise LeannetError(f"a Target needs exactly one of {', '.join(KINDS)}; got "
                               f"{[k for k, _ in chosen] or 'none'}")
        name, value = chosen[0]
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise LeannetError(f"target {name}={value!r} must be a fraction to keep in (0, 1]")
        if not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise LeannetError(f"min_channels={self.min_channels!r} must be an integer >= 1")
        if not 0 <= self.min_fraction <= 1:
            raise LeannetError(f"min_fraction={self.min_fraction!r} must be in [0, 1]")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise LeannetError(f"round_to={self.round_to!r} must be an integer >= 1")
        if not isinstance(self.latency_tradeoff, (int, float)) or \
                not 0 <= self.latency_tradeoff <= MAX_LATENCY_TRADEOFF:  # also refuses NaN
            raise LeannetError(f"latency_tradeoff={self.latency_tradeoff!r} must be a number in "
                               f"[0, {MAX_LATENCY_TRADEOFF:g}] (1: importance per millisecond, "
                               "0: importance alone)")
        for key, frac in self.overrides.items():
            if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
                raise LeannetError(f"override {key}={frac!r} must be a fraction to keep in (0, 1]")
        return name, float(value)

    def keeping(self, kind: str, fraction: float, **changes: Any) -> "Target":
        """This target with only `kind` set (to `fraction`) and the other fields `changes`."""
        new = dataclasses.replace(self, **changes)
        for name in KINDS:
            setattr(new, name, fraction if name == kind else None)
        return new

    def reduction(self) -> tuple[str, float]:
        """`kind()` for a run that must shrink the model: the fraction must be below 1."""
        chosen = [(k, getattr(self, k)) for k in KINDS if getattr(self, k) is not None]
        if len(chosen) == 1:
            name, value = chosen[0]
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise LeannetError(f"target {name}={value!r} is impossible or already met; expected "
                                   "a fraction of the baseline between 0 and 1 (e.g. 0.5 keeps half)")
        return self.kind()


@dataclass
class PruningPlan:
    """Kept channel positions per group (only groups that lose channels), plus a summary."""

    groups: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"version": PLAN_VERSION, "groups": self.groups, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: "PruningPlan | dict[str, Any]") -> "PruningPlan":
        """Parse and check the JSON form."""
        if isinstance(data, PruningPlan):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
            raise LeannetError("a pruning plan must be a PruningPlan or a JSON object with a "
                               f"'groups' object; got {type(data).__name__}")
        if data.get("version", PLAN_VERSION) != PLAN_VERSION:
            raise LeannetError(f"pruning plan version {data.get('version')!r} is not supported "
                               f"(expected {PLAN_VERSION})")
        for name, entry in data["groups"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) \
                    or not isinstance(entry.get("keep"), list):
                raise LeannetError(f"pruning plan group {name!r} needs an integer 'size' and a "
                                   "'keep' list")
        return cls({k: {"size": v["size"], "keep": [int(i) for i in v["keep"]]}
                    for k, v in data["groups"].items()}, dict(data.get("meta", {})))

    @property
    def removed_channels(self) -> int:
        return sum(g["size"] - len(g["keep"]) for g in self.groups.values())

    def removed_mask(self, graph: ChannelGraph) -> np.ndarray:
        """Bool mask over atoms, true at removed class roots; errors if the plan doesn't fit."""
        removed = np.zeros(graph.uf.size, dtype=bool)
        for name, entry in self.groups.items():
            group = graph.by_name.get(name)
            if group is None:
                raise LeannetError(f"the pruning plan does not match this model: it has no "
                                   f"channel group {name!r} ({len(graph.groups)} groups)")
            if group.size != entry["size"]:
                raise LeannetError(f"the pruning plan does not match this model: group {name!r} "
                                   f"has {group.size} channels, the plan expects {entry['size']}")
            keep = np.asarray(entry["keep"], dtype=np.int64)
            if keep.size == 0 or keep.min() < 0 or keep.max() >= group.size \
                    or len(np.unique(keep)) != keep.size:
                raise LeannetError(f"pruning plan group {name!r}: 'keep' must be distinct "
                                   f"positions in 0..{group.size - 1}, at least one")
            mask = np.ones(group.size, dtype=bool)
            mask[keep] = False
            if (mask & group.protected).any():
                raise LeannetError(f"the pruning plan removes protected channels of group {name!r}")
            removed[group.channels[mask]] = True
        return removed


def record_plan(model: nn.Module, plan: dict[str, Any]) -> None:
    """Append a pruning plan (JSON dict) to the model's config so save/load can replay it."""
    config = getattr(model, "leannet_config", None)
    if config is not None:
        config.setdefault("plans", []).append(plan)
