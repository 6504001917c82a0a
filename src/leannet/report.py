"""A prune run's report: `report.md` with the step table and PNG plots (metric against MACs with
rollbacks marked, channels per layer before and after, sensitivity curves when present, and for
a multi-task run one plot per task: its own metric across the steps, against its own guard).
A multi-task training run (history.jsonl, no prune result) gets one plot per task too: each of
its validation metrics across the epochs.

Every number says where it comes from: the split (validation chose, test reports), the seed, and
its spread (the test metric's binomial standard error; one seed has no spread over seeds, which
the report says rather than implying one).

Reads the run folder's `result.json` and/or `sensitivity.json`; both are checked before anything
is written, so bad input leaves the folder as it was, and every file is written atomically.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leannet.errors import LeannetError
from leannet.files import atomic_write, atomic_write_text

REPORT_FILE = "report.md"
METRIC_PLOT = "metric_vs_macs.png"
CHANNELS_PLOT = "channels.png"
SENSITIVITY_PLOT = "sensitivity.png"
TASK_PLOT = "task_{}.png"  # one per task of a multi-task run
STEP_COLUMNS = ["step", "status", "target", "reached", "metric before fine-tune", "metric",
                "params", "MACs", "latency ms (torch fp32, 1 thread, batch 1; median, IQR)",
                "seconds", "note"]
COST_NAMES = {"macs": "MACs", "params": "parameters", "latency": "latency",
              "channels": "channels"}
RUN_FIELDS = [("source_model", "model"), ("data", "data"), ("criterion", "criterion"),
              ("max_drop", "max drop")]
MAX_LABELLED_GROUPS = 10  # a sensitivity plot names at most this many curves
PLOTTED = ("accepted", "rolled_back")  # steps with measurements; others (unreachable) are listed


# ------------------------------------------------------------------------------------ reading

def read_run(run_dir: str | os.PathLike) -> tuple[dict | None, dict | None]:
    """The run folder's result.json and sensitivity.json, checked; either may be None (absent,
    or a sensitivity run's result.json) but not both."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LeannetError(f"{run_dir} is not a run folder (expected a folder with result.json)")
    sensitivity = _read_json(run_dir / "sensitivity.json", required=False)
    if sensitivity is not None:
        _check_sensitivity(sensitivity, run_dir / "sensitivity.json")
    result = _read_json(run_dir / "result.json", required=sensitivity is None)
    if sensitivity is not None and (result is None or not {"baseline", "steps"} & set(result)):
        return None, sensitivity
    assert result is not None  # required when there is no sensitivity.json
    _check_result(result, run_dir)
    return result, sensitivity


def _check_result(result: dict, run_dir: Path) -> None:
    """A prune run's result.json: baseline and steps, each plotted one with metric and MACs."""
    steps = result.get("steps")
    if not isinstance(result.get("baseline"), dict) or not isinstance(steps, list):
        raise LeannetError(f"{run_dir / 'result.json'} is not a prune run result; expected "
                           "'baseline' and 'steps' (run `leannet prune` first)")
    _check_entry(result["baseline"], "baseline", run_dir)
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("status"), str):
            raise LeannetError(f"step {index} in {run_dir / 'result.json'} has no status "
                               "(accepted, rolled_back, ...)")
        if step["status"] in PLOTTED:
            _check_entry(step, f"step {index}", run_dir)


def _check_entry(entry: dict, what: str, run_dir: Path) -> None:
    """Baseline and steps need a numeric metric and MACs to be plotted."""
    for key in ("metric", "macs"):
        if not isinstance(entry.get(key), (int, float)):
            raise LeannetError(f"{what} in {run_dir / 'result.json'} has no numeric {key!r}")


def _check_sensitivity(sensitivity: dict, path: Path) -> None:
    """Groups must be a dict of lists with one metric per ratio."""
    ratios, groups = sensitivity.get("ratios"), sensitivity.get("groups")
    if not isinstance(ratios, list) or not isinstance(groups, dict):
        raise LeannetError(f"{path} lacks a 'ratios' list and a 'groups' object")
    for name, values in groups.items():
        if not isinstance(values, list) or len(values) != len(ratios) or not all(
                isinstance(v, (int, float)) for v in values):
            raise LeannetError(f"sensitivity group {name!r} in {path} should have one number "
                               f"per ratio ({len(ratios)})")


