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
(a lookup could not reach it). Both designs keep the invariant *an in-use block's ancestors are
in use* (a sequence that holds a block holds its whole prefix), which is why every unlocked
cached block can eventually be evicted and ``num_evictable`` equals the number of unlocked ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["PrefixCache", "HashPrefixCache", "RadixPrefixCache", "make_prefix_cache"]

BlockTokens = tuple[int, ...]


def split_full_blocks(tokens: Sequence[int], block_size: int) -> list[BlockTokens]:
    """The full blocks of ``tokens`` as tuples; a trailing partial block is dropped."""
    n_full = len(tokens) // block_size
    return [tuple(tokens[i * block_size : (i + 1) * block_size]) for i in range(n_full)]


class PrefixCache(ABC):
    """Interface shared by the hash-chain and radix-tree prefix caches (block granularity)."""

    def __init__(self, block_size: int) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.block_size = block_size
        self._clock = 0  # logical time for LRU

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    @abstractmethod
    def match(self, tokens: Sequence[int], touch: bool = True) -> list[int]:
        """Block ids holding the longest cached prefix of ``tokens`` made of full blocks.

        Marks the matched blocks as recently used unless ``touch`` is False. Does not lock them:
        the caller locks the blocks it decides to use (through the block manager's reference
        counts)."""

    @abstractmethod
    def insert_block(self, parent_block: int | None, tokens: Sequence[int], block_id: int) -> bool:
        """Register the full block ``block_id`` holding ``tokens`` after cached block ``parent_block``
        (``None`` for the first block of a sequence). The block must be in use (it is registered
        locked). Returns True when ``block_id`` is now the cached block for that prefix (newly or
        already), False when the same prefix is already cached in a *different* block (the caller
        keeps its duplicate private and stops registering that sequence's later blocks)."""

    @abstractmethod
    def lock(self, block_id: int) -> None:
        """A cached block gained its first owner (reference count 0 -> 1)."""

    @abstractmethod
    def unlock(self, block_id: int) -> None:
        """A cached block lost its last owner (reference count 1 -> 0); it becomes evictable."""

    @abstractmethod
    def contains(self, block_id: int) -> bool:
        """Whether ``block_id`` is registered in the cache."""

    @abstractmethod
    def evict(self, n: int) -> list[int]:
        """Unregister ``n`` unlocked blocks, least recently used leaves first, and return their ids
        (the caller puts them back on the free list). Raises ValueError if fewer are evictable."""

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

    def insert(self, tokens: Sequence[int], block_ids: Sequence[int]) -> int:
        """Register the full blocks of ``tokens`` stored in ``block_ids`` (in order).

        Returns how many leading blocks are now cached under exactly these ids; registration stops
        at the first block whose prefix is already cached in another block."""
        blocks = split_full_blocks(tokens, self.block_size)
        if len(block_ids) < len(blocks):
            raise ValueError(f"{len(blocks)} full block(s) of tokens but only {len(block_ids)} block ids")
        parent: int | None = None
        for i, blk in enumerate(blocks):
            if not self.insert_block(parent, blk, block_ids[i]):
                return i
            parent = block_ids[i]
        return len(blocks)

    def check_invariants(self) -> None:
        """Every cached block's parent is cached (no orphans); counters agree."""
        cached = self.cached_blocks()
        for block_id, parent in cached.items():
            assert parent is None or parent in cached, f"cached block {block_id} lost its parent {parent}"
        locked = self.locked_blocks()
        assert locked <= cached.keys(), "a locked block is not cached"
        for block_id in locked:
            parent = cached[block_id]
            assert parent is None or parent in locked, (
                f"block {block_id} is in use but its parent {parent} is not: a sequence must hold its prefix"
            )
        assert self.num_evictable == len(cached) - len(locked)


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
    last_access: int = 0


