"""Model folders: config.json + weights.safetensors + metrics.json; atomic writes; never unpickles.

A model folder rebuilds its model from JSON alone: the registry name and kwargs (a zoo model,
`torchvision:NAME` or `timm:NAME`, is rebuilt by its zoo's constructor, recorded under "zoo"),
then every pruning plan replayed in order (channel plans, and depth plans that remove whole
residual blocks), then the weights. Nothing in it can execute code when
loaded.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from leannet import __version__
from leannet.errors import LeannetError
from leannet.files import (atomic_write, atomic_write_json, atomic_write_text,  # noqa: F401
                           follow_umask, prepare_out_dir, recover_dir, replace_dir)
from leannet.models import create_model, model_config, model_input_shape
from leannet.prune import apply_plan
from leannet.prune.depth import depth_plan_blocks, remove_blocks

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


def save(model: nn.Module, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Save a registry-built model as a model folder, replacing a model folder there atomically.

    Anything else at `path` (a file, a folder that is not a model folder) is refused, never
    deleted. The files are written into a staging folder first, so a crash leaves the old one.
    """
    config = getattr(model, "leannet_config", None)
    if config is None:
        raise LeannetError(
            f"cannot save this {type(model).__name__} as a model folder: leannet cannot rebuild "
            "it from JSON; build it with leannet.create_model('torchvision:NAME' or 'timm:NAME' "
            "or a leannet name), or keep what you need yourself: each pruning plan as JSON "
            "(plan.to_dict()) and the state dict as safetensors, then rebuild your model, "
            "replay the plans with leannet.apply_plan and load the state dict")
    path = recover_dir(path)
    if path.exists() and not (path / CONFIG_FILE).is_file() and (
            not path.is_dir() or any(path.iterdir())):
        raise LeannetError(f"{path} exists and is not a leannet model folder; refusing to replace "
                           "it (choose another path or remove it yourself)")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    follow_umask(staging, folder=True)
    try:
        full_config = {**config, "plans": config.get("plans", []), "leannet_version": __version__}
        (staging / CONFIG_FILE).write_text(json.dumps(full_config, indent=2) + "\n")
        tensors = {k: v.detach().to("cpu").clone().contiguous()
                   for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2) + "\n")
        replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model folder's config.json; refuse pickles and non-folders clearly."""
    path = recover_dir(path)
    if not path.is_dir():
        raise LeannetError(f"{path} is not a model folder (expected a folder with {CONFIG_FILE} "
                           f"and {WEIGHTS_FILE})")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        hint = (f"; found {', '.join(pickles)}: pickle files are refused because loading them can "
                "run arbitrary code") if pickles else ""
        raise LeannetError(f"{path} has no {CONFIG_FILE}, so it is not a leannet model folder{hint}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LeannetError(f"{config_path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "name" not in config or "kwargs" not in config:
        raise LeannetError(f"{config_path} lacks 'name' and 'kwargs' of the architecture")
    return config


def load(path: str | Path) -> nn.Module:
    """Rebuild a model from its folder: architecture, replayed pruning plans, safetensors weights."""
    path = Path(path)
    config = read_config(path)
    model = create_model(config["name"], **config["kwargs"])
    model_config(model).update({k: v for k, v in config.items()  # e.g. the training source
                                 if k not in ("name", "kwargs", "plans", "leannet_version")})
    for plan in config.get("plans", []):
        blocks = depth_plan_blocks(plan)
        if blocks is not None:  # whole residual blocks removed (records it again)
            remove_blocks(model, blocks)
        else:
            apply_plan(model, plan, torch.zeros(model_input_shape(model, 2)))  # records it again
    model.load_state_dict(_read_weights(path, model))
    model.eval()
    return model


def _read_weights(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load safetensors weights and check names and shapes against the rebuilt model."""
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise LeannetError(f"{path} has no {WEIGHTS_FILE}")
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise LeannetError(f"{weights_path} is not a valid safetensors file ({err})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        detail = "; ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
            f"shape mismatch {', '.join(wrong[:3])}" if wrong else ""]))
        raise LeannetError(f"weights in {weights_path} do not match the architecture in "
                           f"{CONFIG_FILE}: {detail}")
    return weights