def _read_json(path: Path, required: bool) -> dict | None:
    """Parse a JSON object file; a missing optional file is None, anything broken an error."""
    if not path.is_file():
        if required:
            raise LeannetError(f"{path.parent} has no {path.name} (nor sensitivity.json), so "
                               "it is not a prune or sensitivity run folder")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LeannetError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise LeannetError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


# -------------------------------------------------------------------------------------- plots

def _save_figure(fig: Figure, path: Path) -> Path:
    """Render `fig` to PNG at `path` through a temp file and a rename."""
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110,
                                                      bbox_inches="tight"))


def plot_metric_vs_macs(result: dict, path: Path, metric_name: str = "metric") -> Path:
    """Metric against MACs: baseline, the accepted path, rolled-back steps as red crosses."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    base = result["baseline"]
    xs: list[Any] = [_mmacs(base)]
    ys: list[Any] = [base.get("metric")]
    for step in (s for s in result["steps"] if s["status"] in PLOTTED):
        x: Any = _mmacs(step)
        y: Any = step.get("metric")
        if step["status"] == "accepted":
            xs.append(x)
            ys.append(y)
            if step.get("metric_before_finetune") is not None:
                ax.plot([x, x], [step["metric_before_finetune"], y], color="0.7", lw=1, zorder=1)
                ax.scatter([x], [step["metric_before_finetune"]], facecolors="none",
                           edgecolors="0.5", s=28, zorder=2)
        else:
            ax.scatter([x], [y], marker="x", color="tab:red", s=60, zorder=3)
        ax.annotate(str(step.get("step", "")), (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.plot(xs, ys, "-o", color="tab:blue", zorder=2)
    ax.scatter(xs[:1], ys[:1], marker="*", s=160, color="tab:green", zorder=4)
    handles = _guide_lines(ax, result) + [
        ax.scatter([], [], marker="*", s=120, color="tab:green", label="baseline"),
        ax.scatter([], [], marker="o", color="tab:blue", label="accepted (after fine-tune)"),
        ax.scatter([], [], facecolors="none", edgecolors="0.5", label="before fine-tune"),
        ax.scatter([], [], marker="x", color="tab:red", label="rolled back")]
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel(metric_name)
    ax.set_title(f"{metric_name} against MACs over the pruning steps")
    ax.invert_xaxis()  # pruning moves right to left: fewer MACs as the run goes on
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def task_series(result: dict) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per task of a multi-task run (a baseline with several task metrics): (MMACs, metric)
    points of the accepted path (baseline, then each accepted step after fine-tuning), of the
    accepted steps before fine-tuning, and of rolled-back steps. {} for a one-metric run."""
    metrics = result["baseline"].get("metrics") or {}
    tasks = [t for t, v in metrics.items() if isinstance(v, (int, float))]
    if len(tasks) < 2:
        return {}
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for task in tasks:
        accepted = [(float(_mmacs(result["baseline"]) or 0.0), float(metrics[task]))]
        before: list[tuple[float, float]] = []
        rolled: list[tuple[float, float]] = []
        for step in (s for s in result["steps"] if s["status"] in PLOTTED):
            value = (step.get("metrics") or {}).get(task)
            if not isinstance(value, (int, float)):
                continue
            x = float(_mmacs(step) or 0.0)
            (accepted if step["status"] == "accepted" else rolled).append((x, float(value)))
            prior = step.get("metrics_before_finetune")
            prior = prior.get(task) if isinstance(prior, dict) else None
            if step["status"] == "accepted" and isinstance(prior, (int, float)):
                before.append((x, float(prior)))
        series[task] = {"accepted": accepted, "before fine-tune": before, "rolled back": rolled}
    return series


