"""leannet against Torch-Pruning on Fashion-MNIST: same baseline, same MACs target, same budget.

For each model (resnet20, small-input mobilenet_v2) one baseline is trained (or reused from
runs/bench-baselines), then pruned to 50% of its MACs by:
  - leannet with l1, taylor and apoz, one-shot and iterative (guard off: same MACs for all),
  - Torch-Pruning 1.6 (GroupMagnitudeImportance(p=1), its iterative_steps, the same fine-tuning
    between steps),
each with the same total fine-tuning budget in epochs. One table, one JSON file.

    python benchmarks/prune_vs_torch_pruning.py --data-root ../shared/data/fashion-mnist
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Subset

import leannet
from leannet.data import get_source
from leannet.measure import count_macs, count_params, latency_ms
from leannet.prune import Target
from leannet.iterative import iterative_prune
from leannet.train.fit import evaluate, fit
from leannet.train.tasks import ClassificationTask

console = Console(width=200)
MODELS = {"resnet20": {"in_channels": 1, "num_classes": 10},
          "mobilenet_v2": {"in_channels": 1, "num_classes": 10, "small_input": True,
                           "width_mult": 0.5}}


def loaders(source, train_subset: int, batch_size: int, seed: int):
    """A fixed random subset of the training set (CPU budget) and the full test set."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(source.train), generator=generator)[:train_subset].tolist()
    train = DataLoader(Subset(source.train, index), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed), drop_last=True)
    test = DataLoader(source.val, batch_size=512)
    return train, test


def baseline(name: str, source, train, test, epochs: int, cache: Path) -> torch.nn.Module:
    """Train once and keep the model folder so every method starts from the same weights."""
    folder = cache / name
    if (folder / "config.json").is_file():
        return leannet.load(folder)
    model = leannet.create_model(name, image_size=source.image_size, **MODELS[name])
    fit(model, train, test, ClassificationTask(), epochs, lr=0.1, warmup_epochs=0.3, seed=0,
        progress=False)
    leannet.save(model, folder)
    return model


def accuracy(model, test) -> float:
    return evaluate(model, test, ClassificationTask())["accuracy"]


def finetuner(train, test, epochs: int, lr: float):
    def finetune(model):
        fit(model, train, test, ClassificationTask(), epochs, lr=lr, seed=None, progress=False)
    return finetune


