"""The `timm:` zoo: timm's models by name, their pretrained config and their weights (timm is
optional: without it, `timm:NAME` is one line saying so).

Weights come through timm's pretrained configs: the Hugging Face hub cache (`$HF_HOME/hub`) first,
then timm's own download code; files are read as safetensors or with `weights_only=True`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.models.registry import Zoo, ZooInfo, register_zoo

SAFE_WEIGHTS = "model.safetensors"


def _timm() -> Any:
    """The timm module, or one line saying it is missing."""
    try:
        import timm
    except ImportError:
        raise LeannetError("timm:NAME models need timm, which is not installed "
                           "(pip install timm)") from None
    return timm


def _check_arch(arch: str) -> Any:
    """timm, after checking that `arch` (optionally `arch.tag`) is one of its models."""
    timm = _timm()
    if not timm.is_model(arch.split(".", 1)[0]):
        raise LeannetError(f"unknown timm model {arch!r}; see timm.list_models(), e.g. "
                           "resnet10t, efficientnet_b0, mobilenetv3_small_100")
    return timm


def _pretrained_cfg(arch: str) -> Any:
    """timm's pretrained config for `arch` or `arch.tag` (None if it has none)."""
    timm = _check_arch(arch)
    return timm.models.get_pretrained_cfg(arch, allow_unregistered=False)


def info(arch: str) -> ZooInfo:
    """Classes, input size and normalisation from timm's pretrained config."""
    timm = _check_arch(arch)
    cfg = _pretrained_cfg(arch)
    constructor = f"timm.create_model({arch.split('.', 1)[0]!r})"
    if cfg is None:
        return ZooInfo(constructor, version=timm.__version__)
    return ZooInfo(constructor, num_classes=int(cfg.num_classes or 1000),
                   image_size=int(cfg.input_size[-1]), mean=tuple(cfg.mean), std=tuple(cfg.std),
                   version=timm.__version__)


def build(arch: str, num_classes: int, in_channels: int, image_size: int, **kwargs: Any
          ) -> nn.Module:
    """A fresh timm model with `num_classes` outputs and `in_channels` inputs (no weights)."""
    timm = _check_arch(arch)
    if "pretrained" in kwargs:
        raise LeannetError("pass weights with --weights (leannet.models.load_weights), not as "
                           "pretrained=")
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                              in_chans=in_channels, **kwargs)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if cfg.get("fixed_input_size") and int(cfg.get("input_size", (0, 0, image_size))[-1]) \
            != image_size:  # ViTs and friends: rebuild for the asked size
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                  in_chans=in_channels, img_size=image_size, **kwargs)
    return model


def weights(arch: str, tag: str) -> dict[str, Any]:
    """The state dict of timm's pretrained weights for `arch` ("DEFAULT": its default tag; else
    `tag`, as in `resnet10t.c3_in1k`), from the hub cache or downloaded with timm's code."""
    name = arch if tag == "DEFAULT" else f"{arch.split('.', 1)[0]}.{tag}"
    cfg = _pretrained_cfg(name)
    if cfg is None:
        raise LeannetError(f"timm has no pretrained weights {name!r}")
    if cfg.hf_hub_id:
        return _from_hf(name, cfg.hf_hub_id)
    if cfg.url:
        return _from_url(name, cfg.url)
    raise LeannetError(f"timm's pretrained config {name!r} names no file to download")


def _from_hf(name: str, repo: str) -> dict[str, Any]:
    """The hub's cached model.safetensors, else timm's hub download (which caches it)."""
    from safetensors.torch import load_file

    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # timm depends on it; a broken install gets one line
        raise LeannetError("timm weights from the hub need huggingface_hub (pip install "
                           "huggingface-hub), or pass --weights PATH") from None

    cached = try_to_load_from_cache(repo, SAFE_WEIGHTS)
    if isinstance(cached, str):
        return load_file(cached)
    place = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    try:
        from timm.models._hub import load_state_dict_from_hf

        return load_state_dict_from_hf(repo, weights_only=True)
    except Exception as err:  # noqa: BLE001 - network, hub and cache errors of many kinds
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LeannetError(
            f"cannot download timm weights {name} from the Hugging Face hub ({first[:120]}); "
            f"offline, put {SAFE_WEIGHTS} at {place}/snapshots/<revision>/{SAFE_WEIGHTS} with "
            f"the revision in {place}/refs/main (or pass --weights PATH)") from None


def _from_url(name: str, url: str) -> dict[str, Any]:
    """A URL checkpoint through torch.hub's cache, read with weights_only=True."""
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  weights_only=True)
    except Exception as err:  # noqa: BLE001
        place = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        raise LeannetError(f"cannot download timm weights {name} from {url} "
                           f"({str(err).splitlines()[0][:120]}); offline, put the file at "
                           f"{place} (or pass --weights PATH)") from None


register_zoo(Zoo("timm", "timm's models (optional)", info, build, weights))