def plot_task(task: str, series: dict[str, list[tuple[float, float]]], path: Path,
              guard: float | None = None) -> Path:
    """One task's metric against MACs over the steps, with its guard when the run states one."""
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.add_subplot()
    styles = {"accepted": ("-o", "tab:blue"), "before fine-tune": ("o", "0.55"),
              "rolled back": ("x", "tab:red")}
    for label, points in series.items():
        if points:
            fmt, color = styles.get(label, ("-o", "tab:green"))
            ax.plot([p[0] for p in points], [p[1] for p in points], fmt, color=color, label=label)
    if guard is not None:
        ax.axhline(guard, color="tab:red", ls=":", lw=1, label="guard: baseline - max_drop")
    ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel(task)
    ax.set_title(f"task {task!r} over the pruning steps")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def _task_guard(result: dict, task: str) -> float | None:
    """The task's baseline metric minus its max_drop (one number for all, or per task)."""
    drop = result.get("max_drop")
    drop = drop.get(task) if isinstance(drop, dict) else drop
    base = (result["baseline"].get("metrics") or {}).get(task)
    if isinstance(drop, (int, float)) and isinstance(base, (int, float)):
        return float(base) - float(drop)
    return None


def _task_lines(result: dict, run_dir: Path) -> list[str]:
    """Markdown section of a multi-task run: one plot per task (written here)."""
    series = task_series(result)
    if not series:
        return []
    lines = ["## Per task", ""]
    for task, points in series.items():
        name = TASK_PLOT.format("".join(c if c.isalnum() or c in "-_" else "_" for c in task))
        plot_task(task, points, run_dir / name, _task_guard(result, task))
        lines += [f"![{task} over the steps]({name})", ""]
    return lines


def _guide_lines(ax: Any, result: dict) -> list:
    """The guard (baseline metric minus max_drop) and the MACs target, when the run states them."""
    handles, base = [], result["baseline"]
    if isinstance(result.get("max_drop"), (int, float)):
        handles.append(ax.axhline(base["metric"] - result["max_drop"], color="tab:red", ls=":",
                                  lw=1, label="guard: baseline - max_drop"))
    if result.get("cost", "macs") == "macs" and isinstance(result.get("target_fraction"),
                                                           (int, float)):
        handles.append(ax.axvline(result["target_fraction"] * base["macs"] / 1e6, color="0.4",
                                  ls="--", lw=1, label="MACs target"))
    return handles


def plot_channels(before: dict[str, int], after: dict[str, int], path: Path) -> Path:
    """Horizontal bars of output channels per layer, before and after pruning."""
    layers = list(before) + [name for name in after if name not in before]
    height = min(0.22 * len(layers) + 1.5, 40.0)
    fig = Figure(figsize=(7.0, height))
    ax = fig.add_subplot()
    positions = range(len(layers))
    ax.barh([p - 0.2 for p in positions], [before.get(n, 0) for n in layers], height=0.4,
            color="0.75", label="before")
    ax.barh([p + 0.2 for p in positions], [after.get(n, 0) for n in layers], height=0.4,
            color="tab:blue", label="after")
    ax.set_yticks(list(positions), layers, fontsize=7 if len(layers) > 20 else 9)
    ax.invert_yaxis()
    ax.set_xlabel("channels")
    ax.set_title("Channels per layer before and after pruning")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save_figure(fig, path)


def plot_sensitivity(sensitivity: dict, path: Path) -> Path:
    """One curve per group: metric after pruning that group alone, against the pruned ratio."""
    ratios = sensitivity.get("ratios", [])
    fig = Figure(figsize=(7.0, 4.6))
    ax = fig.add_subplot()
    groups = sensitivity["groups"]
    labelled = set(_most_sensitive(groups, MAX_LABELLED_GROUPS))
    for name, values in groups.items():
        if name in labelled:
            ax.plot(ratios, values, "-o", ms=3, lw=1, label=name)
        else:
            ax.plot(ratios, values, "-", lw=0.6, color="0.75")
    if sensitivity.get("baseline") is not None:
        ax.axhline(sensitivity["baseline"], color="k", ls="--", lw=1, label="baseline")
    ax.set_xlabel("fraction of the group's channels pruned")
    ax.set_ylabel(sensitivity.get("metric_name", "metric"))
    ax.set_title("Sensitivity: each group pruned alone, no fine-tuning")
    ax.grid(alpha=0.3)
    if len(groups) > len(labelled):
        ax.plot([], [], "-", lw=0.6, color="0.75", label=f"{len(groups) - len(labelled)} more "
                "robust groups")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save_figure(fig, path)


def _most_sensitive(groups: dict[str, list[float]], count: int) -> list[str]:
    """The `count` groups with the lowest mean metric over the ratios (the most fragile)."""
    return sorted(groups, key=lambda name: sum(groups[name]) / max(len(groups[name]), 1))[:count]


