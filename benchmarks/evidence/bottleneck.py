"""Bottleneck width sweep, and depthwise-separable vs full-convolution twins.

Bottleneck: the seed says a 1x1 bottleneck compresses features at little cost. leannet's
`simple_cnn` (conv 32, pool, conv 64, pool) with a 1x1 bottleneck of width 4..32 (or none) before
flatten -> Linear(128) -> Linear(10), on Fashion-MNIST: accuracy against params and MACs.

Twins: the seed says depthwise-separable convolutions (MobileNet) cost about 8-9x fewer MACs for a
small loss. leannet's `mobilenet_v1` against the same network with each depthwise-separable block
replaced by one full 3x3 ConvBNAct of the same stride and widths, on CIFAR-10: MACs ratio,
params, accuracy and latency (batch 1, one thread, `time_latencies`, interleaved).

Both train with `fit`, select the epoch on a validation split carved from the training set, and
report on test.

    nice -n 10 python benchmarks/evidence/bottleneck.py                  # both parts
    nice -n 10 python benchmarks/evidence/bottleneck.py --part twins     # one part
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import (OUT, figure_path, load_splits, machine, markdown, mean_std, pm,  # noqa: E402
                    separated, train_select_test, write)
from leannet.errors import LeannetError  # noqa: E402
from leannet.measure import Timed, count_macs, count_params, time_latencies  # noqa: E402
from leannet.models import create_model  # noqa: E402
from leannet.nn import ConvBNAct, DepthwiseSeparable  # noqa: E402
from leannet.train import ClassificationTask  # noqa: E402

WIDTHS = [None, 4, 8, 16, 32]


def full_conv_twin(model: nn.Module) -> nn.Module:
    """The same network with every DepthwiseSeparable block replaced by a full 3x3 ConvBNAct of
    the block's stride and in/out widths (the 'same network with full convolutions')."""
    for name, block in list(model.features.named_children()):
        if isinstance(block, DepthwiseSeparable):
            depthwise = block[0][0]
            setattr(model.features, name, ConvBNAct(depthwise.in_channels, block.out_channels, 3,
                                                    depthwise.stride[0]))
    return model


def run_seeds(build, splits_for, seeds: list[int], epochs: int, lr: float,
              batch_size: int = 128) -> list[dict]:
    runs = []
    for seed in seeds:
        splits = splits_for(seed)
        torch.manual_seed(seed)
        model = build(splits)
        runs.append(train_select_test(model, splits, ClassificationTask(), epochs=epochs,
                                      seed=seed, lr=lr, batch_size=batch_size))
        print(f"seed {seed}: test {runs[-1]['test']['accuracy']:.4f} "
              f"({runs[-1]['seconds']} s)", flush=True)
    return runs


def summary(runs: list[dict]) -> dict:
    return {"test": mean_std([r["test"]["accuracy"] for r in runs]),
            "val": mean_std([r["val"]["accuracy"] for r in runs]),
            "gap": mean_std([r["train"]["accuracy"] - r["test"]["accuracy"] for r in runs]),
            "seconds": mean_std([r["seconds"] for r in runs])}


def bottleneck_part(args: argparse.Namespace) -> tuple[dict, str]:
    rows: dict = {}
    for width in args.widths:
        def build(splits, width=width):
            return create_model("simple_cnn", in_channels=1, image_size=28, channels=[32, 64],
                                bottleneck=width)

        runs = run_seeds(build, lambda s: load_splits("fashion-mnist", args.train, args.val,
                                                      args.test, seed=s),
                         args.seeds, args.epochs, 2e-3, args.batch_size)
        model = build(None)
        rows[str(width)] = {"params": count_params(model), "macs": count_macs(model, (1, 1, 28, 28)),
                            **summary(runs), "runs": runs}
    return bottleneck_table(rows, args)


def bottleneck_table(rows: dict, args: argparse.Namespace) -> tuple[dict, str]:
    table_rows = []
    for key, r in rows.items():
        table_rows.append(["none" if key == "None" else key, f"{r['params']:,}", f"{r['macs']:,}",
                           pm(r["val"]), pm(r["test"]), pm(r["gap"])])
    if "None" not in rows:
        return {"settings": {"train": args.train, "val": args.val, "test": args.test,
                             "epochs": args.epochs, "seeds": args.seeds,
                             "batch_size": args.batch_size}, "rows": rows,
                "verdicts": []}, ""
    base = rows["None"]
    verdicts = []
    for width in [k for k in rows if k != "None"]:
        r = rows[width]
        verdicts.append(f"width {width}: {r['params'] / base['params']:.2f}x the params, "
                        f"test {pm(r['test'])} vs {pm(base['test'])} without: "
                        + ("a difference beyond the spread" if separated(r["test"], base["test"])
                           else "inside the spread"))
    table = ("Fashion-MNIST, simple_cnn(32, 64) + 1x1 bottleneck before the classifier; "
             f"{args.train} train / {args.val} val (carved) / {args.test} test, {args.epochs} "
             f"epochs, batch {args.batch_size}, seeds {args.seeds}; accuracy %, mean ± std.\n\n"
             + markdown(["bottleneck", "params", "MACs", "val acc", "test acc", "train-test gap"],
                        table_rows) + "\n\n" + "\n".join(f"- {v}" for v in verdicts))
    return {"settings": {"train": args.train, "val": args.val, "test": args.test,
                         "epochs": args.epochs, "seeds": args.seeds,
                         "batch_size": args.batch_size}, "rows": rows,
            "verdicts": verdicts}, table


