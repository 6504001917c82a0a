"""The Pruner facade: trace once, score channels, plan to a Target, apply with verification."""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import numpy as np
from torch import nn

from leannet._torch import to_device
from leannet.errors import LeannetError
from leannet.prune.capture.graph import ChannelGraph, ChannelGroup, build_graph
from leannet.prune.cost import CostModel, LatencyModel
from leannet.prune.criteria import ActivationStats, Criterion, calibrate, get_criterion
from leannet.prune.latency import plan_for_latency
from leannet.prune.plan import PruningPlan, Target, record_plan
from leannet.prune.rules import LayerRule, RuleSet
from leannet.prune.select import plan_groups, select
from leannet.prune.verify import remove_channels


class Pruner:
    """Structured channel pruning of any fx-traceable model.

    `ignore`: module names (or modules, or layer types) whose output channels are kept.
    `global_ranking`: rank channels across all groups (True) or prune each group by the same
    fraction (False). `task_weights`: per-task weights of a dict-output model's losses (taylor).
    `leaf_modules`: block types or names not to trace into (their channels are protected,
    unless a rule knows the type). `rules`: extra LayerRules (instances or classes), which win
    over the built-in ones for their layer types. `layer_norm`: "exact" (LayerNorm channels are
    protected, the default) or "prune" (they are pruned although removing one changes the others'
    statistics; `apply` then measures the output change, in `output_change` and the plan's meta,
    and fine-tuning has to recover it). `latency_model`: a measured per-layer latency table
    (`leannet.deploy.latency.layer_latency_model`); with it a latency target is planned on the
    table's estimate, channels ranked by importance per millisecond saved, instead of by
    bisection over MACs with a clock.
    """

    def __init__(self, model: nn.Module, example_inputs: Any,
                 criterion: str | Criterion | Callable = "l1",
                 ignore: Iterable[Any] = (), global_ranking: bool = True,
                 task_weights: dict[str, float] | None = None,
                 leaf_modules: Iterable[Any] = (), seed: int = 0,
                 rules: Iterable[LayerRule | type[LayerRule]] = (),
                 layer_norm: str = "exact", latency_model: LatencyModel | None = None) -> None:
        self._criterion = get_criterion(criterion)
        self.model = model
        first = next(model.parameters(), None)  # example inputs follow the model's device
        self.example_inputs = to_device(example_inputs, first.device) if first is not None \
            else example_inputs
        self.criterion = criterion
        self.ignore = list(ignore)
        self.global_ranking = global_ranking
        self.task_weights = task_weights
        self.leaf_modules = list(leaf_modules)
        self.seed = seed
        self.rules = RuleSet(rules, layer_norm)
        self.latency_model = latency_model
        self.output_change: float | None = None
        self._stats: ActivationStats | None = None
        self._graph: ChannelGraph | None = None
        _ = self.graph  # trace now: errors surface at construction
        self._check_task_weights()

    @property
    def graph(self) -> ChannelGraph:
        """The channel graph of the model as it is now (re-traced after apply)."""
        if self._graph is None:
            self._graph = build_graph(self.model, self.example_inputs, self.leaf_modules,
                                      self.rules)
            self._protect_ignored(self._graph)
        return self._graph

    @property
    def groups(self) -> list[ChannelGroup]:
        """Every ChannelGroup (see `.prunable` and `.protected` of each)."""
        return self.graph.groups

    def _ignored_names(self) -> list[str]:
        names = []
        for item in self.ignore:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, nn.Module):
                found = [n for n, m in self.model.named_modules() if m is item]
                if not found:
                    raise LeannetError("an ignored module is not part of this model")
                names += found
            elif isinstance(item, type):
                names += [n for n, m in self.model.named_modules() if isinstance(m, item)]
            else:
                raise LeannetError(f"ignore entries must be module names, modules or layer "
                                   f"types; got {item!r}")
        return names

    def _protect_ignored(self, graph: ChannelGraph) -> None:
        names = self._ignored_names()
        if not names:
            return
        known = {m.module for m in graph.members}
        for name in names:
            if not any(k == name or k.startswith(name + ".") for k in known) and name != "":
                if name not in dict(self.model.named_modules()):
                    raise LeannetError(f"ignore: the model has no module {name!r}")
        for member in graph.members:
            if member.role != "input" and any(member.module == n or member.module.startswith(
                    n + ".") or n == "" for n in names):
                graph.protect(member.atoms, f"module {member.module!r}", "ignore",
                              "is listed in ignore=")

    def _check_task_weights(self) -> None:
        if self.task_weights is None:
            return
        if not isinstance(self.task_weights, dict):
            raise LeannetError("task_weights must be a dict of task name -> weight")
        outputs = self.graph.output
        if not isinstance(outputs, dict):
            raise LeannetError("task_weights needs a model that returns a dict of task outputs")
        unknown = sorted(set(self.task_weights) - set(outputs))
        if unknown:
            raise LeannetError(f"task_weights names unknown tasks {unknown}; the model's tasks "
                               f"are {sorted(outputs)}")

    def calibrate(self, loader: Iterable[Any], loss_fn: Callable | None = None,
                  max_batches: int | None = None) -> "Pruner":
        """Gather activation statistics over a whole loader (only data criteria need it)."""
        if not self._criterion.needs_data:
            return self
        self._stats = calibrate(self.model, self.graph, loader, self._criterion, loss_fn,
                                max_batches, self.task_weights)
        return self

    def scores(self) -> dict[str, np.ndarray]:
        """Normalised importance of every channel, per group name."""
        return self._criterion.scores(self.model, self.graph, self._stats, self.seed)

    def plan(self, target: Target) -> PruningPlan:
        """Which channels go to reach `target`; the model is not touched."""
        if not isinstance(target, Target):
            raise LeannetError(f"plan() needs a leannet.Target, got {type(target).__name__}")
        kind, fraction = target.kind()
        if kind == "latency" and self.latency_model is None:
            return plan_for_latency(self, target)  # measured: bisection over MACs
        graph = self.graph
        scores = self.scores()
        cost = CostModel(self.model, graph, self.latency_model)
        kept = select(graph, scores, target, cost, self.global_ranking)
        groups = plan_groups(graph, scores, target, kept)
        plan = PruningPlan(groups, {"criterion": self._criterion.name or repr(self._criterion),
                                    "target": {kind: fraction}})
        if self.rules.layer_norm != "exact":
            plan.meta["layer_norm"] = self.rules.layer_norm
        cost.reset()
        cost.remove(np.nonzero(plan.removed_mask(graph))[0])
        plan.meta.update({"macs_fraction": cost.macs() / cost.macs0 if cost.macs0 else 1.0,
                          "params_fraction": cost.params() / cost.params0,
                          "removed_channels": plan.removed_channels})
        if self.latency_model is not None:  # estimated from the measured per-layer table
            plan.meta["latency_fraction"] = cost.latency() / cost.latency0
            plan.meta["latency_runtime"] = {k: self.latency_model.meta.get(k) for k in
                                            ("runtime", "precision", "threads")}
        return plan

    def pruned_copy(self, plan: PruningPlan | dict) -> nn.Module:
        """A copy of the model with `plan` applied (not verified), for trials such as a latency
        search; the model itself is unchanged."""
        plan = PruningPlan.from_dict(plan)
        model = copy.deepcopy(self.model)
        graph = build_graph(model, self.example_inputs, self.leaf_modules, self.rules)
        remove_channels(model, graph, plan.removed_mask(graph), self.example_inputs, False)
        record_plan(model, plan.to_dict())
        return model

    def apply(self, plan: PruningPlan | dict, verify: bool = True) -> nn.Module:
        """Physically remove the plan's channels; with verify, prove the result exact first.
        On any error the model is left unchanged."""
        plan = PruningPlan.from_dict(plan)
        removed = plan.removed_mask(self.graph)
        self.output_change = remove_channels(self.model, self.graph, removed,
                                             self.example_inputs, verify)
        if self.output_change is not None:
            plan.meta["output_change"] = self.output_change
        record_plan(self.model, plan.to_dict())
        self._graph, self._stats = None, None
        return self.model


def apply_plan(model: nn.Module, plan: PruningPlan | dict, example_inputs: Any,
               verify: bool = False, leaf_modules: Iterable[Any] = (),
               rules: Iterable[LayerRule | type[LayerRule]] = (),
               layer_norm: str | None = None) -> nn.Module:
    """Replay a plan on a model (e.g. a fresh instance of the same architecture), with the
    leaf modules and rules the plan was made with (the LayerNorm policy is read from the plan
    unless given)."""
    plan = PruningPlan.from_dict(plan)
    policy = layer_norm or plan.meta.get("layer_norm", "exact")
    graph = build_graph(model, example_inputs, leaf_modules, RuleSet(rules, policy))
    remove_channels(model, graph, plan.removed_mask(graph), example_inputs, verify)
    record_plan(model, plan.to_dict())
    return model
