"""Structured channel pruning: channel groups from the traced graph, criteria, plans, surgery.

    pruner = Pruner(model, example_inputs, criterion="l1")
    plan = pruner.plan(Target(macs=0.5))
    pruner.apply(plan, verify=True)
"""
from leannet.prune.capture.graph import ChannelGroup, build_graph
from leannet.prune.criteria import CRITERIA, DATA_CRITERIA
from leannet.prune.plan import PruningPlan, Target
from leannet.prune.pruner import Pruner, apply_plan

__all__ = ["Pruner", "Target", "PruningPlan", "apply_plan", "ChannelGroup", "build_graph",
           "CRITERIA", "DATA_CRITERIA"]
