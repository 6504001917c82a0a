"""Train, validation and calibration DataLoaders for a DataSource, deterministic given a seed,
sharded over ranks under torchrun.

In one process the training loader shuffles with a generator seeded with `seed`; under torchrun
each rank reads its own shard of one seeded permutation (`leannet.distributed`), with
`batch_size` per rank as torch's DDP recipe has it. Calibration reads the first batches of one
seeded permutation, the same samples in one process or many. Loading that keeps a GPU busy:
worker processes (`workers`) that persist between epochs and prefetch, and pinned memory when
CUDA is present.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from leannet import distributed
from leannet.data.registry import DataSource
from leannet.errors import LeannetError


def _options(workers: int, collate: Any) -> dict[str, Any]:
    """DataLoader options shared by every loader: workers that persist, pinned memory on CUDA."""
    options: dict[str, Any] = {"num_workers": workers, "collate_fn": collate,
                               "pin_memory": torch.cuda.is_available()}
    if workers > 0:
        options |= {"persistent_workers": True, "prefetch_factor": 4}
    return options


def make_loaders(source: DataSource, batch_size: int, seed: int = 0, workers: int = 0
                 ) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders; the train order is shuffled by a generator seeded with `seed`.

    A source may supply its own `extra["collate_fn"]` (detection targets are lists of boxes). A last
    training batch of a single sample is dropped, since batch norm cannot train on it. Under
    torchrun both loaders are sharded: training shards are equal in length (DDP steps together),
    validation shards hold each sample once (metrics are summed over ranks).
    """
    if batch_size < 1:
        raise LeannetError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise LeannetError(f"workers must be >= 0, got {workers}")
    train_size, val_size = len(source.train), len(source.val)  # type: ignore[arg-type]
    if train_size == 0 or val_size == 0:
        raise LeannetError(f"data source {source.name!r} has an empty train or validation set")
    options = _options(workers, source.extra.get("collate_fn"))
    if distributed.active():
        sampler = distributed.TrainShardSampler(train_size, shuffle=True, seed=seed)
        shard = len(sampler)
        train = DataLoader(source.train, batch_size=batch_size, sampler=sampler,
                           drop_last=shard % batch_size == 1, **options)
        val = DataLoader(source.val, batch_size=batch_size * 2,
                         sampler=distributed.ShardSampler(val_size), **options)
        return train, val
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(source.train, batch_size=batch_size, shuffle=True, generator=generator,
                       drop_last=train_size % batch_size == 1, **options)
    val = DataLoader(source.val, batch_size=batch_size * 2, shuffle=False, **options)
    return train, val


def plain(dataset: Dataset) -> Dataset:
    """The dataset without its random augmentation (a shallow copy), when it has a `transform`
    or an `augment` switch; else the dataset itself."""
    changes = {k: v for k, v in (("transform", None), ("augment", False))
               if getattr(dataset, k, None) not in (None, False)}
    if not changes:
        return dataset
    twin = copy.copy(dataset)
    for key, value in changes.items():
        setattr(twin, key, value)
    return twin


def calibration_loader(source: DataSource, batch_size: int, seed: int, max_batches: int,
                       workers: int = 0, split: str = "train") -> DataLoader:
    """The first `max_batches` batches of the seeded order of `split` (`train` or `val`, the
    held-out set the guide speaks of), without augmentation.

    Calibration measures the data, not random crops of it: un-augmented, the statistics of a
    sample do not depend on which process reads it, so under torchrun each rank reads every
    world-th sample of the same `max_batches * batch_size` and the sums over ranks are exactly
    the single-process ones (the same channels are ranked the same way on every rank).
    """
    if batch_size < 1 or max_batches < 1:
        raise LeannetError(f"calibration needs batch size and batches >= 1, got {batch_size} "
                           f"and {max_batches}")
    if split not in ("train", "val"):
        raise LeannetError(f"calibration split must be train or val, got {split!r}")
    dataset = plain(source.split(split))
    sampler = distributed.ShardSampler(len(dataset), shuffle=True, seed=seed,  # type: ignore
                                       limit=max_batches * batch_size)
    per_rank = math.ceil(batch_size / distributed.world_size())
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler,
                      **_options(workers, source.extra.get("collate_fn")))


def split_loader(source: DataSource, split: str, batch_size: int, workers: int = 0) -> DataLoader:
    """An unshuffled loader over one split (`val` selects, `test` reports); nothing is dropped.

    Under torchrun each rank reads its shard once, as the validation loader of `make_loaders`.
    """
    if batch_size < 1:
        raise LeannetError(f"batch size must be at least 1, got {batch_size}")
    dataset = source.split(split)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise LeannetError(f"data source {source.name!r} has an empty {split} set")
    options = _options(workers, source.extra.get("collate_fn"))
    if distributed.active():
        return DataLoader(dataset, batch_size=batch_size,
                          sampler=distributed.ShardSampler(len(dataset)),  # type: ignore
                          **options)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)
