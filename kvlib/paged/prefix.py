"""Prefix caching: find the physical blocks that already hold the KV of a prompt's prefix.

Two designs behind one interface (:class:`PrefixCache`), so the course can compare them:

- :class:`HashPrefixCache` (the vLLM design): every *full* block gets a key that covers its own
  tokens and its parent's key, ``key_i = hash(key_{i-1}, tokens_i)``, so equal keys mean equal
  prefixes (up to hash collisions). Lookup walks the prompt block by block through one hash table.
  Because a key is only a hash, each table slot keeps the stored tokens and the parent entry and a
  lookup compares them: a collision can cost a miss, never a false hit.
- :class:`RadixPrefixCache` (the SGLang RadixAttention design): a radix tree over token sequences
  whose edges are runs of full blocks; a chain of blocks that nobody branches off is one node
  (path compression). Lookup walks the tree comparing tokens.

Granularity is the block: only full blocks are cached, since a partial block is still being
written by its sequence.

Cached blocks are *locked* while a sequence uses them (reference count >= 1, the block manager
calls :meth:`PrefixCache.lock` / :meth:`PrefixCache.unlock` on the 0 <-> 1 transitions).
Unlocked cached blocks stay reusable until :meth:`PrefixCache.evict` reclaims them, least
recently used first and always from the leaves, so a cached block never outlives its ancestors
(a lookup could not reach it).

Recency is kept per *block*, in one table shared by both designs: a block is used when it is
registered, when a lookup that the caller commits to matches it (:meth:`PrefixCache.touch`),
and when its last owner lets it go. A lookup that matches the first ``k`` blocks of a radix run
refreshes those ``k`` blocks only, so both designs evict the same block, the least recently used
evictable leaf block (deepest first among equal times). The evictable leaves are kept in a heap
with lazy invalidation (SGLang's design), shared by both designs, so evicting a block costs
O(log n) instead of a scan over every cached block.

Both designs keep the invariant *an in-use block's ancestors are in use* (a sequence that holds a
block holds its whole prefix; ``insert_block`` refuses an idle parent), which is why every
unlocked cached block can eventually be evicted and ``num_evictable`` equals the number of
unlocked ones.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kvlib.validate import describe, require_int, require_token_ids

__all__ = [
    "PrefixCache",
    "HashPrefixCache",
    "RadixPrefixCache",
    "make_prefix_cache",
    "block_hashes",
    "default_block_hash",
]

BlockTokens = tuple[int, ...]


def split_full_blocks(tokens: Sequence[int], block_size: int) -> list[BlockTokens]:
    """The full blocks of ``tokens`` as tuples; a trailing partial block is dropped."""
    n_full = len(tokens) // block_size
    return [tuple(tokens[i * block_size : (i + 1) * block_size]) for i in range(n_full)]


def _require_block_ids(name: str, block_ids: Sequence[int]) -> list[int]:
    """A sequence of block ids (ints >= 0) as a list; a bare int is the usual slip."""
    if isinstance(block_ids, (str, bytes)) or not isinstance(block_ids, Sequence):
        raise TypeError(f"{name} must be a sequence of block ids, got {describe(block_ids)}")
    return [require_int(f"{name}[{i}]", b, minimum=0) for i, b in enumerate(block_ids)]


class PrefixCache(ABC):
    """Interface shared by the hash-chain and radix-tree prefix caches (block granularity)."""

    def __init__(self, block_size: int) -> None:
        self.block_size = require_int("block_size", block_size, minimum=1)
        self._clock = 0  # logical time for LRU
        self._last_access: dict[int, int] = {}  # cached block id -> time of its last use
        # the evictable leaves (idle cached blocks without a cached child: the only blocks eviction
        # may take), each with the fixed part of its LRU key, (-depth, when it became a leaf)
        self._leaves: dict[int, tuple[int, int]] = {}
        self._num_leaf_events = 0  # blocks that became evictable leaves so far: the leaf order above
        # (last use, -depth, leaf order, block id) per leaf, plus stale entries (see _pop_lru_leaf)
        self._leaf_heap: list[tuple[int, int, int, int]] = []
        self.num_evicted = 0  # blocks evicted over the cache's life (a statistic: not in state())
        # set by the BlockManager that adopts this cache: its entries name that manager's physical
        # blocks, so one cache object can serve one manager only (BlockManager refuses a second)
        self.attached = False

    # --- recency (shared by both designs) -------------------------------------------------
    def _stamp(self, block_ids: Sequence[int]) -> None:
        """Record one use, now, of every block in ``block_ids`` (one clock tick for all)."""
        if not block_ids:
            return
        self._clock += 1
        for block_id in block_ids:
            self._last_access[block_id] = self._clock
            if block_id in self._leaves:  # its key changed: a new heap entry, the old one goes stale
                self._push_leaf(block_id)

    def touch(self, block_ids: Sequence[int]) -> None:
        """Mark exactly these cached blocks as used now (a committed hit), and no others."""
        block_ids = _require_block_ids("block_ids", block_ids)
        missing = [b for b in block_ids if not self.contains(b)]
        if missing:
            raise KeyError(f"cannot touch blocks {missing}: they are not cached")
        self._stamp(block_ids)

    def last_access(self, block_id: int) -> int:
        """Logical time of the last use of cached block ``block_id`` (larger is more recent)."""
        return self._last_access[block_id]

    # --- eviction order (shared by both designs) ------------------------------------------
    def _lru_key(self, block_id: int) -> tuple[int, int, int]:
        """Eviction order of evictable leaf ``block_id``: least recently used first; among equal
        times the deepest first; among equal depths the one that became a leaf first.

        Only leaves are candidates, and through a BlockManager two leaves never tie on time: each
        stamp covers one block or one matched chain, and a chain has one leaf. Ties arise when a
        caller :meth:`touch`-es blocks of different branches in one call. Both designs make a block a
        leaf on the same events (unlocked without a cached child, or its last child evicted), so the
        leaf order breaks the remaining ties identically in both."""
        neg_depth, leaf_order = self._leaves[block_id]
        return self._last_access[block_id], neg_depth, leaf_order

    def _add_leaf(self, block_id: int, depth: int) -> None:
        """Cached block ``block_id``, ``depth`` blocks from the root, just became an evictable leaf."""
        self._num_leaf_events += 1
        self._leaves[block_id] = (-depth, self._num_leaf_events)
        self._push_leaf(block_id)

    def _drop_leaf(self, block_id: int) -> None:
        """``block_id`` was locked: no longer evictable. Its heap entries go stale, left in place."""
        self._leaves.pop(block_id, None)

    def _push_leaf(self, block_id: int) -> None:
        """Push the current key of evictable leaf ``block_id``; once stale entries outnumber live ones
        (plus some slack), rebuild the heap from the leaves: O(leaves), paid for by as many pushes."""
        heapq.heappush(self._leaf_heap, (*self._lru_key(block_id), block_id))
        if len(self._leaf_heap) > 2 * len(self._leaves) + 64:
            self._leaf_heap = [(*self._lru_key(b), b) for b in self._leaves]
            heapq.heapify(self._leaf_heap)

    def _pop_lru_leaf(self) -> tuple[int, int]:
        """Remove the least recently used evictable leaf from the leaf set; returns ``(block_id, depth)``.

        Lazy invalidation: a lock or a new use does not search the heap, so an entry is skipped here
        unless its block is still an evictable leaf with the key it was pushed with. The leaf order
        is new each time a block becomes a leaf, so an entry from an earlier life of a reused block id
        never matches."""
        while self._leaf_heap:
            last_use, neg_depth, leaf_order, block_id = heapq.heappop(self._leaf_heap)
            live = self._leaves.get(block_id) == (neg_depth, leaf_order)
            if live and self._last_access[block_id] == last_use:
                del self._leaves[block_id]
                return block_id, -neg_depth
        raise AssertionError("no live heap entry although a block is evictable: the leaf heap lost a leaf")

    # --- lookup ---------------------------------------------------------------------------
    def match(self, tokens: Sequence[int], touch: bool = True) -> list[int]:
        """Block ids holding the longest cached prefix of ``tokens`` made of full blocks.

        Marks the matched blocks (and only them) as recently used unless ``touch`` is False; a
        caller that may still back out (the block manager before its capacity check) passes
        False and calls :meth:`touch` once it commits. Does not lock them: the caller locks the
        blocks it decides to use (through the block manager's reference counts)."""
        ids = self._lookup(require_token_ids("tokens", tokens))
        if touch:
            self._stamp(ids)
        return ids

    @abstractmethod
    def _lookup(self, tokens: Sequence[int]) -> list[int]:
        """The matched block ids of :meth:`match`, with no side effect."""

    def insert_block(self, parent_block: int | None, tokens: Sequence[int], block_id: int) -> bool:
        """Register the full block ``block_id`` holding ``tokens`` after cached block ``parent_block``
        (``None`` for the first block of a sequence). The block must be in use (it is registered
        locked), and so must its parent: a locked child under an idle parent would make the parent
        count as evictable although it cannot go before its child (ValueError). Returns True when
        ``block_id`` is now the cached block for that prefix (newly or already), False when the
        same prefix is already cached in a *different* block (the caller keeps its duplicate
        private and stops registering that sequence's later blocks)."""
        return self._insert_block(*self._check_block_args(parent_block, tokens, block_id))

    @abstractmethod
    def _insert_block(self, parent_block: int | None, tokens: BlockTokens, block_id: int) -> bool:
        """:meth:`insert_block` on checked arguments. The block manager calls it (and
        :meth:`_lookup`) directly: its tokens and ids are validated once per call, not per block."""

    @abstractmethod
    def lock(self, block_id: int) -> None:
        """A cached block gained its first owner (reference count 0 -> 1)."""

    @abstractmethod
    def unlock(self, block_id: int) -> None:
        """A cached block lost its last owner (reference count 1 -> 0); it becomes evictable."""

    @abstractmethod
    def contains(self, block_id: int) -> bool:
        """Whether ``block_id`` is registered in the cache."""

    def evict(self, n: int) -> list[int]:
        """Unregister ``n`` unlocked blocks, least recently used leaves first, and return their ids
        (the caller puts them back on the free list). Raises ValueError if fewer are evictable.

        One block at a time, O(log n) each: the heap's least recently used leaf goes, and its parent
        becomes a leaf once it has no cached child left and is idle."""
        n = self._check_evict(n)
        evicted: list[int] = []
        for _ in range(n):
            block_id, depth = self._pop_lru_leaf()
            parent = self._unregister(block_id)
            del self._last_access[block_id]
            if parent is not None:
                self._add_leaf(parent, depth - 1)
            evicted.append(block_id)
        self.num_evicted += n
        return evicted

    @abstractmethod
    def _unregister(self, block_id: int) -> int | None:
        """Remove evictable leaf ``block_id`` from the design's structure (:meth:`evict` has taken it
        off the leaf set). Returns its parent block if that is now an evictable leaf, else None."""

    @property
    @abstractmethod
    def num_cached(self) -> int:
        """Blocks registered in the cache (locked or not)."""

    @property
    @abstractmethod
    def num_evictable(self) -> int:
        """Unlocked cached blocks (all of them can be evicted, leaves first)."""

    @abstractmethod
    def cached_blocks(self) -> dict[int, int | None]:
        """``{block_id: parent block_id or None}`` for every cached block (for invariant checks)."""

    @abstractmethod
    def locked_blocks(self) -> set[int]:
        """Cached block ids currently locked."""

    def state(self) -> tuple:
        """A hashable summary of everything that steers later behaviour (tests compare it to prove
        that a failed operation changed nothing): blocks and parents, locks, per-block last-use
        times, the clock, the design's own structure (:meth:`_structure`) and the evictable leaves
        with the fixed part of their eviction keys (depth, leaf order: :meth:`_lru_key`)."""
        return (
            tuple(sorted(self.cached_blocks().items())),
            tuple(sorted(self.locked_blocks())),
            tuple(sorted(self._last_access.items())),
            self._clock,
            self._structure(),
            tuple(sorted(self._leaves.items())),
        )

    def _structure(self) -> tuple:
        """Design-specific shape not captured by the parent map (the radix tree's runs)."""
        return ()

    def _check_block_args(
        self, parent_block: int | None, tokens: Sequence[int], block_id: int
    ) -> tuple[int | None, BlockTokens, int]:
        """``insert_block``'s arguments checked before any change: ids are ints >= 0, ``tokens`` one
        full block of token ids. Returns them as ``(parent_block, tokens tuple, block_id)``."""
        block_id = require_int("block_id", block_id, minimum=0)
        if parent_block is not None:
            parent_block = require_int("parent_block", parent_block, minimum=0)
        blk = tuple(require_token_ids("tokens", tokens))
        if len(blk) != self.block_size:
            raise ValueError(
                f"tokens: only full blocks are cached: got {len(blk)} tokens, block_size {self.block_size}"
            )
        return parent_block, blk, block_id

    def _check_evict(self, n: int) -> int:
        n = require_int("n (blocks to evict)", n, minimum=0)
        if n > self.num_evictable:
            raise ValueError(f"cannot evict {n} blocks: only {self.num_evictable} are unlocked")
        return n

    def _check_parent_in_use(self, parent_block: int, in_use: bool) -> None:
        if not in_use:
            raise ValueError(
                f"parent block {parent_block} is not in use: a block can only be registered below a "
                "locked (in-use) parent, since the sequence that holds a block holds its whole prefix"
            )

    def insert(self, tokens: Sequence[int], block_ids: Sequence[int]) -> int:
        """Register the full blocks of ``tokens`` stored in ``block_ids`` (in order).

        Returns how many leading blocks are now cached under exactly these ids; registration stops
        at the first block whose prefix is already cached in another block."""
        blocks = split_full_blocks(require_token_ids("tokens", tokens), self.block_size)
        block_ids = _require_block_ids("block_ids", block_ids)
        if len(block_ids) < len(blocks):
            raise ValueError(f"{len(blocks)} full block(s) of tokens but only {len(block_ids)} block_ids")
        start, stop = self._plan_insert(blocks, block_ids)  # raises before any change
        for i in range(start, stop):  # cannot fail now: the plan checked every block
            self._insert_block(block_ids[i - 1] if i else None, blocks[i], block_ids[i])
        return stop

    def _plan_insert(self, blocks: list[BlockTokens], block_ids: list[int]) -> tuple[int, int]:
        """Which of :meth:`insert`'s blocks are new, as ``(start, stop)``, with no state change: blocks
        before ``start`` are cached under these ids already, and registration stops at ``stop``. Raises
        ValueError for a new block id that is cached (for another prefix) or listed twice, or an idle
        parent, so that insert registers all of its new blocks or none."""
        hit = self._lookup([t for blk in blocks for t in blk])
        # the first block whose prefix is cached in another block: registration stops before it
        stop = next((i for i, cached in enumerate(hit) if cached != block_ids[i]), None)
        # parents must be in use: new ones will be (registered locked), and an in-use block's
        # ancestors are, so checking the deepest already cached parent insert_block reaches covers all
        deepest = min(len(blocks) - 1 if stop is None else stop, len(hit))
        if deepest >= 1:
            parent = block_ids[deepest - 1]
            self._check_parent_in_use(parent, parent in self.locked_blocks())
        if stop is not None:
            return stop, stop
        start, new = len(hit), block_ids[len(hit) : len(blocks)]
        seen: dict[int, int] = {}
        for i, block_id in enumerate(new, start):
            if self.contains(block_id):
                raise ValueError(f"block_ids[{i}] = {block_id} is already cached for another prefix")
            if block_id in seen:
                raise ValueError(
                    f"block_ids lists block {block_id} twice (positions {seen[block_id]} and {i}): "
                    "each physical block holds one block of tokens"
                )
            seen[block_id] = i
        return start, len(blocks)

    def check_invariants(self) -> None:
        """Every cached block's parent is cached (no orphans); counters agree.

        Raises AssertionError explicitly rather than with ``assert``, so it also works under -O."""
        cached = self.cached_blocks()
        for block_id, parent in cached.items():
            if parent is not None and parent not in cached:
                raise AssertionError(f"cached block {block_id} lost its parent {parent}")
        locked = self.locked_blocks()
        if not locked <= cached.keys():
            raise AssertionError("a locked block is not cached")
        for block_id in locked:
            parent = cached[block_id]
            if parent is not None and parent not in locked:
                raise AssertionError(
                    f"block {block_id} is in use but its parent {parent} is not: a sequence holds its prefix"
                )
        if self.num_evictable != len(cached) - len(locked):
            raise AssertionError(
                f"{self.num_evictable} evictable != {len(cached)} cached - {len(locked)} locked"
            )
        if self._last_access.keys() != cached.keys():
            raise AssertionError("last-use times out of sync with the cache")
        if any(t > self._clock for t in self._last_access.values()):
            raise AssertionError("a last-use time is in the future")
        self._check_leaf_heap(cached, locked)

    def _check_leaf_heap(self, cached: dict[int, int | None], locked: set[int]) -> None:
        """The leaf set is exactly the idle blocks without a cached child, at their true depths, and
        each has a live heap entry (one :meth:`_pop_lru_leaf` would accept) in a valid heap."""
        parents = {p for p in cached.values() if p is not None}
        leaves = {b for b in cached if b not in locked and b not in parents}
        wrong = self._leaves.keys() ^ leaves
        if wrong:
            block_id = min(wrong)
            why = (
                "listed as an evictable leaf, but it is locked or has a cached child"
                if block_id in self._leaves
                else "idle without a cached child, but missing from the evictable leaves"
            )
            raise AssertionError(f"leaf set wrong for block {block_id}: {why}")
        heap = self._leaf_heap
        live = set(heap)
        for block_id, (neg_depth, _) in self._leaves.items():
            depth, up = 0, cached[block_id]
            while up is not None:
                depth, up = depth + 1, cached[up]
            if -neg_depth != depth:
                raise AssertionError(f"leaf {block_id} is keyed at depth {-neg_depth}, but it is at {depth}")
            if (*self._lru_key(block_id), block_id) not in live:
                raise AssertionError(f"evictable leaf {block_id} has no live heap entry: it could never go")
        if any(heap[(i - 1) // 2] > heap[i] for i in range(1, len(heap))):
            raise AssertionError("the leaf heap is not a heap")


# ---------------------------------------------------------------------------------------------
# (a) hash chain over full blocks
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _HashEntry:
    key: int
    tokens: BlockTokens
    block_id: int
    parent: _HashEntry | None
    depth: int
    num_children: int = 0
    locked: bool = True


def default_block_hash(parent_key: int | None, tokens: BlockTokens) -> int:
    """Chain hash of a full block: covers its tokens and (through ``parent_key``) all earlier ones."""
    return hash((parent_key, tokens))


def block_hashes(
    tokens: Sequence[int], block_size: int, hash_fn: Callable[[int | None, BlockTokens], int] | None = None
) -> list[int]:
    """The chain key of every full block of ``tokens``: ``key_i = hash_fn(key_{i-1}, block_i)``, with
    ``key_{-1} = None``; a trailing partial block gets none (``len(tokens) // block_size`` keys)."""
    block_size = require_int("block_size", block_size, minimum=1)
    hash_fn = hash_fn or default_block_hash
    keys: list[int] = []
    parent: int | None = None
    for blk in split_full_blocks(require_token_ids("tokens", tokens), block_size):
        parent = hash_fn(parent, blk)
        keys.append(parent)
    return keys


class HashPrefixCache(PrefixCache):
    """Prefix cache as a hash table of full blocks keyed by ``hash(parent_key, tokens)``.

    ``hash_fn`` can be replaced (tests use a constant to force collisions). Each table slot is a
    bucket of entries; a lookup accepts an entry only if its stored tokens *and* parent entry
    match, so collisions are harmless.
    """

    def __init__(
        self, block_size: int, hash_fn: Callable[[int | None, BlockTokens], int] | None = None
    ) -> None:
        super().__init__(block_size)
        self.hash_fn = hash_fn or default_block_hash
        self._table: dict[int, list[_HashEntry]] = {}
        self._by_block: dict[int, _HashEntry] = {}
        self._num_locked = 0

    def _find(self, key: int, parent: _HashEntry | None, tokens: BlockTokens) -> _HashEntry | None:
        for entry in self._table.get(key, ()):
            if entry.parent is parent and entry.tokens == tokens:
                return entry
        return None

    def _lookup(self, tokens: Sequence[int]) -> list[int]:
        parent: _HashEntry | None = None
        ids: list[int] = []
        for blk in split_full_blocks(tokens, self.block_size):
            key = self.hash_fn(parent.key if parent else None, blk)
            entry = self._find(key, parent, blk)
            if entry is None:
                break
            ids.append(entry.block_id)
            parent = entry
        return ids

    def _insert_block(self, parent_block: int | None, tokens: BlockTokens, block_id: int) -> bool:
        parent = None
        if parent_block is not None:
            if parent_block not in self._by_block:
                raise KeyError(f"parent block {parent_block} is not cached")
            parent = self._by_block[parent_block]
            self._check_parent_in_use(parent_block, parent.locked)
        key = self.hash_fn(parent.key if parent else None, tokens)
        existing = self._find(key, parent, tokens)
        if existing is not None:
            return existing.block_id == block_id
        if block_id in self._by_block:
            raise ValueError(f"block {block_id} is already cached for another prefix")
        entry = _HashEntry(key, tokens, block_id, parent, parent.depth + 1 if parent else 0)
        self._stamp([block_id])
        self._table.setdefault(key, []).append(entry)
        self._by_block[block_id] = entry
        self._num_locked += 1
        if parent is not None:  # in use (checked above), so it is not an evictable leaf
            parent.num_children += 1
        return True

    def lock(self, block_id: int) -> None:
        entry = self._entry(block_id)
        if entry.locked:
            raise ValueError(f"block_id {block_id} is already locked: locked twice")
        entry.locked = True
        self._num_locked += 1
        self._drop_leaf(block_id)

    def unlock(self, block_id: int) -> None:
        entry = self._entry(block_id)
        if not entry.locked:
            raise ValueError(f"block_id {block_id} is not locked: unlocked twice")
        entry.locked = False
        self._stamp([block_id])
        self._num_locked -= 1
        if entry.num_children == 0:
            self._add_leaf(block_id, entry.depth)

    def _entry(self, block_id: int) -> _HashEntry:
        try:
            return self._by_block[block_id]
        except KeyError:
            raise KeyError(f"block_id {block_id} is not cached") from None

    def contains(self, block_id: int) -> bool:
        return block_id in self._by_block

    def _unregister(self, block_id: int) -> int | None:
        victim = self._by_block.pop(block_id)
        bucket = self._table[victim.key]
        bucket.remove(victim)
        if not bucket:
            del self._table[victim.key]
        parent = victim.parent
        if parent is None:
            return None
        parent.num_children -= 1
        return parent.block_id if parent.num_children == 0 and not parent.locked else None

    @property
    def num_cached(self) -> int:
        return len(self._by_block)

    @property
    def num_evictable(self) -> int:
        return len(self._by_block) - self._num_locked

    def cached_blocks(self) -> dict[int, int | None]:
        return {b: (e.parent.block_id if e.parent else None) for b, e in self._by_block.items()}

    def locked_blocks(self) -> set[int]:
        return {b for b, e in self._by_block.items() if e.locked}

    def check_invariants(self) -> None:
        super().check_invariants()
        for block_id, entry in self._by_block.items():
            if entry.parent is not None and self._by_block.get(entry.parent.block_id) is not entry.parent:
                raise AssertionError(f"block {block_id}: its parent entry is not the cached one")
            children = sum(1 for e in self._by_block.values() if e.parent is entry)
            if children != entry.num_children:
                raise AssertionError(f"child count of block {block_id} is stale")
            if entry not in self._table.get(entry.key, ()):
                raise AssertionError(f"block {block_id} missing from its bucket")
        if sum(len(b) for b in self._table.values()) != len(self._by_block):
            raise AssertionError("stale hash entry")


# ---------------------------------------------------------------------------------------------
# (b) radix tree over token sequences (block granularity, path-compressed)
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class RadixNode:
    """A run of full blocks. ``key[i]`` are the tokens stored in physical block ``block_ids[i]``.

    Which blocks are in use is kept by the cache (a set of block ids), and recency per block (in
    :class:`PrefixCache`), so a node needs neither a lock count nor a timestamp of its own: the
    in-use blocks of a node always form a prefix of ``block_ids`` (an in-use block's ancestors are
    in use), and its blocks may have been used at different times."""

    key: list[BlockTokens]
    block_ids: list[int]
    parent: RadixNode | None
    children: dict[BlockTokens, RadixNode] = field(default_factory=dict)


class RadixPrefixCache(PrefixCache):
    """Radix tree (SGLang's RadixAttention) with match, insert, lock/unlock and LRU leaf eviction."""

    def __init__(self, block_size: int) -> None:
        super().__init__(block_size)
        self.root = RadixNode(key=[], block_ids=[], parent=None)
        self._node_of: dict[int, RadixNode] = {}
        self._in_use: set[int] = set()

    # --- tree surgery ---------------------------------------------------------------------
    def _split(self, node: RadixNode, k: int) -> RadixNode:
        """Cut ``node`` after its first ``k`` blocks; the tail becomes its only child. Returns node.

        Only the shape changes: every block keeps its own last-use time and lock state."""
        assert 0 < k < len(node.key)
        tail = RadixNode(key=node.key[k:], block_ids=node.block_ids[k:], parent=node)
        tail.children = node.children
        for child in tail.children.values():
            child.parent = tail
        for b in tail.block_ids:
            self._node_of[b] = tail
        node.key, node.block_ids = node.key[:k], node.block_ids[:k]
        node.children = {tail.key[0]: tail}
        return node

    def _depth(self, node: RadixNode) -> int:
        """Blocks above ``node``'s first block (its position in the token sequence, in blocks)."""
        depth, up = 0, node.parent
        while up is not None:
            depth += len(up.block_ids)
            up = up.parent
        return depth

    # --- interface ------------------------------------------------------------------------
    def _lookup(self, tokens: Sequence[int]) -> list[int]:
        blocks = split_full_blocks(tokens, self.block_size)
        node, i, ids = self.root, 0, []
        while i < len(blocks):
            child = node.children.get(blocks[i])
            if child is None:
                break
            k = 1  # blocks of this run that match: the first one did, it is the child's key
            while k < len(child.key) and i + k < len(blocks) and child.key[k] == blocks[i + k]:
                k += 1
            ids.extend(child.block_ids[:k])
            i += k
            if k < len(child.key):
                break
            node = child
        return ids

    def _insert_block(self, parent_block: int | None, tokens: BlockTokens, block_id: int) -> bool:
        node, split_at = self.root, 0  # attach below ``node``, after splitting it at ``split_at``
        if parent_block is not None:
            if parent_block not in self._node_of:
                raise KeyError(f"parent block {parent_block} is not cached")
            self._check_parent_in_use(parent_block, parent_block in self._in_use)
            node = self._node_of[parent_block]
            idx = node.block_ids.index(parent_block)
            if idx + 1 < len(node.block_ids):  # the parent is inside a run: look at its successor
                if node.key[idx + 1] == tokens:
                    return node.block_ids[idx + 1] == block_id
                split_at = idx + 1
        child = None if split_at else node.children.get(tokens)
        if child is not None:
            return child.block_ids[0] == block_id
        if block_id in self._node_of:  # checked before any surgery, so a refusal changes nothing
            raise ValueError(f"block {block_id} is already cached for another prefix")
        if split_at:
            node = self._split(node, split_at)
        if node is not self.root and not node.children:
            # extend the leaf run (path compression): no branch point here
            node.key.append(tokens)
            node.block_ids.append(block_id)
            target = node
        else:
            target = RadixNode(key=[tokens], block_ids=[block_id], parent=node)
            node.children[tokens] = target
        self._node_of[block_id] = target
        self._in_use.add(block_id)
        self._stamp([block_id])
        return True

    def lock(self, block_id: int) -> None:
        if block_id not in self._node_of:
            raise KeyError(f"block_id {block_id} is not cached")
        if block_id in self._in_use:
            raise ValueError(f"block_id {block_id} is already locked: locked twice")
        self._in_use.add(block_id)
        self._drop_leaf(block_id)

    def unlock(self, block_id: int) -> None:
        if block_id not in self._node_of:
            raise KeyError(f"block_id {block_id} is not cached")
        if block_id not in self._in_use:
            raise ValueError(f"block_id {block_id} is not locked: unlocked twice")
        self._in_use.discard(block_id)
        self._stamp([block_id])
        node = self._node_of[block_id]
        if node.block_ids[-1] == block_id and not node.children:
            self._add_leaf(block_id, self._depth(node) + len(node.block_ids) - 1)

    def contains(self, block_id: int) -> bool:
        return block_id in self._node_of

    def _unregister(self, block_id: int) -> int | None:
        """Trim the leaf block off the end of its run; an emptied run is unhooked from its parent."""
        leaf = self._node_of.pop(block_id)
        assert leaf.block_ids[-1] == block_id and not leaf.children, f"block {block_id} is no leaf"
        first = leaf.key[0]  # the run's key in its parent's children
        leaf.block_ids.pop()
        leaf.key.pop()
        if leaf.block_ids:
            up = leaf.block_ids[-1]
        else:
            parent = leaf.parent
            assert parent is not None
            del parent.children[first]
            if parent is self.root or parent.children:
                return None
            up = parent.block_ids[-1]
        return None if up in self._in_use else up

    @property
    def num_cached(self) -> int:
        return len(self._node_of)

    @property
    def num_evictable(self) -> int:
        return len(self._node_of) - len(self._in_use)

    def cached_blocks(self) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        stack: list[tuple[RadixNode, int | None]] = [(self.root, None)]
        while stack:
            node, parent = stack.pop()
            for b in node.block_ids:
                out[b] = parent
                parent = b
            stack.extend((c, parent) for c in node.children.values())
        return out

    def locked_blocks(self) -> set[int]:
        return set(self._in_use)

    def _structure(self) -> tuple:
        """The tree as nested ``(block_ids, children)`` tuples, children in a fixed order."""

        def shape(node: RadixNode) -> tuple:
            kids = sorted(node.children.items())
            return tuple(node.block_ids), tuple(shape(c) for _, c in kids)

        return shape(self.root)

    def check_invariants(self) -> None:
        super().check_invariants()
        stack = [self.root]
        seen = 0
        while stack:
            node = stack.pop()
            if node is not self.root:
                self._check_node(node)
                seen += len(node.block_ids)
            for first, child in node.children.items():
                if child.parent is not node or child.key[0] != first:
                    raise AssertionError(f"run {child.block_ids} is hooked under the wrong key or parent")
            stack.extend(node.children.values())
        if seen != len(self._node_of):
            raise AssertionError("block map out of sync with the tree")

    def _check_node(self, node: RadixNode) -> None:
        if not node.block_ids:
            raise AssertionError("empty radix node left in the tree")
        if len(node.key) != len(node.block_ids):
            raise AssertionError(f"run {node.block_ids}: {len(node.key)} keys, {len(node.block_ids)} blocks")
        used = [b in self._in_use for b in node.block_ids]
        if used != sorted(used, reverse=True):
            raise AssertionError("a node's in-use blocks must be a prefix of it")
        if any(self._node_of.get(b) is not node for b in node.block_ids):
            raise AssertionError(f"run {node.block_ids}: block map points elsewhere")


def make_prefix_cache(kind: str | PrefixCache | None, block_size: int) -> PrefixCache | None:
    """``"hash"``, ``"radix"``, ``None`` (no prefix caching) or an existing cache object."""
    if kind is None or isinstance(kind, PrefixCache):
        if isinstance(kind, PrefixCache) and kind.block_size != block_size:
            raise ValueError(f"prefix cache block_size {kind.block_size} != manager block_size {block_size}")
        return kind
    if kind == "hash":
        return HashPrefixCache(block_size)
    if kind == "radix":
        return RadixPrefixCache(block_size)
    error = ValueError if isinstance(kind, str) else TypeError
    raise error(f"prefix cache must be 'hash', 'radix', None or a PrefixCache, got {describe(kind)}")
