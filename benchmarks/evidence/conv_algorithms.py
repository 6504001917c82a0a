"""Convolution algorithms timed on typical ResNet / MobileNet layer shapes, against matmul peak.

Direct (torch), im2col + GEMM, FFT, Winograd F(2x2, 3x3) and the depthwise-separable replacement,
at batch 1 and 32, one thread, interleaved rounds as in `leannet.measure.time_latencies`, each
call timed by its thread's CPU time (median and IQR; see `cpu_latencies` for why).
Achieved GFLOP/s counts the direct algorithm's 2 x MACs for every full-conv algorithm (the usual
'effective' rate: FFT and Winograd do fewer multiplies) and the separable layer's own MACs for it.
Every output is checked against torch's before timing.

    nice -n 10 python benchmarks/evidence/conv_algorithms.py        # about 4 CPU-minutes

or split over processes and merged (how the committed result was made, on a busy machine):

    nice -n 10 python benchmarks/evidence/conv_algorithms.py --batches 1 --part b1
    nice -n 10 python benchmarks/evidence/conv_algorithms.py --batches 32 --shapes 0 1 2 3 --part b32a
    nice -n 10 python benchmarks/evidence/conv_algorithms.py --batches 32 --shapes 4 5 6 --part b32b
    python benchmarks/evidence/conv_algorithms.py --merge
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import conv_impl as ci  # noqa: E402
from common import OUT, figure_path, machine, markdown, write  # noqa: E402
from leannet.measure import Latency, Timed  # noqa: E402

# (name, in, out, size, stride): ResNet-18/50 stages at 224 px, a CIFAR ResNet-20 stage,
# MobileNet's stem and a late MobileNet layer
SHAPES = [
    ("ResNet 64->64 @56", 64, 64, 56, 1),
    ("ResNet 128->128 @28", 128, 128, 28, 1),
    ("ResNet 256->256 @14", 256, 256, 14, 1),
    ("ResNet 512->512 @7", 512, 512, 7, 1),
    ("ResNet-20 16->16 @32", 16, 16, 32, 1),
    ("MobileNet stem 3->32 @224 s2", 3, 32, 224, 2),
    ("MobileNet 512->512 @14", 512, 512, 14, 1),
]
ALGORITHMS = ["direct", "im2col+GEMM", "FFT", "Winograd F(2x2,3x3)", "depthwise separable"]
RTOL = 1e-3  # max |difference| / max |reference|
PEAK_N = 1024  # the matmul whose rate is the machine's peak: timed beside every layer's algorithms


def matmul_peak(threads: int) -> dict:
    """GFLOP/s of a 1024^3 fp32 matmul on this machine (torch's BLAS), median of timed runs."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.set_num_threads(threads)
    lat = cpu_latencies({"mm": Timed(lambda: a @ b, "torch", "fp32", 1)}, runs=9, warmup=2,
                        rounds=1)["mm"]
    return {"n": 1024, "gflops": 2 * 1024 ** 3 / lat.median_ms / 1e6, "latency": lat.to_dict()}


def cpu_latencies(items: dict[str, Timed], runs: int, warmup: int, rounds: int
                  ) -> dict[str, Latency]:
    """Like `time_latencies` (interleaved rounds, median and quartiles), but each call is timed
    by the calling thread's CPU time. On one torch thread every op runs in the calling thread,
    so this is the algorithm's cost; wall time on this shared 2-core machine (load 10-16 while
    these were measured) mostly measured how long the scheduler kept the process waiting."""
    times: dict[str, list[float]] = {k: [] for k in items}
    for index in range(rounds):
        share = runs // rounds + (index < runs % rounds)
        for key, item in items.items():
            for _ in range(warmup if index == 0 else 0):
                item.call()
            for _ in range(share):
                start = time.thread_time()
                item.call()
                times[key].append((time.thread_time() - start) * 1000.0)
    out = {}
    for key, values in times.items():
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out[key] = Latency(round(median, 4), round(q1, 4), round(q3, 4), round(min(values), 4),
                           round(max(values), 4), len(values), warmup, "torch",
                           "fp32, thread CPU time", 1, items[key].batch)
    return out


def check(reference: torch.Tensor, output: torch.Tensor) -> float:
    """Relative max error; raises when above RTOL (a wrong algorithm is never timed)."""
    error = float((output - reference).abs().max() / reference.abs().max())
    if not error <= RTOL:
        raise SystemExit(f"output differs from torch's by {error:.2e} (relative)")
    return error


def run_shape(name: str, c: int, o: int, size: int, stride: int, batch: int, threads: int,
              runs: int) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch, c, size, size)
    w = torch.randn(o, c, 3, 3) / (3 * c ** 0.5)
    dw, pw = torch.randn(c, 1, 3, 3) / 3, torch.randn(o, c, 1, 1) / c ** 0.5
    u = ci.winograd_weights(w)
    fw = ci.fft_weights(w, size, size)  # both transforms of the weights once per layer
    calls = {
        "direct": lambda: ci.direct(x, w, stride),
        "im2col+GEMM": lambda: ci.im2col_gemm(x, w, stride),
        "FFT": lambda: ci.fft_conv(x, w, stride, fw=fw),
        "Winograd F(2x2,3x3)": (lambda: ci.winograd_f2x2_3x3(x, w, stride, u=u)) if stride == 1 else None,
        "depthwise separable": lambda: ci.depthwise_separable(x, dw, pw, stride),
    }
    with torch.no_grad():
        reference = ci.direct(x, w, stride)
        errors = {k: check(reference, f()) for k, f in calls.items()
                  if f is not None and k != "depthwise separable"}
        errors["depthwise separable"] = check(ci.depthwise_separable_unfold(x, dw, pw, stride),
                                              calls["depthwise separable"]())
        timed = {k: Timed(f, "torch", "fp32", batch) for k, f in calls.items() if f is not None}
        a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
        timed["matmul"] = Timed(lambda: a @ b, "torch", "fp32", 1)  # the peak, under the same load
        lat = cpu_latencies(timed, runs=runs, warmup=2 if batch == 1 else 0, rounds=3)
    full = ci.conv_macs(batch, c, o, size, size, 3, stride, 1)
    sep = ci.separable_macs(batch, c, o, size, size, 3, stride, 1)
    peak = 2 * PEAK_N ** 3 / lat["matmul"].median_ms / 1e6
    rows = []
    for algorithm in ALGORITHMS:
        if algorithm not in lat:
            rows.append({"shape": name, "batch": batch, "algorithm": algorithm, "applies": False,
                         "why": "Winograd F(2x2,3x3) is for stride 1"})
            continue
        macs = sep if algorithm == "depthwise separable" else full
        t = lat[algorithm]
        rows.append({"shape": name, "batch": batch, "algorithm": algorithm, "applies": True,
                     "macs": macs, "median_ms": t.median_ms, "iqr_ms": round(t.iqr_ms, 4),
                     "latency": t.to_dict(), "gflops": 2 * macs / t.median_ms / 1e6,
                     "speedup_vs_direct": lat["direct"].median_ms / t.median_ms,
                     "peak_gflops_same_round": peak, "of_peak": 2 * macs / t.median_ms / 1e6 / peak,
                     "max_rel_error": errors[algorithm]})
    return rows


