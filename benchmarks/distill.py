"""Distillation during pruning: ResNet-20 on CIFAR-10 pruned by taylor to 50% and 30% of MACs,
fine-tuned with and without distillation from the unpruned model, 3 seeds.

    python benchmarks/distill.py            # writes docs/benchmarks/distill.{json,md}

Honest splits: the baseline and every fine-tune select their best epoch on a validation set
carved (seeded, stratified) from CIFAR-10's training images; accuracy is reported on CIFAR-10's
test images, which nothing is selected on. Both variants of a seed start from the same baseline,
prune with the same criterion, schedule and seed, and fine-tune for the same epochs on the same
batches; the only difference is the loss (`leannet.train.distill`: (1 - alpha) cross-entropy +
alpha KL at temperature T against the unpruned teacher). The guard is off (max_drop 1), so
both reach the MACs target. Sizes are options because this runs on two shared CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "evidence"))

from common import (Batches, load_splits, machine, markdown, mean_std, pm,  # noqa: E402
                    separated, train_select_test)

import torch  # noqa: E402

from leannet import checkpoint  # noqa: E402,F401  (model folders: the runs keep none)
from leannet.files import atomic_write_json, atomic_write_text  # noqa: E402
from leannet.iterative import iterative_prune  # noqa: E402
from leannet.measure import count_macs  # noqa: E402
from leannet.models import create_model  # noqa: E402
from leannet.prune import Target  # noqa: E402
from leannet.train import ClassificationTask, evaluate, fit  # noqa: E402
from leannet.train.distill import DistillConfig, distilling, frozen_teacher  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def prune_once(base: torch.nn.Module, splits, target: float, seed: int, distill: DistillConfig | None,
               args: argparse.Namespace) -> dict:
    """One prune run from the trained baseline; test accuracy of the final model."""
    task = ClassificationTask()
    teacher = frozen_teacher(base) if distill is not None else None
    example = splits.val[0][:2]
    val = Batches(*splits.val, 500)
    epoch = {"n": 0}

    def finetune(model: torch.nn.Module) -> None:
        epoch["n"] += 1  # the same batches for both variants: seeded by (seed, fine-tune number)
        train = Batches(*splits.train, args.batch_size, shuffle=True, seed=seed * 100 + epoch["n"])
        if teacher is None:
            fit(model, train, val, task, args.finetune_epochs, optimizer="adamw", lr=args.lr,
                weight_decay=1e-4, seed=None, device="cpu", progress=False, restore_best=True)
            return
        with distilling(model, teacher, task, example, distill) as distilled:
            fit(model, train, val, distilled, args.finetune_epochs, optimizer="adamw", lr=args.lr,
                weight_decay=1e-4, seed=None, device="cpu", progress=False, restore_best=True)

    def score(model: torch.nn.Module) -> float:
        return evaluate(model, val, task, "cpu")["accuracy"]

    def calibrate(pruner) -> None:
        pruner.calibrate(Batches(*splits.train, args.batch_size, shuffle=True, seed=seed),
                         loss_fn=task.loss, max_batches=args.calibration_batches)

    start = time.perf_counter()
    outcome = iterative_prune(copy.deepcopy(base), finetune, score, Target(macs=target), example,
                              criterion="taylor", steps=args.steps, max_drop=1.0, seed=seed,
                              calibrate=calibrate)
    model = outcome.model
    shape = (1, *splits.train[0].shape[1:])
    return {"target": target, "seed": seed, "distill": distill is not None,
            "macs_fraction": round(count_macs(model, shape) / count_macs(base, shape), 4),
            "val": round(score(model), 4),
            "test": round(evaluate(model, Batches(*splits.test, 500), task, "cpu")["accuracy"], 4),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training images (carved)")
    parser.add_argument("--val", type=int, default=500, help="validation images (carved)")
    parser.add_argument("--test", type=int, default=2000, help="test images (None: all 10,000)")
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning AdamW lr")
    parser.add_argument("--calibration-batches", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="resnet20")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_splits("cifar10", args.train, args.val, args.test, seed=0)
    torch.manual_seed(0)
    base = create_model(args.model, num_classes=splits.num_classes, image_size=32)
    baseline = train_select_test(base, splits, ClassificationTask(), epochs=args.base_epochs,
                                 seed=0, batch_size=args.batch_size)
    print(f"baseline: val {baseline['val']['accuracy']:.4f} test {baseline['test']['accuracy']:.4f}"
          f" ({baseline['seconds']} s)", flush=True)
    config = DistillConfig(args.alpha, args.temperature).check()
    runs = []
    for target in args.targets:
        for seed in args.seeds:
            for distill in (None, config):
                runs.append(prune_once(base, splits, target, seed, distill, args))
                print(runs[-1], flush=True)
                write(args, splits, baseline, runs)  # partial tables survive an interrupted run


def write(args: argparse.Namespace, splits, baseline: dict, runs: list[dict]) -> None:
    """docs/benchmarks/distill.json and distill.md."""
    rows, summary = [], []
    base_test = baseline["test"]["accuracy"]
    done = [t for t in args.targets if {r["distill"] for r in runs if r["target"] == t} == {False, True}]
    for target in done:
        stats = {}
        for distill in (False, True):
            chosen = [r for r in runs if r["target"] == target and r["distill"] == distill]
            stats[distill] = {key: mean_std([r[key] for r in chosen])
                              for key in ("test", "val", "macs_fraction", "seconds")}
        plain, kd = stats[False], stats[True]
        delta = kd["test"]["mean"] - plain["test"]["mean"]
        verdict = "better" if delta > 0 else "worse"
        if not separated(kd["test"], plain["test"]):
            verdict = "inside the spread"
        rows.append([f"{target:.0%}", f"{plain['macs_fraction']['mean']:.3f} / "
                     f"{kd['macs_fraction']['mean']:.3f}", pm(plain["val"]), pm(kd["val"]),
                     pm(plain["test"]), pm(kd["test"]), f"{delta * 100:+.1f}", verdict,
                     f"{plain['seconds']['mean']:.0f} / {kd['seconds']['mean']:.0f}"])
        summary.append({"target": target, "plain": plain, "distill": kd, "delta_test": delta})
    table = markdown(["MACs target", "MACs reached (plain / KD)", "val plain", "val KD",
                      "test plain", "test KD", "Δ test (points)", "KD vs plain",
                      "seconds (plain / KD)"], rows)
    head = (f"{args.model} on CIFAR-10 ({splits.describe()['train']} train / "
            f"{splits.describe()['val']} val carved from train, {splits.describe()['test']} test), "
            f"baseline {args.base_epochs} epochs: test {base_test:.1%}; taylor, {args.steps} steps x "
            f"{args.finetune_epochs} fine-tune epoch(s), AdamW lr {args.lr}; KD alpha {args.alpha}, "
            f"T {args.temperature}; seeds {sorted({r['seed'] for r in runs})}; mean ± std "
            "(percent)\n\n")
    result = {"benchmark": "distill", "settings": vars(args), "splits": splits.describe(),
              "machine": machine(), "baseline": baseline, "runs": runs, "summary": summary}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "distill.json", result)
    atomic_write_text(OUT / "distill.md", head + table + "\n")
    print(head + table)


if __name__ == "__main__":
    main()