def default_block_hash(parent_key: int | None, tokens: BlockTokens) -> int:
    """Chain hash of a full block: covers its tokens and (through ``parent_key``) all earlier ones."""
    return hash((parent_key, tokens))


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
        self._leaves: dict[int, _HashEntry] = {}  # unlocked entries without cached children
        self._num_locked = 0

    def _find(self, key: int, parent: _HashEntry | None, tokens: BlockTokens) -> _HashEntry | None:
        for entry in self._table.get(key, ()):
            if entry.parent is parent and entry.tokens == tokens:
                return entry
        return None

    def match(self, tokens: Sequence[int], touch: bool = True) -> list[int]:
        now = self._tick() if touch else 0
        parent: _HashEntry | None = None
        ids: list[int] = []
        for blk in split_full_blocks(tokens, self.block_size):
            key = self.hash_fn(parent.key if parent else None, blk)
            entry = self._find(key, parent, blk)
            if entry is None:
                break
            if touch:
                entry.last_access = now
            ids.append(entry.block_id)
            parent = entry
        return ids

    def insert_block(self, parent_block: int | None, tokens: Sequence[int], block_id: int) -> bool:
        tokens = tuple(tokens)
        if len(tokens) != self.block_size:
            raise ValueError(
                f"only full blocks are cached: got {len(tokens)} tokens, block_size {self.block_size}"
            )
        parent = None
        if parent_block is not None:
            if parent_block not in self._by_block:
                raise KeyError(f"parent block {parent_block} is not cached")
            parent = self._by_block[parent_block]
        key = self.hash_fn(parent.key if parent else None, tokens)
        existing = self._find(key, parent, tokens)
        if existing is not None:
            return existing.block_id == block_id
        if block_id in self._by_block:
            raise ValueError(f"block {block_id} is already cached for another prefix")
        entry = _HashEntry(key, tokens, block_id, parent, parent.depth + 1 if parent else 0)
        entry.last_access = self._tick()
        self._table.setdefault(key, []).append(entry)
        self._by_block[block_id] = entry
        self._num_locked += 1
        if parent is not None:
            parent.num_children += 1
            self._leaves.pop(parent.block_id, None)
        return True

    def lock(self, block_id: int) -> None:
        entry = self._by_block[block_id]
        assert not entry.locked, f"block {block_id} locked twice"
        entry.locked = True
        self._num_locked += 1
        self._leaves.pop(block_id, None)

    def unlock(self, block_id: int) -> None:
        entry = self._by_block[block_id]
        assert entry.locked, f"block {block_id} unlocked twice"
        entry.locked = False
        entry.last_access = self._tick()
        self._num_locked -= 1
        if entry.num_children == 0:
            self._leaves[block_id] = entry

    def contains(self, block_id: int) -> bool:
        return block_id in self._by_block

    def evict(self, n: int) -> list[int]:
        if n > self.num_evictable:
            raise ValueError(f"cannot evict {n} blocks: only {self.num_evictable} are unlocked")
        evicted: list[int] = []
        while len(evicted) < n:
            # least recently used leaf; among equal times the deepest first (a chain's tail)
            victim = min(self._leaves.values(), key=lambda e: (e.last_access, -e.depth))
            del self._leaves[victim.block_id]
            del self._by_block[victim.block_id]
            bucket = self._table[victim.key]
            bucket.remove(victim)
            if not bucket:
                del self._table[victim.key]
            parent = victim.parent
            if parent is not None:
                parent.num_children -= 1
                if parent.num_children == 0 and not parent.locked:
                    self._leaves[parent.block_id] = parent
            evicted.append(victim.block_id)
        return evicted

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
            assert entry.parent is None or self._by_block.get(entry.parent.block_id) is entry.parent
            children = sum(1 for e in self._by_block.values() if e.parent is entry)
            assert children == entry.num_children, f"child count of block {block_id} is stale"
            is_leaf = not entry.locked and entry.num_children == 0
            assert (block_id in self._leaves) == is_leaf, f"leaf set wrong for block {block_id}"
            assert entry in self._table[entry.key], f"block {block_id} missing from its bucket"
        assert sum(len(b) for b in self._table.values()) == len(self._by_block), "stale hash entry"


# ---------------------------------------------------------------------------------------------
# (b) radix tree over token sequences (block granularity, path-compressed)
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class RadixNode:
    """A run of full blocks. ``key[i]`` are the tokens stored in physical block ``block_ids[i]``.

    ``lock_ref`` counts the in-use blocks in this node's subtree (this node included), so a node
    is unlocked exactly when nobody uses anything below it. In-use blocks of a node always form a
    prefix of ``block_ids`` (an in-use block's ancestors are in use)."""

    key: list[BlockTokens]
    block_ids: list[int]
    parent: RadixNode | None
    children: dict[BlockTokens, RadixNode] = field(default_factory=dict)
    lock_ref: int = 0
    last_access: int = 0


