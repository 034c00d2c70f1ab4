"""Block tables, fork + copy-on-write and prefix caching on top of the block allocator.

A sequence's KV lives in ``ceil(len(tokens) / block_size)`` physical blocks listed in its block
table; logical position ``p`` is stored in slot ``block_ids[p // B] * B + p % B`` of the flat KV
tensor (``B`` = block size). :class:`BlockManager` owns the allocator, the optional prefix cache
and every sequence's table, and keeps one invariant above all: the reference count of each
block equals the number of block tables that list it.

Operations (each either succeeds or raises :class:`~kvlib.paged.blocks.OutOfBlocks` and changes
nothing):

- ``allocate(seq_id, prompt)``: admit a sequence. With a prefix cache, the longest cached prefix
  of ``prompt[:-1]`` is reused (the last prompt token is always recomputed: its forward pass
  produces the logits of the first output token), and the prompt's full blocks are registered
  in the cache *at once*, so a second sequence admitted in the same step shares them.
- ``append(seq_id, token)``: add one token. A new block is taken when the last one is full; a
  partly filled last block shared with a fork is copied first (copy-on-write) and the
  ``(src, dst)`` block copy is returned for the caller to perform on the KV tensors.
- ``fork(parent, child)``: the child shares all of the parent's blocks (parallel sampling, beams).
- ``free(seq_id)``: drop the table; cached blocks become idle (reusable until evicted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kvlib.paged.blocks import BlockAllocator, OutOfBlocks
from kvlib.paged.prefix import PrefixCache, make_prefix_cache
from kvlib.validate import require_int, require_token_ids

__all__ = ["BlockTable", "BlockManager"]


@dataclass
class BlockTable:
    """One sequence's block table.

    ``num_cached_tokens`` is how many leading prompt tokens were found in the prefix cache at
    admission (their KV need not be computed). ``num_registered`` is how many leading blocks are
    registered in the prefix cache under this table's ids; ``cache_open`` turns False when a block
    of this sequence duplicates one already cached, after which its later blocks stay private.
    """

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    block_ids: list[int] = field(default_factory=list)
    num_cached_tokens: int = 0
    num_registered: int = 0
    cache_open: bool = True

    def __len__(self) -> int:
        return len(self.tokens)


def _require_fresh_cache(cache: PrefixCache) -> None:
    """A PrefixCache object given to a new BlockManager: not another manager's, and empty (a cached
    block it does not own would look free to this manager's allocator and be handed out twice)."""
    name = type(cache).__name__
    if cache.attached:
        raise ValueError(
            f"prefix_cache: this {name} already serves another BlockManager (its entries name that "
            f"manager's blocks); pass 'hash' or 'radix', or a new {name}(block_size)"
        )
    if cache.num_cached:
        raise ValueError(
            f"prefix_cache must be empty, but this {name} holds {cache.num_cached} cached block(s) that "
            "this manager's pool never handed out; pass 'hash' or 'radix', or a new one"
        )


