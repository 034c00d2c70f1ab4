"""Find the bug: five block managers, each with one bug of a kind that open-source engines have shipped.

Every manager here is a :class:`~kvlib.paged.manager.BlockManager` with a hash prefix cache that
overrides as little as possible to carry its bug. :data:`BUGGY_MANAGERS` lists them by letter; the
letters are in no meaningful order, so the letter says nothing about the bug.

:func:`run_ops` drives a manager through a list of operations, the way an engine would, with
kvlib's :class:`~kvlib.paged.tracking.TokenKV` stand-in for the KV tensors (every slot remembers
which token's KV it holds, so a wrongly shared block shows up as a wrong token), and checks the
invariants in :data:`INVARIANTS` after every operation. It returns a :class:`Run`: one log line per
operation and the first invariant that broke.

Operations are tuples:

- ``("allocate", seq_id, prompt)``: admit a sequence with a non-empty list of token ids;
- ``("append", seq_id, token)``: add one token to a sequence;
- ``("fork", parent_id, child_id)``: a new sequence sharing all of the parent's blocks;
- ``("free", seq_id)``: release a sequence;
- ``("reclaim", n)``: evict ``n`` idle cached blocks (what an allocation short of free blocks does).

Writing the KV happens inside the operation that adds the tokens, as in :class:`TokenKV`:
``allocate`` writes the KV of every prompt position the prefix cache did not supply, ``append``
performs the copy-on-write copies the manager asks for and then writes the new token. So "a block
shared before its KV was written" means a block handed to two sequences while some of its slots are
still to be filled: the two later writes then land in the same slot.

The pool is fixed for the exercise: :data:`NUM_BLOCKS` blocks of :data:`BLOCK_SIZE` tokens (small,
so that a sequence of a few operations reaches every corner).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kvlib.paged.manager import BlockManager, BlockTable
from kvlib.paged.prefix import HashPrefixCache
from kvlib.paged.trace import OPS, check_ops
from kvlib.paged.tracking import TokenKV
from kvlib.validate import describe, require_int

__all__ = [
    "BLOCK_SIZE",
    "NUM_BLOCKS",
    "INVARIANTS",
    "OPS",
    "BUGGY_MANAGERS",
    "check_ops",
    "run_ops",
    "Run",
    "Step",
]

NUM_BLOCKS = 8
BLOCK_SIZE = 3

# The invariants run_ops checks after every operation, in the order it checks them. The first one
# broken (at the first operation that breaks any) is the run's violation.
INVARIANTS: dict[str, str] = {
    "ref_counts": "every block's reference count equals the number of block tables that list it",
    "block_states": "every block is in exactly one state: free (on the free list, in no table), in use "
    "(in a table, and locked if it is cached) or idle (cached, unlocked, in no table)",
    "registered_blocks_cached": "every block a sequence has registered in the prefix cache is still there, "
    "under the block before it in that sequence",
    "reads_own_tokens": "every sequence reads back exactly its own tokens from the KV slots its table "
    "points at",
    "cached_blocks_full": "every block in the prefix cache is full: its entry records block_size tokens, "
    "exactly the ones its KV slots hold",
    "one_block_per_prefix": "looking up the tokens of any cached block's prefix finds that very block",
}

# --- the buggy managers -------------------------------------------------------------------------


class ManagerA(BlockManager):
    """Bug: a prefix hit on an idle cached block wipes the block's cache entry.

    Models engines that take a hit block that nobody is using out of their pool of reusable blocks
    through the same path as a fresh allocation, which clears the block's old hash. The sequence gets
    the right KV, but the block is no longer findable: later requests miss it, and the sequence's
    next full block is registered under a parent the cache no longer knows."""

    def _acquire(self, block_id: int) -> None:
        if self.allocator.incref(block_id) == 1:
            cache = self.cache
            # the bug: taken like a block from the free list, whose old hash is dropped
            cache._by_block[block_id].locked = True  # its own record says "in use"; only the hash goes
            cache._drop_leaf(block_id)
            cache._unregister(block_id)
            del cache._last_access[block_id]


class ManagerB(BlockManager):
    """Bug: a partly filled block shared by a fork is written in place (no copy-on-write).

    Models engines that share a block between sequences before all of its slots are written: the
    next token of either sequence goes into the shared block, where the other sequence reads it as
    its own."""

    def append(self, seq_id: int, token: int) -> list[tuple[int, int]]:
        seq = self._get(seq_id)
        token = require_int("token", token, minimum=0)
        if len(seq.tokens) % self.block_size == 0:
            seq.block_ids.extend(self._take_fresh(1))
        # the bug: no check whether the partly filled last block is shared, so no copy
        seq.tokens.append(token)
        self._register_full_blocks(seq)
        return []


class ManagerC(BlockManager):
    """Bug: the last, partly filled block is registered in the prefix cache.

    Models engines that hash a block while it is still being filled: the cache entry records the
    tokens the block held at that moment, which later writes into the same block make wrong."""

    def _register_full_blocks(self, seq: BlockTable) -> None:
        if self.cache is None or not seq.cache_open:
            return
        n_blocks = self.blocks_needed(len(seq.tokens))  # the bug: ceil, so the partial block counts too
        while seq.num_registered < n_blocks:
            i = seq.num_registered
            parent = seq.block_ids[i - 1] if i > 0 else None
            tokens = seq.tokens[i * self.block_size : (i + 1) * self.block_size]
            if not self.cache._insert_block(parent, tuple(tokens), seq.block_ids[i]):
                seq.cache_open = False
                return
            seq.num_registered += 1


class _KeepsEvictedEntry(HashPrefixCache):
    def _unregister(self, block_id: int) -> int | None:
        # the bug: the parent learns that its child is gone, but the child's entry stays in the table
        # (and the block goes back to the free list all the same)
        parent = self._by_block[block_id].parent
        if parent is None:
            return None
        parent.num_children -= 1
        return parent.block_id if parent.num_children == 0 and not parent.locked else None


class ManagerD(BlockManager):
    """Bug: an evicted block stays in the prefix cache.

    Models engines whose eviction returns the block to the free list but leaves its entry in the
    cached-block table: the block is free and cached at once, and once it is handed out again a
    lookup can still find it, now holding someone else's tokens. (kvlib's own manager asserts that a
    fresh block has no cache entry, against exactly this bug; the engine modelled here has no such
    guard, so that step is replaced too.)"""

    def __init__(self, num_blocks: int, block_size: int, prefix_cache: Any = "hash") -> None:
        super().__init__(num_blocks, block_size, _KeepsEvictedEntry(block_size))

    def _take_fresh(self, n: int) -> list[int]:
        self._check_available(n)
        shortfall = n - self.allocator.num_free
        if shortfall > 0:
            for block_id in self.cache.evict(shortfall):
                self.allocator.release(block_id)
        return self.allocator.allocate(n)


class _OverwritesDuplicate(HashPrefixCache):
    def _insert_block(self, parent_block: int | None, tokens: tuple[int, ...], block_id: int) -> bool:
        parent = self._by_block.get(parent_block) if parent_block is not None else None
        key = self.hash_fn(parent.key if parent else None, tokens)
        existing = self._find(key, parent, tokens)
        if existing is not None and existing.block_id != block_id:
            # the bug: one block per key, so the newer block's entry replaces the older one's, while
            # the older block still counts itself as cached
            bucket = self._table[key]
            bucket.remove(existing)
            if not bucket:
                del self._table[key]
        return super()._insert_block(parent_block, tokens, block_id)


class ManagerE(BlockManager):
    """Bug: two blocks with the same contents, registered one after the other, overwrite each other's
    cache entry.

    Models engines whose table from block hash to block holds one block per hash: when two sequences
    fill identical blocks (two identical prompts admitted in one step, say), the second block's entry
    replaces the first's, and the first block is cached but can no longer be found."""

    def __init__(self, num_blocks: int, block_size: int, prefix_cache: Any = "hash") -> None:
        super().__init__(num_blocks, block_size, _OverwritesDuplicate(block_size))


