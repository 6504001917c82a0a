"""Latency-targeted against MACs-targeted pruning, measured in the runtime that ships.

One MobileNetV2 (small-input stem) trained on a real dataset, then pruned one-shot and fine-tuned
with the same budget by: leannet to a MACs target (group_l1, global ranking; `--uniform` adds the
uniform ratio), Torch-Pruning group-L1 to the same MACs target (the anchor, uniform ratio), and
leannet (group_l1) to a latency target planned on a per-layer table
measured in ONNX Runtime int8 (`leannet.deploy.latency.layer_latency_model`). Every model is
exported to ONNX Runtime fp32 and int8 (static QDQ, calibrated on real training images), scored
on the test split (fine-tuning picks its best epoch on validation), and all files are timed
together in interleaved rounds on one thread, batch 1, so the machine's load hits every row alike.

    python benchmarks/latency_target.py --data-root ../shared/data/fashion-mnist \\
        --out docs/benchmarks/latency_target.json

Accuracy is mean +- std over the fine-tuning seeds of one baseline (its own seed 0); latency is
the median (IQR) of the interleaved runs, speed-ups against the unpruned fp32 model in the same
runtime.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from leannet import checkpoint
from leannet.data import get_source
from leannet.data.splits import stratified_indices
from leannet.deploy.latency import layer_latency_model
from leannet.deploy.matrix import build_one, timed
from leannet.deploy.score import evaluate_session
from leannet.measure import count_macs, count_params, time_latencies
from leannet.models import create_model
from leannet.prune import Pruner, Target
from leannet.prune.cost import CostModel
from leannet.prune.depth import plan_depth, remove_blocks
from leannet.train.distill import DistillConfig, distilling, frozen_teacher
from leannet.train.fit import evaluate, fit
from leannet.train.tasks import ClassificationTask


def subset(dataset, size: int, seed: int):
    if not size or size >= len(dataset):
        return dataset
    _, pick = stratified_indices(dataset.labels, size / len(dataset), seed)
    return Subset(dataset, pick.tolist())


def loader(dataset, seed: int | None, batch: int = 64) -> DataLoader:
    if seed is None:
        return DataLoader(dataset, batch_size=256)
    return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


def train(model, data: dict, epochs: int, lr: float, seed: int, teacher=None) -> None:
    """AdamW with cosine decay, best epoch on val; with a `teacher`, distilled from it (0.5
    cross-entropy + 0.5 KL at T = 4, leannet's `--distill` default)."""
    torch.manual_seed(seed)
    task = ClassificationTask()
    with (distilling(model, teacher, task, next(iter(loader(data["val"], None)))[0][:2],
                     DistillConfig()) if teacher is not None else nullcontext(task)) as loss:
        fit(model, loader(data["train"], seed), loader(data["val"], None), loss, epochs,
            optimizer="adamw", lr=lr, weight_decay=0.05, seed=seed, progress=False,
            restore_best=True)


def accuracy(model, dataset) -> float:
    return evaluate(model, loader(dataset, None), ClassificationTask())["accuracy"]


def tp_prune(model, example, macs: float, round_to: int):
    """Torch-Pruning group-L1, uniform ratio bisected to `macs` of the MACs, classifier kept."""
    import torch_pruning as tp

    def pruned(ratio: float):
        trial = copy.deepcopy(model)
        classifier = [m for m in trial.modules() if isinstance(m, torch.nn.Linear)][-1]
        tp.pruner.BasePruner(trial, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
                             pruning_ratio=ratio, round_to=round_to,
                             ignored_layers=[classifier]).step()
        return trial

    full, low, high = count_macs(model, example), 0.0, 0.95
    for _ in range(12):
        middle = (low + high) / 2
        low, high = (middle, high) if count_macs(pruned(middle), example) > macs * full \
            else (low, middle)
    near = [pruned(low), pruned(high)]  # rounding makes steps: the one closer to the target
    return min(near, key=lambda m: abs(count_macs(m, example) / full - macs))


CRITERION = "group_l1"  # Torch-Pruning's GroupMagnitudeImportance(p=1), like for like


def leannet_prune(model, example, target: Target, table=None, uniform: bool = False):
    """leannet's one-shot plan to `target` (global ranking unless `uniform`), applied to a copy."""
    pruner = Pruner(copy.deepcopy(model), example, criterion=CRITERION, latency_model=table,
                    global_ranking=not uniform)
    plan = pruner.plan(target)
    return pruner.apply(plan), plan.meta


def depth_then_latency(model, example, blocks: int, fraction: float, table, calibration,
                       round_to: int, tradeoff: float):
    """Depth, then width, to one latency estimate: remove the `blocks` residual blocks whose branch
    adds least on the calibration images (their layers' fixed cost goes too, which no width cut
    can remove), then prune channels to `fraction` of the *unpruned* model's estimated latency."""
    full_ms = CostModel(model, Pruner(model, example).graph, table).latency0
    trial = remove_blocks(copy.deepcopy(model), plan_depth(model, calibration, blocks))
    left_ms = CostModel(trial, Pruner(trial, example).graph, table).latency0
    if fraction * full_ms >= left_ms:
        return trial, {"latency_fraction": left_ms / full_ms}
    pruned, meta = leannet_prune(trial, example, Target(
        latency=fraction * full_ms / left_ms, round_to=round_to, latency_tradeoff=tradeoff), table)
    return pruned, {**meta, "latency_fraction": meta["latency_fraction"] * left_ms / full_ms}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-root", default="../shared/data/fashion-mnist")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds")
    parser.add_argument("--macs", default="0.5,0.35", help="MACs targets")
    parser.add_argument("--latency", default="0.75,0.6",
                        help="latency targets (fractions of the int8 model's, estimated)")
    parser.add_argument("--tradeoffs", default="1",
                        help="Target.latency_tradeoff values for the latency targets (1: importance "
                             "per ms, 0: importance alone); choose on the val columns")
    parser.add_argument("--depth-blocks", type=int, default=0,
                        help="also: remove this many residual blocks, then width-prune to each "
                             "latency target (depth + width)")
    parser.add_argument("--criterion", default="group_l1",
                        help="leannet's criterion (group_l1 is Torch-Pruning's group-L1)")
    parser.add_argument("--round-to", type=int, default=16)
    parser.add_argument("--uniform", action="store_true",
                        help="also leannet with a uniform ratio (Torch-Pruning's default)")
    parser.add_argument("--distill", action="store_true",
                        help="fine-tune every variant distilled from the unpruned baseline")
    parser.add_argument("--cache", default="",
                        help="a folder to keep the trained baseline in (reused when its settings "
                             "match; a model folder, safetensors + JSON)")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--time-only", action="store_true",
                        help="prune and time, without fine-tuning (accuracy left out)")
    parser.add_argument("--only", default="", help="run only variants whose names contain one "
                                                    "of these comma-separated words")
    parser.add_argument("--out", default="docs/benchmarks/latency_target.json")
    args = parser.parse_args()
    global CRITERION
    CRITERION = args.criterion
    torch.set_num_threads(1)
    began = time.time()

    source = get_source(args.data, args.data_root, image_size=args.image_size, download=False)
    data = {"train": subset(source.train, args.train, 1), "val": subset(source.val, args.val, 2),
            "test": subset(source.test, args.test, 3)}
    example = torch.zeros(1, source.in_channels, args.image_size, args.image_size)
    cached = (Path(args.cache) / f"{args.data}-n{args.train}-v{args.val}-e{args.epochs}-"
              f"lr{args.lr:g}-w{args.width:g}-s{args.image_size}") if args.cache else None
    if cached is not None and (cached / "model").exists():
        base = checkpoint.load(cached / "model")
    else:
        torch.manual_seed(0)  # the baseline's initial weights: the same in every run
        base = create_model("mobilenet_v2", num_classes=source.num_classes,
                            in_channels=source.in_channels, width_mult=args.width,
                            small_input=True, image_size=args.image_size)
        train(base, data, args.epochs, args.lr, seed=0)
        if cached is not None:
            checkpoint.save(base.eval(), cached / "model")
    base.eval()
    teacher = frozen_teacher(base) if args.distill else None
    print(f"baseline: test {accuracy(base, data['test']):.4f} ({time.time() - began:.0f} s)",
          flush=True)
    calibration = [b for b, _ in zip((x for x, _ in loader(data["train"], 0)), range(4))]
    table = layer_latency_model(base, example, "onnxruntime", "int8", runs=20, rounds=2)
    print(f"latency table ({time.time() - began:.0f} s): {table.meta}", flush=True)

    variants: dict[str, Any] = {}  # latency-targeted first: the rows the script is for
    for f in [float(v) for v in args.latency.split(",") if v]:
        for t in [float(v) for v in args.tradeoffs.split(",") if v]:
            name = f"leannet latency {f:g}" + (f" tradeoff {t:g}" if t != 1 else "")
            variants[name] = lambda f=f, t=t: leannet_prune(
                base, example, Target(latency=f, round_to=args.round_to, latency_tradeoff=t), table)
            if args.depth_blocks:
                variants[f"leannet depth {args.depth_blocks} + " + name[len("leannet "):]] = \
                    lambda f=f, t=t: depth_then_latency(base, example, args.depth_blocks, f, table,
                                                        calibration, args.round_to, t)

    for m in [float(v) for v in args.macs.split(",") if v]:
        variants[f"leannet macs {m:g}"] = lambda m=m: leannet_prune(
            base, example, Target(macs=m, round_to=args.round_to), table)
        if args.uniform:  # like for like with Torch-Pruning's uniform ratio
            variants[f"leannet macs {m:g} uniform"] = lambda m=m: leannet_prune(
                base, example, Target(macs=m, round_to=args.round_to), table, uniform=True)
        variants[f"Torch-Pruning macs {m:g}"] = lambda m=m: (
            tp_prune(base, example, m, args.round_to), {})
    if args.only:  # a subset of the variants, by name
        variants = {k: v for k, v in variants.items() if any(o in k for o in args.only.split(","))}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, dict[str, Any]] = {"baseline": {
        "model": base, "test": [accuracy(base, data["test"])], "val": [accuracy(base, data["val"])],
        "macs": count_macs(base, example), "params": count_params(base)}}
    for name, make in variants.items():
        pruned, meta = make()
        row: dict[str, Any] = {"macs": count_macs(pruned, example), "params": count_params(pruned),
                               "estimated_latency_fraction": meta.get("latency_fraction"),
                               "test": [], "val": [], "before_finetune_val": accuracy(pruned, data["val"])}
        if args.time_only:  # architectures for the clock: no fine-tuning, no accuracy
            row["model"] = pruned
            seeds_here: list[int] = []
        else:
            seeds_here = seeds
        for seed in seeds_here:
            model = copy.deepcopy(pruned)
            train(model, data, args.finetune_epochs, args.lr / 3, seed=seed, teacher=teacher)
            row["test"].append(accuracy(model.eval(), data["test"]))
            row["val"].append(accuracy(model, data["val"]))
            row.setdefault("model", model)  # the first seed's model is the one timed
        rows[name] = row
        partial = {k: {f: v for f, v in r.items() if f != "model"} for k, r in rows.items()}
        Path(args.out).with_suffix(".partial.json").write_text(  # kept if the run is stopped
            json.dumps(partial, indent=1, default=str))
        print(f"{name}: MACs {row['macs'] / rows['baseline']['macs']:.3f}, test "
              f"{mean_std(row['test']) if row['test'] else '-'} ({time.time() - began:.0f} s)",
              flush=True)

    items, built = {}, {}
    for name, row in rows.items():
        def score(session, scored=row["model"]):  # the first seed's model: its files, on val/test
            return {split: evaluate_session(session, scored, loader(data[split], None),
                                            ClassificationTask())["accuracy"]
                    for split in ("val", "test")}
        for precision in ("fp32", "int8"):
            info, session = build_one(row["model"], "onnxruntime", precision, None, example,
                                      calibration=calibration, check_inputs=calibration[0][:16],
                                      evaluate=score)
            items[(name, precision)] = timed(session, "onnxruntime", precision, example)
            built[(name, precision)] = info
    latencies = time_latencies(items, threads=1, runs=args.runs, rounds=args.rounds, warn=False)
    base_ms = latencies[("baseline", "fp32")].median_ms
    results = []
    for name, row in rows.items():
        entry = {"variant": name, "macs": row["macs"], "params": row["params"],
                 "macs_fraction": row["macs"] / rows["baseline"]["macs"],
                 "estimated_latency_fraction": row.get("estimated_latency_fraction"),
                 "test_accuracy": row["test"], "val_accuracy": row["val"],
                 "before_finetune_val": row.get("before_finetune_val")}
        for precision in ("fp32", "int8"):
            lat = latencies[(name, precision)]
            entry[precision] = {"latency": lat.to_dict(),
                                "speedup_vs_baseline_fp32": base_ms / lat.median_ms,
                                "agreement": built[(name, precision)].get("agreement"),
                                "seed0_file_accuracy": built[(name, precision)].get("metrics")}
        results.append(entry)
    meta = {"command": "python benchmarks/latency_target.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "data": args.data, "splits": {k: len(v) for k, v in data.items()},
            "baseline": f"mobilenet_v2 width {args.width} small-input, {args.epochs} epochs AdamW, "
                        "seed 0, best epoch on val",
            "finetune": f"{args.finetune_epochs} epoch(s), lr {args.lr / 3:g}, seeds {seeds}"
                        + (", distilled from the baseline (alpha 0.5, T 4)" if args.distill else ""),
            "runtime": "onnxruntime 1 thread batch 1", "latency_table": table.to_dict(),
            "seconds": round(time.time() - began)}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": results}, indent=1, default=str))
    Path(args.out).with_suffix(".partial.json").unlink(missing_ok=True)
    print(markdown(results))


