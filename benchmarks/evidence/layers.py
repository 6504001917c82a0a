"""What layers learn: first-layer filters and feature maps of a trained CNN as pictures, and each
layer's channel importance (leannet's sensitivity analysis) as a plot.

A small CIFAR-10 CNN built from `leannet.nn` blocks with a 5x5 first layer (3x3 filters are too
small to show a shape), trained by `fit` on a carved training subset, selected on a carved
validation split; sensitivity is measured on validation, the accuracy reported on test.
One seed: these are pictures, and the sensitivity curves are per-layer, not a comparison.

    nice -n 10 python benchmarks/evidence/layers.py        # about 4 minutes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import (Batches, figure_path, load_splits, machine, markdown,  # noqa: E402
                    train_select_test, write)
from leannet.measure import count_macs, count_params  # noqa: E402
from leannet.nn import ConvBNAct, GlobalPool, make_pool  # noqa: E402
from leannet.prune.sensitivity import sensitivity_analysis  # noqa: E402
from leannet.train import ClassificationTask, evaluate  # noqa: E402


def build(in_channels: int = 3, classes: int = 10) -> nn.Sequential:
    """conv5x5(32) pool conv3x3(64) pool conv3x3(128) pool conv3x3(128) global-avg linear."""
    return nn.Sequential(
        ConvBNAct(in_channels, 32, 5), make_pool("max", 2),
        ConvBNAct(32, 64, 3), make_pool("max", 2),
        ConvBNAct(64, 128, 3), make_pool("max", 2),
        ConvBNAct(128, 128, 3), GlobalPool("avg"), nn.Linear(128, classes))


def filter_energy(weight: torch.Tensor) -> dict[str, float]:
    """How edge-like first-layer filters are: the share of each filter's energy that is not its
    mean (a flat filter is 0, a pure edge or grating 1), and the share that is colour-opponent
    (differs between the RGB channels)."""
    w = weight.detach()
    ac = (w - w.mean(dim=(1, 2, 3), keepdim=True)).pow(2).sum((1, 2, 3))
    total = w.pow(2).sum((1, 2, 3))
    colour = (w - w.mean(dim=1, keepdim=True)).pow(2).sum((1, 2, 3))
    return {"non_dc_share": float((ac / total).mean()), "colour_share": float((colour / total).mean())}


def plot_filters(weight: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = weight.detach()
    fig, axes = plt.subplots(4, 8, figsize=(6, 3.2))
    for ax, f in zip(axes.flat, w):
        f = (f - f.min()) / (f.max() - f.min() + 1e-8)
        ax.imshow(f.permute(1, 2, 0).numpy() if f.shape[0] == 3 else f[0].numpy(),
                  interpolation="nearest", cmap=None if f.shape[0] == 3 else "gray")
        ax.axis("off")
    fig.suptitle("first-layer 5x5 filters (each scaled to its own range)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_feature_maps(model: nn.Sequential, image: torch.Tensor, raw: torch.Tensor, path: Path
                      ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taps = {"conv1 (32x32)": 0, "conv2 (16x16)": 2, "conv3 (8x8)": 4, "conv4 (4x4)": 6}
    maps = {}
    x = image.unsqueeze(0)
    model.eval()
    with torch.no_grad():
        for index, layer in enumerate(model):
            x = layer(x)
            for name, tap in taps.items():
                if tap == index:
                    maps[name] = x[0]
    fig, axes = plt.subplots(len(taps), 9, figsize=(8, 4.2))
    for row, (name, fmap) in enumerate(maps.items()):
        axes[row, 0].imshow(raw.permute(1, 2, 0).numpy())
        axes[row, 0].set_title(name, fontsize=7)
        strongest = fmap.flatten(1).mean(1).argsort(descending=True)[:8]
        for col, channel in enumerate(strongest, start=1):
            axes[row, col].imshow(fmap[channel].numpy(), cmap="viridis", interpolation="nearest")
        for ax in axes[row]:
            ax.axis("off")
    fig.suptitle("feature maps of one test image: the 8 most active channels per layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_sensitivity(sens: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in sens["groups"].items():
        ax.plot([0] + sens["ratios"], [100 * sens["baseline"]] + [100 * v for v in values],
                marker="o", label=f"{name} ({sens['sizes'][name]} ch)")
    ax.set_xlabel("fraction of the layer's channels zeroed (smallest L1 first), no fine-tuning")
    ax.set_ylabel("validation accuracy %")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = load_splits("cifar10", args.train, args.val, args.test, seed=args.seed)
    torch.manual_seed(args.seed)
    model = build(splits.in_channels, splits.num_classes)
    task = ClassificationTask()
    before = filter_energy(model[0][0].weight)
    scores = train_select_test(model, splits, task, epochs=args.epochs, seed=args.seed)
    after = filter_energy(model[0][0].weight)
    val = Batches(*splits.val, 512)
    sens = sensitivity_analysis(model, lambda m: evaluate(m, val, task, "cpu")["accuracy"],
                                torch.randn(1, 3, 32, 32), ratios=(0.25, 0.5, 0.75), criterion="l1",
                                metric_name="val accuracy")
    plot_filters(model[0][0].weight, figure_path("layers_filters"))
    # a raw (un-normalised) view of the first test image for the picture
    test_x = splits.test[0][0]
    raw = test_x - test_x.amin(dim=(1, 2), keepdim=True)
    raw = raw / raw.amax(dim=(1, 2), keepdim=True)
    plot_feature_maps(model, test_x, raw, figure_path("layers_feature_maps"))
    plot_sensitivity(sens, figure_path("layers_sensitivity"))
    rows = [[name, sens["sizes"][name]] + [f"{100 * (sens['baseline'] - v):.1f}" for v in values]
            for name, values in sens["groups"].items()]
    table = (f"CIFAR-10, {args.train} train / {args.val} val (carved) / {args.test} test, "
             f"{args.epochs} epochs, seed {args.seed}: test accuracy "
             f"{100 * scores['test']['accuracy']:.1f}%, validation {100 * scores['val']['accuracy']:.1f}%"
             f" (best epoch {scores['best_epoch']}).\n\n"
             f"First-layer filters, share of energy away from the mean (edge/texture-like): "
             f"{before['non_dc_share']:.2f} at init -> {after['non_dc_share']:.2f} trained; colour-"
             f"opponent share {before['colour_share']:.2f} -> {after['colour_share']:.2f}.\n\n"
             "Validation accuracy lost (points) when a fraction of one layer's channels is zeroed:\n\n"
             + markdown(["layer group", "channels", "25%", "50%", "75%"], rows))
    write("layers", {"machine": machine(), "splits": splits.describe(), "epochs": args.epochs,
                     "seed": args.seed, "params": count_params(model),
                     "macs": count_macs(model, (1, 3, 32, 32)), "scores": scores,
                     "filters_before": before, "filters_after": after, "sensitivity": sens}, table)


if __name__ == "__main__":
    main()
