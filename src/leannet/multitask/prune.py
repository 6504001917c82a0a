"""Pruning soft-sharing and cross-stitch models with one tied plan: the same channels go in
every column.

A soft-sharing penalty compares corresponding parameters of the columns, so pruning must keep
their shapes (and the meaning of each kept channel) identical. Importance is scored on the whole
model, summed over the columns (weighted per task), planned once on the first column, and the
plan is copied to every column. Hard-sharing models need nothing special: `leannet.Pruner`
handles their dict outputs and protects every head's output.

Cross-stitch columns are tied already where the stitch sums them (its inputs must match channel
by channel); inside a stage each column would otherwise be pruned on its own, so column k's
channel j would no longer correspond to column 0's, and the stitches would mix unrelated
features once training moves them off the identity. `stitched_plan` ties the corresponding
channels of every column in a second trace (one removable channel per index across columns,
scored by the sum of the columns' scores), plans there, and writes the plan for the model's own
graph, so the same indices go in every column and load replays it as any plan.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
from torch import nn

from leannet.errors import LeannetError
from leannet.prune import Pruner, PruningPlan
from leannet.nn.between import CrossStitch
from leannet.nn.sharing import SoftSharing
from leannet.multitask.weighting import check_weights


def _column_scores(scores: dict[str, np.ndarray], tasks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Group scores by name within a column: {relative group name: {task: scores}}."""
    by_name: dict[str, dict[str, np.ndarray]] = {}
    for name, values in scores.items():
        for task in tasks:
            prefix = f"columns.{task}."
            if name.startswith(prefix):
                by_name.setdefault(name[len(prefix):], {})[task] = np.asarray(values, float)
    return by_name


