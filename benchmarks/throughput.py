"""Training throughput: images/s and achieved TFLOP/s of ResNet-20/56 and MobileNetV2 at
CIFAR-10 shapes (3x32x32, 10 classes), fp32 vs bf16 autocast vs channels-last (vs compile when
asked), 1 and 2 CPU threads, 1 process vs DDP over 2 CPU processes (gloo), and the same rows on
CUDA when a GPU is present; each against this machine's measured matmul peak at the same
precision and thread count.

One training step is leannet's own (`leannet.train.fit`'s step: autocast, GradScaler for fp16,
channels-last inputs, DDP wrapper), on random CIFAR-shaped batches: throughput does not depend
on pixel values, and reading the real set would time the disk. Training FLOPs per image are 3x
the forward FLOPs (backward = 2x forward), forward FLOPs = 2 x MACs (torch's flop counter).
Timings are medians of `--rounds` rounds of `--steps` steps after `--warmup` steps, with the
interquartile range; the peak is the median of 1024x1024 (CPU) / 8192x8192 (CUDA) matmuls.

    nice -n 10 python benchmarks/throughput.py                      # -> docs/benchmarks/throughput.json
    python benchmarks/throughput.py --models resnet20 --steps 2 --rounds 3 --no-ddp
    python benchmarks/throughput.py --device cuda --compile          # on a GPU machine
    python benchmarks/throughput.py --markdown docs/benchmarks/throughput.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp
from torch import nn

from leannet import distributed
from leannet.files import atomic_write_json, atomic_write_text
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.train.fit import AMP_DTYPES, Step, _autocast, _prepare, _wrap, check_amp
from leannet.train.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet20", "resnet56", "mobilenet_v2")
SHAPE = (3, 32, 32)


def build(name: str) -> nn.Module:
    """A CIFAR-10 model of the registry (small-input stems where the builder has them)."""
    torch.manual_seed(0)
    options: dict[str, Any] = {"num_classes": 10}
    if name == "mobilenet_v2":
        options |= {"in_channels": 3, "image_size": 32, "small_input": True}
    return create_model(name, **options)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def matmul_peak(device: torch.device, precision: str, threads: int, size: int | None = None,
                repeats: int = 7) -> float:
    """Median TFLOP/s of a square matmul at `precision` (fp32, or the bf16/fp16 dtype itself)."""
    torch.set_num_threads(threads)
    size = size or (8192 if device.type == "cuda" else 1024)
    dtype = AMP_DTYPES.get(precision, torch.float32)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e12)
    return statistics.median(rates)


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int,
               rounds: int) -> list[float]:
    """Seconds per step, one value per round (mean over that round's steps)."""
    for _ in range(warmup):
        step()
    sync(device)
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        per_round.append((time.perf_counter() - start) / steps)
    return per_round


def train_step(model: nn.Module, device: torch.device, batch: int, amp: str | None,
               channels_last: bool, compile: bool) -> Callable[[], None]:
    """One of fit's training steps on a fixed random batch (SGD, cross-entropy)."""
    dtype = check_amp(amp, device)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    runner = _wrap(model, device, compile)
    opt = make_optimizer([model], "sgd", 0.01, 5e-4, 0.9)
    how = Step(device, dtype, channels_last,
               torch.amp.GradScaler(device.type) if dtype == torch.float16 else None)
    generator = torch.Generator().manual_seed(distributed.rank())
    x = torch.randn(batch, *SHAPE, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with _autocast(device, how.dtype):
            loss = loss_fn(runner(_prepare(x, device, channels_last)), y.to(device)).float()
        opt.zero_grad(set_to_none=True)
        if how.scaler is not None:
            how.scaler.scale(loss).backward()
            how.scaler.step(opt)
            how.scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def row(model_name: str, device: torch.device, threads: int, mode: str, batch: int,
        seconds: list[float], flops_per_image: float, peak: float, processes: int = 1
        ) -> dict[str, Any]:
    """Images/s (all processes together) with IQR, achieved TFLOP/s and the share of the peak."""
    rates = sorted(processes * batch / s for s in seconds)
    q1, median, q3 = quartiles(rates)
    achieved = median * flops_per_image / 1e12
    peak_all = peak * processes
    return {"model": model_name, "device": device.type, "threads": threads, "mode": mode,
            "processes": processes, "batch_per_process": batch, "images_per_s": round(median, 2),
            "images_per_s_q1": round(q1, 2), "images_per_s_q3": round(q3, 2),
            "tflops": round(achieved, 5), "peak_tflops": round(peak_all, 4),
            "fraction_of_peak": round(achieved / peak_all, 4) if peak_all else None,
            "rounds": len(seconds)}


MODES = {"fp32": (None, False), "bf16": ("bf16", False), "channels_last": (None, True),
         "bf16+channels_last": ("bf16", True)}


def single_process(args: argparse.Namespace, device: torch.device, results: list[dict],
                   save: Callable[[], None]) -> None:
    modes = list(args.modes) + (["compile"] if args.compile else [])
    thread_counts = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    peaks: dict[tuple[str, int], float] = {}
    for threads in thread_counts:
        for precision in ("fp32", "bf16"):
            peaks[(precision, threads)] = matmul_peak(device, precision, threads)
            print(f"peak {device.type} {precision} {threads} thread(s): "
                  f"{peaks[(precision, threads)]:.3f} TFLOP/s", flush=True)
    for name in args.models:
        flops = 3 * 2 * count_macs(build(name).eval(), (1, *SHAPE))
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for mode in modes:
                amp, channels_last = MODES.get(mode, (None, False))
                try:
                    step = train_step(build(name), device, args.batch, amp, channels_last,
                                      compile=mode == "compile")
                    seconds = time_steps(step, device, args.warmup + (3 if mode == "compile"
                                                                      else 0),
                                         args.steps, args.rounds)
                except Exception as err:  # a mode this machine cannot run: say so in the table
                    results.append({"model": name, "device": device.type, "threads": threads,
                                    "mode": mode, "error": str(err).splitlines()[0][:200]})
                    save()
                    continue
                peak = peaks[("bf16" if amp == "bf16" else "fp32", threads)]
                results.append(row(name, device, threads, mode, args.batch, seconds, flops, peak))
                print(json.dumps(results[-1]), flush=True)
                save()


def _ddp_rank(rank: int, port: int, name: str, batch: int, warmup: int, steps: int, rounds: int,
              out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        step = train_step(build(name), torch.device("cpu"), batch, None, False, False)
        seconds = time_steps(step, torch.device("cpu"), warmup, steps, rounds)
        # a step ends when the slower rank ends it: take each round's maximum over ranks
        worst = [max(distributed.all_sum(torch.tensor([s if r == rank else 0.0
                                                        for r in range(2)])).tolist())
                 for s in seconds]
        if rank == 0:
            Path(out).write_text(json.dumps(worst))
    finally:
        distributed.shutdown()


def ddp_rows(args: argparse.Namespace, results: list[dict], save: Callable[[], None]) -> None:
    """1 process on 1 thread vs DDP over 2 processes of 1 thread each (gloo), fp32."""
    peak = matmul_peak(torch.device("cpu"), "fp32", 1)
    for name in args.models:
        flops = 3 * 2 * count_macs(build(name).eval(), (1, *SHAPE))
        torch.set_num_threads(1)
        step = train_step(build(name), torch.device("cpu"), args.batch, None, False, False)
        single = time_steps(step, torch.device("cpu"), args.warmup, args.steps, args.rounds)
        results.append(row(name, torch.device("cpu"), 1, "fp32 1 process", args.batch, single,
                           flops, peak))
        out = ROOT / "docs" / "benchmarks" / ".throughput_ddp.tmp"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(_ddp_rank, args=(port, name, args.batch, args.warmup, args.steps,
                                            args.rounds, str(out)), nprocs=2, join=True,
                           start_method="spawn")  # fork after a thread pool started can hang
        seconds = json.loads(out.read_text())
        out.unlink()
        results.append(row(name, torch.device("cpu"), 1, "fp32 DDP gloo", args.batch, seconds,
                           flops, peak, processes=2))
        print(json.dumps(results[-2]), json.dumps(results[-1]), flush=True)
        save()


def markdown(data: dict[str, Any]) -> str:
    lines = [f"Machine: {data['machine']}; torch {data['torch']}; batch {data['batch']} per "
             f"process; {data['rounds']} rounds x {data['steps']} steps after {data['warmup']} "
             "warm-up steps; images/s median (IQR).", "",
             "| model | device | threads | mode | processes | images/s (IQR) | TFLOP/s | "
             "peak TFLOP/s | of peak |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['device']} | {r['threads']} | {r['mode']} | 1 | "
                         f"failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['device']} | {r['threads']} | {r['mode']} | "
                     f"{r['processes']} | {r['images_per_s']:.1f} ({r['images_per_s_q1']:.1f}-"
                     f"{r['images_per_s_q3']:.1f}) | {r['tflops']:.3g} | {r['peak_tflops']:.3g} | "
                     f"{100 * r['fraction_of_peak']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "channels_last"],
                        choices=list(MODES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument("--no-ddp", action="store_true", help="skip 1 process vs DDP")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" /
                        "throughput.json")
    parser.add_argument("--markdown", type=Path, help="write the table of --out's JSON here")
    args = parser.parse_args()
    if args.markdown:
        atomic_write_text(args.markdown, markdown(json.loads(args.out.read_text())))
        return
    device = torch.device(args.device)
    data: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, "
                                       f"{os.cpu_count()} logical CPUs"
                            + (f", {torch.cuda.get_device_name(device)}"
                               if device.type == "cuda" else ""),
                            "torch": torch.__version__, "batch": args.batch,
                            "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
                            "load_average_at_start": os.getloadavg(), "rows": []}

    def save() -> None:
        atomic_write_json(args.out, data)

    if not args.no_ddp and device.type == "cpu":  # first: forks nothing, spawns 2 processes
        ddp_rows(args, data["rows"], save)
    single_process(args, device, data["rows"], save)
    data["load_average_at_end"] = os.getloadavg()
    save()
    print(markdown(data))


if __name__ == "__main__":
    main()