def plot(rows: list[dict], peak: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    for ax, batch in zip(axes, (1, 32)):
        width = 0.16
        for i, algorithm in enumerate(ALGORITHMS):
            values = [next((r["gflops"] for r in rows if r["shape"] == s and r["batch"] == batch
                            and r["algorithm"] == algorithm and r["applies"]), 0.0) for s in shapes]
            ax.bar([j + (i - 2) * width for j in range(len(shapes))], values, width, label=algorithm)
        ax.axhline(peak, color="k", linestyle="--", linewidth=1, label="matmul peak (median)")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([s.replace(" ", "\n", 1) for s in shapes], fontsize=6.5)
        ax.set_yscale("log")
        ax.set_title(f"batch {batch}")
    axes[0].set_ylabel("effective GFLOP/s (direct MACs x 2 / time)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--runs", type=int, default=3,
                        help="timed calls per algorithm at batch > 1; batch 1 gets 5x as many")
    parser.add_argument("--shapes", type=int, nargs="+", default=list(range(len(SHAPES))),
                        help="indices into SHAPES (to split the run over processes)")
    parser.add_argument("--part", default="", help="write conv_algorithms_<part>.json only")
    parser.add_argument("--merge", action="store_true",
                        help="combine the conv_algorithms_<part>.json files into the result")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in sorted(OUT.glob("conv_algorithms_*.json"))]
        rows = [r for part in parts for r in part["rows"]]
        order = {s[0]: i for i, s in enumerate(SHAPES)}
        rows.sort(key=lambda r: (r["batch"], order[r["shape"]], ALGORITHMS.index(r["algorithm"])))
        finish(rows, parts[0]["matmul_peak"], parts[0]["threads"], "conv_algorithms")
        return
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"matmul peak: {peak['gflops']:.1f} GFLOP/s on {args.threads} thread(s)")
    rows: list[dict] = []
    for batch in args.batches:
        for index in args.shapes:
            rows += run_shape(*SHAPES[index], batch, args.threads,
                              args.runs * (5 if batch == 1 else 1))
            print(SHAPES[index][0], batch, "done", flush=True)
    finish(rows, peak, args.threads, f"conv_algorithms_{args.part}" if args.part else "conv_algorithms")


def finish(rows: list[dict], peak: dict, threads: int, name: str) -> None:
    """Table, figure and JSON of the rows."""
    table_rows = []
    for r in rows:
        if not r["applies"]:
            table_rows.append([r["shape"], r["batch"], r["algorithm"], "n/a (stride 2)", "", "", "", ""])
            continue
        table_rows.append([r["shape"], r["batch"], r["algorithm"], f"{r['median_ms']:.3g}",
                           f"{r['iqr_ms']:.2g}", f"{r['gflops']:.1f}",
                           f"{100 * r['of_peak']:.0f}%",
                           f"{r['speedup_vs_direct']:.2f}x"])
    peaks = [r["peak_gflops_same_round"] for r in rows if r["applies"]]
    table = (f"Matmul peak (1024^3 fp32, {threads} thread), timed interleaved with each "
             f"layer's algorithms: {min(peaks):.1f}-{max(peaks):.1f} GFLOP/s (alone before the "
             f"run: {peak['gflops']:.1f}); 'of peak' uses the matmul timed in the same rounds.\n\n"
             + markdown(["layer", "batch", "algorithm", "median ms", "IQR ms", "GFLOP/s",
                         "of peak", "vs direct"], table_rows, "llrrrrrr")
             + "\n\nTimes are the calling thread's CPU time per call, one torch thread, median and IQR "
             "over interleaved rounds.")
    if not name.startswith("conv_algorithms_"):
        plot(rows, statistics.median(peaks), figure_path(name))
    write(name, {"machine": machine(), "threads": threads, "matmul_peak": peak,
                 "tolerance": {"max_rel_error": RTOL}, "rows": rows}, table)


if __name__ == "__main__":
    main()