def twins_part(args: argparse.Namespace) -> tuple[dict, str]:
    kwargs = {"num_classes": 10, "width_mult": args.width, "small_input": False, "dropout": 0.0}
    builders = {"depthwise separable (mobilenet_v1)": lambda s: create_model("mobilenet_v1", **kwargs),
                "full 3x3 convolutions (twin)": lambda s: full_conv_twin(
                    create_model("mobilenet_v1", **kwargs))}
    if args.only:
        builders = {k: v for k, v in builders.items() if k.startswith(args.only)}
    rows = {}
    if args.merge_twins:
        for path in sorted(OUT.glob("twins_*.json")):
            part = json.loads(path.read_text())
            for name, r in part["rows"].items():
                rows.setdefault(name, {"params": r["params"], "macs": r["macs"], "runs": []})
                rows[name]["runs"] += r["runs"]
        for name, r in rows.items():
            r.update(summary(r["runs"]))
            r["model"] = builders[name](None)
        builders = {}
        args.seeds = sorted({s for part in OUT.glob("twins_*.json")
                             for s in json.loads(part.read_text())["settings"]["seeds"]})
    for name, build in builders.items():
        print(name, flush=True)
        runs = run_seeds(build, lambda s: load_splits("cifar10", args.twin_train, args.val,
                                                      args.test, seed=s),
                         args.seeds, args.twin_epochs, 2e-3, args.batch_size)
        model = build(None)
        rows[name] = {"params": count_params(model), "macs": count_macs(model, (1, 3, 32, 32)),
                      **summary(runs), "runs": runs, "model": model}
    if args.only:  # a part: the runs only; --merge-twins times and tabulates
        for r in rows.values():
            r.pop("model")
        return {"settings": {"width_mult": args.width, "train": args.twin_train, "val": args.val,
                             "test": args.test, "epochs": args.twin_epochs, "seeds": args.seeds,
                             "batch_size": args.batch_size}, "rows": rows}, ""
    example = torch.randn(1, 3, 32, 32)
    models = {name: r.pop("model").eval() for name, r in rows.items()}
    with torch.no_grad():
        lat = time_latencies({n: Timed(lambda m=m: m(example), "torch", "fp32", 1)
                              for n, m in models.items()}, threads=1, runs=60, rounds=5, warn=False)
    for name in rows:
        rows[name]["latency"] = lat[name].to_dict()
    sep, full = rows.values()
    ratio = full["macs"] / sep["macs"]
    ratios = []  # the claim is about ImageNet-size networks: MACs and params at 224 px, no training
    for width in (0.25, 0.5, 1.0):
        a = create_model("mobilenet_v1", num_classes=1000, width_mult=width)
        b = full_conv_twin(create_model("mobilenet_v1", num_classes=1000, width_mult=width))
        ratios.append({"width_mult": width, "separable_macs": count_macs(a, (1, 3, 224, 224)),
                       "full_macs": count_macs(b, (1, 3, 224, 224)),
                       "separable_params": count_params(a), "full_params": count_params(b)})
    ratio_rows = [[r["width_mult"], f"{r['separable_macs']:,}", f"{r['full_macs']:,}",
                   f"{r['full_macs'] / r['separable_macs']:.2f}x",
                   f"{r['full_params'] / r['separable_params']:.2f}x"] for r in ratios]
    table_rows = [[name, f"{r['params']:,}", f"{r['macs']:,}", pm(r["val"]), pm(r["test"]),
                   pm(r["gap"]), lat[name].short()] for name, r in rows.items()]
    verdict = (f"MACs ratio full / separable: {ratio:.2f}x; params {full['params'] / sep['params']:.2f}x; "
               f"latency {lat[list(rows)[1]].median_ms / lat[list(rows)[0]].median_ms:.2f}x; "
               f"test accuracy {pm(sep['test'])} (separable) vs {pm(full['test'])} (full): "
               + ("a difference beyond the spread" if separated(sep["test"], full["test"])
                  else "inside the spread"))
    table = (f"CIFAR-10, mobilenet_v1 width {args.width} (32 px input, stride-2 stem) vs its "
             f"full-convolution twin; {args.twin_train} train / {args.val} val (carved) / "
             f"{args.test} test, {args.twin_epochs} epochs, batch {args.batch_size}, seeds "
             f"{args.seeds}; latency batch 1, "
             "1 thread, median (IQR).\n\n"
             + markdown(["network", "params", "MACs", "val acc", "test acc", "train-test gap",
                         "latency ms"], table_rows) + f"\n\n- {verdict}\n\n"
             "The same twins at 224 px, 1000 classes (counted, not trained):\n\n"
             + markdown(["width", "separable MACs", "full-conv MACs", "MACs ratio", "params ratio"],
                        ratio_rows))
    return {"settings": {"width_mult": args.width, "train": args.twin_train, "val": args.val,
                         "test": args.test, "epochs": args.twin_epochs, "seeds": args.seeds},
            "rows": rows, "macs_ratio": ratio, "imagenet_ratios": ratios, "verdict": verdict}, table


