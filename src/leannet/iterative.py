"""Prune, fine-tune, evaluate, repeat: the iterative workflow with an accuracy guard and resume.

Works with any training code: the caller passes plain callables, `finetune(model)` and
`evaluate(model) -> float | dict[str, float]` (higher is better; a dict gives one metric per task).

The guard is measured against the unpruned baseline: after fine-tuning, every watched metric must
stay within `max_drop` of its baseline value. A step that breaks the guard is rolled back to the
last good state and retried with half the step; when the step becomes smaller than `min_step`, the
run stops and says honestly whether the target was reached.

Every completed attempt (accepted or rolled back) is checkpointed: a model folder of the last good
state plus `state.json`, both written atomically, so a run killed at any point resumes from its
last completed attempt. Each attempt reseeds the global RNGs from (seed, attempt), so a resumed run
ends exactly where an uninterrupted one would.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from leannet import checkpoint, checks, files
from leannet._torch import seed_all
from leannet.errors import LeannetError, UnreachableTarget
from leannet.measure import count_macs, count_params, torch_latency
from leannet.prune.criteria import check_criterion
from leannet.prune.cost import CostModel
from leannet.prune.plan import Target
from leannet.prune.planners import Planner, by_layer_ratios, by_score
from leannet.prune.pruner import Pruner

DATA_DRIVEN = frozenset({"mean_activation", "apoz", "taylor"})
SCHEDULES = ("oneshot", "equal", "geometric")
COSTS = ("macs", "params", "latency", "channels")
STATE_FILE = "state.json"

Metrics = dict[str, float]


@dataclass
class IterativeResult:
    """What an iterative run did: baseline and final numbers, every attempt, the target's fate."""

    baseline: dict[str, Any]
    final: dict[str, Any]
    steps: list[dict[str, Any]]
    target_reached: bool
    cost: str
    target_fraction: float
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the model)."""
        return {"baseline": self.baseline, "final": self.final, "steps": self.steps,
                "target_reached": self.target_reached, "cost": self.cost,
                "target_fraction": self.target_fraction}


def schedule_fractions(target_fraction: float, steps: int, schedule: str) -> list[float]:
    """Cost fractions of the baseline to reach after each step (the last is the target)."""
    if schedule not in SCHEDULES:
        raise LeannetError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if schedule == "oneshot" or steps <= 1:
        return [target_fraction]
    if schedule == "equal":
        return [1 - (1 - target_fraction) * k / steps for k in range(1, steps + 1)]
    return [target_fraction ** (k / steps) for k in range(1, steps + 1)]


class CostMeter:
    """Measures one model's cost and its parameters, MACs and latency for the step log.

    "channels" is what a Target means by it: the channels of the groups that can lose any,
    counted on the traced graph (`count_channels(model)`), not the sum of every conv's outputs.
    """

    def __init__(self, example_inputs: torch.Tensor, count_channels: Callable[[nn.Module], int],
                 latency_runs: int = 20,
                 estimate_latency: Callable[[nn.Module], float] | None = None) -> None:
        self.example_inputs = example_inputs
        self.count_channels = count_channels
        self.latency_runs = latency_runs
        self.estimate_latency = estimate_latency

    def snapshot(self, model: nn.Module) -> dict[str, Any]:
        """Params, MACs, median latency and prunable channels of `model`; "latency" is the cost
        a latency target is steered by: the measured per-layer table's estimate when the run
        has one (deterministic, in the runtime that ships), else the torch eager median."""
        single = self.example_inputs[:1]
        latency = torch_latency(model, single, runs=self.latency_runs, warmup=3, warn=False)
        out = {
            "params": count_params(model),
            "macs": count_macs(model, single),
            "latency_ms": round(latency.median_ms, 4),
            "latency_detail": latency.to_dict(),  # median with its spread and conditions
            "latency": latency.median_ms,
            "channels": self.count_channels(model),
        }
        if self.estimate_latency is not None:
            out["latency"] = out["latency_estimated_ms"] = round(self.estimate_latency(model), 6)
        return out


def _as_metrics(value: float | Mapping[str, float]) -> Metrics:
    """Evaluate results as a dict; a bare number is the single metric 'metric'."""
    try:
        if isinstance(value, Mapping):
            return {str(k): float(v) for k, v in value.items()}
        return {"metric": float(value)}
    except (TypeError, ValueError):
        raise LeannetError(f"evaluate must return a number or a dict of numbers, got {value!r}") \
            from None


def _not_finite(metrics: Metrics) -> list[str]:
    """Names of metrics that are NaN or infinite: such a step can never pass the guard."""
    return sorted(k for k, v in metrics.items() if not math.isfinite(v))


def _guard_limits(max_drop: float | Mapping[str, float], baseline: Metrics) -> Metrics:
    """Per-metric allowed drop; a single number applies to every metric."""
    if isinstance(max_drop, Mapping):
        unknown = sorted(set(max_drop) - set(baseline))
        if unknown:
            raise LeannetError(f"max-drop names {', '.join(unknown)}, which evaluate does not "
                               f"report; it reports {', '.join(baseline)}")
        limits = {k: float(v) for k, v in max_drop.items()}
    else:
        limits = {k: max_drop for k in baseline}
    return {k: float(checks.number(f"max-drop for {k}", v, low=0)) for k, v in limits.items()}


def _summary_metric(metrics: Metrics) -> float:
    """One number for tables and plots: the single metric, or the mean over tasks."""
    return float(np.mean(list(metrics.values())))


def _reseed(seed: int, attempt: int) -> None:
    """Seed every RNG from (seed, attempt), so each attempt is reproducible alone (resume)."""
    seed_all(seed * 100_003 + attempt)


CHECKPOINT_NAME = re.compile(r"checkpoints/step_\d{3,}")


@dataclass
class RunState:
    """Where a run is: what `state.json` holds, so a killed run resumes from its last attempt.

    `pointer` indexes the schedule's points, `fraction` is the cost kept so far (of the
    baseline), `current` the snapshot of the last good model, saved as `last_good`.
    """

    fingerprint: str
    baseline: dict[str, Any]
    current: dict[str, Any]
    pointer: int = 0
    attempt: int = 0
    fraction: float = 1.0
    last_good: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    group_sizes: dict[str, int] = field(default_factory=dict)
    step_limit: float | None = None  # the largest step allowed after a rolled-back attempt

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (state.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "state.json") -> "RunState":
        """Check a parsed state.json field by field; one clear line for anything wrong."""
        if not isinstance(data, dict):
            raise LeannetError(f"{where} must hold a JSON object")
        kinds: dict[str, Any] = {"fingerprint": str, "baseline": dict, "pointer": int, "attempt": int,
                 "fraction": (int, float), "steps": list, "done": bool, "current": dict}
        for key, kind in kinds.items():
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
                raise LeannetError(f"{where}: field {key!r} is missing or not a "
                                   f"{getattr(kind, '__name__', 'number')}")
        last = data.get("last_good")
        if last is not None and (not isinstance(last, str) or not CHECKPOINT_NAME.fullmatch(last)):
            raise LeannetError(f"{where}: last_good {last!r} is not a checkpoint of this run "
                               "(expected checkpoints/step_NNN inside the run folder)")
        for key in ("fraction", "step_limit"):
            value = data.get(key)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise LeannetError(f"{where}: {key} {value!r} is not a finite number")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> "RunState":
        """Read and check `path`."""
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
            raise LeannetError(f"{path} is not a readable run state ({err}); start a new run") \
                from None
        return cls.from_dict(data, str(path))


def _non_default(obj: Any) -> dict[str, Any]:
    """A dataclass's fields that differ from their defaults. Fingerprints are made of these, so
    a field added in a later release (with a default that keeps the old behaviour) leaves the
    fingerprint of an older run folder unchanged and `--resume` still finds it."""
    kept = {}
    for f in dataclasses.fields(obj):
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default)
        value = getattr(obj, f.name)
        if default is dataclasses.MISSING or value != default:
            kept[f.name] = value
    return kept


def _fingerprint(model: nn.Module, settings: dict[str, Any]) -> str:
    """Identifies a run: the starting architecture and every setting that shapes the result."""
    config = getattr(model, "leannet_config", {"class": type(model).__name__})
    blob = json.dumps({"model": config, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class RunSettings:
    """Everything besides the callables that decides what an iterative run does; checked when
    made, so a job can validate its settings before any work."""

    criterion: Any = "l1"
    schedule: str = "equal"
    steps: int = 5
    max_drop: float | Mapping[str, float] = 0.01
    min_step: float = 0.02
    seed: int = 0
    verify: bool = True
    tolerance: float = 0.02
    pruner_options: dict[str, Any] = field(default_factory=dict)
    run_label: str = ""  # what else identifies the run for --resume (e.g. the data source)
    layer_keep: dict[str, dict[str, float]] = field(default_factory=dict)  # {group: {size, keep}}

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise LeannetError(f"unknown schedule {self.schedule!r}; expected one of "
                               f"{', '.join(SCHEDULES)}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise LeannetError(f"steps must be at least 1, got {self.steps}")
        drops = self.max_drop.values() if isinstance(self.max_drop, Mapping) else [self.max_drop]
        for value in drops:
            checks.number("max-drop", value, low=0)  # NaN would switch the guard off
        checks.number("min_step", self.min_step, low=0, high=1, low_open=True)
        checks.number("tolerance", self.tolerance, low=0, high=1)
        check_criterion(self.criterion)
        self.pruner_options = dict(self.pruner_options or {})
        self.layer_keep = dict(self.layer_keep or {})

    @classmethod
    def make(cls, settings: "RunSettings | None" = None, **options: Any) -> "RunSettings":
        """`settings` as given, or built from keyword options; unknown options are named."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise LeannetError(f"unknown iterative_prune option(s) {', '.join(unknown)}; expected "
                               f"{', '.join(sorted(known))}")
        if settings is not None:
            return dataclasses.replace(settings, **options) if options else settings
        return cls(**{k: v for k, v in options.items() if v is not None})

    def fingerprint_fields(self, target: Any, legacy: bool = False) -> dict[str, Any]:
        """JSON-able view used to tell this run from another in the same folder: the settings
        and target fields that differ from their defaults (`legacy`: every field, and the
        target's repr, as run folders before this rule recorded it)."""
        criterion = self.criterion if isinstance(self.criterion, str) else repr(self.criterion)
        if legacy:
            fields = dataclasses.asdict(self) | {"criterion": criterion, "target": repr(target)}
        else:
            fields = _non_default(self) | {"criterion": criterion, "target": (
                _non_default(target) if dataclasses.is_dataclass(target) else repr(target))}
        if "max_drop" in fields:
            fields["max_drop"] = dict(self.max_drop) if isinstance(self.max_drop, Mapping) \
                else self.max_drop
        return fields


