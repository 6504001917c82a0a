"""Multi-head models on digits-detect with masks: three single-task models against one backbone
with three heads (detect + segment + classify the digit count), each loss-balancing method on
the hard-shared model, then the best hard-shared model pruned to 50% of its MACs by taylor
(calibrated on every task's loss) with a guard per task.

Per configuration and seed: per-task metrics on the test split (held-out digits; the best
epoch, and the hard-shared model to prune, are chosen on validation), the same metrics on
(un-augmented) training canvases for the train-test gap, params, MACs and median torch
latency (batch 1, 1 thread, IQR). Accuracy-like numbers are mean +- std over seeds.
Everything runs on CPU; the schedule is an argument and the one used is written into the JSON.

    nice -n 10 python benchmarks/multitask_heads.py   # -> docs/benchmarks/multitask_heads.{json,md}
    python benchmarks/multitask_heads.py --seeds 0 --epochs 1 --train 128 --configs hard:fixed
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from leannet.data import get_source
from leannet.data.loaders import make_loaders, plain
from leannet.data.multihead import multi_target_collate, multihead_view
from leannet.files import atomic_write_json, atomic_write_text
from leannet.measure import count_macs, count_params, torch_latency
from leannet.multitask.metrics import confusion_matrix, segmentation_scores
from leannet.multitask.multihead import build
from leannet.prune import Pruner, Target
from leannet.train.fit import evaluate, fit

TASKS = ("detect", "segment", "classify")
MAIN = {"detect": "map50", "segment": "miou", "classify": "accuracy"}
WEIGHTINGS = ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "imtl", "aligned",
              "nash")
GUARD = {"detect": 0.02, "segment": 0.02, "classify": 0.01}
ROOT = Path(__file__).resolve().parents[1]


def _source(args: argparse.Namespace, tasks: list[str]) -> Any:
    base = get_source("digits-detect", image_size=args.image_size, num_train=args.train,
                      num_val=args.val, num_test=args.test)
    return multihead_view(base, tasks)


def _loader(dataset: Any, batch: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=multi_target_collate)


def _scores(model: Any, task: Any, source: Any, args: argparse.Namespace) -> dict[str, Any]:
    test = source.test if source.test is not None else source.val
    train = Subset(plain(source.train), range(min(len(source.train), args.test)))
    out: dict[str, Any] = {}
    for split, data in (("val", source.val), ("test", test), ("train", train)):
        metrics = evaluate(model, _loader(data, 64), task, "cpu")
        out[split] = {t: metrics[f"{t}/{MAIN[t]}"] for t in task.tasks}
    return out


def run_one(config: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    kind, what = config.split(":")  # single:TASK or SHARING:WEIGHTING (hard, mtan, cross_stitch)
    tasks = [what] if kind == "single" else list(TASKS)
    source = _source(args, tasks)
    torch.manual_seed(seed)
    model, task = build(source, "mobilenet_v2", {"width_mult": args.width},
                        weighting="fixed" if kind == "single" else what,
                        sharing="hard" if kind == "single" else kind)
    train, val = make_loaders(source, args.batch, seed=seed)
    start = time.perf_counter()
    fit(model, train, val, task, args.epochs, optimizer="adamw", lr=3e-3, weight_decay=0.05,
        warmup_epochs=min(1.0, args.epochs / 5), seed=seed, device="cpu", progress=False,
        restore_best=True)
    seconds = time.perf_counter() - start
    shape = (1, 1, args.image_size, args.image_size)
    latency = torch_latency(model.eval(), shape, runs=args.runs, threads=1, warn=False)
    return {"config": config, "seed": seed, **_scores(model, task, source, args),
            "params": count_params(model), "macs": count_macs(model, shape),
            "latency_ms": latency.median_ms, "latency_iqr_ms": latency.iqr_ms,
            "train_seconds": round(seconds, 1), "model": model, "task": task, "source": source}


def trivial(args: argparse.Namespace) -> dict[str, float]:
    """What a model that learnt nothing scores on test: no boxes (mAP 0), every pixel
    background, and the commonest digit count of the training canvases."""
    source = _source(args, list(TASKS))
    test = source.test if source.test is not None else source.val
    counts = torch.stack([plain(source.train)[i][1]["classify"] for i in range(len(source.train))])
    common = int(torch.bincount(counts).argmax())
    matrix, right = 0, 0
    classes = source.extra["tasks"]["segment"]["classes"]
    for i in range(len(test)):
        target = test[i][1]
        matrix = matrix + confusion_matrix(torch.zeros_like(target["segment"]), target["segment"],
                                           classes)
        right += int(target["classify"]) == common
    return {"detect": 0.0, "segment": segmentation_scores(matrix)["miou"],
            "classify": right / len(test)}


def prune_best(best: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Taylor on every task's loss to 50% MACs, one fine-tuning epoch, per-task drops vs guards."""
    model, task, source = copy.deepcopy(best["model"]), best["task"], best["source"]
    shape = (1, 1, args.image_size, args.image_size)
    train, val = make_loaders(source, args.batch, seed=best["seed"])
    example = next(iter(val))[0][:2]
    start = time.perf_counter()
    pruner = Pruner(model, example, criterion="taylor")
    pruner.calibrate(train, loss_fn=task.task_losses, max_batches=8)
    pruner.apply(pruner.plan(Target(macs=0.5)), verify=True)
    fit(model, train, val, task, args.finetune_epochs, optimizer="adamw", lr=1e-3,
        weight_decay=0.05, seed=best["seed"], device="cpu", progress=False, restore_best=True)
    seconds = time.perf_counter() - start
    after = _scores(model, task, source, args)
    latency = torch_latency(model.eval(), shape, runs=args.runs, threads=1, warn=False)
    drops = {t: best["test"][t] - after["test"][t] for t in TASKS}
    return {"from": best["config"], "seed": best["seed"], "before": best["test"], **after,
            "drop": drops, "guard": GUARD, "within_guard": {t: drops[t] <= GUARD[t] for t in TASKS},
            "params": count_params(model), "macs": count_macs(model, shape),
            "macs_fraction": count_macs(model, shape) / best["macs"],
            "latency_ms": latency.median_ms, "latency_iqr_ms": latency.iqr_ms,
            "seconds": round(seconds, 1)}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:  # no spread to state
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        entry: dict[str, Any] = {"config": config, "seeds": [r["seed"] for r in mine]}
        for t in TASKS:
            tests = [r["test"][t] for r in mine if t in r["test"]]
            gaps = [r["train"][t] - r["test"][t] for r in mine if t in r["test"]]
            entry[t] = _mean_std(tests)
            entry[f"{t}_gap"] = _mean_std(gaps)
            entry[f"{t}_mean"] = statistics.mean(tests) if tests else None
        for key in ("params", "macs"):
            entry[key] = mine[0][key]
        entry["latency_ms"] = statistics.median(r["latency_ms"] for r in mine)
        entry["latency_iqr_ms"] = statistics.median(r["latency_iqr_ms"] for r in mine)
        table.append(entry)
    singles = [e for e in table if e["config"].startswith("single:")]
    if len(singles) == len(TASKS):  # three models side by side: their costs add up
        total = {"config": "3 single-task models", "seeds": singles[0]["seeds"],
                 **{t: next(e[t] for e in singles if e["config"] == f"single:{t}") for t in TASKS},
                 **{f"{t}_gap": next(e[f"{t}_gap"] for e in singles if e["config"] == f"single:{t}")
                    for t in TASKS},
                 "params": sum(e["params"] for e in singles), "macs": sum(e["macs"] for e in singles),
                 "latency_ms": sum(e["latency_ms"] for e in singles),
                 "latency_iqr_ms": sum(e["latency_iqr_ms"] for e in singles)}
        table.insert(max(table.index(e) for e in singles) + 1, total)  # after the last one
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = ["| model | seeds | detect mAP@0.5 | segment mIoU | count accuracy | "
             "gap det / seg / cls | params | MACs | latency ms (IQR) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in result["table"]:
        gaps = " / ".join(e.get(f"{t}_gap", "-").split(" ")[0] if e.get(t, "-") != "-" else "-"
                          for t in TASKS)
        lines.append(f"| {e['config']} | {len(e['seeds'])} | {e.get('detect', '-')} | "
                     f"{e.get('segment', '-')} | "
                     f"{e.get('classify', '-')} | {gaps} | {e['params']:,} | {e['macs'] / 1e6:.1f}M | "
                     f"{e['latency_ms']:.1f} ({e['latency_iqr_ms']:.1f}) |")
    floor = result.get("trivial")
    if floor:
        lines.append(f"| learnt nothing (no boxes, all background, commonest count) | - | "
                     f"{floor['detect']:.3f} | {floor['segment']:.3f} | {floor['classify']:.3f} | "
                     "| | | |")
    pruned = result.get("pruned")
    if pruned:
        lines += ["", f"Pruned ({pruned['from']}, seed {pruned['seed']}; taylor on the three task "
                  f"losses, 50% MACs, {result['schedule']['finetune_epochs']} fine-tuning epoch):",
                  "", "| task | before | after | drop | guard | within |", "|---|---|---|---|---|---|"]
        for t in TASKS:
            lines.append(f"| {t} | {pruned['before'][t]:.3f} | {pruned['test'][t]:.3f} | "
                         f"{pruned['drop'][t]:+.3f} | {pruned['guard'][t]} | "
                         f"{'yes' if pruned['within_guard'][t] else 'no'} |")
        lines.append(f"\nMACs {pruned['macs_fraction']:.2f} of the unpruned model, params "
                     f"{pruned['params']:,}, latency {pruned['latency_ms']:.1f} ms "
                     f"(IQR {pruned['latency_iqr_ms']:.1f}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=128)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--configs", default=",".join(
        [f"single:{t}" for t in TASKS] + [f"hard:{w}" for w in WEIGHTINGS]
        + ["mtan:fixed", "cross_stitch:fixed"]))
    parser.add_argument("--prune-after", default="end",
                        help="prune the best hard-shared model (by validation) seen once this "
                             "configuration is done (in the first seed), 'end' (after every run) "
                             "or 'none'")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows (and the pruned model) already in --out and run only "
                             "the (configuration, seed) pairs it lacks: a schedule split over "
                             "processes, by priority")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/multitask_heads.json")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the table and markdown from the JSON at --out")
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.out.read_text())
        result["table"] = summarise(result["rows"])
        result.setdefault("trivial", trivial(argparse.Namespace(**result["schedule"])))
        atomic_write_json(args.out, result)
        atomic_write_text(args.out.with_suffix(".md"), markdown(result))
        return
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    schedule = {k: v for k, v in vars(args).items() if k not in ("out",)}
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    pruned: dict[str, Any] | None = None
    schedules = [schedule]
    if args.append and args.out.exists():
        earlier = json.loads(args.out.read_text())
        rows, pruned = earlier["rows"], earlier.get("pruned")
        schedules = earlier.get("schedules", [earlier["schedule"]]) + [schedule]
    done = {(r["config"], r["seed"]) for r in rows}
    result: dict[str, Any] = {}
    floor = trivial(args)

    def save() -> None:
        clean = [{k: v for k, v in r.items() if k not in ("model", "task", "source")}
                 for r in rows]
        result.clear()
        result.update({"schedule": schedule, "schedules": schedules, "trivial": floor, "rows": clean,
                       "table": summarise(clean), **({"pruned": pruned} if pruned else {})})
        atomic_write_json(args.out, result)
        atomic_write_text(args.out.with_suffix(".md"), markdown(result))

    for seed in seeds:  # every configuration once before the next seed: partial runs inform
        for config in args.configs.split(","):
            if (config, seed) in done:
                continue
            row = run_one(config, seed, args)
            print(json.dumps({k: v for k, v in row.items()
                              if k not in ("model", "task", "source")}), flush=True)
            if config.startswith("hard:") and (best is None or sum(row["val"].values()) >
                                               sum(best["val"].values())):  # chosen on val
                if best is not None:
                    best.pop("model"), best.pop("source")  # only the chosen model stays
                best = row
            rows.append(row)
            if config == args.prune_after and best is not None and pruned is None:
                pruned = prune_best(best, args)  # early: a slow machine
                print(json.dumps(pruned), flush=True)
            save()
            if row is not best:
                row.pop("model"), row.pop("source")
    if args.prune_after == "end" and best is not None and pruned is None:
        pruned = prune_best(best, args)
        print(json.dumps(pruned), flush=True)
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()
