"""Helpers for the pruning tests: random norm statistics, and a check that prunes, verifies,
compares shapes and replays the plan on a fresh copy."""
from __future__ import annotations

import copy
import json

import torch

from leannet.prune import Pruner, PruningPlan, Target, apply_plan


def randomize_norms(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so surgery mistakes show."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.GroupNorm,
                          torch.nn.LayerNorm)):
            with torch.no_grad():
                if getattr(m, "weight", None) is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)


def prune_check(model, x, target=None, **options):
    """Prune with verification; check outputs keep their shapes, parameters shrink, and the
    JSON plan replayed on a fresh copy (with the pruned weights) gives identical outputs."""
    model.eval()
    fresh = copy.deepcopy(model)
    before = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out_before = model(x)
    options.setdefault("global_ranking", False)
    pruner = Pruner(model, x, **options)
    plan = pruner.plan(target or Target(channels=0.5))
    pruner.apply(plan, verify=True)
    with torch.no_grad():
        out_after = model(x)
    _same_shapes(out_before, out_after)
    assert sum(p.numel() for p in model.parameters()) < before
    replay = PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    apply_plan(fresh, replay, x, leaf_modules=options.get("leaf_modules", ()),
               rules=options.get("rules", ()))
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        _same_values(out_after, fresh(x))
    return pruner, plan


def _leaves(out):
    if isinstance(out, dict):
        return [out[k] for k in sorted(out)]
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def _same_shapes(a, b):
    assert [t.shape for t in _leaves(a)] == [t.shape for t in _leaves(b)]


def _same_values(a, b):
    for x, y in zip(_leaves(a), _leaves(b)):
        assert torch.equal(x, y)
