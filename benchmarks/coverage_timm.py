"""Coverage and speed over timm: one model per timm architecture family, pruned by leannet and
by Torch-Pruning 1.6, side by side (the timm companion of coverage_torchvision.py).

Families are timm's model modules (`timm.list_modules()`); each is represented by its smallest
model (fewest parameters, `test_*` models excluded) with at most 30M parameters, randomly
initialised (norm layers given random scales and statistics so verification is meaningful), at
its default input size. `--select` recomputes that list from the installed timm (instantiating
every model on the meta device: minutes); otherwise the list below, made that way with timm
1.0.31, is used. As in the torchvision benchmark: 50% of the channels of every group by `l1`
(uniform ratio), leannet verified (the pruned model must equal the zeroed one to 1e-4), and
Torch-Pruning (`BasePruner`, `GroupMagnitudeImportance(p=1)`, pruning_ratio=0.5, classifier
ignored), in the same process on copies of the same weights. Rows go to JSON after every model.

    nice python benchmarks/coverage_timm.py        # every family -> docs/benchmarks/coverage_timm.json
    python benchmarks/coverage_timm.py --families efficientnet,ghostnet --runs 0
    python benchmarks/coverage_timm.py --markdown docs/benchmarks/coverage_timm.md
    python benchmarks/coverage_timm.py --out all.json --merge part1.json part2.json
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import signal
import traceback
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from coverage_torchvision import (ToolTimeout, _alarm, _reason, cells, console, randomize_norms,
                                  run_leannet, run_torch_pruning)
from rich.progress import Progress
from rich.table import Table

from leannet.files import atomic_write_json, atomic_write_text
from leannet.measure import count_macs, count_params, latency_ms

# family (timm module) -> its smallest model of at most 30M parameters (timm 1.0.31, --select)
FAMILIES = {
    "byoanet": "halonet_h1", "byobnet": "mobileone_s1", "cait": "cait_xxs24_224",
    "coat": "coat_tiny", "convit": "convit_tiny", "convmixer": "convmixer_768_32",
    "convnext": "convnext_zepto_rms", "cpubone": "cpubone_nano", "crossvit": "crossvit_tiny_240",
    "csatv2": "csatv2", "cspnet": "cs3darknet_focus_s", "cspnext": "cspnext_tiny",
    "davit": "davit_tiny", "deit": "deit_tiny_patch16_224", "densenet": "densenet121",
    "dla": "dla46x_c", "dpn": "dpn48b", "edgenext": "edgenext_xx_small",
    "efficientformer": "efficientformer_l1", "efficientformer_v2": "efficientformerv2_s0",
    "efficientnet": "mobilenetv2_035", "efficientvim": "efficientvim_m1",
    "efficientvit_mit": "efficientvit_b0", "efficientvit_msra": "efficientvit_m0",
    "eva": "vit_tiny_patch16_dinov3_qkvb", "fasternet": "fasternet_t0", "fastvit": "fastvit_t8",
    "focalnet": "focalnet_tiny_srf", "gcvit": "gcvit_xxtiny", "ghostnet": "ghostnet_050",
    "hardcorenas": "hardcorenas_b", "hgnet": "hgnetv2_b0", "hiera": "hiera_tiny_224",
    "hieradet_sam2": "sam2_hiera_tiny", "hrnet": "hrnet_w18_small", "iformer": "iformer_t",
    "inception_next": "inception_next_atto", "inception_v3": "inception_v3",
    "lcnetv2": "lcnetv2_small", "levit": "levit_128s", "lowformer": "lowformer_b0",
    "mambaout": "mambaout_femto", "maxxvit": "maxvit_pico_rw_256",
    "metaformer": "poolformerv2_s12", "mlp_mixer": "gmlp_ti16_224",
    "mobilenetv3": "mobilenetv3_small_050", "mobilevit": "mobilevit_xxs",
    "mvitv2": "mvitv2_tiny", "nest": "nest_tiny", "nfnet": "nf_regnet_b0", "pit": "pit_ti_224",
    "pvt_v2": "pvt_v2_b0", "rdnet": "rdnet_tiny", "regnet": "regnetx_002",
    "repghost": "repghostnet_050", "repvit": "repvit_m1", "res2net": "res2next50",
    "resnest": "resnest14d", "resnet": "resnet10t", "resnetv2": "resnetv2_18",
    "rexnet": "rexnet_100", "senet": "legacy_seresnet18", "sequencer": "sequencer2d_s",
    "shvit": "shvit_s1", "sknet": "skresnet18", "starnet": "starnet_s050",
    "swiftformer": "swiftformer_xs", "swin_transformer": "swin_tiny_patch4_window7_224",
    "swin_transformer_v2": "swinv2_tiny_window8_256",
    "swin_transformer_v2_cr": "swinv2_cr_tiny_224", "tiny_vit": "tiny_vit_5m_224",
    "tnt": "tnt_s_legacy_patch16_224", "twins": "twins_svt_small", "visformer": "visformer_tiny",
    "vision_transformer": "vit_tiny_patch16_224",
    "vision_transformer_hybrid": "vit_tiny_r_s16_p8_224",
    "vision_transformer_relpos": "vit_srelpos_small_patch16_224",
    "vitamin": "vitamin_small_224", "volo": "volo_d1_224", "vovnet": "ese_vovnet19b_slim_dw",
    "xception": "legacy_xception", "xception_aligned": "xception41p", "xcit": "xcit_nano_12_p8_224",
}
MAX_PARAMS = 30_000_000


def select_families() -> dict[str, str]:
    """Recompute FAMILIES from the installed timm (parameters counted on the meta device)."""
    chosen = {}
    for family in timm.list_modules():
        best = None
        for name in timm.list_models(module=family):
            if name.startswith("test_"):
                continue
            try:
                with torch.device("meta"):
                    params = sum(p.numel() for p in timm.create_model(name).parameters())
            except Exception:  # noqa: BLE001 - a model that can't be built isn't a candidate
                continue
            if params <= MAX_PARAMS and (best is None or params < best[1]):
                best = (name, params)
        if best:
            chosen[family] = best[0]
    return chosen


def _measure(model: torch.nn.Module, x: torch.Tensor, runs: int) -> dict[str, Any]:
    """MACs, parameters and latency; a MAC count the counter can't make is recorded as None."""
    model.eval()
    try:
        with torch.no_grad():
            macs = count_macs(model, x)
    except Exception:  # noqa: BLE001 - e.g. the flop counter's module hooks on some blocks
        macs = None
    return {"macs": macs, "params": count_params(model),
            "latency_ms": round(latency_ms(model, x, runs=runs, warmup=1), 2) if runs else None}


