"""Physical KV blocks and the allocator that hands them out.

The KV cache of a paged engine is one big tensor of ``num_blocks`` physical blocks, each holding
the keys/values of ``block_size`` consecutive tokens of one sequence. This module only does the
bookkeeping: which block ids are free and how many owners each block has. Nothing here touches
the KV tensors themselves.

A block is in exactly one of three states:

- **free**: on the free list, reference count 0, holds nothing anyone may read;
- **used**: reference count >= 1 (one count per sequence whose block table points at it);
- **idle cached**: reference count 0 but still registered in a prefix cache, so a later request
  with the same prefix can reuse its contents. It goes back to the free list only when the
  prefix cache evicts it.

so that ``num_free + num_used + num_idle == num_blocks`` at all times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kvlib.validate import require_int

__all__ = ["PhysicalBlock", "BlockAllocator", "OutOfBlocks"]


class OutOfBlocks(RuntimeError):
    """Raised when a request needs more physical blocks than can be freed.

    The operation that raises it leaves every data structure exactly as it was before the call,
    so the caller (a scheduler) may simply retry later or preempt another sequence.
    """

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"out of KV blocks: needed {needed} block(s) but only {available} can be made free "
            "(free + evictable cached blocks); free or preempt a sequence and retry"
        )
        self.needed = needed
        self.available = available


@dataclass
class PhysicalBlock:
    """One physical block: its id (index into the KV tensors) and how many tables point at it."""

    block_id: int
    ref_count: int = 0


class BlockAllocator:
    """A fixed pool of ``num_blocks`` physical blocks with a free list and reference counts.

    ``allocate(n)`` is all-or-nothing: it either returns ``n`` fresh block ids (each with
    reference count 1) or raises :class:`OutOfBlocks` and changes nothing.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        num_blocks = require_int("num_blocks", num_blocks, minimum=1)
        block_size = require_int("block_size", block_size, minimum=1)
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.blocks: list[PhysicalBlock] = [PhysicalBlock(i) for i in range(num_blocks)]
        self.free_ids: deque[int] = deque(range(num_blocks))
        self._free_set: set[int] = set(range(num_blocks))
        self._num_used = 0

    # --- counters -------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks on the free list."""
        return len(self.free_ids)

    @property
    def num_used(self) -> int:
        """Blocks with reference count >= 1."""
        return self._num_used

    @property
    def num_idle(self) -> int:
        """Blocks with reference count 0 that are not on the free list (held by a prefix cache)."""
        return self.num_blocks - self.num_free - self._num_used

    def ref_count(self, block_id: int) -> int:
        return self.blocks[self._check_id(block_id)].ref_count

    def is_free(self, block_id: int) -> bool:
        return self._check_id(block_id) in self._free_set

    # --- operations -----------------------------------------------------------------------
    def allocate(self, n: int) -> list[int]:
        """Take ``n`` blocks from the free list, each with reference count 1 (all or nothing)."""
        n = require_int("n (blocks to allocate)", n, minimum=0)
        if n > len(self.free_ids):
            raise OutOfBlocks(n, len(self.free_ids))
        ids = [self.free_ids.popleft() for _ in range(n)]
        for block_id in ids:
            block = self.blocks[block_id]
            assert block.ref_count == 0, f"free block {block_id} had ref_count {block.ref_count}"
            block.ref_count = 1
            self._free_set.discard(block_id)
        self._num_used += n
        return ids

    def incref(self, block_id: int) -> int:
        """Add one owner to a used or idle-cached block; returns the new count."""
        block = self.blocks[self._check_id(block_id)]
        if block.block_id in self._free_set:
            raise ValueError(f"block_id {block_id} is free: incref needs a used or idle cached block")
        if block.ref_count == 0:
            self._num_used += 1
        block.ref_count += 1
        return block.ref_count

    def decref(self, block_id: int) -> int:
        """Remove one owner; returns the new count. A block reaching 0 is *not* freed here:
        the caller either :meth:`release` s it or keeps it idle in a prefix cache."""
        block = self.blocks[self._check_id(block_id)]
        if block.ref_count == 0:
            raise ValueError(f"block_id {block_id} has ref_count 0: decref would be a double free")
        block.ref_count -= 1
        if block.ref_count == 0:
            self._num_used -= 1
        return block.ref_count

    def release(self, block_id: int) -> None:
        """Put a block with reference count 0 back on the free list."""
        block = self.blocks[self._check_id(block_id)]
        if block.ref_count > 0:
            raise ValueError(
                f"block_id {block_id} is still owned {block.ref_count} time(s): decref it to 0 before release"
            )
        if block.block_id in self._free_set:
            raise ValueError(f"block_id {block_id} is already free: released twice")
        self.free_ids.append(block_id)
        self._free_set.add(block_id)

    def _check_id(self, block_id: int) -> int:
        """``block_id`` as an int; TypeError for a non-integer, IndexError outside the pool."""
        block_id = require_int("block_id", block_id)
        if not 0 <= block_id < self.num_blocks:
            raise IndexError(f"block_id {block_id} out of range [0, {self.num_blocks})")
        return block_id

    def check_invariants(self) -> None:
        """Check the allocator's own invariants (cheap enough for property tests).

        Raises AssertionError explicitly rather than with ``assert``, so it also works under -O."""
        if len(self._free_set) != len(self.free_ids):
            raise AssertionError("duplicate block on the free list")
        for block_id in self.free_ids:
            if self.blocks[block_id].ref_count != 0:
                raise AssertionError(f"free block {block_id} has owners")
        used = sum(1 for b in self.blocks if b.ref_count > 0)
        if used != self._num_used:
            raise AssertionError(f"used counter {self._num_used} != {used}")
        if not all(b.ref_count >= 0 for b in self.blocks):
            raise AssertionError("a negative reference count")
