"""Coverage and speed: every torchvision classifier pruned by leannet and by Torch-Pruning 1.6.

For each classification model in `torchvision.models` (random init, norm layers given random scales and statistics so
verification is meaningful; input 1x3x224x224), prune
50% of the channels of every group by `l1` (uniform ratio) with leannet (verified: the pruned
model must equal the zeroed one to 1e-4) and with Torch-Pruning (`BasePruner`,
`GroupMagnitudeImportance(p=1)`, pruning_ratio=0.5, classifier ignored), in the same process on
copies of the same weights. One row per model: ok/verified, MACs before/after, prune seconds,
single-thread CPU latency before/after. Rows are written to JSON after every model (resumable).

    nice python benchmarks/coverage_torchvision.py --out benchmarks/results/coverage_torchvision.json
    python benchmarks/coverage_torchvision.py --models resnet18,shufflenet_v2_x0_5 --size 224
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torchvision
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from leannet.files import atomic_write_json, atomic_write_text
from leannet.measure import count_macs, count_params, latency_ms
from leannet.prune import Pruner, Target

console = Console(width=160)


def classifiers(pattern: str | None) -> list[str]:
    """torchvision classification models, cheapest first (by the weights' GFLOPs metadata)."""
    names = torchvision.models.list_models(module=torchvision.models)
    if pattern:
        wanted = [p.strip() for p in pattern.split(",") if p.strip()]
        names = [n for n in names if any(n == w or (w.endswith("*") and n.startswith(w[:-1]))
                                         for w in wanted)]

    def ops(name: str) -> float:
        try:
            return float(torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"])
        except Exception:  # noqa: BLE001
            return 1e9
    return sorted(names, key=ops)


def randomize_norms(model: torch.nn.Module) -> None:
    """Random norm scales, shifts and running statistics (default init makes BatchNorm an
    identity, which would let a wrong norm index mapping pass verification unnoticed)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                          torch.nn.LayerNorm)):
            with torch.no_grad():
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:240] if text else ''}"


def run_leannet(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Trace, rank, plan, then apply with verification; surgery alone is timed on a copy so
    that prune seconds (comparable to Torch-Pruning's) and verification seconds are separate."""
    from leannet.prune.verify import remove_channels

    start = time.perf_counter()
    pruner = Pruner(model, x, criterion="l1", global_ranking=False)
    plan = pruner.plan(Target(channels=0.5))
    planned = time.perf_counter() - start
    graph, removed = pruner.graph, plan.removed_mask(pruner.graph)
    trial = copy.deepcopy(model)
    start = time.perf_counter()
    pruner.apply(plan, verify=True)
    verified = time.perf_counter() - start
    start = time.perf_counter()
    remove_channels(trial, graph, removed, x, verify=False)
    surgery = time.perf_counter() - start
    del trial
    return {"ok": True, "verified": True, "prune_s": round(planned + surgery, 3),
            "verify_s": round(max(verified - surgery, 0.0), 3),
            "removed_channels": plan.removed_channels, "pruned_groups": len(plan.groups)}


def run_torch_pruning(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Torch-Pruning 1.6 BasePruner, group L1 magnitude, 50% per group, classifier ignored."""
    import torch_pruning as tp

    ignored = [m for m in model.modules()
               if (isinstance(m, torch.nn.Linear) and m.out_features == 1000)
               or (isinstance(m, torch.nn.Conv2d) and m.out_channels == 1000)]
    start = time.perf_counter()
    pruner = tp.pruner.BasePruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=ignored)
    pruner.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = model(x)
    if out.shape != (1, 1000):
        raise RuntimeError(f"output shape {tuple(out.shape)} after pruning")
    return {"ok": True, "prune_s": round(seconds, 3)}


def _measure(model: torch.nn.Module, x: torch.Tensor, runs: int) -> dict[str, Any]:
    model.eval()
    return {"macs": count_macs(model, x), "params": count_params(model),
            "latency_ms": round(latency_ms(model, x, runs=runs, warmup=1), 2) if runs else None}


class ToolTimeout(Exception):
    """A tool ran past --timeout on one model."""


def _alarm(signum, frame):  # noqa: ARG001
    raise ToolTimeout("gave no result within the time limit")


def one_model(name: str, size: int, runs: int, timeout: int = 300) -> dict[str, Any]:
    """The row of one model; any failure is recorded with its reason."""
    torch.manual_seed(0)
    row: dict[str, Any] = {"model": name, "input": [1, 3, size, size]}
    base = torchvision.models.get_model(name).eval()
    randomize_norms(base)
    x = torch.randn(1, 3, size, size)
    row["before"] = _measure(base, x, runs)
    for tool, runner in (("leannet", run_leannet), ("torch_pruning", run_torch_pruning)):
        model = copy.deepcopy(base)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(timeout)
        try:
            row[tool] = runner(model, x)
            signal.alarm(0)
            row[tool].update(_measure(model, x, runs))
        except Exception as err:  # noqa: BLE001 - the reason goes in the table
            signal.alarm(0)
            if isinstance(err, ToolTimeout):
                err = ToolTimeout(f"no result within {timeout} s (stopped)")
            row[tool] = {"ok": False, "verified": False, "error": _reason(err)}
            console.log(f"[red]{name} {tool}: {_reason(err)}")
            if tool == "leannet":
                console.log(traceback.format_exc(limit=3))
        del model
        gc.collect()
    return row


def table(rows: list[dict[str, Any]]) -> Table:
    """The side-by-side table."""
    t = Table(title="torchvision classifiers: 50% channels by L1, leannet vs Torch-Pruning 1.6")
    for col in HEADERS:
        t.add_column(col, justify="right" if col != "model" else "left")
    for r in rows:
        t.add_row(*cells(r))
    return t


def cells(r: dict[str, Any]) -> list[str]:
    """One row's strings (shared by the rich table and the markdown table)."""
    le, tp, b = r.get("leannet", {}), r.get("torch_pruning", {}), r["before"]

    def g(v):
        return f"{v / 1e9:.3f}" if isinstance(v, (int, float)) else "-"

    def s(v):
        return f"{v:.2f}" if isinstance(v, (int, float)) else "-"
    status = "verified" if le.get("verified") else ("ok" if le.get("ok") else "FAIL")
    return [r["model"], status, "ok" if tp.get("ok") else "FAIL", g(b["macs"]),
            g(le.get("macs")), g(tp.get("macs")), s(le.get("prune_s")), s(le.get("verify_s")),
            s(tp.get("prune_s")), s(b.get("latency_ms")), s(le.get("latency_ms")),
            s(tp.get("latency_ms"))]


HEADERS = ("model", "leannet", "TP", "GMACs before", "leannet after", "TP after", "leannet s",
           "verify s", "TP s", "ms before", "leannet ms", "TP ms")


def markdown(data: dict[str, Any]) -> str:
    """The results as a markdown table, with totals and every failure's reason."""
    rows = data["rows"]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    verified = sum(bool(r.get("leannet", {}).get("verified")) for r in rows)
    tp_ok = sum(bool(r.get("torch_pruning", {}).get("ok")) for r in rows)
    both = [r for r in rows if r.get("leannet", {}).get("ok") and r.get("torch_pruning", {}).get("ok")]
    faster = sum(r["leannet"]["prune_s"] <= r["torch_pruning"]["prune_s"] for r in both)
    summary = [f"- models: {len(rows)}; leannet pruned and verified: {verified}; "
               f"Torch-Pruning ran: {tp_ok}",
               f"- where both ran ({len(both)}): leannet's prune time was not above "
               f"Torch-Pruning's on {faster}; total prune seconds leannet "
               f"{sum(r['leannet']['prune_s'] for r in both):.1f} vs Torch-Pruning "
               f"{sum(r['torch_pruning']['prune_s'] for r in both):.1f} (verification, "
               f"leannet only: {sum(r['leannet']['verify_s'] for r in both):.1f})"]
    failures = [f"- {r['model']} ({tool}): {r[tool]['error']}" for r in rows
                for tool in ("leannet", "torch_pruning") if r.get(tool, {}).get("error")]
    return "\n".join(summary + ["", *lines, "", "Failures:", "", *(failures or ["- none"])]) + "\n"


def warm_up() -> None:
    """One small untimed run of each tool, so first-call costs don't land on the first row."""
    x = torch.randn(1, 3, 64, 64)
    for runner in (run_leannet, run_torch_pruning):
        try:
            runner(torchvision.models.resnet18().eval(), x)
        except Exception:  # noqa: BLE001
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (a trailing * matches a prefix)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=3, help="latency runs per model (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per tool and model")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/coverage_torchvision.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out (models named by --models rerun)")
    parser.add_argument("--markdown", type=Path, help="only write --out's rows as a markdown "
                                                      "table to this file")
    args = parser.parse_args()
    if args.markdown:
        atomic_write_text(args.markdown, markdown(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(args.threads)
    warm_up()
    rows = json.loads(args.out.read_text())["rows"] if args.resume and args.out.exists() else []
    if args.models:  # named models are (re)run, replacing their old rows
        chosen = set(classifiers(args.models))
        rows = [r for r in rows if r["model"] not in chosen]
    done = {r["model"] for r in rows}
    names = [n for n in classifiers(args.models) if n not in done]
    with Progress(console=console) as progress:
        task = progress.add_task("pruning torchvision models", total=len(names))
        for name in names:
            progress.update(task, description=f"{name}")
            rows.append(one_model(name, args.size, args.runs, args.timeout))
            atomic_write_json(args.out, {"settings": vars(args) | {"out": str(args.out)},
                                         "torch": torch.__version__,
                                         "torchvision": torchvision.__version__, "rows": rows})
            progress.advance(task)
    console.print(table(rows))


if __name__ == "__main__":
    main()