def _mmacs(entry: dict) -> float | None:
    macs = entry.get("macs")
    return None if macs is None else macs / 1e6


# ----------------------------------------------------------------------------------- markdown

def _fmt(value: Any, kind: str = "") -> str:
    """A table cell: '-' for missing, percent fractions, thousands separators for counts."""
    if value is None:
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "secs":
        return f"{float(value):.1f}"
    if kind == "pct":
        return f"{100 * float(value):.1f}%"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _latency(entry: dict) -> str:
    """Median with its IQR when the entry carries `latency` or, as prune steps and baselines
    do, `latency_detail` (leannet.measure.Latency.to_dict), else the bare median of older
    runs."""
    spread = entry.get("latency")
    if not isinstance(spread, dict):
        spread = entry.get("latency_detail")
    if isinstance(spread, dict) and "q1_ms" in spread:
        return f"{spread['median_ms']:.4g} ({spread['q1_ms']:.4g}-{spread['q3_ms']:.4g})"
    return _fmt(entry.get("latency_ms"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def step_rows(result: dict) -> list[list[str]]:
    """One row per step of result.json, rollbacks included, in STEP_COLUMNS order; target and
    reached are fractions of the baseline cost (MACs unless the run says otherwise)."""
    return [[_fmt(s.get("step")), s["status"].replace("_", " "),
             _fmt(s.get("target_macs_fraction", s.get("target_fraction")), "pct"),
             _fmt(s.get("achieved_fraction"), "pct"), _fmt(s.get("metric_before_finetune")),
             _fmt(s.get("metric")), _fmt(s.get("params"), "int"), _fmt(s.get("macs"), "int"),
             _latency(s), _fmt(s.get("seconds"), "secs"), _note(s)]
            for s in result["steps"]]


def _note(step: dict) -> str:
    """Why a step was not accepted: the metrics that broke the guard, or the stated reason."""
    if step.get("guard_broken_by"):
        return "drop too large: " + ", ".join(map(str, step["guard_broken_by"]))
    reason = str(step.get("reason") or "")
    return (reason[:77] + "...") if len(reason) > 80 else reason.replace("|", "/")


def _summary_lines(result: dict, metric_name: str) -> list[str]:
    """Baseline against final: metric, params, MACs, size, latency, with the ratio kept."""
    base, final = result["baseline"], result.get("final") or {}
    rows = []
    for key, label, kind in [("metric", metric_name, ""), ("params", "params", "int"),
                             ("macs", "MACs", "int"), ("size_bytes", "size (bytes)", "int"),
                             ("latency_ms", "latency ms (torch fp32, 1 thread, batch 1; "
                                            "median, IQR)", "")]:
        b, f = base.get(key), final.get(key)
        ratio = f"{f / b:.3f}" if isinstance(b, (int, float)) and b and f is not None else "-"
        cells = ([_latency(base), _latency(final)] if key == "latency_ms"
                 else [_fmt(b, kind), _fmt(f, kind)])
        rows.append([label, *cells, ratio])
        if key == "metric":
            rows[-1][0] = f"{label} (validation: the guard chose on it)"
            rows += _test_rows(result, metric_name)
    reached = result.get("target_reached")
    goal = result.get("target_fraction")
    cost = COST_NAMES.get(result.get("cost", "macs"), str(result.get("cost")))
    target = (f"Target: {_fmt(goal, 'pct')} of the baseline {cost}. "
              if isinstance(goal, (int, float)) else "")
    return [*_table(["", "baseline", "final", "final / baseline"], rows), "",
            f"{target}Target reached: "
            f"**{'yes' if reached else 'no' if reached is not None else '-'}**"]


def _test_rows(result: dict, metric_name: str) -> list[list[str]]:
    """The metric on the test split (chose nothing), with its binomial standard error."""
    base = (result["baseline"].get("test_metrics") or {})
    final = ((result.get("final") or {}).get("test_metrics") or {})
    name = next((k for k in (metric_name, *metric_name.split("/")) if k in base), None)
    if name is None or name not in final:
        return []
    size = ((result.get("splits") or {}).get("sizes") or {}).get("test")
    cells = [_with_error(base[name], size), _with_error(final[name], size)]
    ratio = f"{final[name] / base[name]:.3f}" if base[name] else "-"
    return [[f"{name} (test, held out)", *cells, ratio]]


def _with_error(value: float, size: int | None) -> str:
    """`0.9514 ± 0.0036` for a fraction over `size` samples (binomial standard error)."""
    if not size or not 0 <= value <= 1:
        return _fmt(value)
    return f"{_fmt(value)} ± {math.sqrt(value * (1 - value) / size):.4f}"


def _provenance_lines(result: dict) -> list[str]:
    """Seeds, splits and spread: what a reader needs before comparing two numbers."""
    splits = result.get("splits")
    lines = ["## Where the numbers come from", ""]
    seed = result.get("seed")
    lines.append(f"- Seed: {seed if seed is not None else 'not recorded'}. One run is one seed: "
                 "there is no spread over seeds here, so a difference from another run smaller "
                 "than the standard errors below (or than the seed-to-seed spread of a benchmark "
                 "with several seeds) is not evidence of a real difference.")
    if not splits:
        lines.append("- Splits: not recorded (a run made before train/validation/test splits): "
                     "its metric may come from the split that also selected the model, so it is "
                     "optimistic.")
        return lines
    sizes = splits.get("sizes") or {}
    uses = {"train": "fine-tuning", "val": "the guard and the best fine-tuning epoch"
            + (" and calibration" if splits.get("calibration") == "val" else ""),
            "test": "the test rows only; it chose nothing"}
    if splits.get("calibration") == "train":
        uses["train"] += " and calibration"
    for name, use in uses.items():
        where = (splits.get("sources") or {}).get(name, "")
        count = f"{sizes[name]:,} samples" if name in sizes else "absent"
        lines.append(f"- {name}: {count}; used for {use}" + (f" ({where})" if where else ""))
    if splits.get("note"):
        lines.append(f"- {splits['note']}")
    lines.append("- ± is the binomial standard error of the test fraction, sqrt(p(1-p)/n); "
                 "latencies give the median and IQR of repeated runs.")
    return lines


def epoch_series(history: list[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per task of a multi-task training history: each of its validation metrics (keys
    `task/metric`, losses left out) as (epoch, value) points. {} for a one-task run."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for record in history:
        for key, value in record.items():
            if "/" in key and isinstance(value, (int, float)) and not key.endswith("loss"):
                task, metric = key.split("/", 1)
                series.setdefault(task, {}).setdefault(metric, []).append(
                    (float(record.get("epoch", 0)), float(value)))
    return series if len(series) >= 2 else {}


def plot_epochs(task: str, series: dict[str, list[tuple[float, float]]], path: Path) -> Path:
    """One task's validation metrics across the training epochs."""
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.add_subplot()
    for metric, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", ms=3, label=metric)
    ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{task} (validation)")
    ax.set_title(f"task {task!r} over the training epochs")
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def _training_history(run_dir: Path) -> list[dict] | None:
    """The epochs of a training run folder (history.jsonl and no prune or sensitivity result),
    else None."""
    path = run_dir / "history.jsonl"
    if not path.is_file() or (run_dir / "sensitivity.json").exists():
        return None
    result = _read_json(run_dir / "result.json", required=False)
    if result is not None and {"baseline", "steps"} & set(result):
        return None
    history = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise LeannetError(f"{path}:{number} is not valid JSON ({err})") from None
        if not isinstance(record, dict):
            raise LeannetError(f"{path}:{number} should hold a JSON object per epoch")
        history.append(record)
    return history


def _write_training_report(run_dir: Path, history: list[dict]) -> Path:
    """report.md of a training run: per task, its validation metrics across the epochs."""
    series = epoch_series(history)
    if not series:
        raise LeannetError(f"{run_dir} is a training run of one task; `leannet report` plots "
                           "prune and sensitivity runs, and training runs of several tasks")
    lines = [f"# Training report: {run_dir.name}", "", f"{len(history)} epochs; validation "
             "metrics per task (the best epoch by the main metric is the saved model).", "",
             "## Per task", ""]
    for task, points in series.items():
        name = TASK_PLOT.format("".join(c if c.isalnum() or c in "-_" else "_" for c in task))
        plot_epochs(task, points, run_dir / name)
        lines += [f"![{task} over the epochs]({name})", ""]
        lines += _table(["epoch", *points], [[_fmt(e), *[_fmt(dict(p).get(e)) for p in
                                                          points.values()]]
                                             for e, _ in next(iter(points.values()))]) + [""]
    return atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines).rstrip() + "\n")


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write report.md and its PNG plots into a prune run folder (or a multi-task training run
    folder); returns the report's path."""
    run_dir = Path(run_dir)
    history = _training_history(run_dir) if run_dir.is_dir() else None
    if history is not None:
        return _write_training_report(run_dir, history)
    result, sensitivity = read_run(run_dir)
    if result is None:
        assert sensitivity is not None  # read_run returns at least one of the two
        return _write_sensitivity_report(run_dir, sensitivity)
    metric_name = _metric_name(result, sensitivity)
    about = ", ".join(f"{label} `{result[key]}`" for key, label in RUN_FIELDS
                      if result.get(key) is not None)
    lines = [f"# Pruning report: {run_dir.name}", "", *([about, ""] if about else []),
             "## Summary", "",
             *_summary_lines(result, metric_name), "", *_provenance_lines(result), "",
             "## Steps", "", *_step_lines(result)]
    plot_metric_vs_macs(result, run_dir / METRIC_PLOT, metric_name)
    lines += ["", f"![{metric_name} against MACs]({METRIC_PLOT})", ""]
    lines += _task_lines(result, run_dir)
    before, after = result.get("channels_before") or {}, result.get("channels_after") or {}
    if before or after:
        plot_channels(before, after, run_dir / CHANNELS_PLOT)
        lines += _channel_lines(before, after)
    if sensitivity is not None:
        plot_sensitivity(sensitivity, run_dir / SENSITIVITY_PLOT)
        lines += _sensitivity_lines(sensitivity)
    return atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines).rstrip() + "\n")


