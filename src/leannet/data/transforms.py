"""Augmentation and normalisation on uint8 image tensors (C, H, W): fast, no PIL round trip."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomCropFlip:
    """Random crop after zero padding by `padding` pixels, and a horizontal flip when `flip`.

    Flips are for natural images (CIFAR-10, Fashion-MNIST), never for digits, where a mirrored
    2 or 7 is not a 2 or 7.
    """

    def __init__(self, padding: int = 2, flip: bool = False) -> None:
        self.padding = padding
        self.flip = flip

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p > 0:
            _, h, w = image.shape
            padded = F.pad(image, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
            image = padded[:, top:top + h, left:left + w]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch (N, C, H, W) of uint8 images to size x size (bilinear, antialiased)."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the 0-1 scale."""
    x = images[: 20000].float().div(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]
