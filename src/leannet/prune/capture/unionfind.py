"""Union-find over channel atoms, with a protected flag and the producer ("owner") of each atom.

An atom is one channel of one producer (a conv's output channel, a parameter's entry...). Atoms
that must be removed together are unioned; their class is one prunable channel of a group.
"""
from __future__ import annotations

import numpy as np


class UnionFind:
    """Growable union-find on integer atoms; vectorised `roots` for label arrays."""

    def __init__(self) -> None:
        self.parent = np.zeros(0, dtype=np.int64)
        self.protected = np.zeros(0, dtype=bool)
        self.owner = np.zeros(0, dtype=np.int64)
        self.owner_parent: list[int] = []
        self.owner_names: list[str] = []
        self.size = 0

    def new_owner(self, name: str) -> int:
        """A new producer (the origin of a group), named for messages and plan keys."""
        self.owner_parent.append(len(self.owner_parent))
        self.owner_names.append(name)
        return len(self.owner_parent) - 1

    def new(self, count: int, owner: int, protected: bool = False) -> np.ndarray:
        """Allocate `count` fresh atoms belonging to `owner`."""
        start, end = self.size, self.size + count
        if end > len(self.parent):
            capacity = max(1024, 2 * end)
            self.parent = np.concatenate([self.parent, np.arange(len(self.parent), capacity)])
            self.protected = np.concatenate(
                [self.protected, np.zeros(capacity - len(self.protected), dtype=bool)])
            self.owner = np.concatenate(
                [self.owner, np.zeros(capacity - len(self.owner), dtype=np.int64)])
        self.protected[start:end] = protected
        self.owner[start:end] = owner
        self.size = end
        return np.arange(start, end, dtype=np.int64)

    def find(self, atom: int) -> int:
        """Root of one atom (path halving)."""
        parent = self.parent
        while parent[atom] != atom:
            parent[atom] = parent[parent[atom]]
            atom = parent[atom]
        return int(atom)

    def find_owner(self, owner: int) -> int:
        """Root of one owner."""
        parent = self.owner_parent
        while parent[owner] != owner:
            parent[owner] = parent[parent[owner]]
            owner = parent[owner]
        return owner

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        """Roots of an array of atoms, vectorised by pointer jumping."""
        atoms = np.asarray(atoms, dtype=np.int64)
        current = atoms
        while True:
            nxt = self.parent[current]
            if np.array_equal(nxt, current):
                break
            current = nxt
        if atoms.size:
            self.parent[atoms.ravel()] = current.ravel()
        return current

    def union(self, a: int, b: int) -> None:
        """Merge the classes of two atoms (and their owners' groups)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.protected[ra] |= self.protected[rb]
        self._union_owners(self.owner[ra], self.owner[rb])

    def _union_owners(self, a: int, b: int) -> None:
        oa, ob = self.find_owner(int(a)), self.find_owner(int(b))
        if oa != ob:
            self.owner_parent[max(oa, ob)] = min(oa, ob)

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union a[i] with b[i] for every i (vectorised: link larger roots under smaller ones
        until every pair shares a root; flags and owners follow)."""
        a = self.roots(np.asarray(a).ravel())
        b = self.roots(np.asarray(b).ravel())
        differ = a != b
        if not differ.any():
            return
        a, b = a[differ], b[differ]
        oa, ob = self.owner[a], self.owner[b]
        if (oa == oa[0]).all() and (ob == ob[0]).all():
            self._union_owners(oa[0], ob[0])
        else:
            for x, y in set(zip(oa.tolist(), ob.tolist())):
                self._union_owners(x, y)
        involved = np.concatenate([a, b])
        flags = self.protected[involved].copy()
        while True:  # hook every root under its smallest partner (no long chains, no cycles)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            order = np.lexsort((lo, hi))
            hi, lo = hi[order], lo[order]
            first = np.concatenate([[True], hi[1:] != hi[:-1]])
            self.parent[hi[first]] = lo[first]
            a, b = self.roots(a), self.roots(b)
            if np.array_equal(a, b):
                break
        np.logical_or.at(self.protected, self.roots(involved), flags)

    def union_all(self, atoms: np.ndarray) -> None:
        """Union every atom of the array into one class."""
        atoms = np.unique(self.roots(np.asarray(atoms).ravel()))
        self.union_arrays(np.full(len(atoms), atoms[0]), atoms)

    def protect(self, atoms: np.ndarray) -> None:
        """Mark the classes of these atoms unprunable."""
        atoms = np.asarray(atoms).ravel()
        if atoms.size:
            self.protected[self.roots(atoms)] = True

    def is_protected(self, atoms: np.ndarray) -> np.ndarray:
        """Protected flag of each atom's class."""
        return self.protected[self.roots(atoms)]

    def group_of(self, atoms: np.ndarray) -> np.ndarray:
        """The owner-root (group id) of each atom's class (vectorised pointer jumping)."""
        parent = np.asarray(self.owner_parent, dtype=np.int64)
        current = self.owner[self.roots(atoms)]
        while True:
            nxt = parent[current]
            if np.array_equal(nxt, current):
                return current
            current = nxt