def markdown(results: list[dict]) -> str:
    """The table: val (selection) and test accuracy over seeds, the seed-0 files' test accuracy
    in fp32 and int8, latencies with IQR, speed-ups against the unpruned fp32 model."""
    lines = ["| variant | MACs | params | val acc % (select) | test acc % (mean ± std) | seed-0 "
             "file test acc % fp32 / int8 | ORT fp32 ms (IQR) | ORT int8 ms (IQR) | speed-up "
             "fp32 / int8 vs baseline fp32 |", "|---|---|---|---|---|---|---|---|---|"]

    def pct(values: list[float]) -> str:
        if not values:
            return "-"
        mean, std = mean_std([100 * a for a in values])
        return f"{mean:.2f} ± {std:.2f}"
    for r in results:
        files = [(r[p].get("seed0_file_accuracy") or {}).get("test") for p in ("fp32", "int8")]
        file_cell = " / ".join(f"{100 * a:.2f}" if a is not None else "-" for a in files)
        cells = [f"{r[p]['latency']['median_ms']:.3g} ({r[p]['latency']['q1_ms']:.3g}-"
                 f"{r[p]['latency']['q3_ms']:.3g})" for p in ("fp32", "int8")]
        lines.append(f"| {r['variant']} | {r['macs_fraction']:.1%} | {r['params']:,} | "
                     f"{pct(r['val_accuracy'])} | {pct(r['test_accuracy'])} | {file_cell} | "
                     f"{cells[0]} | {cells[1]} | {r['fp32']['speedup_vs_baseline_fp32']:.2f} / "
                     f"{r['int8']['speedup_vs_baseline_fp32']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
