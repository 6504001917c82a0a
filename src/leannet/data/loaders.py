"""Train and validation DataLoaders for a DataSource, deterministic given a seed."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from leannet.data.registry import DataSource
from leannet.errors import LeannetError


def make_loaders(source: DataSource, batch_size: int, seed: int = 0, workers: int = 0
                 ) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders; the train order is shuffled by a generator seeded with `seed`.

    A source may supply its own `extra["collate_fn"]` (detection targets are lists of boxes). A last
    training batch of a single sample is dropped, since batch norm cannot train on it.
    """
    if batch_size < 1:
        raise LeannetError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise LeannetError(f"workers must be >= 0, got {workers}")
    train_size, val_size = len(source.train), len(source.val)  # type: ignore[arg-type]
    if train_size == 0 or val_size == 0:
        raise LeannetError(f"data source {source.name!r} has an empty train or validation set")
    generator = torch.Generator().manual_seed(seed)
    collate = source.extra.get("collate_fn")
    pin = torch.cuda.is_available()
    train = DataLoader(source.train, batch_size=batch_size, shuffle=True, generator=generator,
                       drop_last=train_size % batch_size == 1, num_workers=workers,
                       collate_fn=collate, persistent_workers=workers > 0, pin_memory=pin)
    val = DataLoader(source.val, batch_size=batch_size * 2, shuffle=False, num_workers=workers,
                     collate_fn=collate, persistent_workers=workers > 0, pin_memory=pin)
    return train, val
