"""Box-aware augmentation (torchvision.transforms.v2 moves boxes with the pixels) and batching.

Samples are (uint8 image, {"boxes": xyxy pixels, "labels"[, "mask"]}); models see float images
in [0, 1]. A semantic mask, when the target has one, moves with the pixels too.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

Target = dict[str, Tensor]
IGNORE = 255  # mask value a segmentation loss skips (pixels pushed in by augmentation)


def box_augment(flip: bool = True, scale: tuple[float, float] = (0.75, 1.25),
                translate: float = 0.1, jitter: float = 0.3, colour: bool = True
                ) -> Callable[[Tensor, Target], tuple[Tensor, Target]]:
    """Random flip, scale, translate and colour jitter (none at jitter=0); boxes and a mask
    follow, empty boxes are dropped, mask pixels pushed in from outside become IGNORE."""
    ops: list = [v2.RandomHorizontalFlip()] if flip else []
    ops += [v2.RandomAffine(degrees=0, translate=(translate, translate), scale=scale)]
    if jitter:
        ops += [v2.ColorJitter(jitter, jitter, jitter if colour else 0)]
    ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=2)]
    pipeline = v2.Compose(ops)

    def apply(image: Tensor, target: Target) -> tuple[Tensor, Target]:
        size = tuple(image.shape[-2:])
        sample = {"image": tv_tensors.Image(image), "labels": target["labels"],
                  "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY",
                                                    canvas_size=size)}
        if "mask" in target:  # shifted by one so the fill (0) marks pixels from outside
            sample["mask"] = tv_tensors.Mask(target["mask"].long() + 1)
        sample = pipeline(sample)
        out = {"boxes": sample["boxes"].as_subclass(Tensor).float(), "labels": sample["labels"]}
        if "mask" in target:
            mask = sample["mask"].as_subclass(Tensor) - 1
            mask[mask < 0] = IGNORE
            out["mask"] = mask
        return sample["image"].as_subclass(Tensor), out

    return apply


def to_input(image: Tensor, image_size: int | None = None, channels: int | None = None) -> Tensor:
    """uint8 (C, H, W) -> the float [0, 1] tensor a model takes, resized and with its channels."""
    x = image
    if channels is not None and x.shape[0] != channels:
        x = x[:1].expand(channels, -1, -1) if x.shape[0] == 1 else \
            v2.functional.rgb_to_grayscale(x, channels)
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        x = v2.functional.resize(x, [image_size, image_size], antialias=True)
    return x.float().div(255)


def detection_collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
    """Stack images; keep targets as a list, since images hold different numbers of boxes."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]
