"""The vectorised union-find agrees with one-by-one unions and stays fast on broadcast stars."""
from __future__ import annotations

import time

import numpy as np

from leannet.prune.capture.unionfind import UnionFind


def _classes(uf: UnionFind, n: int) -> set[frozenset[int]]:
    roots = uf.roots(np.arange(n))
    return {frozenset(np.nonzero(roots == r)[0].tolist()) for r in np.unique(roots)}


def test_vectorised_unions_match_scalar_unions_and_carry_flags():
    rng = np.random.default_rng(0)
    fast, slow = UnionFind(), UnionFind()
    for uf in (fast, slow):
        owner = uf.new_owner("a")
        uf.new(300, owner)
    fast.protect(np.array([7]))
    slow.protect(np.array([7]))
    for _ in range(5):
        a, b = rng.integers(0, 300, 40), rng.integers(0, 300, 40)
        fast.union_arrays(a, b)
        for x, y in zip(a, b):
            slow.union(int(x), int(y))
    assert _classes(fast, 300) == _classes(slow, 300)
    assert np.array_equal(fast.is_protected(np.arange(300)), slow.is_protected(np.arange(300)))


def test_broadcast_star_is_fast():
    uf = UnionFind()
    channels = uf.new(5000, uf.new_owner("conv"))
    constant = uf.new(1, uf.new_owner("~const"), protected=True)
    start = time.perf_counter()
    uf.union_arrays(np.repeat(constant, 5000), channels)
    assert time.perf_counter() - start < 1.0
    assert len(np.unique(uf.roots(channels))) == 1 and uf.is_protected(channels).all()
    assert uf.group_of(channels)[0] == uf.group_of(constant)[0]
