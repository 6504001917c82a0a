"""Pooling: max vs average vs strided convolution vs none, on Fashion-MNIST and CIFAR-10.

The seed says max pooling "works better in practice" than average pooling, and that pooling cuts
parameters and computation and controls overfitting. Four twins of leannet's `simple_cnn`
(conv3x3(32) -> down -> conv3x3(64) -> down -> flatten -> Linear(128) -> Linear(10)), where
"down" is a 2x2 max pool, a 2x2 average pool, the conv itself at stride 2 (the all-convolutional
net's replacement), or nothing. Max and average are the registry model; the other two are built
here from `leannet.nn` blocks. Each is trained by `fit` with the same seeded batches, the best
epoch chosen on a validation split carved from the training set, then scored on test.

    nice -n 10 python benchmarks/evidence/pooling.py --datasets fashion-mnist   # pooling_fashion-mnist.*
    nice -n 10 python benchmarks/evidence/pooling.py --datasets cifar10         # pooling_cifar10.*

(one dataset per command writes docs/benchmarks/evidence/pooling_<dataset>.{json,md,png}, so the
two can run side by side; both in one command write pooling.*)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import (figure_path, load_splits, machine, markdown, mean_std, pm,  # noqa: E402
                    separated, train_select_test, write)
from leannet.measure import count_macs, count_params  # noqa: E402
from leannet.models import create_model  # noqa: E402
from leannet.nn import ConvBNAct  # noqa: E402
from leannet.train import ClassificationTask  # noqa: E402

POOLS = ["max", "avg", "strided", "none"]
CHANNELS = (32, 64)


class DownCNN(nn.Module):
    """simple_cnn's shape with the 2x2 pool replaced by a stride-2 conv, or removed."""

    def __init__(self, down: str, in_channels: int, image_size: int, classes: int = 10,
                 hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, previous = image_size, in_channels
        for width in CHANNELS:
            stride = 2 if down == "strided" else 1
            layers.append(ConvBNAct(previous, width, 3, stride))
            previous, size = width, (size + 1) // 2 if stride == 2 else size
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(previous * size * size, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


def build(pool: str, in_channels: int, image_size: int) -> nn.Module:
    if pool in ("max", "avg"):
        return create_model("simple_cnn", in_channels=in_channels, image_size=image_size,
                            channels=list(CHANNELS), pool=pool)
    return DownCNN(pool, in_channels, image_size)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.4))
    for ax, (dataset, rows) in zip(axes if len(results) > 1 else [axes], results.items()):
        pools = [p for p in POOLS if "test" in rows.get(p, {})]
        xs = range(len(pools))
        ax.bar([x - 0.2 for x in xs], [100 * rows[p]["test"]["mean"] for p in pools], 0.4,
               yerr=[100 * rows[p]["test"]["std"] for p in pools], label="test accuracy")
        ax.bar([x + 0.2 for x in xs], [100 * rows[p]["gap"]["mean"] for p in pools], 0.4,
               yerr=[100 * rows[p]["gap"]["std"] for p in pools], label="train-test gap")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{p}\n{rows[p]['params'] / 1e3:.0f}k p, {rows[p]['macs'] / 1e6:.1f}M MAC"
                            for p in pools], fontsize=7)
        ax.set_title(dataset)
        ax.set_ylabel("%")
    axes_list = axes if len(results) > 1 else [axes]
    axes_list[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "cifar10"])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pools", nargs="+", default=POOLS, choices=POOLS,
                        help="a subset writes pooling_<dataset>_<pools>.json, for --merge")
    parser.add_argument("--part", default="", help="a suffix for the part's file name (e.g. a seed)")
    parser.add_argument("--merge", action="store_true",
                        help="combine the pooling_<dataset>_<pools>.json parts of --datasets")
    args = parser.parse_args()
    if args.merge:
        return merge(args)
    results: dict = {}
    raw: list[dict] = []
    for dataset in args.datasets:
        results[dataset] = {}
        for pool in args.pools:
            runs = []
            for seed in args.seeds:
                splits = load_splits(dataset, args.train, args.val, args.test, seed=seed)
                torch.manual_seed(seed)
                model = build(pool, splits.in_channels, splits.image_size)
                scores = train_select_test(model, splits, ClassificationTask(), epochs=args.epochs,
                                           seed=seed)
                runs.append(scores)
                raw.append({"dataset": dataset, "pool": pool, "seed": seed, **scores})
                print(dataset, pool, seed, f"test {scores['test']['accuracy']:.4f}", flush=True)
            shape = (1, splits.in_channels, splits.image_size, splits.image_size)
            results[dataset][pool] = {"params": count_params(model),
                                      "macs": count_macs(model, shape), **summarise(runs)}
    if args.pools != POOLS or args.part:
        part = f"pooling_{args.datasets[0]}_{'-'.join(args.pools)}{args.part}"
        write(part, {"machine": machine(), "settings": vars(args), "channels": CHANNELS,
                     "results": results, "runs": raw}, part)
        return
    finish(results, raw, vars(args))


