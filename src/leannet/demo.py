"""`leannet demo`: the bundled end-to-end pipeline on scikit-learn's digits, with no download.

For now: train a small-input MobileNetV2 (width 0.5) on `digits` at 16 px, keep the best
checkpoint, measure it and write `result.json`. Later stages (pruning, export, report) append to
`run_demo`'s result through `DemoConfig` and the returned dict.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

DEMO_MODEL = "mobilenet_v2"
DEMO_DATA = "digits"


@dataclass
class DemoConfig:
    """The demo's training recipe: fast on 2 CPU cores and >= 95% validation accuracy."""

    epochs: int = 10
    batch_size: int = 64
    image_size: int = 16
    width_mult: float = 0.5
    optimizer: str = "adamw"
    lr: float = 0.005
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0


def train_stage(out_dir: Path, config: DemoConfig, progress: bool = True
                ) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Train the demo model into `out_dir/model`; return (model, source, stage result)."""
    from leannet.data import get_source
    from leannet.data.loaders import make_loaders
    from leannet.train import fit
    from leannet.train.build import build_for_source, remember_data

    source = get_source(DEMO_DATA, image_size=config.image_size)
    torch.manual_seed(config.seed)
    model, task = build_for_source(source, DEMO_MODEL, width_mult=config.width_mult)
    remember_data(model, DEMO_DATA, None)
    train_loader, val_loader = make_loaders(source, config.batch_size, seed=config.seed)
    start = time.perf_counter()
    history = fit(model, train_loader, val_loader, task, config.epochs,
                  optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                  warmup_epochs=config.warmup_epochs, seed=config.seed, out_dir=out_dir,
                  progress=progress, restore_best=True)
    best = max(history, key=lambda r: r[task.main_metric])
    stage = {"accuracy": best["accuracy"], "best_epoch": best["epoch"],
             "train_seconds": round(time.perf_counter() - start, 2)}
    return model, source, stage


def run_demo(out_dir: str | Path = "runs/demo", force: bool = False,
             config: DemoConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the demo into `out_dir` (refused if it exists and is not empty, unless `force`).

    Returns and writes `result.json`: model, data, accuracy, params, macs, latency_ms and more.
    """
    from leannet.io import atomic_write_json, prepare_out_dir
    from leannet.measure import measure
    from leannet.models import model_input_shape

    config = config or DemoConfig()
    out = prepare_out_dir(out_dir, force)
    start = time.perf_counter()
    model, source, stage = train_stage(out, config, progress)
    numbers = measure(model.eval(), model_input_shape(model, 1), path=out / "model")
    result = {"command": "demo", "model": DEMO_MODEL, "data": DEMO_DATA, **stage, **numbers,
              "model_dir": str(out / "model"), "config": asdict(config),
              "seconds": round(time.perf_counter() - start, 2)}
    atomic_write_json(out / "result.json", result)
    return result
