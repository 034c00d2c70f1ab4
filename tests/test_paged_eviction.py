"""Prefix-cache eviction through the leaf heap (kvlib.paged.prefix) against the scan it replaced.

Both designs keep their evictable leaves in a heap with lazy invalidation, so evicting a block costs
O(log n). The order must be the one a full scan gives: :class:`ScanOracle` is that scan, written
over the cache's public state, and a random walk of admissions, appends, forks, frees, touches of
several branches at once (ties on time) and evictions (asked for, or forced by a full pool) must
evict exactly the blocks it predicts, in its order, for both designs.
"""

from __future__ import annotations

import heapq
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvlib.paged import BlockManager, HashPrefixCache, OutOfBlocks, PrefixCache, RadixPrefixCache

pytestmark = pytest.mark.ch06

BLOCK_SIZE = 2
NUM_BLOCKS = 10  # small: admissions often have to evict
# shared prefixes (hits, branches) and one-block ones (many leaves at depth 0, so touches can tie)
PREFIXES = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7, 7], [1, 2, 9, 9], [5, 5], [6, 6], [8, 8], []]


def _depth(parents: dict[int, int | None], block_id: int) -> int:
    depth, up = 0, parents[block_id]
    while up is not None:
        depth, up = depth + 1, parents[up]
    return depth


def _leaf_set(parents: dict[int, int | None], locked: set[int]) -> set[int]:
    has_child = {p for p in parents.values() if p is not None}
    return {b for b in parents if b not in locked and b not in has_child}


class ScanOracle:
    """The eviction order before the heap: for each block, a scan over every evictable leaf for the
    least recently used, deepest first on equal times, and on a full tie the leaf that became one
    first (the scan ran over a dict of leaves in insertion order).

    It follows the cache's leaf set through :meth:`sync` after each operation; an operation other
    than an eviction adds at most one leaf, so the order in which leaves appeared is known."""

    def __init__(self, cache: PrefixCache) -> None:
        self.cache = cache
        self.leaves: dict[int, None] = {}  # insertion-ordered: the order blocks became leaves
        self.ties = 0  # evictions where another leaf had the same last-use time and depth

    def sync(self) -> None:
        now = _leaf_set(self.cache.cached_blocks(), self.cache.locked_blocks())
        for block_id in [b for b in self.leaves if b not in now]:
            del self.leaves[block_id]
        new = now - self.leaves.keys()
        assert len(new) <= 1, f"one operation made {sorted(new)} leaves at once: their order is unknown"
        self.leaves.update(dict.fromkeys(new))

    def predict(self, n: int) -> list[int]:
        """The ``n`` blocks the scan evicts, in order (and the leaf set after them)."""
        self.sync()
        parents, locked = self.cache.cached_blocks(), self.cache.locked_blocks()
        evicted = []
        for _ in range(n):
            keys = {b: (self.cache.last_access(b), -_depth(parents, b)) for b in self.leaves}
            victim = min(self.leaves, key=keys.__getitem__)
            self.ties += sum(k == keys[victim] for k in keys.values()) > 1
            del self.leaves[victim]
            parent = parents.pop(victim)
            evicted.append(victim)
            if parent is not None and parent not in locked and parent not in parents.values():
                self.leaves[parent] = None
        return evicted


def _checked_manager(kind: str) -> tuple[BlockManager, ScanOracle, list[list[int]]]:
    """A manager whose cache's every eviction (asked for or forced) is compared with the oracle's;
    also returns the oracle (to :meth:`~ScanOracle.sync` after each step) and the evictions made."""
    mgr = BlockManager(NUM_BLOCKS, BLOCK_SIZE, prefix_cache=kind)
    cache = mgr.cache
    assert cache is not None
    oracle, heap_evict, log = ScanOracle(cache), cache.evict, []

    def evict(n: int) -> list[int]:
        expected = oracle.predict(n)
        got = heap_evict(n)
        assert got == expected, f"the heap evicted {got}, the scan evicts {expected}"
        log.append(got)
        return got

    cache.evict = evict  # the manager evicts through this when an allocation needs room
    return mgr, oracle, log


ADMIT = st.tuples(
    st.just("admit"), st.sampled_from(range(len(PREFIXES))), st.lists(st.integers(0, 3), max_size=5)
)
FREE = st.tuples(st.just("free"), st.integers(0, 99))
OPS = st.one_of(  # admissions and frees twice as often as the rest: they fill the pool and make leaves
    ADMIT,
    ADMIT,
    FREE,
    FREE,
    st.tuples(st.just("append"), st.integers(0, 99), st.integers(0, 3)),
    st.tuples(st.just("fork"), st.integers(0, 99)),
    st.tuples(st.just("touch"), st.integers(0, 99), st.integers(2, 4)),
    st.tuples(st.just("reclaim"), st.integers(1, 3)),
)


def _step(mgr: BlockManager, op: tuple, next_id: int) -> None:
    cache, seqs = mgr.cache, sorted(mgr.seqs)
    assert cache is not None
    name, *args = op
    try:
        if name == "admit":
            prompt = PREFIXES[args[0]] + args[1]
            if prompt:
                mgr.allocate(next_id, prompt)
        elif name == "append" and seqs:
            mgr.append(seqs[args[0] % len(seqs)], args[1])
        elif name == "fork" and seqs:
            mgr.fork(seqs[args[0] % len(seqs)], next_id)
        elif name == "free" and seqs:
            mgr.free(seqs[args[0] % len(seqs)])
        elif name == "touch" and cache.num_cached:
            # several idle leaves where there are some (ties on time, often on depth too), else any blocks
            leaves = sorted(_leaf_set(cache.cached_blocks(), cache.locked_blocks()))
            pool = leaves if len(leaves) >= 2 else sorted(cache.cached_blocks())
            start, k = args
            cache.touch(sorted({pool[(start + j) % len(pool)] for j in range(k)}))
        elif name == "reclaim":
            mgr.reclaim(min(args[0], cache.num_evictable))
    except OutOfBlocks:
        pass