class BlockManager:
    """Paged KV bookkeeping: allocator + block tables + copy-on-write + optional prefix cache.

    Args:
        num_blocks: physical blocks in the pool.
        block_size: tokens per block.
        prefix_cache: ``None`` (no caching), ``"hash"``, ``"radix"`` or a :class:`PrefixCache`. A
            cache object serves one manager for its whole life and must come empty: its entries name
            physical blocks of its manager's pool (ValueError for one already used by a manager).
    """

    def __init__(
        self, num_blocks: int, block_size: int, prefix_cache: str | PrefixCache | None = None
    ) -> None:
        allocator = BlockAllocator(num_blocks, block_size)  # validates both sizes
        cache = make_prefix_cache(prefix_cache, allocator.block_size)
        if isinstance(prefix_cache, PrefixCache):
            _require_fresh_cache(prefix_cache)
            prefix_cache.attached = True
        self.allocator = allocator
        self.block_size = allocator.block_size
        self.cache: PrefixCache | None = cache
        self.seqs: dict[int, BlockTable] = {}

    # --- counters -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return self.allocator.num_blocks

    @property
    def num_free_blocks(self) -> int:
        """Blocks on the free list (not counting idle cached blocks)."""
        return self.allocator.num_free

    @property
    def num_used_blocks(self) -> int:
        """Blocks referenced by at least one block table."""
        return self.allocator.num_used

    @property
    def num_cached_blocks(self) -> int:
        """Blocks registered in the prefix cache (in use or idle)."""
        return self.cache.num_cached if self.cache else 0

    @property
    def num_available_blocks(self) -> int:
        """Blocks an allocation could obtain: free + idle cached (evictable)."""
        return self.allocator.num_free + (self.cache.num_evictable if self.cache else 0)

    def blocks_needed(self, num_tokens: int) -> int:
        """Blocks that hold ``num_tokens`` tokens: ``ceil(num_tokens / block_size)``."""
        return -(-require_int("num_tokens", num_tokens, minimum=0) // self.block_size)

    # --- internal helpers -----------------------------------------------------------------
    def _acquire(self, block_id: int) -> None:
        """One more owner for an existing (used or idle cached) block."""
        if self.allocator.incref(block_id) == 1:
            assert self.cache is not None and self.cache.contains(block_id), (
                f"block {block_id} was revived from ref_count 0 but is not cached"
            )
            self.cache.lock(block_id)

    def _drop(self, block_id: int) -> None:
        """One owner fewer; an unowned block goes idle in the cache or back to the free list."""
        if self.allocator.decref(block_id) == 0:
            if self.cache is not None and self.cache.contains(block_id):
                self.cache.unlock(block_id)
            else:
                self.allocator.release(block_id)

    def _check_available(self, n: int, pinned: int = 0) -> None:
        """Raise OutOfBlocks unless ``n`` blocks can be had from the free list plus evictable cached
        blocks, not counting ``pinned`` idle cached blocks the caller is about to lock."""
        available = self.allocator.num_free + (self.cache.num_evictable if self.cache else 0) - pinned
        if n > available:
            raise OutOfBlocks(n, available)

    def _take_fresh(self, n: int) -> list[int]:
        """Get ``n`` fresh blocks, evicting idle cached blocks if the free list is short.

        All or nothing: raises OutOfBlocks before touching anything."""
        self._check_available(n)
        shortfall = n - self.allocator.num_free
        if shortfall > 0:
            assert self.cache is not None
            for block_id in self.cache.evict(shortfall):
                self.allocator.release(block_id)
        ids = self.allocator.allocate(n)
        if self.cache is not None:
            for block_id in ids:  # guards the stale-hash bug: a reused block must not be findable
                assert not self.cache.contains(block_id), f"fresh block {block_id} still has a cache entry"
        return ids

    def _register_full_blocks(self, seq: BlockTable) -> None:
        """Register the sequence's newly completed full blocks in the prefix cache."""
        if self.cache is None or not seq.cache_open:
            return
        n_full = len(seq.tokens) // self.block_size
        while seq.num_registered < n_full:
            i = seq.num_registered
            parent = seq.block_ids[i - 1] if i > 0 else None
            tokens = seq.tokens[i * self.block_size : (i + 1) * self.block_size]
            # trusted path: the tokens were validated when they entered the sequence
            if not self.cache._insert_block(parent, tuple(tokens), seq.block_ids[i]):
                seq.cache_open = False  # a duplicate of a cached block: keep the rest private
                return
            seq.num_registered += 1

    def _get(self, seq_id: int, name: str = "seq_id") -> BlockTable:
        seq_id = require_int(name, seq_id)  # "0" or 0.0 is a caller's mistake, not an unknown id
        try:
            return self.seqs[seq_id]
        except KeyError:
            raise KeyError(f"{name} {seq_id}: unknown sequence id") from None

    def _new_id(self, seq_id: int, name: str = "seq_id") -> int:
        seq_id = require_int(name, seq_id)
        if seq_id in self.seqs:
            raise ValueError(f"{name} {seq_id} already exists: free it first or pick an unused id")
        return seq_id

    def _plan(self, prompt: list[int]) -> tuple[list[int], int, int]:
        """What admitting the (validated) ``prompt`` takes, with no state change:
        ``(hit, need, pinned)``: the cached blocks it reuses, the fresh blocks it needs, and how many
        hit blocks are idle (locking them takes them out of the evictable pool)."""
        if len(prompt) == 0:
            raise ValueError("prompt: a sequence needs at least one prompt token, got an empty prompt")
        # match on prompt[:-1] so the last token is always computed (a full hit still yields logits);
        # touch=False: the hit counts as a use only once the allocation is sure to succeed
        hit = self.cache._lookup(prompt[:-1]) if self.cache else []  # match(touch=False), prompt checked
        pinned = sum(1 for b in hit if self.allocator.ref_count(b) == 0)
        return hit, self.blocks_needed(len(prompt)) - len(hit), pinned

    # --- public operations ----------------------------------------------------------------
    def can_allocate(self, prompt: Sequence[int]) -> bool:
        """Whether :meth:`allocate` would succeed now (no state change). Like ``allocate``, rejects
        an empty prompt with ValueError."""
        _, need, pinned = self._plan(require_token_ids("prompt", prompt))
        return need <= self.allocator.num_free + (self.cache.num_evictable if self.cache else 0) - pinned

    def allocate(self, seq_id: int, prompt: Sequence[int]) -> BlockTable:
        """Admit a new sequence holding ``prompt`` (at least one token).

        Returns its :class:`BlockTable`; its ``num_cached_tokens`` leading tokens already have
        their KV in the cache (a multiple of the block size, always < ``len(prompt)``)."""
        seq_id = self._new_id(seq_id)
        prompt = require_token_ids("prompt", prompt)
        hit, need, pinned = self._plan(prompt)
        self._check_available(need, pinned)  # raises before any change
        if self.cache is not None:
            self.cache.touch(hit)  # committed: now the hit is a use (LRU)
        for block_id in hit:  # lock the hit first, so eviction below cannot touch it
            self._acquire(block_id)
        fresh = self._take_fresh(need)
        seq = BlockTable(seq_id, prompt, hit + fresh, num_cached_tokens=len(hit) * self.block_size)
        seq.num_registered = len(hit)
        self.seqs[seq_id] = seq
        self._register_full_blocks(seq)
        return seq

    def append(self, seq_id: int, token: int) -> list[tuple[int, int]]:
        """Append one token; returns the ``(src_block, dst_block)`` copies the caller must do."""
        seq = self._get(seq_id)
        token = require_int("token", token, minimum=0)  # checked before any block is taken
        copies: list[tuple[int, int]] = []
        offset = len(seq.tokens) % self.block_size
        if offset == 0:  # last block full (or no block yet): take a new one
            seq.block_ids.extend(self._take_fresh(1))
        else:
            last = seq.block_ids[-1]
            if self.allocator.blocks[last].ref_count > 1:  # shared partial block: copy on write
                (new,) = self._take_fresh(1)
                self._drop(last)
                seq.block_ids[-1] = new
                copies.append((last, new))
        seq.tokens.append(token)
        self._register_full_blocks(seq)
        return copies

    def fork(self, parent_id: int, child_id: int) -> BlockTable:
        """Create ``child_id`` sharing every block of ``parent_id`` (no copy until a write)."""
        parent = self._get(parent_id, "parent_id")
        child_id = require_int("child_id", child_id)
        if child_id == parent.seq_id:
            raise ValueError(f"child_id must differ from parent_id, got {child_id} for both")
        child_id = self._new_id(child_id, "child_id")
        for block_id in parent.block_ids:
            self._acquire(block_id)
        child = BlockTable(
            child_id,
            list(parent.tokens),
            list(parent.block_ids),
            num_cached_tokens=parent.num_cached_tokens,
            num_registered=parent.num_registered,
            cache_open=parent.cache_open,
        )
        self.seqs[child_id] = child
        return child

    def free(self, seq_id: int) -> None:
        """Release a sequence; its blocks are dropped last-first.

        The order shows in the recorded last-use times (the tail's is the older one) and in which
        physical blocks later allocations get first (the free list is FIFO), never in what is hit,
        shared or evicted: the blocks one free makes idle are a chain (an in-use block's ancestors
        stay in use) stamped on consecutive clock ticks, so against every other block they are all
        older or all newer, and within the chain only the deepest is a leaf; eviction trims it from
        the tail whatever the order (tests/test_paged_manager.py compares both on random walks)."""
        seq = self._get(seq_id)
        del self.seqs[seq.seq_id]
        for block_id in reversed(seq.block_ids):
            self._drop(block_id)

    def reclaim(self, n: int) -> list[int]:
        """Evict ``n`` idle cached blocks (LRU leaves first) back to the free list; returns their ids.

        Allocation does this on demand; calling it directly models a cache-size limit."""
        n = require_int("n (blocks to reclaim)", n, minimum=0)
        if n == 0:
            return []
        if self.cache is None or n > self.cache.num_evictable:
            raise OutOfBlocks(n, self.cache.num_evictable if self.cache else 0)
        evicted = self.cache.evict(n)
        for block_id in evicted:
            self.allocator.release(block_id)
        return evicted

    def block_table(self, seq_id: int) -> list[int]:
        return list(self._get(seq_id).block_ids)

    def slot(self, seq_id: int, position: int) -> int:
        """Flat KV slot (``block_id * block_size + offset``) of logical ``position``."""
        seq = self._get(seq_id)
        position = require_int("position", position)
        if not 0 <= position < len(seq.tokens):
            raise IndexError(f"position {position} out of range for a sequence of {len(seq.tokens)} tokens")
        return seq.block_ids[position // self.block_size] * self.block_size + position % self.block_size

    def slot_mapping(self, seq_id: int) -> list[int]:
        """Flat KV slot of every logical position of the sequence."""
        seq, bs = self._get(seq_id), self.block_size
        return [seq.block_ids[p // bs] * bs + p % bs for p in range(len(seq.tokens))]

    def snapshot(self) -> tuple:
        """A hashable summary of the whole state (tests use it to prove a failure changed nothing):
        ``(sequences, ref counts, free list, prefix-cache state)``."""
        seqs = tuple(
            (s.seq_id, tuple(s.tokens), tuple(s.block_ids), s.num_registered, s.cache_open)
            for s in sorted(self.seqs.values(), key=lambda s: s.seq_id)
        )
        refs = tuple(b.ref_count for b in self.allocator.blocks)
        # the cache's state includes per-block last-use times, its clock and (radix) the tree shape,
        # so a failure that only refreshed LRU order or split a run is caught too
        cache = self.cache.state() if self.cache else ()
        return seqs, refs, tuple(self.allocator.free_ids), cache

    def check_invariants(self) -> None:
        """Check every bookkeeping invariant; used after each step of the property tests.

        Raises AssertionError explicitly rather than with ``assert``, so it also works under -O."""
        self.allocator.check_invariants()
        owners = self._check_tables()
        for block_id, n in enumerate(owners):
            rc = self.allocator.ref_count(block_id)
            if rc != n:
                raise AssertionError(f"block {block_id}: ref_count {rc} but {n} owner(s)")
            free = self.allocator.is_free(block_id)
            if n == 0 and free == (self.cache is not None and self.cache.contains(block_id)):
                raise AssertionError(f"unowned block {block_id} must be either free or idle cached (leak?)")
            if n > 0 and free:
                raise AssertionError(f"owned block {block_id} is on the free list")
        if self.cache is not None:
            self._check_cache(owners)
        elif self.allocator.num_idle != 0:
            raise AssertionError(f"{self.allocator.num_idle} idle block(s) but no prefix cache to hold them")

    def _check_tables(self) -> list[int]:
        """Each table's length fits its tokens and lists no block twice; returns owners per block."""
        owners = [0] * self.num_blocks
        for seq in self.seqs.values():
            if len(seq.block_ids) != self.blocks_needed(len(seq.tokens)):
                raise AssertionError(
                    f"sequence {seq.seq_id}: {len(seq.tokens)} tokens, {len(seq.block_ids)} blocks"
                )
            if len(set(seq.block_ids)) != len(seq.block_ids):
                raise AssertionError(f"sequence {seq.seq_id} lists a block twice")
            for block_id in seq.block_ids:
                owners[block_id] += 1
        return owners

    def _check_cache(self, owners: list[int]) -> None:
        """The prefix cache agrees with the tables: locks, idle count, registered tokens."""
        assert self.cache is not None
        self.cache.check_invariants()
        locked = self.cache.locked_blocks()
        for block_id in self.cache.cached_blocks():
            if (block_id in locked) != (owners[block_id] > 0):
                raise AssertionError(f"lock state of block {block_id} wrong")
        if self.allocator.num_idle != self.cache.num_evictable:
            raise AssertionError(f"{self.allocator.num_idle} idle but {self.cache.num_evictable} evictable")
        for seq in self.seqs.values():
            # registered blocks hold exactly the tokens the cache would match them with
            n = seq.num_registered
            if self.cache.match(seq.tokens[: n * self.block_size], touch=False)[:n] != seq.block_ids[:n]:
                raise AssertionError(f"sequence {seq.seq_id}: registered blocks do not match the cache")