RUNNERS = {"leannet": run_leannet, "torch_pruning": run_torch_pruning}


def one_model(family: str, name: str, runs: int, timeout: int,
              tools: tuple[str, ...] = tuple(RUNNERS)) -> dict[str, Any]:
    """The row of one family's model; any failure is recorded with its reason."""
    torch.manual_seed(0)
    base = timm.create_model(name, pretrained=False).eval()
    size = timm.data.resolve_data_config({}, model=base)["input_size"]
    row: dict[str, Any] = {"family": family, "model": name, "input": [1, *size]}
    randomize_norms(base)
    x = torch.randn(1, *size)
    row["before"] = _measure(base, x, runs)
    for tool in tools:
        runner = RUNNERS[tool]
        model = copy.deepcopy(base)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(timeout)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row[tool] = runner(model, x)
            signal.alarm(0)
            row[tool].update(_measure(model, x, runs))
        except Exception as err:  # noqa: BLE001 - the reason goes in the table
            signal.alarm(0)
            if isinstance(err, ToolTimeout):
                err = ToolTimeout(f"no result within {timeout} s (stopped)")
            row[tool] = {"ok": False, "verified": False, "error": _reason(err)}
            console.log(f"[red]{name} {tool}: {_reason(err)}")
            if tool == "leannet":
                console.log(traceback.format_exc(limit=3))
        del model
        gc.collect()
    return row


HEADERS = ("family", "model", "leannet", "TP", "GMACs before", "leannet after", "TP after",
           "leannet s", "verify s", "TP s", "ms before", "leannet ms", "TP ms")


