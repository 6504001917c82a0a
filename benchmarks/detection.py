"""YOLO v1 / v2 / v3 heads on MobileNetV2 (width 0.5) on digits-detect, plus coco128 end to end.

Each head trains with the shared loop (`leannet.train.fit`, AdamW, warm-up + cosine) on the same
data, then the best epoch is scored (mAP@0.5, mAP@0.5:0.95 by pycocotools, digit-count accuracy)
and measured (parameters, MACs, single-thread CPU latency at batch 1). Results are written to JSON
after every run, and each trained model is saved as a model folder under --runs.

    OMP_NUM_THREADS=1 python benchmarks/detection.py --heads v3 --epochs 12 \
        --out benchmarks/results/detection_v3.json
    OMP_NUM_THREADS=1 python benchmarks/detection.py --costs \
        --out benchmarks/results/detection_costs.json
    OMP_NUM_THREADS=1 python benchmarks/detection.py --coco ../shared/data/coco128 --heads v3 \
        --epochs 10 --out benchmarks/results/detection_coco128.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.detect.setup import build
from leannet.files import atomic_write_json
from leannet.checkpoint import save
from leannet.measure import count_macs, count_params, latency_ms
from leannet.train import evaluate, fit

console = Console(width=150)


def run_head(args: argparse.Namespace, head: str) -> dict[str, Any]:
    """Train one head, keep its best epoch, and return its row."""
    data = f"yolo:{args.coco}" if args.coco else "digits-detect"
    size = args.image_size or (224 if args.coco else 96)
    options = {} if args.coco else {"num_train": args.num_train, "num_val": args.num_val}
    source = get_source(data, image_size=size, **options)
    model, task = build(source, "mobilenet_v2", {"width_mult": args.width}, head)
    train, val = make_loaders(source, args.batch_size, seed=args.seed)
    run_dir = Path(args.runs) / f"{Path(data).name}_{head}"  # history.jsonl shows progress
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    history = fit(model, train, val, task, args.epochs, optimizer="adamw", lr=args.lr,
                  weight_decay=5e-4, warmup_epochs=0.5, seed=args.seed, restore_best=True,
                  progress=not args.quiet, out_dir=run_dir)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    metrics = evaluate(model, val, task)
    save(model, run_dir / "model", metrics=metrics)
    shape = (1, source.in_channels, size, size)
    return {"data": data, "head": head, "image_size": size, "width_mult": args.width,
            "epochs": args.epochs, "train_images": len(source.train),
            "val_images": len(source.val), **{k: round(v, 4) for k, v in metrics.items()},
            "params": count_params(model), "macs": count_macs(model, shape),
            "latency_ms": round(latency_ms(model, shape, runs=50, threads=1), 3),
            "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
            "anchors": model.leannet_config["kwargs"].get("anchors"),
            "history": history}


def costs(sizes: list[int], width: float) -> list[dict[str, Any]]:
    """Parameters, MACs and single-thread CPU latency of each head at each size (no training)."""
    from leannet.models import create_model

    rows = []
    for size in sizes:
        for head in ("v1", "v2", "v3"):
            model = create_model("yolo", backbone="mobilenet_v2",
                                 backbone_kwargs={"width_mult": width}, head=head,
                                 num_classes=10, in_channels=1, image_size=size, count_classes=5)
            shape = (1, 1, size, size)
            rows.append({"head": head, "image_size": size, "params": count_params(model),
                         "macs": count_macs(model, shape),
                         "latency_ms": round(latency_ms(model, shape, runs=50, threads=1), 3)})
            console.print(rows[-1])
    return rows


def show(rows: list[dict[str, Any]]) -> None:
    """Print the results table."""
    table = Table("data", "head", "px", "mAP@0.5", "mAP@.5:.95", "count acc", "params", "MACs",
                  "CPU ms", "train wall s", "train CPU s", title="YOLO heads on MobileNetV2")
    for r in rows:
        table.add_row(r["data"], r["head"], str(r["image_size"]), f"{r['map50']:.3f}",
                      f"{r['map']:.3f}", f"{r.get('count_accuracy', float('nan')):.3f}",
                      f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}M", f"{r['latency_ms']:.2f}",
                      f"{r['train_wall_s']:.0f}", f"{r['train_cpu_s']:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=["v1", "v2", "v3"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coco", default=None, help="a YOLO-layout folder (e.g. coco128)")
    parser.add_argument("--runs", default="runs/bench_detection")
    parser.add_argument("--out", default="benchmarks/results/detection.json")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--costs", action="store_true", help="only measure each head at 64/96 px")
    args = parser.parse_args()
    out = Path(args.out)
    if args.costs:
        atomic_write_json(out, {"costs": costs([64, 96], args.width)})
        return
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    for head in args.heads:
        row = run_head(args, head)
        rows = [r for r in rows if (r["data"], r["head"]) != (row["data"], head)] + [row]
        atomic_write_json(out, {"rows": rows})
        show(rows)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