class IterativeRun:
    """One prune / fine-tune / evaluate run: proposes steps, guards them, checkpoints them."""

    def __init__(self, model: nn.Module, finetune: Callable[[nn.Module], Any],
                 evaluate: Callable[[nn.Module], float | Mapping[str, float]], target: Target,
                 example_inputs: torch.Tensor, settings: RunSettings,
                 calibrate: Callable[[Any], Any] | None = None,
                 checkpoint_dir: str | Path | None = None,
                 on_attempt: Callable[[dict[str, Any]], Any] | None = None,
                 planner: Planner | None = None) -> None:
        self.model, self.finetune, self.evaluate = model, finetune, evaluate
        self.target, self.example_inputs, self.settings = target, example_inputs, settings
        self.calibrate, self.on_attempt = calibrate, on_attempt
        self.cost, self.target_fraction = target.reduction()
        self.plan_points = schedule_fractions(self.target_fraction, settings.steps, settings.schedule)
        # the planner: the caller's (e.g. tied soft-sharing columns), per-layer ratios, or scores
        self.planner: Planner = planner or (by_layer_ratios(settings.layer_keep)
                                            if settings.layer_keep else by_score)
        self.latency_model = settings.pruner_options.get("latency_model")
        self.meter = CostMeter(example_inputs, self._channels, estimate_latency=(
            self._estimated_latency if self.latency_model is not None else None))
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None and not hasattr(model, "leannet_config"):
            raise LeannetError("checkpointing needs a model built by leannet.create_model")
        name = settings.criterion if isinstance(settings.criterion, str) else ""
        if name in DATA_DRIVEN and calibrate is None:
            raise LeannetError(f"criterion {name!r} is data-driven: pass calibrate= (a callable "
                               "that runs pruner.calibrate on validation data)")
        self.fingerprint = _fingerprint(model, settings.fingerprint_fields(target))
        self.state: RunState | None = None
        self._initial_graph: Any = None

    @property
    def _state(self) -> RunState:
        if self.state is None:
            raise LeannetError("the run has not started: call run()")
        return self.state

    # -- state -----------------------------------------------------------------------------
    def start(self) -> None:
        """Measure the baseline and begin a fresh state."""
        metrics = _as_metrics(self.evaluate(self.model))
        if _not_finite(metrics):
            raise LeannetError(f"evaluate returned {metrics} for the unpruned model; a guard "
                               "needs finite metrics")
        self.limits = _guard_limits(self.settings.max_drop, metrics)
        baseline = self.meter.snapshot(self.model) | {
            "metric": _summary_metric(metrics), "metrics": metrics}
        self.state = RunState(self.fingerprint, baseline, current=baseline,
                              group_sizes=self._group_sizes())

    def resume(self) -> bool:
        """Load the last completed attempt from the checkpoint folder; False when there is none."""
        path = self.checkpoint_dir / STATE_FILE if self.checkpoint_dir else None
        if path is None or not path.is_file():
            return False
        state = RunState.read(path)
        legacy = _fingerprint(self.model, self.settings.fingerprint_fields(self.target, True))
        if state.fingerprint not in (self.fingerprint, legacy):
            raise LeannetError(f"{self.checkpoint_dir} holds a different run (another model, "
                               "target or settings); use a new --out folder or drop --resume")
        self.state = state
        self.limits = _guard_limits(self.settings.max_drop, state.baseline["metrics"])
        if state.last_good is not None and self.checkpoint_dir is not None:
            self.model = checkpoint.load(self.checkpoint_dir / state.last_good)
        return True

    def _checkpoint(self, accepted: bool) -> None:
        """Save the good model (when it changed), then the state that points at it."""
        state = self._state
        if self.checkpoint_dir is None:
            return
        if accepted:
            name = f"checkpoints/step_{state.attempt:03d}"
            checkpoint.save(self.model, self.checkpoint_dir / name, metrics=state.current["metrics"])
            state.last_good = name
        files.atomic_write_json(self.checkpoint_dir / STATE_FILE, state.to_dict())

    # -- one attempt -----------------------------------------------------------------------
    def _prune_copy(self, proposed: float) -> nn.Module:
        """A pruned copy of the current model whose cost is about `proposed` of the baseline."""
        state = self._state
        candidate = copy.deepcopy(self.model)
        pruner = Pruner(candidate, self.example_inputs, criterion=self.settings.criterion,
                        **self.settings.pruner_options)
        current = state.current[self.cost] or 1
        relative = min(1.0, proposed * state.baseline[self.cost] / current)
        # latency is planned by MACs unless a measured per-layer table estimates it; so are
        # channels when per-layer ratios do the planning
        by_macs = (self.cost == "latency" and self.latency_model is None) or (
            self.cost == "channels" and self.settings.layer_keep)
        kind = "macs" if by_macs else self.cost
        step_target = self.target.keeping(kind, relative, **self._floors())
        if self.calibrate is not None:
            self.calibrate(pruner)
        plan = self.planner(pruner, step_target)
        pruner.apply(plan, verify=self.settings.verify)  # also records the plan in the config
        return candidate

    def _floors(self) -> dict[str, Any]:
        """`min_fraction` as channel floors of the original model's groups: a floor relative to
        each step's already-pruned layer would compound (0.5 over three steps keeps 12.5%)."""
        sizes = self._state.group_sizes
        if not self.target.min_fraction or not sizes:
            return {}
        floors = {name: math.ceil(self.target.min_fraction * size - 1e-9)
                  for name, size in sizes.items()}
        return {"min_fraction": 0.0, "floors": {**floors, **self.target.floors}}

    def attempt(self, proposed: float) -> dict[str, Any]:
        """Prune to `proposed`, fine-tune, evaluate and judge by the guard; returns the record."""
        state = self._state
        started = time.perf_counter()
        state.attempt += 1
        _reseed(self.settings.seed, state.attempt)
        record: dict[str, Any] = {"step": state.attempt, "cost": self.cost,
                                  "target_fraction": round(proposed, 6)}
        if self.cost == "macs":
            record["target_macs_fraction"] = record["target_fraction"]
        try:
            candidate = self._prune_copy(proposed)
        except UnreachableTarget as err:
            return record | {"status": "unreachable", "reason": str(err),
                             "seconds": round(time.perf_counter() - started, 3)}
        before = _as_metrics(self.evaluate(candidate))
        self.finetune(candidate)
        after = _as_metrics(self.evaluate(candidate))
        baseline = state.baseline
        drops = {k: baseline["metrics"][k] - after[k] for k in self.limits}
        broken = sorted(set(_not_finite(after)) | {k for k, drop in drops.items()
                                                   if drop > self.limits[k] + 1e-9})
        snapshot = self.meter.snapshot(candidate)
        record |= snapshot | {
            "achieved_fraction": round(snapshot[self.cost] / baseline[self.cost], 6),
            "metric_before_finetune": _summary_metric(before), "metric": _summary_metric(after),
            "metrics": after, "metrics_before_finetune": before,
            "status": "rolled_back" if broken else "accepted",
            "guard_broken_by": broken, "seconds": round(time.perf_counter() - started, 3)}
        if not broken:
            self.model = candidate
            state.current = snapshot | {"metric": record["metric"], "metrics": after}
            state.fraction = record["achieved_fraction"]
        return record

    # -- the loop --------------------------------------------------------------------------
    def _next_proposal(self) -> float | None:
        """The cost fraction to try next, or None when the run is over."""
        state, tol = self._state, self.settings.tolerance
        while state.pointer < len(self.plan_points) and \
                state.fraction <= self.plan_points[state.pointer] + tol:
            state.pointer += 1
        if state.pointer >= len(self.plan_points) or \
                state.attempt >= 4 * len(self.plan_points) + 12:
            return None
        goal = self.plan_points[state.pointer]
        limit = state.step_limit
        proposed = goal if limit is None else max(goal, state.fraction - limit)
        if state.fraction - proposed < self.settings.min_step - 1e-12:
            return None
        return proposed

    def _after_attempt(self, record: dict[str, Any], previous: float) -> None:
        """Halve the step after a failure; never loop on a point that brings no progress."""
        if record["status"] != "accepted":
            self._state.step_limit = (previous - record["target_fraction"]) / 2
        elif record["achieved_fraction"] >= previous - 1e-4:
            self._state.pointer += 1

    def _group_sizes(self) -> dict[str, int]:
        """Channels per group of the unpruned model (the reference for per-layer floors)."""
        if not self.target.min_fraction:
            return {}
        graph = self._initial_graph or self._weight_pruner().graph
        return {group.name: int(group.size) for group in graph.groups}

    def _channels(self, model: nn.Module) -> int:
        """Prunable channels of `model`, by the graph the planner sees."""
        options = {k: v for k, v in self.settings.pruner_options.items() if k != "task_weights"}
        return Pruner(model, self.example_inputs, criterion="l1", **options).graph.prunable_channels()

    def _estimated_latency(self, model: nn.Module) -> float:
        """ms of `model` by the run's measured per-layer latency table."""
        options = {k: v for k, v in self.settings.pruner_options.items() if k != "task_weights"}
        graph = Pruner(model, self.example_inputs, criterion="l1", **options).graph
        return CostModel(model, graph, self.latency_model).latency()

    def _weight_pruner(self) -> Pruner:
        """A Pruner by weight magnitude on a copy of the model (no data needed), for the checks
        made once before a run."""
        options = {k: v for k, v in self.settings.pruner_options.items() if k != "task_weights"}
        return Pruner(copy.deepcopy(self.model), self.example_inputs, criterion="l1", **options)

    def check_reachable(self) -> None:
        """Plan the final target once, by weight magnitude, before any work: floors, protected
        channels and per-layer limits that rule it out are an error now, not after 20 attempts."""
        if self.settings.layer_keep or (self.cost == "latency" and self.latency_model is None):
            return  # planned by bisection / by MACs step by step; each step reports its own limit
        pruner = self._weight_pruner()
        self._initial_graph = pruner.graph  # traced once: `start` reads the group sizes from it
        final = self.target.keeping(self.cost, self.target_fraction)
        try:
            plan = self.planner(pruner, final)
        except UnreachableTarget as err:
            raise UnreachableTarget(f"target {self.cost}={self.target_fraction} cannot be reached "
                                    f"by this model: {err}") from None
        reached = plan.meta.get(f"{self.cost}_fraction")
        if reached is not None and reached > self.target_fraction + self.settings.tolerance:
            raise UnreachableTarget(f"target {self.cost}={self.target_fraction} cannot be reached "
                                    f"by this model: at most {reached:.3f} of the baseline")

    def run(self, resume: bool = False) -> IterativeResult:
        """Run (or resume) until the target is reached or the step becomes too small."""
        if not (resume and self.resume()):
            self.check_reachable()
            self.start()
            self._checkpoint(accepted=False)
        state = self._state
        while not state.done:
            proposed = self._next_proposal()
            if proposed is None:
                state.done = True
                self._checkpoint(accepted=False)
                break
            previous = state.fraction
            record = self.attempt(proposed)
            state.steps.append(record)
            self._after_attempt(record, previous)
            self._checkpoint(accepted=record["status"] == "accepted")
            if self.on_attempt is not None:
                self.on_attempt(record)
        return self.result()

    def result(self) -> IterativeResult:
        """The run's outcome; the final model is the last good state."""
        state = self._state
        reached = state.fraction <= self.target_fraction + self.settings.tolerance
        return IterativeResult(state.baseline, dict(state.current), state.steps, reached,
                               self.cost, self.target_fraction, self.model)