def tied_scores(pruner: Any, model: SoftSharing,
                task_weights: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per relative group name, the weighted sum over columns of each column's channel scores."""
    tasks = model.task_names
    weights = check_weights(task_weights, tasks, "task weights")
    tied: dict[str, np.ndarray] = {}
    for name, per_task in _column_scores(pruner.scores(), tasks).items():
        if set(per_task) != set(tasks) or len({v.shape for v in per_task.values()}) != 1:
            raise LeannetError(f"channel group {name!r} differs between the soft-sharing columns; "
                               "a tied plan needs columns of one architecture and equal widths")
        tied[name] = np.sum([weights[t] * per_task[t] for t in tasks], axis=0)
    return tied


def tied_plan(model: SoftSharing, example_inputs: Any, target: Any, criterion: str | Callable = "l1",
              *, loader: Iterable | None = None, loss_fn: Callable | None = None,
              max_batches: int | None = None, task_weights: dict[str, float] | None = None,
              ignore: Iterable[Any] = (), global_ranking: bool = True) -> Any:
    """A PruningPlan for the whole model that keeps the same channels in every column.

    Data criteria (taylor, apoz, mean_activation) calibrate on `loader` (with `loss_fn`, e.g.
    `MultiTask.task_losses`). `target` is a leannet.Target; its fraction holds for every column
    and so for the whole model.
    """
    _check_soft(model)
    whole = Pruner(model, example_inputs, criterion, ignore=ignore, global_ranking=global_ranking)
    if loader is not None:
        whole.calibrate(loader, loss_fn, max_batches)
    return plan_from_pruner(whole, target, task_weights)


def plan_from_pruner(pruner: Any, target: Any, task_weights: dict[str, float] | None = None) -> Any:
    """The tied plan from a Pruner over a whole SoftSharing model (calibrated if its criterion
    needs data): column scores summed (weighted by `task_weights`, default the pruner's),
    planned on the first column, copied to every column."""
    model = pruner.model
    _check_soft(model)
    weights = task_weights if task_weights is not None else pruner.task_weights
    tied = tied_scores(pruner, model, weights)
    tasks = model.task_names

    def criterion_of_column(group: Any, _model: nn.Module) -> np.ndarray:
        return tied.get(group.name, np.ones(group.size))  # e.g. the input: never prunable

    column = Pruner(model.columns[tasks[0]], pruner.example_inputs, criterion=criterion_of_column,
                    ignore=[_relative(item, tasks[0]) for item in pruner.ignore],
                    global_ranking=pruner.global_ranking)
    plan = column.plan(target)
    groups = {f"columns.{t}.{name}": dict(entry) for t in tasks
              for name, entry in plan.groups.items()}
    criterion = pruner.criterion
    tied_plan_ = PruningPlan(groups, {**plan.meta, "tied_columns": tasks,
                                      "criterion": getattr(criterion, "__name__", criterion)})
    tied_plan_.meta["removed_channels"] = tied_plan_.removed_channels
    return tied_plan_


def tied_column_planner(model: nn.Module) -> Callable[[Any, Any], Any] | None:
    """For `iterative_prune(planner=...)`: soft-sharing columns are planned together (one tied
    plan), cross-stitch columns with their channels tied (`stitched_plan`), any other model by
    the pruner's own ranking (None)."""
    if isinstance(model, SoftSharing):
        return plan_from_pruner
    return stitched_plan if _stitch_columns(model) else None


def _stitch_columns(model: nn.Module) -> list[list[str]]:
    """Per CrossStitch module of `model`, the name prefix of each of its columns."""
    return [[f"{name}.columns.{c}." if name else f"columns.{c}." for c in range(len(m.columns))]
            for name, m in model.named_modules() if isinstance(m, CrossStitch)]


def _column_tasks(model: nn.Module, count: int) -> list[str | None]:
    """The task of each column (a multi-head model's columns are in head order)."""
    tasks = list(getattr(model, "task_names", []) or [])
    return [tasks[c] if len(tasks) == count else None for c in range(count)]


def stitched_plan(pruner: Any, target: Any) -> Any:
    """A plan for `pruner`'s model (which has CrossStitch columns) that removes the same channel
    indices from every column: planned on a trace whose corresponding column channels are tied,
    scored by the columns' scores summed (weighted by the pruner's task weights), and written
    group by group for the pruner's own graph. Cost fractions are exact (the tied trace counts
    every column)."""
    model = pruner.model
    columns = _stitch_columns(model)
    if target.kind()[0] == "latency":
        raise LeannetError("a cross-stitch model is planned by MACs, params or channels (the "
                           "iterative loop plans latency by MACs)")
    if not columns:
        raise LeannetError(f"{type(model).__name__} has no cross-stitch columns to tie")
    untied = pruner.graph
    scores = pruner.scores()
    tied = Pruner(model, pruner.example_inputs, criterion=lambda group, _m: summed[group.name],
                  ignore=pruner.ignore, global_ranking=pruner.global_ranking,
                  leaf_modules=pruner.leaf_modules, seed=pruner.seed,
                  rules=list(pruner.rules.extra.values()), layer_norm=pruner.rules.layer_norm)
    graph = tied.graph
    if graph.uf.size != untied.uf.size:
        raise LeannetError("the model traced differently twice; cannot tie its columns")
    graph.uf.protect(np.nonzero(untied.uf.is_protected(np.arange(untied.uf.size)))[0])
    first, second = _column_pairs(graph, columns)
    graph.tie(first, second)
    weights = dict(pruner.task_weights or {})
    by_root: dict[int, float] = {}
    for group in untied.groups:  # each column's scores land on the tied channel they became
        weight = _column_weight(group, columns, model, weights)
        for root, value in zip(graph.uf.roots(group.channels).tolist(),
                               np.asarray(scores.get(group.name, np.ones(group.size)), float)):
            by_root[root] = by_root.get(root, 0.0) + weight * float(value)
    summed = {g.name: np.array([by_root.get(int(r), 0.0) for r in g.channels]) for g in graph.groups}
    plan = tied.plan(target)
    removed = plan.removed_mask(graph)
    groups = {}
    for group in untied.groups:
        gone = removed[graph.uf.roots(group.channels)]
        if gone.any():
            groups[group.name] = {"size": group.size,
                                  "keep": np.nonzero(~gone)[0].astype(int).tolist()}
    criterion = pruner.criterion
    out = PruningPlan(groups, {**plan.meta, "tied_stitch_columns": columns,
                               "criterion": getattr(criterion, "__name__", criterion)})
    out.meta["removed_channels"] = out.removed_channels
    return out


def _column_pairs(graph: Any, columns: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of each member of a later column and of the same member of the first column."""
    members = {m.key: m for m in graph.members}
    first, second = [], []
    for prefixes in columns:
        head = prefixes[0]
        for member in graph.members:
            for prefix in prefixes[1:]:
                if not member.module.startswith(prefix):
                    continue
                twin = members.get(head + member.key[len(prefix):])
                if twin is None or len(twin.atoms) != len(member.atoms):
                    raise LeannetError(f"cross-stitch column layer {member.module!r} has no twin "
                                       f"of the same width in the first column")
                first.append(twin.atoms)
                second.append(member.atoms)
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(first), np.concatenate(second)


def _column_weight(group: Any, columns: list[list[str]], model: nn.Module,
                   weights: dict[str, float]) -> float:
    """A group inside one column counts with its task's weight; anything else with 1."""
    for prefixes in columns:
        tasks = _column_tasks(model, len(prefixes))
        for prefix, task in zip(prefixes, tasks):
            if task is not None and all(m.module.startswith(prefix) for m in group.members):
                return float(weights.get(task, 1.0))
    return 1.0


def _check_soft(model: nn.Module) -> None:
    if not isinstance(model, SoftSharing):
        raise LeannetError(f"a tied plan is for SoftSharing models, not {type(model).__name__}; "
                           "prune other models with leannet.Pruner")


def _relative(item: Any, task: str) -> Any:
    """An ignore entry for the first column: names lose their `columns.<task>.` prefix."""
    prefix = f"columns.{task}."
    return item[len(prefix):] if isinstance(item, str) and item.startswith(prefix) else item


def prune_tied(model: SoftSharing, example_inputs: Any, target: Any,
               criterion: str | Callable = "l1", verify: bool = True, **options: Any) -> Any:
    """Plan (see `tied_plan`) and apply with verification; apply records the plan for save/load."""
    plan = tied_plan(model, example_inputs, target, criterion, **options)
    Pruner(model, example_inputs).apply(plan, verify=verify)
    model.shared_parameter_names()  # the columns still agree in shape
    return plan
