"""Carving a validation (or test) set out of a training set: seeded, stratified, sized by fraction.

Why: the official test split of MNIST, Fashion-MNIST and CIFAR-10 must stay unseen until the
report, so model selection (best epoch, prune guard, calibration) needs its own validation set,
taken from the training images. The carve depends only on the labels, the fraction and `seed`
(not on the training seed), so every run of a benchmark selects on the same images.
"""
from __future__ import annotations

import torch

from leannet import checks

DEFAULT_VAL_FRACTION = 0.1
SPLIT_SEED = 0


def check_fraction(fraction: float, what: str = "--val-fraction") -> float:
    """A fraction strictly between 0 and 1 (NaN, inf and 0 refused in one line)."""
    checks.number(what, fraction, low=0, high=1, low_open=True, high_open=True)
    return float(fraction)


def stratified_indices(labels: torch.Tensor, fraction: float, seed: int = SPLIT_SEED
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) sorted index tensors: `fraction` of every class carved, at least one image
    of each class that has two or more, none of a class with a single image."""
    check_fraction(fraction)
    labels = torch.as_tensor(labels).long().flatten()
    generator = torch.Generator().manual_seed(int(seed))
    kept: list[torch.Tensor] = []
    carved: list[torch.Tensor] = []
    for label in labels.unique().tolist():
        idx = (labels == label).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        count = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        carved.append(idx[:count])
        kept.append(idx[count:])
    empty = torch.zeros(0, dtype=torch.long)
    return (torch.cat(kept).sort().values if kept else empty,
            torch.cat(carved).sort().values if carved else empty)


def random_indices(size: int, fraction: float, seed: int = SPLIT_SEED
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) for unlabelled items (detection images): a seeded draw of `fraction`,
    at least one item carved and one kept when there are two or more."""
    check_fraction(fraction)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed)))
    count = min(max(1, round(fraction * size)), size - 1) if size > 1 else 0
    return order[count:].sort().values, order[:count].sort().values


def carve(pair: tuple[torch.Tensor, torch.Tensor], fraction: float, seed: int = SPLIT_SEED
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split an (images, labels) pair into (kept, carved) pairs, stratified by label."""
    images, labels = pair
    kept, carved = stratified_indices(labels, fraction, seed)
    return (images[kept], labels[kept]), (images[carved], labels[carved])


def carved_note(fraction: float, seed: int, of: str = "train") -> str:
    """How a carved split was made, for result.json and reports."""
    return f"{fraction:g} of the {of} images, stratified by class, split seed {seed}"