class RadixPrefixCache(PrefixCache):
    """Radix tree (SGLang's RadixAttention) with match, insert, lock/unlock and LRU leaf eviction."""

    def __init__(self, block_size: int) -> None:
        super().__init__(block_size)
        self.root = RadixNode(key=[], block_ids=[], parent=None)
        self._node_of: dict[int, RadixNode] = {}
        self._in_use: set[int] = set()

    # --- tree surgery ---------------------------------------------------------------------
    def _split(self, node: RadixNode, k: int) -> RadixNode:
        """Cut ``node`` after its first ``k`` blocks; the tail becomes its only child. Returns node."""
        assert 0 < k < len(node.key)
        tail = RadixNode(key=node.key[k:], block_ids=node.block_ids[k:], parent=node)
        tail.children = node.children
        for child in tail.children.values():
            child.parent = tail
        tail.last_access = node.last_access
        tail.lock_ref = sum(c.lock_ref for c in tail.children.values()) + sum(
            1 for b in tail.block_ids if b in self._in_use
        )
        for b in tail.block_ids:
            self._node_of[b] = tail
        node.key, node.block_ids = node.key[:k], node.block_ids[:k]
        node.children = {tail.key[0]: tail}
        return node

    def _add_lock(self, node: RadixNode | None, delta: int) -> None:
        while node is not None and node is not self.root:
            node.lock_ref += delta
            assert node.lock_ref >= 0
            node = node.parent

    # --- interface ------------------------------------------------------------------------
    def match(self, tokens: Sequence[int], touch: bool = True) -> list[int]:
        now = self._tick() if touch else 0
        blocks = split_full_blocks(tokens, self.block_size)
        node, i, ids = self.root, 0, []
        while i < len(blocks):
            child = node.children.get(blocks[i])
            if child is None:
                break
            k = 0
            while k < len(child.key) and i + k < len(blocks) and child.key[k] == blocks[i + k]:
                k += 1
            ids.extend(child.block_ids[:k])
            if touch:
                child.last_access = now
            i += k
            if k < len(child.key):
                break
            node = child
        return ids

    def insert_block(self, parent_block: int | None, tokens: Sequence[int], block_id: int) -> bool:
        tokens = tuple(tokens)
        if len(tokens) != self.block_size:
            raise ValueError(
                f"only full blocks are cached: got {len(tokens)} tokens, block_size {self.block_size}"
            )
        if parent_block is None:
            node = self.root
        else:
            if parent_block not in self._node_of:
                raise KeyError(f"parent block {parent_block} is not cached")
            node = self._node_of[parent_block]
            idx = node.block_ids.index(parent_block)
            if idx + 1 < len(node.block_ids):  # the parent is inside a run: look at its successor
                if node.key[idx + 1] == tokens:
                    return node.block_ids[idx + 1] == block_id
                node = self._split(node, idx + 1)
        child = node.children.get(tokens)
        if child is not None:
            return child.block_ids[0] == block_id
        if block_id in self._node_of:
            raise ValueError(f"block {block_id} is already cached for another prefix")
        now = self._tick()
        if node is not self.root and not node.children:
            # extend the leaf run (path compression): no branch point here
            node.key.append(tokens)
            node.block_ids.append(block_id)
            node.last_access = now
            target = node
        else:
            target = RadixNode(key=[tokens], block_ids=[block_id], parent=node, last_access=now)
            node.children[tokens] = target
        self._node_of[block_id] = target
        self._in_use.add(block_id)
        self._add_lock(target, +1)
        return True

    def lock(self, block_id: int) -> None:
        assert block_id not in self._in_use, f"block {block_id} locked twice"
        self._in_use.add(block_id)
        self._add_lock(self._node_of[block_id], +1)

    def unlock(self, block_id: int) -> None:
        assert block_id in self._in_use, f"block {block_id} unlocked twice"
        self._in_use.discard(block_id)
        node = self._node_of[block_id]
        node.last_access = self._tick()
        self._add_lock(node, -1)

    def contains(self, block_id: int) -> bool:
        return block_id in self._node_of

    def _evictable_leaves(self) -> list[RadixNode]:
        leaves = {n for n in self._node_of.values() if not n.children}
        return [n for n in leaves if n.block_ids[-1] not in self._in_use]

    def evict(self, n: int) -> list[int]:
        if n > self.num_evictable:
            raise ValueError(f"cannot evict {n} blocks: only {self.num_evictable} are unlocked")
        evicted: list[int] = []
        while len(evicted) < n:
            leaf = min(self._evictable_leaves(), key=lambda nd: nd.last_access)
            # trim the unlocked tail of the leaf, last block first
            while leaf.block_ids and len(evicted) < n and leaf.block_ids[-1] not in self._in_use:
                block_id = leaf.block_ids.pop()
                leaf.key.pop()
                del self._node_of[block_id]
                evicted.append(block_id)
            if not leaf.block_ids:
                parent = leaf.parent
                assert parent is not None
                first = next(k for k, c in parent.children.items() if c is leaf)
                del parent.children[first]
        return evicted

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

    def check_invariants(self) -> None:
        super().check_invariants()
        stack = [self.root]
        seen = 0
        while stack:
            node = stack.pop()
            if node is not self.root:
                assert node.block_ids, "empty radix node left in the tree"
                assert len(node.key) == len(node.block_ids)
                own = sum(1 for b in node.block_ids if b in self._in_use)
                assert node.lock_ref == own + sum(c.lock_ref for c in node.children.values()), (
                    "lock_ref stale"
                )
                for b in node.block_ids:
                    assert self._node_of[b] is node
                seen += len(node.block_ids)
            for first, child in node.children.items():
                assert child.parent is node and child.key[0] == first
            stack.extend(node.children.values())
        assert seen == len(self._node_of), "block map out of sync with the tree"


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
    raise ValueError(f"prefix cache must be 'hash', 'radix', None or a PrefixCache, got {kind!r}")
