"""Choose which channels go: per-group floors and rounding, then global (by normalised score)
or uniform (same fraction per group) selection until the target cost fraction is reached."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leannet.errors import UnreachableTarget
from leannet.prune.capture.graph import ChannelGraph, ChannelGroup
from leannet.prune.cost import CostModel
from leannet.prune.plan import Target


@dataclass
class GroupChoice:
    """One group's options: channel order (least important first) and allowed kept counts."""

    group: ChannelGroup
    order: np.ndarray      # unprotected positions by ascending score
    allowed: list[int]     # kept counts allowed, descending, starting with the full size
    scores: np.ndarray

    def removed_positions(self, kept: int) -> np.ndarray:
        return self.order[: self.group.size - kept]

    def nearest(self, count: float) -> int:
        """The allowed kept count closest to `count` (the larger one on a tie)."""
        allowed = np.asarray(self.allowed)
        return int(allowed[np.argmin(np.abs(allowed - count))])


def _choices(graph: ChannelGraph, scores: dict[str, np.ndarray], target: Target
             ) -> list[GroupChoice]:
    out = []
    for group in graph.groups:
        n, r = group.size, target.round_to
        s = scores[group.name]
        unprotected = np.nonzero(~group.protected & ~_last_of_members(graph, group, s))[0]
        floor = max(target.min_channels, math.ceil(target.min_fraction * n - 1e-9),
                    n - len(unprotected), min(n, target.floors.get(group.name, 0)))
        floor = math.ceil(floor / r) * r
        allowed = [n] + [k for k in range((n - 1) // r * r, floor - 1, -r) if 0 < k < n]
        order = unprotected[np.argsort(s[unprotected], kind="stable")]
        out.append(GroupChoice(group, order, allowed, s))
    return out


def _last_of_members(graph: ChannelGraph, group: ChannelGroup, scores: np.ndarray) -> np.ndarray:
    """Per channel of the group: is it the best-scored one of some member? Those stay, so that
    no layer loses all its channels (a group joined by a concat has several producers, and
    ranking could otherwise empty one of them)."""
    keep = np.zeros(group.size, dtype=bool)
    if len(group.members) < 2:
        return keep
    order = np.argsort(group.channels)
    sorted_channels = group.channels[order]
    for member in group.members:  # a member may span groups (a consumer after a concat)
        classes = graph.member_classes(member)
        found = np.minimum(np.searchsorted(sorted_channels, classes), group.size - 1)
        positions = order[found[sorted_channels[found] == classes]]
        if positions.size and positions.size == len(classes):
            keep[positions[np.argmax(scores[positions])]] = True
    return keep


def _override_for(group: ChannelGroup, overrides: dict[str, float]) -> float | None:
    for key, frac in overrides.items():
        if group.name == key:
            return frac
        for m in group.members:
            if m.role != "input" and (m.module == key or m.module.startswith(key + ".")):
                return frac
    return None


def select(graph: ChannelGraph, scores: dict[str, np.ndarray], target: Target, cost: CostModel,
           global_ranking: bool = True) -> dict[str, int]:
    """Kept count per group name reaching the target (raises if the floors make it impossible)."""
    kind, fraction = target.kind()
    choices = _choices(graph, scores, target)
    fixed: dict[str, int] = {}
    free = []
    for c in choices:
        frac = _override_for(c.group, target.overrides)
        if frac is not None:
            fixed[c.group.name] = c.nearest(frac * c.group.size)
        elif len(c.allowed) > 1:
            free.append(c)
    if fraction >= 1.0:
        return fixed
    if global_ranking:
        kept = _global(choices, free, fixed, kind, fraction, cost, target.latency_tradeoff)
    else:
        kept = _uniform(choices, free, fixed, kind, fraction, cost)
    return kept


def _apply(choices: list[GroupChoice], kept: dict[str, int], cost: CostModel) -> None:
    cost.reset()
    for c in choices:
        k = kept.get(c.group.name, c.group.size)
        if k < c.group.size:
            cost.remove(c.group.channels[c.removed_positions(k)])


def _total_channels(choices: list[GroupChoice]) -> int:
    """Channels of the groups that can lose any (`ChannelGraph.prunable_channels`): floors and
    rounding do not change what is counted, so the fraction means the same at every step."""
    return sum(c.group.size for c in choices if c.group.prunable)


def _meets(choices, kept, kind, fraction, cost) -> tuple[bool, float]:
    """Whether `kept` reaches the target, and the kept fraction it gives."""
    if kind == "channels":
        total = _total_channels(choices)
        now = sum(kept.get(c.group.name, c.group.size) for c in choices if c.group.prunable)
        value = now / total if total else 1.0
    else:
        _apply(choices, kept, cost)
        base = cost.base(kind)
        value = cost.value(kind) / base if base else 1.0
    return value <= fraction + 1e-9, value


# What would free channels protected for each reason (keyed by the start of the reason).
FREEING = {
    "has no layer rule": "add a LayerRule for it (Pruner(..., rules=[...])), or "
                         "leaf_modules=[{kind}] if it subclasses a layer leannet knows",
    "is an op leannet can't follow": "a LayerRule for the block that calls it (rules=[...], "
                                     "with leaf=True) can say how channels pass",
    "mixes channels in its statistics": "exactness keeps them: removing one changes the others",
    "keep every channel": "class logits and heads are never pruned",
    "is listed in ignore=": "drop it from ignore=",
}


def explain_protection(graph: ChannelGraph, top: int = 3) -> str:
    """The causes that protect the most channels, each with the option that would free them."""
    report = graph.protection_report()
    if not report:
        return ""
    parts = []
    for kind, why, count, places, block in report[:top]:
        example = places[0] + (f" and {len(places) - 1} more" if len(places) > 1 else "")
        hint = next((h for k, h in FREEING.items() if why.startswith(k)), "")
        base = next((c for c in block.__mro__[1:] if graph.rules.find_type(c) is not None),
                    None) if block is not None else None
        if base is not None and block is not None:  # a subclass of a known layer, traced into: make it a leaf
            hint = (f"leaf_modules=[{block.__name__}] would use the rule of {base.__name__}, "
                    "which it subclasses, if its forward keeps that meaning; or a LayerRule "
                    "for it")
        parts.append(f"{count} channels: {example} {why}" +
                     (f" ({hint.format(kind=kind.split(' in ')[-1])})" if hint else ""))
    return "; most protected channels: " + "; ".join(parts)


def _unreachable(kind: str, fraction: float, best: float,
                 graph: ChannelGraph | None = None) -> UnreachableTarget:
    return UnreachableTarget(f"target {kind}={fraction:g} is not reachable: with these floors, "
                             f"protected channels and rounding the smallest model keeps "
                             f"{best:.3f} of the {kind}; ask for at least "
                             f"{math.ceil(best * 1000) / 1000:g}"
                             + (explain_protection(graph) if graph is not None else ""))


def _global(choices, free, fixed, kind, fraction, cost, tradeoff: float) -> dict[str, int]:
    """Units (chunks of round_to channels) of all groups, least important first; the shortest
    prefix that reaches the target."""
    units = []
    for gi, c in enumerate(free):
        for ui, (a, b) in enumerate(zip(c.allowed, c.allowed[1:])):
            chunk = c.order[c.group.size - a: c.group.size - b]
            units.append((float(np.mean(c.scores[chunk])), gi, ui, c.group.name, b))

    def kept_after(count: int) -> dict[str, int]:
        kept = dict(fixed)
        for _, _, _, name, b in units[:count]:
            kept[name] = b
        return kept

    if kind == "latency" and tradeoff > 0:
        units = _per_ms(units, free, cost, tradeoff)
    units.sort(key=lambda u: (u[0], u[1], u[2]))
    ok, best = _meets(choices, kept_after(len(units)), kind, fraction, cost)
    if not ok:
        raise _unreachable(kind, fraction, best, cost.graph)
    low, high = 0, len(units)
    while low < high:
        mid = (low + high) // 2
        if _meets(choices, kept_after(mid), kind, fraction, cost)[0]:
            high = mid
        else:
            low = mid + 1
    return _refine_last(choices, units, low, kept_after, kind, fraction, cost)


def _per_ms(units: list, free: list[GroupChoice], cost: CostModel, tradeoff: float) -> list:
    """Importance per millisecond: each unit's score divided by the time removing it alone saves
    (relative to the mean unit) raised to `tradeoff`, so that channels where the runtime pays most
    per unit of importance go first (NetAdapt's and HALP's trade, on the measured per-layer
    table). Below 1 the trade is softened: a magnitude score is not a loss, and dividing it by
    the full time saved strips layers where each channel is dear (the high-resolution ones)."""
    saved = []
    for _, gi, ui, _, _ in units:
        c = free[gi]
        a, b = c.allowed[ui], c.allowed[ui + 1]
        cost.reset()
        cost.remove(c.group.channels[c.order[c.group.size - a: c.group.size - b]])
        saved.append(max(cost.latency0 - cost.latency(), 0.0))
    cost.reset()
    mean = float(np.mean(saved)) if saved else 0.0
    if mean <= 0:
        return units
    floor = 1e-3 * mean  # a unit that saves nothing is ranked as if it saved very little
    out: list = []
    running: dict[int, float] = {}
    for u, ms in zip(units, saved):  # a group's units stay in order: its weakest channels first
        key = max(u[0] / (max(ms, floor) / mean) ** tradeoff, running.get(u[1], -np.inf))
        running[u[1]] = key
        out.append((key,) + tuple(u[1:]))
    return out


def _refine_last(choices, units, low, kept_after, kind, fraction, cost, tolerance: float = 0.01,
                 limit: int = 256) -> dict[str, int]:
    """The last unit of the prefix may overshoot the target (one channel of a small early layer
    can be 6% of a model's MACs). Then try the prefix without it, continued with the next units
    in rank order from other groups (its own group stops there, so every group still loses its
    least important channels first); keep that when it lands closer to the target."""
    kept = kept_after(low)
    if low == 0:
        return kept
    value = _meets(choices, kept, kind, fraction, cost)[1]
    if fraction - value <= tolerance:
        return kept
    blocked = {units[low - 1][3]}
    trial = kept_after(low - 1)
    for _, _, _, name, b in units[low:low + limit]:
        if name in blocked:
            continue
        trial[name] = b
        ok, closer = _meets(choices, trial, kind, fraction, cost)
        if ok:
            return trial if closer > value else kept
    return kept


def _uniform(choices, free, fixed, kind, fraction, cost) -> dict[str, int]:
    """The same kept fraction in every group: the largest one that reaches the target."""
    def kept_at(f: float) -> dict[str, int]:
        kept = dict(fixed)
        for c in free:
            kept[c.group.name] = c.nearest(f * c.group.size)
        return kept

    ok, best = _meets(choices, kept_at(0.0), kind, fraction, cost)
    if not ok:
        raise _unreachable(kind, fraction, best, cost.graph)
    if kind == "channels":
        low, high = fraction, fraction
    else:
        low, high = 0.0, 1.0
    for _ in range(30 if kind != "channels" else 0):
        mid = (low + high) / 2
        if _meets(choices, kept_at(mid), kind, fraction, cost)[0]:
            low = mid
        else:
            high = mid
    return kept_at(low)


def plan_groups(choices_graph: ChannelGraph, scores: dict[str, np.ndarray], target: Target,
                kept: dict[str, int]) -> dict[str, dict]:
    """The plan's JSON groups: kept positions of every group that loses channels."""
    out = {}
    for c in _choices(choices_graph, scores, target):
        k = kept.get(c.group.name, c.group.size)
        if k < c.group.size:
            removed = set(c.removed_positions(k).tolist())
            out[c.group.name] = {"size": c.group.size,
                                 "keep": [i for i in range(c.group.size) if i not in removed]}
    return out
