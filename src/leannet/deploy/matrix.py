"""Deploy one model to runtimes x precisions: export (staged, then renamed into place), check
parity or int8 agreement, size it, optionally score it on real data, then time every file
together with `leannet.measure.time_latencies` (interleaved rounds, so load from other jobs hits
all rows alike). `leannet bench`, `quantize`, `export`, the demo and benchmarks/deploy.py all
come through here, so their numbers are measured the same way.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from leannet.deploy.check import check_parity, compare, reference_outputs
from leannet.deploy.quantize import quantize_ptq
from leannet.deploy.runtimes import get_runtime
from leannet.deploy.runtimes.base import Session
from leannet.errors import LeannetError
from leannet.measure import DEFAULT_THREADS, Timed, check_threads, time_latencies

Evaluate = Callable[[Session], dict[str, float]]


def build_one(model: nn.Module, runtime: str, precision: str, path: Path | None,
              example: torch.Tensor, *, threads: int = DEFAULT_THREADS,
              calibration: Sequence[torch.Tensor] | None = None,
              quantized: nn.Module | None = None, check_inputs: torch.Tensor | None = None,
              force: bool = False, evaluate: Evaluate | None = None
              ) -> tuple[dict[str, Any], Session]:
    """Deploy `model` to one runtime at one precision, untimed: (row with path, size, parity or
    agreement, metrics when `evaluate` is given; the session to time).

    int8 needs `calibration` (real input batches) or an already `quantized` PT2E model. With a
    `path`, an existing file is refused unless `force`, and is replaced only after the new file
    passed its checks. Without one the file lives in a temporary folder for the measurement.
    """
    threads = check_threads(threads)
    target = get_runtime(runtime)
    target.check(precision)
    model = model.cpu().eval()
    if path is not None and target.suffix:
        path = Path(path)
        if path.suffix != target.suffix:
            raise LeannetError(f"{runtime} files end in {target.suffix}, got {str(path)!r}")
        if path.exists() and not force:
            raise LeannetError(f"{path} already exists; pass --force to replace it")
    if precision == "int8" and not target.quantizes_itself and quantized is None:
        if not calibration:
            raise LeannetError(f"{runtime} int8 needs calibration batches of real inputs")
        quantized = quantize_ptq(model, example, calibration)
    source = quantized if precision == "int8" and not target.quantizes_itself else model
    if source is None:
        raise LeannetError(f"{target.name} int8 needs a quantized model (pass quantized=)")
    with tempfile.TemporaryDirectory(prefix="leannet-deploy-") as tmp:
        staging = (Path(tmp) / f"model{target.suffix}" if path is None
                   else path.with_name(f".{path.stem}.staging-{os.getpid()}{target.suffix}"))
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            session, info = target.build(source, staging, example, precision, threads,
                                         calibration=calibration)
            row = {"runtime": runtime, "precision": precision, **info,
                   **_checks(model, quantized, session, runtime, precision, example,
                             check_inputs)}
            if evaluate is not None:
                row["metrics"] = evaluate(session)
            row["size_bytes"] = staging.stat().st_size if staging.is_file() else None
            if path is not None and staging.is_file():
                os.replace(staging, path)
            row["path"] = str(path) if path is not None and target.suffix else None
        finally:
            if path is not None:
                staging.unlink(missing_ok=True)
    return row, session


def deploy_one(model: nn.Module, runtime: str, precision: str, path: Path | None,
               example: torch.Tensor, *, threads: int = DEFAULT_THREADS, runs: int = 50,
               warmup: int = 5, **options: Any) -> dict[str, Any]:
    """`build_one`, then its latency (median, IQR, min-max and conditions) under `latency`."""
    row, session = build_one(model, runtime, precision, path, example, threads=threads,
                             **options)
    item = timed(session, runtime, precision, example)
    row["latency"] = time_latencies({0: item}, threads=threads, runs=runs, warmup=warmup,
                                    rounds=1)[0].to_dict()
    return row


def timed(session: Session, runtime: str, precision: str, example: torch.Tensor) -> Timed:
    """What `time_latencies` needs to time `session` on `example`."""
    feed = example.cpu().numpy().astype(np.float32)
    return Timed(lambda: session.run(feed), runtime, precision, int(example.shape[0]),
                 session.set_threads)


def _checks(model: nn.Module, quantized: nn.Module | None, session: Session, runtime: str,
            precision: str, example: torch.Tensor, inputs: torch.Tensor | None) -> dict:
    """fp32: parity with torch (raises when broken); int8: agreement with the fp32 model and,
    for PT2E-quantized files, closeness to the int8 torch reference."""
    if inputs is None:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(4, *example.shape[1:], generator=generator)
    got = session.run(inputs.numpy())
    if precision == "fp32":
        return {"parity": check_parity(runtime, reference_outputs(model, inputs), got)}
    checks = {"agreement": compare(reference_outputs(model, inputs), got),
              "check_inputs": int(inputs.shape[0])}
    if quantized is not None and not get_runtime(runtime).quantizes_itself:
        checks["vs_int8_reference"] = compare(reference_outputs(quantized, inputs), got)
    return checks


def deploy_matrix(model: nn.Module, example: torch.Tensor, runtimes: Iterable[str],
                  precisions: Iterable[str], *, threads: int = DEFAULT_THREADS, runs: int = 50,
                  warmup: int = 5, calibration: Sequence[torch.Tensor] | None = None,
                  check_inputs: torch.Tensor | None = None, out_dir: Path | None = None,
                  force: bool = False, evaluate: Evaluate | None = None,
                  quantized: nn.Module | None = None, rounds: int = 5,
                  on_stage: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Every runtime x precision it supports, built, then timed together (interleaved rounds);
    a combination that cannot run here (toolchain missing, no calibration data, lowering
    failed) becomes a row with `skipped` and the reason, so one missing converter never hides
    the others' numbers."""
    rows, items = build_matrix(model, example, runtimes, precisions, threads=threads,
                               calibration=calibration, check_inputs=check_inputs,
                               out_dir=out_dir, force=force, evaluate=evaluate,
                               quantized=quantized, on_stage=on_stage)
    if on_stage and items:
        on_stage(f"timing {len(items)} files together, {rounds} interleaved rounds")
    attach_latencies(rows, items, threads=threads, runs=runs, warmup=warmup, rounds=rounds)
    return rows


