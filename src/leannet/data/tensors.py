"""An in-memory dataset of uint8 images and integer labels, normalised to float on access."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset
from leannet.data.registry import DataSource
from leannet.data.transforms import RandomCropFlip, channel_stats, resize_uint8
from leannet.errors import LeannetError


class ImageTensorDataset(Dataset):
    """Images (N, C, H, W) uint8 and labels (N,) int64; `transform` runs on the uint8 image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: list[float],
                 std: list[float], transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor (N, C, H, W)")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()
        self.transform = transform
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        x = (image.float().div_(255) - self.mean) / self.std
        return x, self.labels[index]


def classification_source(name: str, train: tuple[torch.Tensor, torch.Tensor],
                          val: tuple[torch.Tensor, torch.Tensor], class_names: list[str],
                          image_size: int | None = None, padding: int = 0, flip: bool = False,
                          augment: bool = True, extra: dict | None = None,
                          test: tuple[torch.Tensor, torch.Tensor] | None = None,
                          splits: dict[str, str] | None = None) -> "DataSource":
    """Wrap uint8 (images, labels) pairs as a classify `DataSource`, resizing and normalising.

    Mean and std come from the training images, so the same source always normalises the same way.
    `test`, when given, is the held-out set reports use; `splits` says where each set came from.
    """

    if image_size is not None:
        if int(image_size) < 4:
            raise LeannetError(f"image_size must be at least 4, got {image_size}")
        train = (resize_uint8(train[0], int(image_size)), train[1])
        val = (resize_uint8(val[0], int(image_size)), val[1])
        if test is not None:
            test = (resize_uint8(test[0], int(image_size)), test[1])
    mean, std = channel_stats(train[0])
    transform = RandomCropFlip(padding, flip) if augment and (padding or flip) else None
    return DataSource(
        name=name,
        train=ImageTensorDataset(train[0], train[1], mean, std, transform),
        val=ImageTensorDataset(val[0], val[1], mean, std),
        num_classes=len(class_names),
        in_channels=int(train[0].shape[1]),
        image_size=int(train[0].shape[-1]),
        task="classify",
        class_names=list(class_names),
        extra={"mean": mean, "std": std, **(extra or {})},
        test=ImageTensorDataset(test[0], test[1], mean, std) if test is not None else None,
        splits=dict(splits or {}),
    )
