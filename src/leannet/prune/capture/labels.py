"""Channel labels: for every traced tensor, an int64 tensor naming the atom of each element.

A label has the tensor's number of dimensions; a dimension has size 1 where the label is the same
all along it (compressed), else the tensor's size. Labels are kept as class roots, so a dimension
of size > 1 is one along which removable channels really differ.
"""
from __future__ import annotations

from typing import Any, Callable, overload

import numpy as np
import torch

from leannet.prune.capture.unionfind import UnionFind

Label = torch.Tensor


def compress(label: Label) -> Label:
    """Shrink every dimension along which the label is constant to size 1."""
    for dim in range(label.dim()):
        if label.shape[dim] > 1 and bool((label == label.narrow(dim, 0, 1)).all()):
            label = label.narrow(dim, 0, 1)
    return label.contiguous()


@overload
def canon(uf: UnionFind, label: Label) -> Label: ...
@overload
def canon(uf: UnionFind, label: None) -> None: ...
def canon(uf: UnionFind, label: Label | None) -> Label | None:
    """The label with atoms replaced by their class roots, compressed."""
    if label is None:
        return None
    roots = uf.roots(label.numpy())
    return compress(torch.from_numpy(np.ascontiguousarray(roots)).reshape(label.shape))


def tree_map(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply fn to every leaf of nested tuples/lists/dicts (namedtuples kept as tuples)."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(tree_map(fn, x) for x in obj) if type(obj) in (tuple, list) \
            else tuple(tree_map(fn, x) for x in obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    return fn(obj)


def tree_leaves(obj: Any) -> list[Any]:
    """Every leaf of nested tuples/lists/dicts/slices."""
    if isinstance(obj, (tuple, list)):
        return [leaf for x in obj for leaf in tree_leaves(x)]
    if isinstance(obj, dict):
        return [leaf for v in obj.values() for leaf in tree_leaves(v)]
    return [obj]


def fresh(uf: UnionFind, ndim: int, dim: int, count: int, owner: int) -> tuple[Label, np.ndarray]:
    """A label whose dimension `dim` holds `count` new atoms of `owner`."""
    atoms = uf.new(count, owner)
    shape = [1] * ndim
    shape[dim] = count
    return torch.from_numpy(atoms.copy()).reshape(shape), atoms


def constant(uf: UnionFind, ndim: int, owner: int) -> Label:
    """A single protected atom covering a whole tensor (inputs, results of unknown ops)."""
    atom = uf.new(1, owner, protected=True)
    return torch.from_numpy(atom.copy()).reshape([1] * ndim)


def channel_atoms(uf: UnionFind, label: Label, dim: int, size: int) -> np.ndarray:
    """Atoms along `dim` (length `size`); protects everything if the label varies elsewhere."""
    label = canon(uf, label)
    dim = dim % label.dim()
    moved = label.movedim(dim, 0).reshape(label.shape[dim], -1)
    if moved.shape[1] > 1:
        uf.protect(label.numpy())
    atoms = moved[:, 0].numpy()
    if atoms.size == 1 and size > 1:
        atoms = np.repeat(atoms, size)
    return atoms.copy()