def attach_latencies(rows: list[dict[str, Any]], items: dict[int, Timed], *, threads: int,
                     runs: int, warmup: int, rounds: int) -> None:
    """Time `items` (keyed by row index) together and put each Latency into its row."""
    for index, latency in time_latencies(items, threads=threads, runs=runs, warmup=warmup,
                                         rounds=rounds).items():
        rows[index]["latency"] = latency.to_dict()


def build_matrix(model: nn.Module, example: torch.Tensor, runtimes: Iterable[str],
                 precisions: Iterable[str], *, threads: int = DEFAULT_THREADS,
                 calibration: Sequence[torch.Tensor] | None = None,
                 check_inputs: torch.Tensor | None = None, out_dir: Path | None = None,
                 force: bool = False, evaluate: Evaluate | None = None,
                 quantized: nn.Module | None = None, on_stage: Callable[[str], Any] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[int, Timed]]:
    """The untimed half of `deploy_matrix`: rows, and what to time for each built row."""
    rows: list[dict[str, Any]] = []
    items: dict[int, Timed] = {}
    for runtime in runtimes:
        target = get_runtime(runtime)
        for precision in precisions:
            if precision not in target.precisions:
                continue
            why = target.available() or (None if precision == "fp32" or calibration or quantized
                                         else "int8 needs calibration data (pass --data)")
            if why:
                rows.append({"runtime": runtime, "precision": precision, "skipped": why})
                continue
            if on_stage:
                on_stage(f"{runtime} {precision}")
            if precision == "int8" and not target.quantizes_itself and quantized is None:
                quantized = quantize_ptq(model, example, calibration or ())  # set: checked above
            path = (out_dir / f"model-{runtime}-{precision}{target.suffix}"
                    if out_dir is not None and target.suffix else None)
            try:
                row, session = build_one(model, runtime, precision, path, example,
                                         threads=threads, calibration=calibration,
                                         quantized=quantized, check_inputs=check_inputs,
                                         force=force, evaluate=evaluate)
            except LeannetError as err:
                if "already exists" in str(err) or "parity failed" in str(err):
                    raise
                rows.append({"runtime": runtime, "precision": precision, "skipped": str(err)})
                continue
            items[len(rows)] = timed(session, runtime, precision, example)
            rows.append(row)
    return rows, items
