"""Structured channel pruning: channel groups from the traced graph, criteria, plans, surgery.

    pruner = Pruner(model, example_inputs, criterion="l1")
    plan = pruner.plan(Target(macs=0.5))
    pruner.apply(plan, verify=True)

Inside: `capture/` (fx trace, channel labels, op handlers, groups), `rules/` (one LayerRule per
layer type), `criteria/` (Criterion classes and calibration), `plan`/`select`/`cost`/`latency`
(planning), `surgery` (remove) and `verify` (prove), `sensitivity`, `pruner` (the facade).
"""
from leannet.prune.capture.graph import ChannelGroup, build_graph
from leannet.prune.criteria import CRITERIA, DATA_CRITERIA, Criterion, register_criterion
from leannet.prune.cost import LatencyModel
from leannet.prune.plan import PruningPlan, Target
from leannet.prune.pruner import Pruner, apply_plan
from leannet.prune.rules import LayerRule, MemberKind

__all__ = ["Pruner", "Target", "PruningPlan", "LatencyModel", "apply_plan", "ChannelGroup",
           "build_graph", "CRITERIA", "DATA_CRITERIA", "Criterion", "register_criterion", "LayerRule",
           "MemberKind"]