def summarise(runs: list[dict]) -> dict:
    """Mean ± std of val, test, train accuracy and the train-test gap over seeds."""
    return {"test": mean_std([r["test"]["accuracy"] for r in runs]),
            "val": mean_std([r["val"]["accuracy"] for r in runs]),
            "train": mean_std([r["train"]["accuracy"] for r in runs]),
            "gap": mean_std([r["train"]["accuracy"] - r["test"]["accuracy"] for r in runs])}


def merge(args: argparse.Namespace) -> None:
    """Combine the per-pool parts of each dataset into one result."""
    from common import OUT

    results: dict = {}
    raw: list = []
    settings: dict = {}
    seeds: set = set()
    for dataset in args.datasets:
        results[dataset] = {}
        for path in sorted(OUT.glob(f"pooling_{dataset}_*.json")):
            part = json.loads(path.read_text())
            for pool, r in part["results"][dataset].items():
                results[dataset][pool] = {"params": r["params"], "macs": r["macs"]}
            raw += part["runs"]
            settings = part["settings"]
        for pool in POOLS:  # statistics from the runs of every part (parts may split seeds)
            runs = [r for r in raw if r["dataset"] == dataset and r["pool"] == pool]
            if not runs:
                print(f"{dataset}: no part holds {pool}; its row is left out", flush=True)
                continue
            seeds |= {r["seed"] for r in runs}
            results[dataset][pool].update(summarise(runs))
    settings["datasets"] = args.datasets
    settings["seeds"] = sorted(seeds)
    finish(results, raw, settings)


def finish(results: dict, raw: list, settings: dict) -> None:
    rows = []
    for dataset, by_pool in results.items():
        for pool in [p for p in POOLS if p in by_pool]:
            r = by_pool[pool]
            rows.append([dataset, pool, f"{r['params']:,}", f"{r['macs']:,}", pm(r["val"]),
                         pm(r["test"]), pm(r["train"]), pm(r["gap"])])
    verdicts = []
    for dataset, by_pool in results.items():
        a, b = by_pool["max"]["test"], by_pool["avg"]["test"]
        verdicts.append(f"{dataset}: max {pm(a)} vs avg {pm(b)}: "
                        + ("separated by more than the spread" if separated(a, b)
                           else "inside the spread (not supported by these runs)"))
    table = (f"{settings['train']} train / {settings['val']} val (carved from train, per seed) / "
             f"{settings['test']} test images, {settings['epochs']} epochs, AdamW 2e-3 cosine, "
             f"batch 128, no augmentation, seeds {settings['seeds']}; accuracy %, mean ± std; "
             "gap = train - test accuracy.\n\n"
             + markdown(["dataset", "down-sampling", "params", "MACs", "val acc", "test acc",
                         "train acc", "gap"], rows, "llrrrrrr")
             + "\n\n" + "\n".join(f"- {v}" for v in verdicts))
    datasets = list(results)
    name = "pooling" if len(datasets) > 1 else f"pooling_{datasets[0]}"
    plot(results, figure_path(name))
    write(name, {"machine": machine(), "settings": settings, "channels": CHANNELS,
                 "results": results, "runs": raw, "max_vs_avg": verdicts}, table)


if __name__ == "__main__":
    main()