def markdown(data: dict[str, Any]) -> str:
    """The results as a markdown table, with counts, medians, totals and every failure."""
    rows = data["rows"]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join([r["family"], *cells(r)]) + " |" for r in rows]
    le_ok = [r for r in rows if r.get("leannet", {}).get("ok")]
    verified = sum(bool(r["leannet"].get("verified")) for r in le_ok)
    tp_ok = [r for r in rows if r.get("torch_pruning", {}).get("ok")]
    both = [r for r in le_ok if r.get("torch_pruning", {}).get("ok")]

    def median(values: list[float]) -> float:
        values = sorted(values)
        n = len(values)
        return (values[n // 2] + values[(n - 1) // 2]) / 2 if n else float("nan")

    summary = [
        f"- families: {len(rows)}; leannet pruned and verified: {verified} "
        f"({100 * verified / max(len(rows), 1):.0f}%); Torch-Pruning ran: {len(tp_ok)} "
        f"({100 * len(tp_ok) / max(len(rows), 1):.0f}%)",
        f"- median prune seconds: leannet {median([r['leannet']['prune_s'] for r in le_ok]):.2f} "
        f"(all {len(le_ok)} it pruned), Torch-Pruning "
        f"{median([r['torch_pruning']['prune_s'] for r in tp_ok]):.2f} (all {len(tp_ok)} it ran)",
        f"- where both ran ({len(both)}): total prune seconds leannet "
        f"{sum(r['leannet']['prune_s'] for r in both):.1f} vs Torch-Pruning "
        f"{sum(r['torch_pruning']['prune_s'] for r in both):.1f}; leannet not slower on "
        f"{sum(r['leannet']['prune_s'] <= r['torch_pruning']['prune_s'] for r in both)}; "
        f"verification (leannet only) {sum(r['leannet']['verify_s'] for r in both):.1f} s",
    ]
    failures = [f"- {r['model']} ({tool}): {r[tool]['error']}" for r in rows
                for tool in ("leannet", "torch_pruning") if r.get(tool, {}).get("error")]
    return "\n".join(summary + ["", *lines, "", "Failures:", "", *(failures or ["- none"])]) + "\n"


def table(rows: list[dict[str, Any]]) -> Table:
    """The side-by-side table for the terminal."""
    t = Table(title="timm families: 50% channels by L1, leannet vs Torch-Pruning 1.6")
    for col in HEADERS:
        t.add_column(col, justify="left" if col in ("family", "model") else "right")
    for r in rows:
        t.add_row(r["family"], *cells(r))
    return t


def warm_up() -> None:
    """One small untimed run of each tool, so first-call costs don't land on the first row."""
    x = torch.randn(1, 3, 64, 64)
    for runner in (run_leannet, run_torch_pruning):
        try:
            runner(timm.create_model("resnet10t").eval(), x)
        except Exception:  # noqa: BLE001
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated timm module names (default: all)")
    parser.add_argument("--select", action="store_true",
                        help="recompute the family -> model list from the installed timm")
    parser.add_argument("--runs", type=int, default=3, help="latency runs per model (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per tool and model")
    parser.add_argument("--tools", default="leannet,torch_pruning",
                        help="which tools to run (a quick leannet-only pass: --tools leannet)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/coverage_timm.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out (families named by --families rerun)")
    parser.add_argument("--markdown", type=Path,
                        help="only write --out's rows as a markdown table to this file")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="only merge the rows of these result files into --out (runs of "
                             "family subsets made side by side); later files win")
    args = parser.parse_args()
    if args.merge:
        data = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
        rows = {r["family"]: r for r in data["rows"]}
        for path in args.merge:
            rows.update({r["family"]: r for r in json.loads(path.read_text())["rows"]})
        data["rows"] = [rows[f] for f in sorted(rows)]
        atomic_write_json(args.out, data)
        return
    if args.markdown:
        atomic_write_text(args.markdown, markdown(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(args.threads)
    families = select_families() if args.select else dict(FAMILIES)
    if args.families:
        wanted = {f.strip() for f in args.families.split(",") if f.strip()}
        families = {f: m for f, m in families.items() if f in wanted}
    warm_up()
    rows = json.loads(args.out.read_text())["rows"] if args.resume and args.out.exists() else []
    rows = [r for r in rows if r["family"] not in families or
            (not args.families and r["family"] in families)]
    done = {r["family"] for r in rows}
    todo = [(f, m) for f, m in families.items() if f not in done]
    with Progress(console=console) as progress:
        task = progress.add_task("pruning timm families", total=len(todo))
        for family, name in todo:
            progress.update(task, description=name)
            rows.append(one_model(family, name, args.runs, args.timeout,
                                  tuple(t for t in args.tools.split(",") if t in RUNNERS)))
            rows.sort(key=lambda r: r["family"])
            atomic_write_json(args.out, {"settings": vars(args) | {"out": str(args.out)},
                                         "torch": torch.__version__, "timm": timm.__version__,
                                         "rows": rows})
            progress.advance(task)
    console.print(table(rows))


if __name__ == "__main__":
    main()