BUGGY_MANAGERS: dict[str, type[BlockManager]] = {
    "A": ManagerA,
    "B": ManagerB,
    "C": ManagerC,
    "D": ManagerD,
    "E": ManagerE,
}


# --- operations -----------------------------------------------------------------------------------


# --- running them ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One operation of a run: what it did (or the exception it raised) and the invariants it broke
    (name -> what was wrong), in :data:`INVARIANTS` order."""

    index: int
    op: tuple
    result: str
    broken: dict[str, str]

    def __str__(self) -> str:
        line = f"{self.index:>2}  {self.op!r:<34} {self.result}"
        for name, detail in self.broken.items():
            line += f"\n      BROKEN {name}: {detail}"
        return line


@dataclass(frozen=True)
class Run:
    """The outcome of :func:`run_ops`: the log (one :class:`Step` per operation run) and the first
    violation, as ``(op index, invariant name)`` or None. The run stops at the first violation."""

    manager: str
    steps: list[Step]

    @property
    def violation(self) -> tuple[int, str] | None:
        for step in self.steps:
            if step.broken:
                return step.index, next(iter(step.broken))
        return None

    @property
    def raised(self) -> list[Step]:
        """The steps whose operation raised (a refused or failed operation)."""
        return [s for s in self.steps if s.result.startswith("raised ")]

    @property
    def clean(self) -> bool:
        """No invariant broken and no operation raised."""
        return self.violation is None and not self.raised

    def __str__(self) -> str:
        lines = [f"{self.manager}:"] + [str(s) for s in self.steps]
        v = self.violation
        lines.append(f"first violation: {v[1]} at op {v[0]}" if v else "no invariant broken")
        return "\n".join(lines)


def _owners(mgr: BlockManager) -> list[int]:
    owners = [0] * mgr.num_blocks
    for seq in mgr.seqs.values():
        for block_id in seq.block_ids:
            if 0 <= block_id < mgr.num_blocks:
                owners[block_id] += 1
    return owners


def _reads(mgr: BlockManager, kv: TokenKV, seq: BlockTable) -> list[int | None]:
    bs = mgr.block_size
    return [kv.slots.get(seq.block_ids[p // bs] * bs + p % bs) for p in range(len(seq.tokens))]


def _chain_tokens(cache: HashPrefixCache, block_id: int) -> list[int]:
    blocks, entry = [], cache._by_block[block_id]
    while entry is not None:
        blocks.append(entry.tokens)
        entry = entry.parent
    return [t for blk in reversed(blocks) for t in blk]


def _check_ref_counts(mgr: BlockManager, kv: TokenKV) -> str | None:
    for block_id, n in enumerate(_owners(mgr)):
        rc = mgr.allocator.ref_count(block_id)
        if rc != n:
            return f"block {block_id} has ref_count {rc} but {n} table(s) list it"
    return None


def _check_block_states(mgr: BlockManager, kv: TokenKV) -> str | None:
    cache = mgr.cache
    locked = cache.locked_blocks() if cache else set()
    for block_id, n in enumerate(_owners(mgr)):
        free = mgr.allocator.is_free(block_id)
        cached = cache is not None and cache.contains(block_id)
        if n and free:
            return f"block {block_id} is in a table and on the free list"
        if n and cached and block_id not in locked:
            return f"block {block_id} is in a table but its cache entry is unlocked (evictable)"
        if not n and free and cached:
            return f"block {block_id} is on the free list and still in the prefix cache"
        if not n and not free and not cached:
            return f"block {block_id} is in no table, not free and not cached (leaked)"
        if not n and cached and block_id in locked:
            return f"block {block_id} is in no table but its cache entry is locked"
    return None


def _check_reads(mgr: BlockManager, kv: TokenKV) -> str | None:
    for seq in sorted(mgr.seqs.values(), key=lambda s: s.seq_id):
        got = _reads(mgr, kv, seq)
        if got != seq.tokens:
            return f"sequence {seq.seq_id} reads {got}, its tokens are {seq.tokens}"
    return None


def _check_cached_full(mgr: BlockManager, kv: TokenKV) -> str | None:
    cache, bs = mgr.cache, mgr.block_size
    for block_id, entry in sorted(cache._by_block.items()):
        held = [kv.slots.get(block_id * bs + o) for o in range(bs)]
        if len(entry.tokens) != bs or list(entry.tokens) != held:
            return f"cached block {block_id} is recorded as {list(entry.tokens)} but holds {held}"
    return None


def _check_registered(mgr: BlockManager, kv: TokenKV) -> str | None:
    parents = mgr.cache.cached_blocks()
    for seq in sorted(mgr.seqs.values(), key=lambda s: s.seq_id):
        for i in range(seq.num_registered):
            block_id = seq.block_ids[i]
            before = seq.block_ids[i - 1] if i else None
            if block_id not in parents:
                return f"sequence {seq.seq_id} registered block {block_id}, which is no longer cached"
            if parents[block_id] != before:
                return (
                    f"sequence {seq.seq_id}'s block {block_id} is cached under {parents[block_id]}, "
                    f"not {before}"
                )
    return None


def _check_lookup(mgr: BlockManager, kv: TokenKV) -> str | None:
    cache = mgr.cache
    for block_id in sorted(cache._by_block):
        tokens = _chain_tokens(cache, block_id)
        depth, partial = divmod(len(tokens), mgr.block_size)
        if partial:
            continue  # a partial block in the cache is cached_blocks_full's to report
        found = cache._lookup(tokens)
        got = found[depth - 1] if len(found) >= depth else None
        if got != block_id:
            return f"looking up the prefix {tokens} of cached block {block_id} finds block {got}"
    return None


_CHECKS: dict[str, Callable[[BlockManager, TokenKV], str | None]] = {
    "ref_counts": _check_ref_counts,
    "block_states": _check_block_states,
    "registered_blocks_cached": _check_registered,
    "reads_own_tokens": _check_reads,
    "cached_blocks_full": _check_cached_full,
    "one_block_per_prefix": _check_lookup,
}
if tuple(_CHECKS) != tuple(INVARIANTS):
    raise AssertionError("every invariant needs its check, in the same order")


def _broken(mgr: BlockManager, kv: TokenKV) -> dict[str, str]:
    broken: dict[str, str] = {}
    for name, check in _CHECKS.items():
        try:
            detail = check(mgr, kv)
        except Exception as exc:  # noqa: BLE001 - a state too broken to inspect is broken
            detail = f"could not be checked: {type(exc).__name__}: {exc}"
        if detail is not None:
            broken[name] = detail
    return broken


def _apply(mgr: BlockManager, kv: TokenKV, op: tuple) -> str:
    """Carry out one checked operation the way an engine would; returns what it did."""
    name = op[0]
    if name == "allocate":
        _, seq_id, prompt = op
        seq = mgr.allocate(seq_id, list(prompt))
        for p in range(seq.num_cached_tokens, len(prompt)):  # the KV the cache did not supply
            kv.slots[mgr.slot(seq_id, p)] = prompt[p]
        return f"seq {seq_id}: blocks {list(seq.block_ids)}, {seq.num_cached_tokens} token(s) from the cache"
    if name == "append":
        _, seq_id, token = op
        copies = kv.append(seq_id, token)
        return f"seq {seq_id}: blocks {mgr.block_table(seq_id)}" + (f", copied {copies}" if copies else "")
    if name == "fork":
        _, parent, child = op
        mgr.fork(parent, child)
        return f"seq {child} shares blocks {mgr.block_table(child)}"
    if name == "free":
        mgr.free(op[1])
        return f"freed seq {op[1]}"
    evicted = mgr.reclaim(op[1])
    return f"evicted blocks {evicted}"


def run_ops(
    manager_cls: type[BlockManager] = BlockManager,
    ops: Sequence[Sequence[Any]] = (),
    num_blocks: int = NUM_BLOCKS,
    block_size: int = BLOCK_SIZE,
) -> Run:
    """Run ``ops`` on a new ``manager_cls(num_blocks, block_size, prefix_cache="hash")`` through a
    :class:`TokenKV`, checking :data:`INVARIANTS` after every operation.

    An operation the manager refuses or fails (an exception) is logged as ``raised ...`` and the run
    goes on; the run stops after the first operation that breaks an invariant. ``print(run)`` shows
    the log. Malformed operations raise TypeError or ValueError before anything runs."""
    if not (inspect.isclass(manager_cls) and issubclass(manager_cls, BlockManager)):
        raise TypeError(f"manager_cls must be BlockManager or a subclass, got {describe(manager_cls)}")
    checked = check_ops(ops)
    mgr = manager_cls(num_blocks, block_size, prefix_cache="hash")
    if not isinstance(mgr.cache, HashPrefixCache):
        raise TypeError(f"{manager_cls.__name__} must keep a hash prefix cache, got {describe(mgr.cache)}")
    kv = TokenKV(mgr)
    steps: list[Step] = []
    for index, op in enumerate(checked):
        try:
            result = _apply(mgr, kv, op)
        except Exception as exc:  # noqa: BLE001 - a refusal (OutOfBlocks, unknown id) or the bug itself
            result = f"raised {type(exc).__name__}: {exc}"
        broken = _broken(mgr, kv)
        steps.append(Step(index, op, result, broken))
        if broken:
            break
    return Run(manager_cls.__name__, steps)
