"""Pretrained weights into a model: `--weights PATH | DEFAULT | ENUM | zoo:ENUM`, never unpickled.

A file is safetensors (or a leannet model folder's) or a checkpoint read with
`torch.load(weights_only=True)`; a classifier's weights fill a detector's or multi-task model's
backbone under its prefix (`backbone.`); a name goes to the
model's zoo (or, as `torchvision:IMAGENET1K_V2`, to the zoo architecture of the same name as a
leannet model: leannet's MobileNetV2 takes torchvision's weights tensor for tensor). Tensors whose
shape differs (the classifier for the user's classes) keep their fresh initialisation: that is
the new head of transfer learning, and the report says which they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from leannet.errors import LeannetError
from leannet.models.registry import list_zoos, model_config, split_zoo_name

CONTAINER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "weights")
MIN_LOADED = 0.5  # refuse weights that fit less than half of the model's parameters


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torchvision/timm checkpoint (weights_only=True)."""
    if not path.is_file():
        raise LeannetError(f"--weights {path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise LeannetError(f"{path} is not a valid safetensors file ({err})") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle refusals come as several types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LeannetError(f"cannot read {path} as weights (only tensors are loaded, with "
                           f"weights_only=True): {first[:160]}") from None
    return _unwrap(data, path)


def _unwrap(data: Any, where: Any) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the state dict itself, or one under a usual key; a
    `module.` prefix (DataParallel) is dropped."""
    for key in CONTAINER_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not any(isinstance(v, torch.Tensor) for v in data.values()):
        raise LeannetError(f"{where} holds no state dict (a mapping of names to tensors)")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def resolve_weights(spec: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict `spec` names for `model`: a file, DEFAULT / an enum of the model's own zoo,
    or `zoo:ENUM` for a leannet model with a same-named zoo architecture."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "weights.safetensors").is_file():  # a leannet model folder
        path = path / "weights.safetensors"
    if path.exists() or "/" in spec or path.suffix in (".safetensors", ".pth", ".pt", ".bin"):
        return read_weights_file(path)
    name = model_config(model).get("name", "")
    if ":" in spec:
        prefix, tag = spec.split(":", 1)
        zoos = list_zoos()
        if prefix not in zoos:
            raise LeannetError(f"--weights {spec!r}: no such file, and {prefix!r} is not a zoo "
                               f"({', '.join(zoos)})")
        arch = name.split(":", 1)[1] if name.startswith(f"{prefix}:") else name
        return _unwrap(zoos[prefix].weights(arch, tag or "DEFAULT"), spec)
    zoo_name = split_zoo_name(name) if name else None
    if zoo_name is None:
        raise LeannetError(f"--weights {spec!r}: no such file; a weight name needs a zoo model "
                           f"(torchvision:NAME, timm:NAME) or a zoo prefix (torchvision:{spec})")
    zoo, arch = zoo_name
    return _unwrap(zoo.weights(arch, spec), spec)


def _with_prefix(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    """`state` under the prefix that makes the most of its names the model's own: a classifier's
    `features.*` become a YOLO model's `backbone.features.*` (a pretrained backbone)."""
    first = next(iter(state))
    prefixes = {k[:-len(first)] for k in own if k.endswith("." + first)}
    best, count = "", sum(k in own for k in state)
    for prefix in prefixes:
        hits = sum(prefix + k in own for k in state)
        if hits > count:
            best, count = prefix, hits
    return {best + k: v for k, v in state.items()} if best else state


def _align(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
           ) -> dict[str, torch.Tensor]:
    """Rename `state` to the model's names: by name (under a common prefix, for a backbone) when
    they match, else by position when both list the same shapes in the same order (leannet's
    MobileNetV2 against torchvision's)."""
    state = _with_prefix(state, own)
    by_name = sum(k in own and own[k].shape == v.shape for k, v in state.items())
    if by_name == len(own) or len(state) != len(own):
        return state
    pairs = list(zip(state.items(), own.items()))
    body = pairs[:-2]  # the classifier (last weight and bias) may differ in classes
    by_position = sum(theirs.shape == mine.shape for (_, theirs), (_, mine) in pairs)
    if all(theirs.shape == mine.shape for (_, theirs), (_, mine) in body) \
            and by_position > by_name:
        return {mine_name: theirs for (_, theirs), (mine_name, _) in pairs}
    return state


def load_weights(model: nn.Module, spec: str) -> dict[str, Any]:
    """Load `spec` into `model`; tensors of another shape (the head for new classes) stay fresh.

    Returns (and records in the model's config, hence in config.json) what was loaded and what
    kept its initialisation; weights that fit less than half of the model are refused.
    """
    own = model.state_dict()
    state = _align(resolve_weights(spec, model), own)
    loaded: dict[str, torch.Tensor] = {}
    for key, mine in own.items():
        theirs = state.get(key)
        if theirs is None:
            continue
        if theirs.shape != mine.shape and theirs.ndim == 4 and mine.shape[1] == 1 \
                and theirs.shape[0] == mine.shape[0] and theirs.shape[2:] == mine.shape[2:]:
            theirs = theirs.sum(dim=1, keepdim=True)  # RGB stem -> one channel, as timm adapts
        if theirs.shape == mine.shape:
            loaded[key] = theirs.to(mine.dtype)
    total = sum(v.numel() for v in own.values() if v.is_floating_point())
    covered = sum(own[k].numel() for k in loaded if own[k].is_floating_point())
    if total and covered / total < MIN_LOADED:
        raise LeannetError(f"--weights {spec}: only {covered / total:.0%} of the model's "
                           "parameters match those weights by name and shape; is it the same "
                           "architecture?")
    model.load_state_dict(loaded, strict=False)
    fresh = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    report = {"source": spec, "loaded": len(loaded), "fresh": fresh,
              "fraction_loaded": round(covered / total, 4) if total else 0.0}
    config = model_config(model)
    if config:
        config["weights"] = report
    return report
