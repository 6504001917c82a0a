"""Deployment benchmark: baseline / pruned to 50% MACs / int8 / pruned + int8, in every runtime
that works here (torch eager, ONNX Runtime, ExecuTorch XNNPACK), one thread, batch 1.

Two kinds of case:
- `digits`: the demo-sized MobileNetV2 (width 0.5, small input, 16 px) trained on scikit-learn's
  bundled digits (real data), pruned by leannet to 50% MACs with channel counts rounded to 8
  (taylor, fine-tuned, 1-point guard); accuracy of every deployed file on the validation split.
- `mobilenet_v2_224`, `resnet18_224` (random weights, latency only): pruned by leannet (l1) to
  50% MACs with widths rounded to 16, and with irregular widths (round_to 1) to show alignment;
  int8 calibrated on real CIFAR-10 images resized to 224 when ../shared/data/cifar10 exists.

Every latency is `leannet.measure.time_latencies` (median, IQR, min-max): all files of a case
are built first, then timed together in interleaved rounds, so load from other jobs on the
machine hits every row alike and the ratios are fair. JSON is written per case; run one case
per call to stay short:

    nice -n 10 python benchmarks/deploy.py --case digits --out benchmarks/results/deploy_digits.json
    (or `--model-dirs TRAINED PRUNED` for model folders made by `leannet train` / `prune`)
    nice -n 10 python benchmarks/deploy.py --case mobilenet_v2_224 \
        --out benchmarks/results/deploy_mobilenet_v2_224.json
    nice -n 10 python benchmarks/deploy.py --case mobilenet_v2_224 --variants irregular \
        --append --out benchmarks/results/deploy_mobilenet_v2_224.json
    nice -n 10 python benchmarks/deploy.py --case resnet18_224 \
        --out benchmarks/results/deploy_resnet18_224.json
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from rich.console import Console
from rich.table import Table
from torch import nn

from leannet.jobs.deploy import speedups
from leannet.deploy.matrix import build_matrix
from leannet.files import atomic_write_json
from leannet.measure import count_macs, count_params, time_latencies
from leannet.models import create_model
from leannet.prune import Pruner, Target

console = Console(width=160)
RUNTIMES = ("torch", "onnxruntime", "executorch")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _prune(model: nn.Module, example: torch.Tensor, round_to: int) -> nn.Module:
    pruned = copy.deepcopy(model)
    pruner = Pruner(pruned, example, criterion="l1")
    pruner.apply(pruner.plan(Target(macs=0.5, round_to=round_to)), verify=False)
    return pruned.eval()


def _calibration(size: int) -> tuple[list[torch.Tensor], str]:
    """Real images for int8 ranges: CIFAR-10 train resized to `size`, else random (stated)."""
    files = sorted((SHARED / "cifar10" / "train").glob("*/*.jpg"))[::500][:64]
    if files:
        from PIL import Image

        images = torch.stack([torchvision.transforms.functional.to_tensor(
            Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files])
        images = (images - images.mean((0, 2, 3), keepdim=True)) / images.std((0, 2, 3),
                                                                             keepdim=True)
        return list(images.split(16)), f"{len(files)} cifar10 train images resized to {size}"
    return [torch.randn(16, 3, size, size) for _ in range(4)], "random (cifar10 absent)"


def latency_case(name: str, build: Callable[[], nn.Module], size: int, args, rows: list) -> None:
    """Baseline and pruned variants of a random-weight model at `size` px, every runtime."""
    torch.manual_seed(0)
    base = build().eval()
    example = torch.randn(1, 3, size, size)
    calibration, calibrated_on = _calibration(size)
    builders = {"baseline": lambda: base,
                "pruned 50% MACs, round 16": lambda: _prune(base, example, 16),
                "pruned 50% MACs, irregular": lambda: _prune(base, example, 1)}
    chosen = {"baseline": "baseline", "round16": "pruned 50% MACs, round 16",
              "irregular": "pruned 50% MACs, irregular"}
    built, items = [], {}
    for variant in [chosen[v] for v in args.variants.split(",")]:
        model = builders[variant]()
        results, timed = build_matrix(model, example, RUNTIMES, ("fp32", "int8"),
                                      threads=args.threads, calibration=calibration,
                                      on_stage=lambda s, v=variant: console.print(f"{name} {v}: {s}"))
        items |= {(len(built), i): item for i, item in timed.items()}
        built.append((variant, model, results))
    # every file of every variant timed together, in interleaved rounds: fair ratios under load
    console.print(f"{name}: timing {len(items)} files together")
    for (v, i), latency in time_latencies(items, threads=args.threads, runs=args.runs,
                                          rounds=args.rounds).items():
        built[v][2][i]["latency"] = latency.to_dict()
    for variant, model, results in built:
        rows.append({"case": name, "variant": variant, "params": count_params(model),
                     "macs": count_macs(model, example), "calibration": calibrated_on,
                     "threads": args.threads, "runtimes": _slim(results),
                     "speedups": speedups(results), "timing": "interleaved across variants"})
    atomic_write_json(args.out, rows)


def digits_case(args, rows: list) -> None:
    """The demo model trained on digits and pruned with rounding to 8 (or the two model folders
    given by --model-dirs), every runtime x precision scored on the validation split, all files
    timed together."""
    from leannet.deploy.quantize import calibration_batches, quantize_ptq
    from leannet.deploy.score import evaluate_session
    from leannet.jobs.prune import guard_metrics, open_workbench
    from leannet.train.fit import evaluate

    folders = args.model_dirs or _train_and_prune()
    built, items = [], {}
    for variant, folder in zip(("baseline", "pruned 50% MACs, round 8"), folders):
        bench = open_workbench(Path(folder), "digits", None, batch_size=64)
        model, task = bench.model.eval(), bench.task
        example = torch.zeros(1, *model.leannet_config["input_shape"])
        calibration = calibration_batches(bench.train_loader, 8)
        quantized = quantize_ptq(model, example, calibration)

        def score(session, model=model, bench=bench):
            return guard_metrics(bench.task, evaluate_session(session, model, bench.val_loader,
                                                              bench.task))

        results, timed = build_matrix(model, example, RUNTIMES, ("fp32", "int8"),
                                      threads=args.threads, calibration=calibration,
                                      check_inputs=next(iter(bench.val_loader))[0][:64],
                                      evaluate=score, quantized=quantized,
                                      on_stage=lambda s, v=variant: console.print(f"digits {v}: {s}"))
        items |= {(len(built), i): item for i, item in timed.items()}
        built.append((variant, model, example, results, {
            "fp32_metrics": guard_metrics(task, evaluate(model, bench.val_loader, task)),
            "int8_reference_metrics": guard_metrics(task, evaluate(quantized, bench.val_loader,
                                                                   task))}))
    console.print(f"digits: timing {len(items)} files together")
    for (v, i), latency in time_latencies(items, threads=args.threads, runs=args.runs,
                                          rounds=args.rounds).items():
        built[v][3][i]["latency"] = latency.to_dict()
    for variant, model, example, results, metrics in built:
        rows.append({"case": "digits", "variant": variant, "params": count_params(model),
                     "macs": count_macs(model, example),
                     "calibration": "digits train, 8 batches of 64", "threads": args.threads,
                     **metrics, "runtimes": _slim(results), "speedups": speedups(results),
                     "timing": "interleaved across variants"})
    atomic_write_json(args.out, rows)


def alignment_case(args, rows: list) -> None:
    """Which widths each runtime's kernels like: one MobileNetV2-like block at several widths,
    time per MAC relative to the best width (the basis of each runtime's channel_multiples)."""
    from leannet.deploy.alignment import measure_alignment

    for runtime in ("onnxruntime", "executorch"):
        for precision in ("fp32", "int8"):
            console.print(f"alignment: {runtime} {precision}")
            rows.append({"case": "alignment", **measure_alignment(
                runtime, precision, threads=args.threads, runs=args.runs, rounds=args.rounds)})
            atomic_write_json(args.out, rows)


def depth_case(args, rows: list) -> None:
    """Depth pruning vs width pruning of the demo-sized MobileNetV2 (width 0.5, 64 px): the
    same model with N residual blocks removed, and width-pruned (round 8) to the same MACs,
    every file timed together in each runtime."""
    from leannet.prune.depth import plan_depth, remove_blocks

    torch.manual_seed(0)
    base = create_model("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5,
                        image_size=64).eval()
    example = torch.randn(1, 3, 64, 64)
    calibration, calibrated_on = _calibration(64)
    variants: dict[str, nn.Module] = {"baseline": base}
    for blocks in (3, 6):
        shallow = remove_blocks(copy.deepcopy(base), plan_depth(base, calibration[:1], blocks))
        variants[f"depth: {blocks} blocks removed"] = shallow
        fraction = count_macs(shallow, example) / count_macs(base, example)
        pruned = copy.deepcopy(base)
        pruner = Pruner(pruned, example, criterion="l1")
        pruner.apply(pruner.plan(Target(macs=fraction, round_to=8)), verify=False)
        variants[f"width: same MACs as {blocks} blocks, round 8"] = pruned.eval()
    built, items = [], {}
    for variant, model in variants.items():
        results, timed = build_matrix(model, example, args.runtimes.split(","), ("fp32", "int8"),
                                      threads=args.threads, calibration=calibration,
                                      on_stage=lambda s, v=variant: console.print(f"depth {v}: {s}"))
        items |= {(len(built), i): item for i, item in timed.items()}
        built.append((variant, model, results))
    for (v, i), latency in time_latencies(items, threads=args.threads, runs=args.runs,
                                          rounds=args.rounds).items():
        built[v][2][i]["latency"] = latency.to_dict()
    for variant, model, results in built:
        rows.append({"case": "depth_mobilenet_v2_small", "variant": variant,
                     "params": count_params(model), "macs": count_macs(model, example),
                     "calibration": calibrated_on, "threads": args.threads,
                     "runtimes": _slim(results), "speedups": speedups(results),
                     "timing": "interleaved across variants"})
    atomic_write_json(args.out, rows)


def detector_case(args, rows: list) -> None:
    """The v3 detector (MobileNetV2 x0.25, 64 px) trained on digits-detect, one model per seed,
    through the product path: `leannet train` then `leannet quantize` (DeployJob), so the rows
    are what a user gets: mAP@0.5 of every deployed file on the test split (--canvases / 4
    canvases of held-out digits), int8 by PT2E PTQ on 8 training batches of 64, each seed's
    files timed together."""
    from functools import partial

    from leannet.data import registry
    from leannet.data.detection import digits_detect
    from leannet.jobs.deploy import DeployJob, run_deploy_job
    from leannet.jobs.train import TrainJob, run_train

    # a CPU-sized digits-detect (real digits, fewer canvases), for training and deployment alike
    entry = registry.list_sources()["digits-detect"]
    registry._SOURCES["digits-detect"] = registry.SourceEntry(
        partial(digits_detect, num_train=args.canvases, num_val=args.canvases // 4),
        entry.description, entry.available)
    work = Path(tempfile.mkdtemp(prefix="leannet-deploy-detect-"))
    for seed in range(args.seeds):
        console.print(f"detect_v3 seed {seed}: training {args.epochs} epochs")
        trained = run_train(TrainJob(model="mobilenet_v2", data="digits-detect", image_size=64,
                                     width_mult=0.25, head="v3", epochs=args.epochs,
                                     batch_size=32, seed=seed, out=work / f"train{seed}"),
                            progress=False)
        result = run_deploy_job(DeployJob(
            Path(trained["model_dir"]), work / f"deploy{seed}", runtimes=RUNTIMES,
            threads=args.threads, runs=args.runs, seed=seed),
            on_stage=lambda s, seed=seed: console.print(f"detect_v3 seed {seed}: {s}"))
        example = torch.zeros(result["input_shape"])
        rows.append({"case": "detect_v3", "variant": f"seed {seed}", "seed": seed,
                     "params": result["params"], "macs": result["macs"],
                     "train_seconds": trained["seconds"], "epochs": args.epochs,
                     "train_test_metrics": trained["test_metrics"],
                     "fp32_metrics": result["fp32_metrics"],
                     "int8_reference_metrics": result.get("int8_reference_metrics"),
                     "metrics_split": result.get("metrics_split"),
                     "canvases": {"train": args.canvases, "val": args.canvases // 4,
                                  "test": args.canvases // 4},
                     "calibration": "digits-detect train, 8 batches of 64",
                     "threads": args.threads, "input_shape": list(example.shape),
                     "runtimes": _slim(result["runtimes"]), "speedups": result["speedups"],
                     "timing": "interleaved within a seed"})
        atomic_write_json(args.out, rows)


def _train_and_prune() -> list[Path]:
    """The demo's training recipe, then leannet prune to 50% MACs, widths rounded to 8."""
    from leannet.jobs.demo import DemoConfig, train_stage
    from leannet.jobs.prune import PruneJob, run_prune_job

    work = Path(tempfile.mkdtemp(prefix="leannet-deploy-bench-"))
    train_stage(work, DemoConfig(), progress=False)
    job = PruneJob(work / "model", "digits", work / "pruned", criterion="taylor",
                   target={"macs": 0.5}, max_drop=0.01, steps=2, finetune_epochs=3, lr=0.001,
                   optimizer="adamw", round_to=8, seed=0)
    return [work / "model", Path(run_prune_job(job)["model"])]


def _slim(results: list[dict]) -> list[dict]:
    """What the table needs from each deployed row."""
    keep = ("runtime", "precision", "latency", "size_bytes", "parity", "agreement", "metrics",
            "skipped")
    return [{k: r[k] for k in keep if k in r} for r in results]


def _cell(row: dict) -> str:
    latency = row.get("latency")
    return (f"{latency['median_ms']:.3g} ({latency['q1_ms']:.3g}-{latency['q3_ms']:.3g})"
            if latency else "-")


def _accuracy(row: dict) -> str:
    return f"{next(iter(row['metrics'].values())):.4f}" if row.get("metrics") else "-"


def print_table(rows: list[dict]) -> None:
    table = Table(title="deploy benchmark: median ms (IQR), 1 thread, batch 1")
    for column in ("case", "variant", "MACs", "runtime", "fp32 ms", "int8 ms", "int8/fp32 x",
                   "vs baseline fp32 x", "accuracy fp32 / int8"):
        table.add_column(column)
    baseline = {(r["case"], x["runtime"]): x["latency"]["median_ms"] for r in rows
                if r["variant"] == "baseline" for x in r["runtimes"]
                if x.get("precision") == "fp32" and "latency" in x}
    for row in rows:
        by = {(x["runtime"], x["precision"]): x for x in row["runtimes"]}
        for runtime in RUNTIMES:
            fp32, int8 = by.get((runtime, "fp32"), {}), by.get((runtime, "int8"), {})
            cell = _cell
            best = int8 if "latency" in int8 else fp32
            ref = baseline.get((row["case"], runtime))
            acc = _accuracy
            table.add_row(row["case"], row["variant"], f"{row['macs'] / 1e6:.1f}M", runtime,
                          cell(fp32), cell(int8),
                          (f"{fp32['latency']['median_ms'] / int8['latency']['median_ms']:.2f}"
                           if "latency" in fp32 and "latency" in int8 else "-"),
                          (f"{ref / best['latency']['median_ms']:.2f}"
                           if ref and "latency" in best else "-"),
                          f"{acc(fp32)} / {acc(int8)}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True,
                        choices=["digits", "mobilenet_v2_224", "mobilenet_v2_small", "resnet18_224",
                                 "alignment", "depth", "detect_v3"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="depth case: runtimes to deploy to (comma-separated).")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="Interleaved timing rounds.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="baseline,round16",
                        help="Latency cases: baseline, round16, irregular (comma-separated).")
    parser.add_argument("--model-dirs", nargs=2, type=Path, default=None,
                        help="digits: trained and pruned model folders (skips training).")
    parser.add_argument("--seeds", type=int, default=3, help="detect_v3: models trained.")
    parser.add_argument("--epochs", type=int, default=5, help="detect_v3: training epochs.")
    parser.add_argument("--canvases", type=int, default=4000,
                        help="detect_v3: training canvases (validation and test get a quarter).")
    parser.add_argument("--append", action="store_true", help="Add rows to an existing --out.")
    parser.add_argument("--print-only", action="store_true", help="Table from an existing --out.")
    args = parser.parse_args()
    if args.print_only:
        print_table(json.loads(args.out.read_text()))
        return
    rows: list[dict[str, Any]] = (json.loads(args.out.read_text())
                                  if args.append and args.out.is_file() else [])
    if args.case == "alignment":
        alignment_case(args, rows)
        return
    if args.case == "detect_v3":
        detector_case(args, rows)
    elif args.case == "depth":
        depth_case(args, rows)
    elif args.case == "digits":
        digits_case(args, rows)
    elif args.case == "mobilenet_v2_224":
        latency_case(args.case, lambda: create_model("mobilenet_v2", num_classes=1000), 224,
                     args, rows)
    elif args.case == "mobilenet_v2_small":
        latency_case(args.case, lambda: create_model(
            "mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5, image_size=64),
            64, args, rows)
    else:
        latency_case(args.case, lambda: torchvision.models.resnet18(num_classes=1000), 224,
                     args, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
