"""MultiMNIST: single-task models vs hard sharing vs soft sharing (L2, trace norm), same backbone.

Every model uses the same LeNet-style backbone (simple_cnn, channels 10/20, a 50-unit shared
layer) and per-task heads of 50 hidden units (Sener & Koltun 2018's MultiLeNet shape), the same
optimiser, epochs and batch size. The table: per-task test accuracy, train-test accuracy gap,
parameters and MACs. With `--prune`, the trained hard-sharing model is also pruned to 50% of its
MACs by `iterative_prune` with a per-task guard, and gets its own row.

    OMP_NUM_THREADS=1 python benchmarks/multitask_sharing.py --root ../shared/data/mnist --prune

trains on 20,000 MultiMNIST pairs of MNIST's training images, selects each model's best epoch
and guards the pruning on 1,000 validation pairs (of the images carved from MNIST's training
set, never paired with a training image), reports on all 10,000 test pairs (MNIST's test
images), and prunes with 3 fine-tune epochs per step; add
`--only "hard sharing" --finetune-epochs 1 --steps 3` for the 1-epoch pruning row.
Results and discussion: docs/benchmarks/multitask.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from leannet.data import get_source
from leannet.files import atomic_write_json
from leannet.iterative import iterative_prune
from leannet.measure import count_macs, count_params
from leannet.models import create_model
from leannet.multitask import MultiTask
from leannet.prune import Target
from leannet.train import evaluate, fit

console = Console(width=120)
BACKBONE = {"channels": [10, 20], "hidden": 50}
HEAD_HIDDEN = 50
TASKS = {"left": 10, "right": 10}


def variants(strength_l2: float, strength_trace: float) -> dict[str, tuple[str, dict]]:
    """Row name -> (registered model, kwargs); single-task rows see only their own task."""
    hard = {"trunk": "simple_cnn", "trunk_kwargs": BACKBONE, "head_hidden": HEAD_HIDDEN}
    soft = {"column": "simple_cnn", "column_kwargs": BACKBONE, "head_hidden": HEAD_HIDDEN}
    return {
        "single-task left": ("hard_sharing", {**hard, "tasks": {"left": 10}}),
        "single-task right": ("hard_sharing", {**hard, "tasks": {"right": 10}}),
        "hard sharing": ("hard_sharing", {**hard, "tasks": TASKS}),
        "soft sharing, L2": ("soft_sharing", {**soft, "tasks": TASKS, "penalty": "l2",
                                              "strength": strength_l2}),
        "soft sharing, trace norm": ("soft_sharing", {**soft, "tasks": TASKS, "penalty": "trace",
                                                      "strength": strength_trace}),
    }


def row(name: str, model: torch.nn.Module, train_eval, test, seconds: float) -> dict:
    """Per-task test accuracy, train-test gap, params and MACs of a trained model."""
    task = MultiTask(list(model.task_names))
    test_metrics = evaluate(model, test, task)
    train_metrics = evaluate(model, train_eval, task)
    result = {"name": name, "params": count_params(model),
              "macs": count_macs(model, (1, 1, 28, 28)), "train_seconds": round(seconds, 1)}
    for t in model.task_names:
        result[f"{t}/test_accuracy"] = test_metrics[f"{t}/accuracy"]
        result[f"{t}/train_accuracy"] = train_metrics[f"{t}/accuracy"]
        result[f"{t}/gap"] = train_metrics[f"{t}/accuracy"] - test_metrics[f"{t}/accuracy"]
    return result


def shuffled(train_set, args) -> torch.utils.data.DataLoader:
    """A training loader with a freshly seeded order: every model sees the same batches."""
    return torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(args.seed))


def train_variant(model_name: str, kwargs: dict, loaders, args) -> tuple[torch.nn.Module, float]:
    """Build and train one variant with the shared recipe; returns the model and seconds."""
    torch.manual_seed(args.seed)
    model = create_model(model_name, **kwargs)
    task = MultiTask(list(model.task_names))
    start = time.perf_counter()
    fit(model, shuffled(loaders[0], args), loaders[1], task, args.epochs, optimizer="adamw",
        lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, progress=True,
        restore_best=True)  # the best epoch on validation; test only reports
    return model, time.perf_counter() - start


def pruned_row(model: torch.nn.Module, loaders, train_eval, test, args) -> dict:
    """Prune the hard-sharing model to 50% MACs with a per-task guard, fine-tuning between steps."""
    task = MultiTask(list(model.task_names))

    def finetune(candidate: torch.nn.Module) -> None:
        fit(candidate, shuffled(loaders[0], args), loaders[1], task, args.finetune_epochs,
            optimizer="adamw", lr=args.lr / 3, weight_decay=args.weight_decay, seed=args.seed,
            progress=False, restore_best=True)

    def per_task(candidate: torch.nn.Module) -> dict[str, float]:
        metrics = evaluate(candidate, loaders[1], task)
        return {t: metrics[f"{t}/accuracy"] for t in candidate.task_names}

    def calibrate(pruner) -> None:  # data criteria: importance from every task's loss
        pruner.calibrate(shuffled(loaders[0], args), task.task_losses,
                         max_batches=args.calibration_batches)

    start = time.perf_counter()
    result = iterative_prune(model, finetune, per_task, Target(macs=0.5),
                             torch.zeros(2, 1, 28, 28), criterion=args.criterion, steps=args.steps,
                             max_drop={t: args.max_drop for t in model.task_names},
                             calibrate=calibrate)
    kept = result.final["macs"] / result.baseline["macs"]
    name = (f"hard sharing pruned to {kept:.0%} MACs (target 50%; {args.criterion}; guard "
            f"{args.max_drop:.0%}/task; {args.finetune_epochs} fine-tune epoch(s)/step)")
    out = row(name, result.model, train_eval, test, time.perf_counter() - start)
    out["target_reached"] = result.target_reached
    out["guard_baseline"] = result.baseline.get("metrics")
    out["prune_steps"] = [{k: s.get(k) for k in ("step", "status", "achieved_fraction", "metrics",
                                                 "guard_broken_by")} for s in result.steps]
    return out


def print_table(rows: list[dict]) -> None:
    """A rich table of the results."""
    table = Table(title="MultiMNIST: test accuracy, train-test gap, cost")
    for col in ("model", "left acc", "right acc", "left gap", "right gap", "params", "MACs"):
        table.add_column(col, justify="left" if col == "model" else "right")
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    for r in rows:
        table.add_row(r["name"], pct(r, "left/test_accuracy"), pct(r, "right/test_accuracy"),
                      pct(r, "left/gap"), pct(r, "right/gap"), f"{r['params']:,}",
                      f"{r['macs']:,}")
    console.print(table)


def markdown_table(rows: list[dict]) -> str:
    """The results as a markdown table (accuracy and gap in %)."""
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    lines = ["| model | left acc | right acc | left gap | right gap | params | MACs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {pct(r, 'left/test_accuracy')} | "
                     f"{pct(r, 'right/test_accuracy')} | {pct(r, 'left/gap')} | "
                     f"{pct(r, 'right/gap')} | {r['params']:,} | {r['macs']:,} |")
    return "\n".join(lines)


def merge(path: Path, rows: list[dict], settings: dict) -> list[dict]:
    """Write rows into the JSON at `path` (after every row, so a crash loses little), replacing
    rows of the same name and keeping the others; returns all rows."""
    old = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    fresh = {r["name"] for r in rows}
    merged = [r for r in old["rows"] if r["name"] not in fresh] + rows
    for r in rows:
        r["settings"] = settings
    atomic_write_json(path, {"rows": merged})
    return merged


def parse_args() -> argparse.Namespace:
    """Command-line settings (defaults: the run in docs/benchmarks/multitask.md)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/mnist")
    parser.add_argument("--train-size", type=int, default=20000,
                        help="MultiMNIST training pairs drawn (from MNIST's training images "
                             "less the carved validation images)")
    parser.add_argument("--val-size", type=int, default=1000,
                        help="validation pairs (from the carved images): best epoch, pruning guard")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--strength-l2", type=float, default=1e-2)
    parser.add_argument("--strength-trace", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prune", action="store_true", help="add the pruned hard-sharing row")
    parser.add_argument("--criterion", default="taylor")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--calibration-batches", type=int, default=20)
    parser.add_argument("--only", default="", help="semicolon-separated row names to (re)run; rows "
                        "already in --out are kept")
    parser.add_argument("--out", default="benchmarks/results/multitask_sharing.json")
    return parser.parse_args()


def data(args: argparse.Namespace) -> tuple:
    """(source, (train set, validation loader), train-eval loader, test loader).

    Validation is the source's carved split (pairs of MNIST training images held out of the
    training pairs): it picks each model's best epoch and guards the pruning. The test pairs
    come from MNIST's test images and only report.
    """
    from torch.utils.data import DataLoader

    source = get_source("multi-mnist", root=args.root, train_size=args.train_size,
                        val_size=args.val_size, seed=args.seed, download=False)
    loaders = (source.train, DataLoader(source.val, batch_size=512))
    return (source, loaders, DataLoader(source.train, batch_size=512),
            DataLoader(source.test, batch_size=512))


def main() -> None:
    args = parse_args()
    source, loaders, train_eval, test = data(args)
    only = [n.strip() for n in args.only.split(";") if n.strip()]
    settings = {k: v for k, v in vars(args).items()}
    settings.update(backbone=BACKBONE, head_hidden=HEAD_HIDDEN, train_images=len(source.train),
                    val_images=len(source.val), test_images=len(source.test),
                    splits={"selection": "val", "reported": "test", **source.splits},
                    torch_threads=torch.get_num_threads())
    rows, trained = [], {}
    for name, (model_name, kwargs) in variants(args.strength_l2, args.strength_trace).items():
        if only and name not in only:
            continue
        console.print(f"[bold]{name}[/bold]")
        model, seconds = train_variant(model_name, kwargs, loaders, args)
        trained[name] = model
        rows = merge(Path(args.out), [row(name, model, train_eval, test, seconds)], settings)
        console.print(rows[-1])
    if args.prune and "hard sharing" in trained:
        pruned = pruned_row(trained["hard sharing"], loaders, train_eval, test, args)
        rows = merge(Path(args.out), [pruned], settings)
    print_table(rows)
    print(markdown_table(rows))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