def plot(bottleneck: dict | None, twins: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in (bottleneck, twins) if p is not None]
    fig, axes = plt.subplots(1, len(parts), figsize=(5.2 * len(parts), 3.6))
    axes = axes if len(parts) > 1 else [axes]
    index = 0
    if bottleneck is not None:
        ax = axes[index]
        index += 1
        for width, r in bottleneck["rows"].items():
            ax.errorbar(r["params"] / 1e3, 100 * r["test"]["mean"], yerr=100 * r["test"]["std"],
                        fmt="o", capsize=3)
            ax.annotate("none" if width == "None" else f"b={width}",
                        (r["params"] / 1e3, 100 * r["test"]["mean"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (thousands)")
        ax.set_ylabel("test accuracy %")
        ax.set_title("Fashion-MNIST: 1x1 bottleneck width")
    if twins is not None:
        ax = axes[index]
        for name, r in twins["rows"].items():
            ax.errorbar(r["macs"] / 1e6, 100 * r["test"]["mean"], yerr=100 * r["test"]["std"],
                        fmt="s", capsize=3, label=f"{name}, {r['latency']['median_ms']:.2f} ms")
        ax.set_xscale("log")
        ax.set_xlabel("MACs (millions)")
        ax.set_ylabel("test accuracy %")
        ax.set_title("CIFAR-10: separable vs full twin")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["both", "bottleneck", "twins"], default="both")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--twin-train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--twin-epochs", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--only", choices=["depthwise", "full"], default=None,
                        help="twins: train one network, write twins_<only>_<seeds>.json")
    parser.add_argument("--merge-twins", action="store_true",
                        help="twins: combine the twins_* parts, time both, write twins.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", nargs="+", default=[str(w) for w in WIDTHS],
                        help="bottleneck widths (None = no bottleneck); a subset writes "
                             "bottleneck_<widths>.json for --merge")
    parser.add_argument("--merge", action="store_true", help="combine bottleneck_<widths> parts")
    args = parser.parse_args()
    args.widths = [None if w == "None" else int(w) for w in args.widths]
    if args.merge:
        rows: dict = {}
        batch_sizes = set()
        for path in sorted(OUT.glob("bottleneck_*.json")):
            part = json.loads(path.read_text())
            rows.update(part["rows"])
            settings = part["settings"]
            # a part without the key ran at the parser's default, 32 (the None part's file
            # lacks it: the table code left it out of full sweeps)
            batch_sizes.add(settings.get("batch_size", 32))
        if len(batch_sizes) > 1:
            raise LeannetError(f"bottleneck parts ran at different batch sizes {sorted(batch_sizes)}")
        args.train, args.val, args.test = settings["train"], settings["val"], settings["test"]
        args.epochs, args.seeds = settings["epochs"], settings["seeds"]
        args.batch_size = batch_sizes.pop()
        order = [str(w) for w in WIDTHS]
        rows = {k: rows[k] for k in sorted(rows, key=order.index)}
        result, table = bottleneck_table(rows, args)
        write("bottleneck", {"machine": machine(), **result}, table)
        args.part = "none"
    elif args.part == "bottleneck" and args.widths != WIDTHS:
        result, _ = bottleneck_part(args)
        name = "bottleneck_" + "-".join(str(w) for w in args.widths)
        write(name, {"machine": machine(), **result}, name)
        return
    if args.part == "twins" and args.only:
        result, _ = twins_part(args)
        name = f"twins_{args.only}_{'-'.join(str(s) for s in args.seeds)}"
        write(name, {"machine": machine(), **result}, name)
        return
    for part in ({"both": ["bottleneck", "twins"], "none": []}.get(args.part, [args.part])):
        result, table = (bottleneck_part if part == "bottleneck" else twins_part)(args)
        write(f"{part}", {"machine": machine(), **result}, table)
    done = {p: json.loads((OUT / f"{p}.json").read_text()) for p in ("bottleneck", "twins")
            if (OUT / f"{p}.json").is_file()}
    plot(done.get("bottleneck"), done.get("twins"), figure_path("bottleneck_twins"))


if __name__ == "__main__":
    main()
