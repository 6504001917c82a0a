"""leannet against Torch-Pruning on CIFAR-10, like for like: same baseline, MACs target and budget.

For each model one baseline is trained (or reused from runs/bench-baselines) and pruned to the
same fraction of its MACs by pairs of methods that score channels the same way:

  - Torch-Pruning group-L1 (`GroupMagnitudeImportance(p=1)`) vs leannet `group_l1`,
  - Torch-Pruning Taylor (`GroupTaylorImportance`) vs leannet `taylor`,
  - Torch-Pruning random (`RandomImportance`) vs leannet `random` (the control),

plus leannet's own `l1`, `l2`, `apoz`, `mean_activation`, `fpgm` and `bn_scale`, each one-shot
and iterative. Every method gets the same fine-tuning budget (training images seen, split over
its steps), the same calibration images (validation batches, for data-driven criteria of both
libraries) and the same seed. Splits are honest: the validation set is carved from the training
set (stratified, split seed 0) and selects the best fine-tuning epoch; the official test set only
reports. Each seed changes the fine-tuning order, the calibration batches and the random scores
(the baseline is shared unless --baseline-per-seed).

One process per seed can run side by side (`--seeds 0`, `--seeds 1`, ... with --out per seed),
or one process runs the seeds one after the other (`--seeds 0 1 2 --out 'part-seed{seed}.json'`,
which spares a loaded machine); `--merge` joins their JSON files into
docs/benchmarks/prune_vs_torch_pruning.{json,md} with the mean +- std over seeds, and
`--earlier` tables the parts of an older schedule below it, apart.

    python benchmarks/prune_vs_torch_pruning.py --data-root ../shared/data/cifar10
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Subset

import leannet
from leannet.data import get_source
from leannet.data.splits import stratified_indices
from leannet.iterative import iterative_prune
from leannet.measure import count_macs, count_params
from leannet.prune import Target
from leannet.train.fit import evaluate, fit
from leannet.train.tasks import ClassificationTask

console = Console(width=200)
MODELS = {"resnet20": {}, "resnet56": {},
          "mobilenet_v2": {"small_input": True, "width_mult": 0.5}}
PAIRS = [("tp-group_l1", "group_l1"), ("tp-taylor", "taylor"), ("tp-random", "random")]
OWN = ["l1", "l2", "apoz", "mean_activation", "fpgm", "bn_scale"]
DATA_DRIVEN = {"taylor", "apoz", "mean_activation", "tp-taylor"}
OUT = Path("docs/benchmarks/prune_vs_torch_pruning")


def subset(dataset, size: int, seed: int):
    """A stratified subset of `size` items (all of them for 0 or a size >= the set)."""
    if not size or size >= len(dataset):
        return dataset
    _, pick = stratified_indices(dataset.labels, size / len(dataset), seed)
    return Subset(dataset, pick.tolist())


class Data:
    """The loaders of one benchmark: a training subset, validation (selects), test (reports)."""

    def __init__(self, args: argparse.Namespace) -> None:
        source = get_source(args.data, args.data_root, image_size=32, download=False,
                            val_fraction=args.val_fraction)
        self.source = source
        self.train = subset(source.train, args.train_subset, 1)
        self.val = subset(source.val, args.val_subset, 2)
        self.test = subset(source.test, args.test_subset, 3)
        self.val_loader = DataLoader(self.val, batch_size=256)
        self.test_loader = DataLoader(self.test, batch_size=256)
        self.splits = {"train": f"{len(self.train):,} of {source.splits.get('train')}",
                       "val": f"{len(self.val):,} of {source.splits.get('val')}",
                       "test": f"{len(self.test):,} of {source.splits.get('test')}"}

    def train_loader(self, seed: int, images: int | None = None, batch_size: int = 64):
        """Shuffled training batches in an order fixed by `seed`, `images` of them at most."""
        data = self.train
        if images is not None and images < len(data):
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
            data = Subset(data, order[:images].tolist())
        return DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(seed))

    def calibration(self, seed: int, batches: int, batch_size: int = 64) -> list:
        """`batches` validation batches in an order fixed by `seed` (the same for every method)."""
        loader = DataLoader(self.val, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        return [b for b, _ in zip(loader, range(batches))]


def accuracy(model, loader) -> float:
    return evaluate(model, loader, ClassificationTask())["accuracy"]


def baseline(name: str, data: Data, args, seed: int) -> tuple[torch.nn.Module, float]:
    """Train once per (schedule, seed) and keep the model folder: every method starts from it.

    Returns the model and the seconds its training took (0.0 when reused from the folder).
    """
    folder = (Path("runs/bench-baselines") / f"{args.data}-{name}-n{args.train_subset}"
              f"-e{args.baseline_epochs}-s{seed}")
    if (folder / "config.json").is_file():
        return leannet.load(folder), 0.0
    start = time.perf_counter()
    model = leannet.create_model(name, image_size=32, in_channels=3, num_classes=10,
                                 **MODELS[name])
    fit(model, data.train_loader(seed), data.val_loader, ClassificationTask(),
        args.baseline_epochs, lr=args.baseline_lr, warmup_epochs=0.3, seed=seed, progress=False,
        restore_best=True)  # the best epoch on validation
    leannet.save(model, folder)
    return model, time.perf_counter() - start


def finetuner(data: Data, images: int, lr: float, seed: int) -> Callable:
    """One pass over `images` training images, best epoch kept by validation accuracy."""
    calls = {"n": 0}

    def finetune(model):
        calls["n"] += 1
        fit(model, data.train_loader(seed * 1000 + calls["n"], images), data.val_loader,
            ClassificationTask(), 1, lr=lr, seed=None, progress=False, restore_best=True)
    return finetune


def run_leannet(base, data: Data, example, criterion: str, steps: int, args, seed: int):
    """leannet's iterative_prune with the guard off (every method lands on the target)."""
    model = copy.deepcopy(base)
    batches = data.calibration(seed, args.calib_batches)

    def calibrate(pruner):
        pruner.calibrate(batches, loss_fn=ClassificationTask().loss)

    outcome = iterative_prune(
        model, finetuner(data, args.budget // steps, args.lr, seed),
        lambda m: accuracy(m, data.val_loader), Target(macs=args.leannet_macs), example,
        criterion=criterion, schedule="equal" if steps > 1 else "oneshot", steps=steps,
        max_drop=1.0, calibrate=calibrate if criterion in DATA_DRIVEN else None, seed=seed,
        pruner_options={"global_ranking": args.ranking == "global"})
    last = [s for s in outcome.steps if s["status"] == "accepted"][-1]
    return outcome.model, last["metric_before_finetune"]


def tp_importance(method: str):
    import torch_pruning as tp

    return {"tp-group_l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "tp-taylor": lambda: tp.importance.GroupTaylorImportance(),
            "tp-random": lambda: tp.importance.RandomImportance()}[method]()


def run_torch_pruning(base, data: Data, example, method: str, steps: int, args, seed: int,
                      ratio: float):
    """Torch-Pruning 1.6 `BasePruner` (uniform ratio, classifier ignored), the same budget."""
    import torch_pruning as tp

    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    pruner = tp.pruner.BasePruner(model, example, importance=tp_importance(method),
                                  pruning_ratio=ratio, iterative_steps=steps,
                                  global_pruning=args.ranking == "global",
                                  ignored_layers=[_classifier(model)])
    finetune = finetuner(data, args.budget // steps, args.lr, seed)
    before = math.nan
    for _ in range(steps):
        if method in DATA_DRIVEN:  # Taylor needs gradients of the same calibration batches
            model.zero_grad()
            model.train()
            for inputs, labels in data.calibration(seed, args.calib_batches):
                torch.nn.functional.cross_entropy(model(inputs), labels).backward()
            model.eval()
        pruner.step()
        model.zero_grad()
        before = accuracy(model, data.val_loader)
        finetune(model)
    return model, before


def _classifier(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def tp_ratio(base, example, macs: float, ranking: str) -> float:
    """Bisect Torch-Pruning's channel ratio so that group-L1 pruning keeps `macs` of the MACs.

    With uniform ratios the architecture, and so the MACs, does not depend on the importance.
    """
    import torch_pruning as tp

    full, low, high = count_macs(base, example), 0.0, 0.95
    for _ in range(14):
        mid = (low + high) / 2
        trial = copy.deepcopy(base)
        tp.pruner.BasePruner(trial, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
                             pruning_ratio=mid, global_pruning=ranking == "global",
                             ignored_layers=[_classifier(trial)]).step()
        low, high = (mid, high) if count_macs(trial, example) > macs * full else (low, mid)
    return (low + high) / 2


def _tp_macs_fraction(base, example, ratio: float, ranking: str) -> float:
    """The fraction of MACs Torch-Pruning keeps at `ratio` (one-shot, group-L1)."""
    import torch_pruning as tp

    trial = copy.deepcopy(base)
    tp.pruner.BasePruner(trial, example, importance=tp.importance.GroupMagnitudeImportance(p=1),
                         pruning_ratio=ratio, global_pruning=ranking == "global",
                         ignored_layers=[_classifier(trial)]).step()
    return count_macs(trial, example) / count_macs(base, example)


def methods(args) -> list[tuple[str, int]]:
    """(method, steps) in the order run: one-shot pairs, leannet's own, then iterative."""
    chosen = [m for pair in PAIRS for m in pair] + OWN
    chosen = [m for m in chosen if not args.methods or m in args.methods]
    order = [(m, 1) for m in chosen] if "oneshot" in args.schedules else []
    if args.steps > 1 and "iterative" in args.schedules:
        iterative = [m for m in chosen if args.iterative == "all" or m in
                     {x for pair in PAIRS for x in pair}]
        order += [(m, args.steps) for m in iterative]
    return order


def run_seed(args, seed: int, out: Path, data: Data | None = None) -> None:
    """Every method on every model for one seed; the JSON is rewritten after each row."""
    torch.set_num_threads(args.threads)
    data = data or Data(args)
    rows: list[dict] = []
    for name in args.models:
        base, trained_s = baseline(name, data, args, seed if args.baseline_per_seed else 0)
        example = torch.randn(1, 3, 32, 32)
        base_macs = count_macs(base, example)
        ratio = tp_ratio(base, example, args.macs, args.ranking)
        # leannet aims at the fraction Torch-Pruning's ratio actually lands on: the same MACs
        landed = _tp_macs_fraction(base, example, ratio, args.ranking)
        args.leannet_macs = landed
        common = {"model": name, "seed": seed}

        def record(method: str, steps: int, model, before: float, seconds: float,
                   context=(common, example, base_macs)) -> None:
            common, example, base_macs = context
            rows.append({**common, "method": method, "steps": steps,
                         "val_acc_before_ft": None if math.isnan(before) else round(before, 4),
                         "val_acc": round(accuracy(model, data.val_loader), 4),
                         "test_acc": round(accuracy(model, data.test_loader), 4),
                         "params": count_params(model),
                         "macs_fraction": round(count_macs(model, example) / base_macs, 4),
                         "wall_s": round(seconds, 1)})
            console.print(rows[-1])
            _write(out, args, rows, data.splits)

        record("baseline", 0, base, math.nan, trained_s)  # 0.0: reused from the cache
        for method, steps in methods(args):
            start = time.perf_counter()
            if method.startswith("tp-"):
                model, before = run_torch_pruning(base, data, example, method, steps, args, seed,
                                                  ratio)
            else:
                model, before = run_leannet(base, data, example, method, steps, args, seed)
            record(method, steps, model, before, time.perf_counter() - start)


def _write(out: Path, args, rows: list[dict], splits: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(args),
                               "splits": splits, "rows": rows}, indent=2) + "\n")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sample std over seeds of each (model, method, steps)."""
    groups: dict[tuple, list[dict]] = {}
    seen = set()
    for r in rows:  # a (method, seed) run twice (two processes) counts once
        key = (r["model"], r["method"], r["steps"], r["seed"])
        if key not in seen:
            seen.add(key)
            groups.setdefault(key[:3], []).append(r)
    summary = []
    for (model, method, steps), runs in groups.items():
        entry: dict[str, Any] = {"model": model, "method": method, "steps": steps,
                                 "seeds": sorted(r["seed"] for r in runs)}
        for key in ("test_acc", "val_acc", "val_acc_before_ft", "macs_fraction", "params",
                    "wall_s"):
            values = [r[key] for r in runs  # no value (or NaN, in older parts): left out
                      if r.get(key) is not None and not math.isnan(r[key])]
            entry[key] = statistics.fmean(values) if values else math.nan
            entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        summary.append(entry)
    return sorted(summary, key=_order)


def _order(entry: dict) -> tuple:
    """Table order: baseline, the pairs one-shot (Torch-Pruning first), leannet's own criteria,
    then the iterative rows in the same order."""
    names = [m for pair in PAIRS for m in pair] + OWN
    method = entry["method"]
    return (entry["model"], entry["steps"] > 1, entry["steps"] > 0,
            names.index(method) if method in names else len(names), method)


def label(method: str, steps: int) -> str:
    library = "Torch-Pruning" if method.startswith("tp-") else "leannet"
    how = "baseline" if steps == 0 else "one-shot" if steps == 1 else f"iterative x{steps}"
    return f"{library} {method.removeprefix('tp-')} {how}".replace("leannet baseline baseline",
                                                                   "baseline")


def markdown(summary: list[dict], meta: dict) -> str:
    lines = [f"Command(s): `{c}`" for c in meta["commands"]] + [""]
    lines += [f"- {split}: {text}" for split, text in meta["splits"].items()] + [""]
    lines += ["| model | method | seeds | test acc % (mean ± std) | val acc % | val acc % before "
              "fine-tuning | MACs kept | params |", "|---|---|---|---|---|---|---|---|"]
    def pm(s: dict, key: str, digits: int) -> str:
        """`mean ± std` in %; one seed has no spread, so none is printed."""
        if math.isnan(s[key]):
            return "-"
        spread = s[key + "_std"]
        return f"{100 * s[key]:.{digits}f}" + (
            "" if math.isnan(spread) else f" ± {100 * spread:.{digits}f}")

    for s in summary:
        shared = s["steps"] == 0 and len(s["seeds"]) > 1 and s["test_acc_std"] == 0
        name = "baseline (one, shared by the seeds)" if shared else label(s["method"], s["steps"])
        lines.append(f"| {s['model']} | {name} | {len(s['seeds'])} | "
                     f"{pm(s, 'test_acc', 2)} | {pm(s, 'val_acc', 2)} | "
                     f"{pm(s, 'val_acc_before_ft', 1)} | "
                     f"{100 * s['macs_fraction']:.2f}% | {s['params']:,.0f} |")
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    """NaN (a std of one seed, no accuracy before fine-tuning) as null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _join(parts: list[Path]) -> tuple[list[dict], dict]:
    """The rows of per-seed parts (or of an earlier merged JSON) and their commands and splits."""
    rows, commands, by_model = [], [], {}
    for part in parts:
        data = json.loads(part.read_text())
        rows += data["rows"]
        commands += [c for c in data.get("commands") or [data["command"]] if c not in commands]
        for model in {r["model"] for r in data["rows"]}:
            by_model[model] = data["splits"]
    distinct = {json.dumps(v, sort_keys=True) for v in by_model.values()}
    # one schedule: its splits; models on different subsets: each model's own
    splits = next(iter(by_model.values())) if len(distinct) == 1 else {
        f"{model} {split}": text for model, value in sorted(by_model.items())
        for split, text in value.items()}
    return rows, {"commands": commands, "splits": splits}


EARLIER_TITLE = ("## Earlier, weaker schedule (superseded by the table above)\n\n"
                 "Kept for the record: near-chance baselines and a 500-image fine-tuning budget, "
                 "so its pruned rows sit at 10-25% and show little.\n")


def merge(parts: list[Path], earlier: list[Path] | None = None) -> None:
    """Join per-seed JSON files into the summary JSON and markdown table.

    `earlier`: parts of a run under a different (weaker) schedule, summarised on their own and
    written below the headline table, never mixed into its means.
    """
    rows, meta = _join(parts)
    summary = summarise(rows)
    result: dict[str, Any] = {**meta, "summary": summary, "rows": rows}
    text = markdown(summary, meta)
    if earlier:
        old_rows, old_meta = _join(earlier)
        old_summary = summarise(old_rows)
        result["earlier"] = {**old_meta, "summary": old_summary, "rows": old_rows}
        text += "\n" + EARLIER_TITLE + "\n" + markdown(old_summary, old_meta)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(_finite(result), indent=2) + "\n")
    OUT.with_suffix(".md").write_text(text)
    table = Table(title="CIFAR-10, same baseline, MACs target and fine-tuning budget")
    for column in ("model", "method", "seeds", "test acc", "MACs kept"):
        table.add_column(column, justify="right")
    for s in summary:
        table.add_row(s["model"], label(s["method"], s["steps"]), str(len(s["seeds"])),
                      f"{100 * s['test_acc']:.2f} ± {100 * s['test_acc_std']:.2f}",
                      f"{100 * s['macs_fraction']:.1f}%")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data-root", default="../shared/data/cifar10")
    parser.add_argument("--models", nargs="+", default=["resnet20"], choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--macs", type=float, default=0.5, help="fraction of MACs to keep")
    parser.add_argument("--train-subset", type=int, default=0, help="0: all training images")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--val-subset", type=int, default=0, help="0: all validation images")
    parser.add_argument("--test-subset", type=int, default=0, help="0: the whole test set")
    parser.add_argument("--baseline-epochs", type=int, default=30)
    parser.add_argument("--baseline-lr", type=float, default=0.1)
    parser.add_argument("--baseline-per-seed", action="store_true")
    parser.add_argument("--budget", type=int, default=45000,
                        help="fine-tuning budget in training images, split over the steps")
    parser.add_argument("--steps", type=int, default=3, help="steps of the iterative runs")
    parser.add_argument("--iterative", choices=("pairs", "all"), default="all")
    parser.add_argument("--schedules", nargs="+", choices=("oneshot", "iterative"),
                        default=["oneshot", "iterative"],
                        help="run only these (e.g. the iterative rows missing from earlier runs)")
    parser.add_argument("--ranking", choices=("uniform", "global"), default="uniform",
                        help="uniform: one ratio per layer (Torch-Pruning's default, so both "
                             "libraries land on the same architecture); global: one ranking")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--calib-batches", type=int, default=8,
                        help="validation batches of 64 for data-driven criteria (both libraries)")
    parser.add_argument("--methods", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="per-seed JSON, '{seed}' replaced by the seed [default: runs/...]")
    parser.add_argument("--merge", nargs="+", type=Path, help="join per-seed JSON files")
    parser.add_argument("--earlier", nargs="+", type=Path, default=None,
                        help="with --merge: parts of an earlier schedule, tabled on their own "
                             "below the headline")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.earlier)
        return
    data = Data(args)  # loaded once: the seeds of one process run one after the other
    for seed in args.seeds:
        out = Path(args.out.format(seed=seed) if args.out else f"runs/prune_vs_tp/seed{seed}.json")
        if args.out and len(args.seeds) > 1 and "{seed}" not in args.out:
            raise SystemExit("--out with several --seeds needs '{seed}' in the path")
        run_seed(args, seed, out, data)
        if args.out:  # a part: the docs table is rewritten only by --merge over every part
            console.print(f"wrote {out}; join the parts with --merge runs/prune_vs_tp/*.json")
        else:
            merge(sorted(out.parent.glob("seed*.json")))


if __name__ == "__main__":
    main()