def iterative_prune(model: nn.Module, finetune: Callable[[nn.Module], Any],
                    evaluate: Callable[[nn.Module], float | Mapping[str, float]], target: Target,
                    example_inputs: torch.Tensor, *, settings: RunSettings | None = None,
                    calibrate: Callable[[Any], Any] | None = None,
                    checkpoint_dir: str | Path | None = None, resume: bool = False,
                    on_attempt: Callable[[dict[str, Any]], Any] | None = None,
                    planner: Planner | None = None, **options: Any) -> IterativeResult:
    """Prune `model` towards `target` in steps, fine-tuning after each, guarded by `max_drop`.

    `target` is a leannet.Target with one of macs / params / latency / channels as the fraction
    of the baseline to keep. The run's settings come as one `RunSettings` or as its fields by
    keyword (criterion, schedule, steps, max_drop, min_step, seed, verify, tolerance,
    pruner_options, run_label, layer_keep). `max_drop` is the allowed absolute drop of the
    evaluate metric from its baseline value (a dict gives one limit per task). Returns the outcome
    with the pruned model (`result.model`); the model passed in is left untouched. `layer_keep`
    ({group: {"size": original channels, "keep": fraction}}, e.g. from sensitivity analysis) makes
    each step prune those groups in proportion to (1 - keep): robust layers lose more. `planner`
    replaces planning by score for models with their own strategy, e.g.
    `leannet.multitask.prune.tied_column_planner(model)` for soft sharing.
    """
    run = IterativeRun(model, finetune, evaluate, target, example_inputs,
                       RunSettings.make(settings, **options), calibrate, checkpoint_dir,
                       on_attempt, planner)
    return run.run(resume=resume)