def _write_sensitivity_report(run_dir: Path, sensitivity: dict) -> Path:
    """report.md of a sensitivity-only run: the curves and the table."""
    plot_sensitivity(sensitivity, run_dir / SENSITIVITY_PLOT)
    lines = [f"# Sensitivity report: {run_dir.name}", "", *_sensitivity_lines(sensitivity)]
    return atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines).rstrip() + "\n")


def _step_lines(result: dict) -> list[str]:
    """A count of steps by status, then the step table."""
    steps = result["steps"]
    if not steps:
        return ["No pruning steps were run."]
    counts = {status: sum(s["status"] == status for s in steps)
              for status in dict.fromkeys(s["status"] for s in steps)}
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    return [f"{len(steps)} steps: {summary}.", "", *_table(STEP_COLUMNS, step_rows(result))]


def _channel_lines(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Markdown section: the channels plot and a table of channels per layer."""
    names = list(before) + [n for n in after if n not in before]
    rows = [[n, _fmt(before.get(n)), _fmt(after.get(n))] for n in names]
    return ["## Channels per layer", "", f"![channels per layer]({CHANNELS_PLOT})", "",
            *_table(["layer", "before", "after"], rows), ""]


def _metric_name(result: dict, sensitivity: dict | None) -> str:
    """What 'metric' means: stated, the baseline's only metric, or the mean over its metrics."""
    if result.get("metric_name"):
        return str(result["metric_name"])
    names = list((result["baseline"].get("metrics") or {}))
    if len(names) == 1 and names[0] != "metric":
        return names[0]
    if len(names) > 1:
        return "mean of " + ", ".join(names)
    return str((sensitivity or {}).get("metric_name") or "metric")


def _sensitivity_lines(sensitivity: dict) -> list[str]:
    """Markdown section: the plot and a table of metric per group and pruned ratio."""
    ratios, sizes = sensitivity.get("ratios", []), sensitivity.get("sizes") or {}
    header = ["group", "channels", *[f"{_fmt(r, 'pct')} pruned" for r in ratios]]
    rows = [[name, _fmt(sizes.get(name)), *[_fmt(v) for v in values]]
            for name, values in sensitivity["groups"].items()]
    return ["## Sensitivity", "",
            f"Baseline {sensitivity.get('metric_name', 'metric')}: "
            f"{_fmt(sensitivity.get('baseline'))}", "",
            f"![sensitivity curves]({SENSITIVITY_PLOT})", "", *_table(header, rows), ""]