def run_leannet(base, train, test, example, criterion, steps, budget, lr):
    """leannet's iterative_prune with the guard off, `budget` epochs split across the steps.

    `criterion` may end in "-uniform": the same criterion with one pruning ratio for every layer
    (Torch-Pruning's default) instead of leannet's global ranking.
    """
    model = copy.deepcopy(base)
    criterion, _, ranking = criterion.partition("-")

    def calibrate(pruner):
        pruner.calibrate(train, loss_fn=ClassificationTask().loss, max_batches=20)

    outcome = iterative_prune(
        model, finetuner(train, test, max(1, budget // steps), lr), lambda m: accuracy(m, test),
        Target(macs=0.5), example, criterion=criterion, schedule="equal" if steps > 1 else
        "oneshot", steps=steps, max_drop=1.0,
        calibrate=calibrate if criterion in ("taylor", "apoz") else None, seed=0,
        pruner_options={"global_ranking": ranking != "uniform"})
    last = [s for s in outcome.steps if s["status"] == "accepted"][-1]
    return outcome.model, last["metric_before_finetune"]


def run_torch_pruning(base, train, test, example, steps, budget, lr):
    """Torch-Pruning 1.6 with GroupMagnitudeImportance(p=1), classifier ignored, to 50% MACs."""
    import torch_pruning as tp

    ratio = _tp_ratio_for_half_macs(base, example)
    model = copy.deepcopy(base)
    pruner = tp.pruner.BasePruner(
        model, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio, iterative_steps=steps, ignored_layers=[_classifier(model)])
    before = None
    for _ in range(steps):
        pruner.step()
        before = accuracy(model, test)
        finetuner(train, test, max(1, budget // steps), lr)(model)
    return model, before


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def _tp_ratio_for_half_macs(base, example) -> float:
    """Bisect Torch-Pruning's channel ratio so that one-shot pruning keeps 50% of MACs."""
    import torch_pruning as tp

    full, low, high = count_macs(base, example), 0.0, 0.9
    for _ in range(12):
        mid = (low + high) / 2
        trial = copy.deepcopy(base)
        tp.pruner.BasePruner(trial, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
                             pruning_ratio=mid, ignored_layers=[_classifier(trial)]).step()
        low, high = (mid, high) if count_macs(trial, example) > 0.5 * full else (low, mid)
    return (low + high) / 2


def row(method, model, before, test, example, seconds, base_macs):
    return {"method": method, "acc_before_ft": round(before, 4),
            "acc_after_ft": round(accuracy(model, test), 4), "params": count_params(model),
            "macs": count_macs(model, example), "macs_fraction": round(
                count_macs(model, example) / base_macs, 4),
            "latency_ms": round(latency_ms(model, example, runs=30), 3),
            "wall_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/fashion-mnist")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--baseline-epochs", type=int, default=4)
    parser.add_argument("--budget", type=int, default=3, help="fine-tuning epochs per method")
    parser.add_argument("--steps", type=int, default=3, help="steps of the iterative methods")
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--criteria", nargs="+", default=["l1", "taylor", "apoz"],
                        help="leannet criteria; add -uniform for one ratio per layer")
    parser.add_argument("--skip-anchor", action="store_true", help="leannet rows only")
    parser.add_argument("--out", default="benchmarks/results/prune_vs_torch_pruning.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    source = get_source("fashion-mnist", args.data_root, image_size=28, download=False)
    train, test = loaders(source, args.train_subset, 128, 0)
    rows: list[dict] = []
    out = Path(args.out)

    def record(new_row: dict) -> None:
        """Keep the row, print it, and rewrite the JSON so a cut-short run keeps its results."""
        rows.append(new_row)
        console.print(new_row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(args),
                                   "rows": rows}, indent=2) + "\n")

    for name in args.models:
        cache = Path("runs/bench-baselines") / f"n{args.train_subset}-e{args.baseline_epochs}"
        base = baseline(name, source, train, test, args.baseline_epochs, cache)
        example = torch.randn(1, 1, 28, 28)
        base_macs = count_macs(base, example)
        record(row(f"{name} baseline", base, accuracy(base, test), test, example, 0, base_macs))
        if not args.skip_anchor:  # the anchor first, so a cut-short run still compares
            start = time.perf_counter()
            model, before = run_torch_pruning(base, train, test, example, args.steps,
                                              args.budget, args.lr)
            record(row(f"{name} torch-pruning l1 iterative x{args.steps}", model, before, test,
                       example, time.perf_counter() - start, base_macs))
        methods = [(f"{name} leannet {c} {'one-shot' if s == 1 else f'iterative x{s}'}", c, s)
                   for s in (args.steps, 1) for c in args.criteria]
        for label, criterion, steps in methods:
            start = time.perf_counter()
            model, before = run_leannet(base, train, test, example, criterion, steps, args.budget,
                                        args.lr)
            record(row(label, model, before, test, example, time.perf_counter() - start,
                       base_macs))
    print_table(rows)


def print_table(rows) -> None:
    table = Table(title="Fashion-MNIST, pruned to 50% of MACs, same fine-tuning budget")
    for column in ("method", "acc before FT", "acc after FT", "params", "MACs", "MACs frac",
                   "latency ms", "wall s"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["method"], f"{r['acc_before_ft']:.4f}", f"{r['acc_after_ft']:.4f}",
                      f"{r['params']:,}", f"{r['macs']:,}", f"{r['macs_fraction']:.3f}",
                      f"{r['latency_ms']:.3f}", f"{r['wall_s']:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
