"""The `torchvision:` zoo: torchvision's classifiers by name, their metadata and their weights.

Weights come through torchvision's own enums and `torch.hub`'s download cache
(`$TORCH_HOME/hub/checkpoints`), read with `weights_only=True`; offline, a missing file is one
line saying where to put it.
"""
from __future__ import annotations

import contextlib
import io
import os
import urllib.error
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from leannet.errors import LeannetError
from leannet.models.registry import Zoo, ZooInfo, register_zoo


def _check_arch(arch: str) -> None:
    """Only torchvision's image classifiers (detection and video models take other inputs)."""
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise LeannetError(f"unknown torchvision classifier {arch!r}; see "
                           "torchvision.models.list_models(module=torchvision.models), e.g. "
                           "mobilenet_v3_small, resnet18, efficientnet_b0")


def weight_enum(arch: str) -> Any:
    """torchvision's weight enum for `arch` (e.g. MobileNet_V2_Weights), or None if it has none."""
    try:
        return torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        return None


def info(arch: str) -> ZooInfo:
    """Classes, crop size and normalisation from the DEFAULT weights' metadata and transforms."""
    _check_arch(arch)
    constructor = f"torchvision.models.{arch}"
    enum = weight_enum(arch)
    if enum is None:
        return ZooInfo(constructor, version=torchvision.__version__)
    default = enum.DEFAULT
    transforms = default.transforms()
    crop = getattr(transforms, "crop_size", [224])
    return ZooInfo(constructor, num_classes=len(default.meta.get("categories") or range(1000)),
                   image_size=int(crop[0] if isinstance(crop, (list, tuple)) else crop),
                   mean=tuple(getattr(transforms, "mean", ZooInfo.mean)),
                   std=tuple(getattr(transforms, "std", ZooInfo.std)),
                   version=torchvision.__version__)


def build(arch: str, num_classes: int, in_channels: int, image_size: int, **kwargs: Any
          ) -> nn.Module:
    """A fresh torchvision classifier (no weights: they are loaded separately, see weights)."""
    _check_arch(arch)
    if in_channels != 3:
        raise LeannetError(f"torchvision:{arch} takes 3-channel images, the data has "
                           f"{in_channels}; use timm:NAME (in_chans) or an RGB data source")
    if "weights" in kwargs:
        raise LeannetError("pass weights with --weights (leannet.models.load_weights), not as a "
                           "model argument")
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)


def hub_dir() -> Path:
    """Where torch.hub caches downloaded checkpoints ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights(arch: str, tag: str) -> dict[str, Any]:
    """The state dict of torchvision's `tag` weights for `arch` ("DEFAULT", "IMAGENET1K_V2", ...),
    from torch.hub's cache or downloaded into it."""
    enum = weight_enum(arch)
    if enum is None:
        raise LeannetError(f"torchvision has no pretrained weights for {arch!r}")
    if tag not in enum.__members__:
        raise LeannetError(f"torchvision has no {tag!r} weights for {arch}; expected one of "
                           f"{', '.join(enum.__members__)}")
    entry = enum[tag]
    file_name = os.path.basename(entry.url)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch.hub prints "Downloading: ..."
            return torch.hub.load_state_dict_from_url(entry.url, map_location="cpu",
                                                      progress=False, weights_only=True)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise LeannetError(
            f"cannot download torchvision {arch} {tag} weights from {entry.url} ({_reason(err)}); "
            f"offline, put the file at {hub_dir() / file_name} (or pass --weights PATH)") from None
    except Exception as err:  # noqa: BLE001 - an unpicklable or corrupt cached file
        raise LeannetError(f"cannot read the cached torchvision weights "
                           f"{hub_dir() / file_name}: {str(err).splitlines()[0]}") from None


def _reason(err: Exception) -> str:
    """The short reason of a download error."""
    reason = getattr(err, "reason", None) or err
    return str(reason).splitlines()[0] if str(reason) else type(err).__name__


register_zoo(Zoo("torchvision", "torchvision's classifiers", info, build, weights))
