"""What the claims cost, counted (no training): params and MACs of the pooling variants, the
bottleneck widths, and MobileNet v1 against its full-convolution twin at 32 and 224 px, with the twins' latency.

These answer the cost half of three claims exactly ("pooling reduces parameters and computation",
"a bottleneck compresses at little cost", "depthwise separable is 8-9x cheaper"); the accuracy
half needs the trained experiments (pooling.py, bottleneck.py).

    nice -n 10 python benchmarks/evidence/costs.py        # seconds
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import pooling  # noqa: E402
from bottleneck import WIDTHS, full_conv_twin  # noqa: E402
from common import machine, markdown, write  # noqa: E402
from conv_algorithms import cpu_latencies  # noqa: E402
from leannet.measure import Timed, count_macs, count_params, latency_from_dict, time_latencies  # noqa: E402
from leannet.models import create_model  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    pools = []
    for dataset, channels, size in (("fashion-mnist", 1, 28), ("cifar10", 3, 32)):
        for pool in pooling.POOLS:
            model = pooling.build(pool, channels, size)
            pools.append({"dataset": dataset, "down": pool, "params": count_params(model),
                          "macs": count_macs(model, (1, channels, size, size))})
    widths = []
    for width in WIDTHS:
        model = create_model("simple_cnn", in_channels=1, image_size=28, channels=[32, 64],
                             bottleneck=width)
        widths.append({"bottleneck": width, "params": count_params(model),
                       "macs": count_macs(model, (1, 1, 28, 28)),
                       "fc1_params": count_params(model.fc1)})
    twins = []
    for width, size, classes in ((0.25, 32, 10), (0.25, 224, 1000), (0.5, 224, 1000),
                                 (1.0, 224, 1000)):
        a = create_model("mobilenet_v1", num_classes=classes, width_mult=width)
        b = full_conv_twin(create_model("mobilenet_v1", num_classes=classes, width_mult=width))
        shape = (1, 3, size, size)
        twins.append({"width_mult": width, "image_size": size, "separable_params": count_params(a),
                      "full_params": count_params(b), "separable_macs": count_macs(a, shape),
                      "full_macs": count_macs(b, shape)})
    latencies = []  # weights do not change the time: untrained twins, batch 1, one thread
    for width, size in ((0.25, 32), (0.5, 224)):
        a = create_model("mobilenet_v1", num_classes=10, width_mult=width).eval()
        b = full_conv_twin(create_model("mobilenet_v1", num_classes=10, width_mult=width)).eval()
        x = torch.randn(1, 3, size, size)
        runs = 30 if size == 32 else 8
        with torch.no_grad():
            items = {k: Timed(lambda m=m, x=x: m(x), "torch", "fp32", 1)
                     for k, m in (("sep", a), ("full", b))}
            wall = time_latencies(items, threads=1, runs=runs, warmup=2, rounds=2, warn=False)
            cpu = cpu_latencies(items, runs=runs, warmup=1, rounds=2)
        latencies.append({"width_mult": width, "image_size": size,
                          "wall": {k: v.to_dict() for k, v in wall.items()},
                          "cpu": {k: v.to_dict() for k, v in cpu.items()}})
    base = {r["dataset"]: r for r in pools if r["down"] == "max"}
    table = ("Pooling variants (simple_cnn 32, 64 -> Linear 128 -> 10):\n\n"
             + markdown(["dataset", "down-sampling", "params", "MACs", "params vs max", "MACs vs max"],
                        [[r["dataset"], r["down"], f"{r['params']:,}", f"{r['macs']:,}",
                          f"{r['params'] / base[r['dataset']]['params']:.2f}x",
                          f"{r['macs'] / base[r['dataset']]['macs']:.2f}x"] for r in pools], "llrrrr")
             + "\n\nBottleneck widths (Fashion-MNIST, 1x1 conv before flatten):\n\n"
             + markdown(["bottleneck", "params", "of which fc1", "MACs"],
                        [["none" if r["bottleneck"] is None else r["bottleneck"], f"{r['params']:,}",
                          f"{r['fc1_params']:,}", f"{r['macs']:,}"] for r in widths])
             + "\n\nMobileNet v1 vs its full-convolution twin:\n\n"
             + markdown(["width", "input", "separable MACs", "full MACs", "MACs ratio",
                         "params ratio"],
                        [[r["width_mult"], f"{r['image_size']} px", f"{r['separable_macs']:,}",
                          f"{r['full_macs']:,}", f"{r['full_macs'] / r['separable_macs']:.2f}x",
                          f"{r['full_params'] / r['separable_params']:.2f}x"] for r in twins])
             + "\n\nLatency of the twins (batch 1, one torch thread, median (IQR) ms; wall time by "
             "`time_latencies`, and the thread's CPU time, which the machine's load does not "
             "inflate):\n\n"
             + markdown(["width", "input", "separable wall", "full wall", "wall ratio",
                         "separable CPU", "full CPU", "CPU ratio"],
                        [[r["width_mult"], f"{r['image_size']} px", _short(r["wall"]["sep"]),
                          _short(r["wall"]["full"]),
                          f"{r['wall']['full']['median_ms'] / r['wall']['sep']['median_ms']:.2f}x",
                          _short(r["cpu"]["sep"]), _short(r["cpu"]["full"]),
                          f"{r['cpu']['full']['median_ms'] / r['cpu']['sep']['median_ms']:.2f}x"]
                         for r in latencies]))
    write("costs", {"machine": machine(), "pooling": pools, "bottleneck": widths, "twins": twins,
                    "twin_latency": latencies}, table)


def _short(latency: dict) -> str:
    return latency_from_dict(latency).short()


if __name__ == "__main__":
    main()