@pytest.mark.parametrize("kind", ["hash", "radix"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=10, max_size=50))
def test_heap_evicts_what_the_scan_evicts(kind, ops):
    mgr, oracle, _ = _checked_manager(kind)
    for i, op in enumerate(ops):
        _step(mgr, op, next_id=i)
        oracle.sync()
        mgr.check_invariants()  # includes the heap: every evictable leaf has a live entry


@pytest.mark.parametrize("kind", ["hash", "radix"])
def test_random_walks_do_evict_and_tie(kind):
    """The walks above are worth something: a long walk of the same operations evicts many blocks, on
    demand and under allocation pressure, some of them on a full tie (time and depth) that only the
    leaf order breaks; the evictions match the scan there too."""
    rng = random.Random(0)
    mgr, oracle, log = _checked_manager(kind)
    for i in range(1500):
        _step(mgr, _random_op(rng), next_id=i)
        oracle.sync()
    mgr.check_invariants()
    assert sum(map(len, log)) >= 200 and oracle.ties >= 5, (sum(map(len, log)), oracle.ties)


def _random_op(rng) -> tuple:
    name = rng.choice(["admit", "admit", "append", "fork", "free", "free", "touch", "touch", "reclaim"])
    if name == "admit":
        return name, rng.randrange(len(PREFIXES)), [rng.randrange(4) for _ in range(rng.randrange(6))]
    if name == "touch":
        return name, rng.randrange(100), rng.randrange(2, 5)
    if name == "reclaim":
        return name, rng.randrange(1, 4)
    return (name, rng.randrange(100), rng.randrange(4))[: 3 if name == "append" else 2]


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_stale_heap_entries_are_dropped_once_they_outnumber_the_leaves(cls):
    """Every use of an idle leaf pushes a new heap entry and leaves the old one stale; the heap is
    rebuilt from the leaves before it holds more than twice as many entries (plus slack), so a cache
    that is used but never evicts does not grow without bound, and its order is unchanged."""
    cache = cls(2)
    cache.insert([1, 2, 3, 4], [10, 11])
    cache.insert([5, 6], [20])
    cache.unlock(11)
    cache.unlock(20)
    for _ in range(500):
        cache.touch([11])
        cache.touch([20])
    assert len(cache._leaf_heap) <= 2 * 2 + 64 + 1
    cache.check_invariants()
    assert cache.evict(1) == [11]  # touched before 20 in the last round
    cache.unlock(10)
    assert cache.evict(2) == [20, 10]


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_a_full_tie_goes_to_the_leaf_that_became_one_first(cls):
    """Three one-block chains, idle, touched in one call: same time, same depth. The one that became an
    evictable leaf first goes first (block 30, unlocked before 10 and 20); both designs agree."""
    cache = cls(2)
    for tokens, block_id in (([1, 1], 10), ([2, 2], 20), ([3, 3], 30)):
        cache.insert(tokens, [block_id])
    for block_id in (30, 10, 20):
        cache.unlock(block_id)
    cache.touch([10, 20, 30])
    assert cache.evict(3) == [30, 10, 20] and cache.num_evicted == 3


def _drop_live_entry(cache: PrefixCache, block_id: int) -> None:
    cache._leaf_heap = [e for e in cache._leaf_heap if e[-1] != block_id]
    heapq.heapify(cache._leaf_heap)


HEAP_CORRUPTIONS = {
    "entry-missing": (lambda c: _drop_live_entry(c, 12), "evictable leaf 12 has no live heap entry"),
    "entry-stale": (lambda c: c._last_access.__setitem__(12, 0), "evictable leaf 12 has no live heap entry"),
    "depth": (lambda c: c._leaves.__setitem__(12, (0, c._leaves[12][1])), "keyed at depth 0, but it is at 2"),
    "leaf-locked": (lambda c: c._leaves.__setitem__(11, (-1, 99)), "leaf set wrong for block 11: listed"),
    "leaf-missing": (lambda c: c._leaves.pop(21), "leaf set wrong for block 21: idle"),
    "order": (lambda c: c._leaf_heap.reverse(), "the leaf heap is not a heap"),
}


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
@pytest.mark.parametrize("case", sorted(HEAP_CORRUPTIONS))
def test_check_invariants_names_a_leaf_heap_out_of_step_with_the_tree(cls, case):
    """(1,2)(3,4)(5,6) in 10 11 12 with 12 idle, and (7,7)(8,8) in 20 21 both idle: leaves 12 and 21,
    each with a live heap entry (and the slack of stale ones a use leaves)."""
    cache = cls(2)
    cache.insert([1, 2, 3, 4, 5, 6], [10, 11, 12])
    cache.insert([7, 7, 8, 8], [20, 21])
    for block_id in (12, 21, 20):
        cache.unlock(block_id)
    cache.touch([21])
    cache.check_invariants()
    corrupt, message = HEAP_CORRUPTIONS[case]
    corrupt(cache)
    with pytest.raises(AssertionError, match=re.escape(message)):
        cache.check_invariants()
