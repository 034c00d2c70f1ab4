# VALID: an intrusive doubly linked free list (prev/next arrays with head and tail, like vLLM's free block queue), NumPy counts, and num_free kept as a plain attribute
import numpy as np


class BlockAllocator:
    """A pool of `num_blocks` physical KV blocks of `block_size` tokens: a free list and reference counts.

    - `BlockAllocator(num_blocks, block_size)`: both ints >= 1 (ValueError otherwise), kept as the
      attributes `num_blocks` and `block_size`. Block ids are 0 .. num_blocks - 1, all free at the
      start, the free list in id order.
    - `num_free` (a property) is the number of blocks on the free list; `ref_count(block_id)` a block's count.
    - `allocate(n) -> list[int]`: takes the `n` ids at the front of the free list, in that order, each
      now with reference count 1. All or nothing: with fewer than `n` free blocks it raises
      `OutOfBlocks(n, num_free)` and changes nothing. `allocate(0)` returns []; a negative `n` raises
      ValueError. The returned list is the caller's: changing it changes nothing here, and later calls
      do not change it.
    - `incref(block_id) -> int`: one more owner of a block that is not free; returns the new count.
      ValueError for a free block.
    - `decref(block_id) -> int`: one owner fewer; returns the new count. A block at 0 stays off the
      free list until `release`. ValueError if the count is already 0.
    - `release(block_id)`: puts a block with count 0 at the back of the free list. ValueError if it
      still has owners or is already free.
    - A block id outside [0, num_blocks), negative ones included, raises IndexError. A call that raises
      changes nothing. Each allocator keeps its own state.
    """

    def __init__(self, num_blocks: int, block_size: int):
        if min(num_blocks, block_size) <= 0:
            raise ValueError("a pool needs num_blocks >= 1 and block_size >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.counts = np.zeros(num_blocks, dtype=np.int64)
        # free list: block ids linked through nxt/prv; -1 ends it. on_list marks membership.
        self.nxt = [i + 1 if i + 1 < num_blocks else -1 for i in range(num_blocks)]
        self.prv = [i - 1 for i in range(num_blocks)]
        self.head, self.tail = 0, num_blocks - 1
        self.on_list = [True] * num_blocks
        self.num_free = num_blocks  # an attribute kept up to date reads like the property

    def _valid(self, block_id):
        if block_id < 0 or block_id >= self.num_blocks:
            raise IndexError(f"block id {block_id} is outside 0..{self.num_blocks - 1}")
        return block_id

    def ref_count(self, block_id: int) -> int:
        return int(self.counts[self._valid(block_id)])

    def _pop_head(self):
        block_id = self.head
        self.head = self.nxt[block_id]
        if self.head == -1:
            self.tail = -1
        else:
            self.prv[self.head] = -1
        self.on_list[block_id] = False
        self.num_free -= 1
        return block_id

    def _push_tail(self, block_id):
        self.prv[block_id], self.nxt[block_id] = self.tail, -1
        if self.tail == -1:
            self.head = block_id
        else:
            self.nxt[self.tail] = block_id
        self.tail = block_id
        self.on_list[block_id] = True
        self.num_free += 1

    def allocate(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError("n must not be negative")
        if n > self.num_free:
            raise OutOfBlocks(n, self.num_free)
        out = [self._pop_head() for _ in range(n)]
        self.counts[out] = 1
        return out

    def incref(self, block_id: int) -> int:
        if self.on_list[self._valid(block_id)]:
            raise ValueError("cannot take a reference to a free block")
        self.counts[block_id] += 1
        return int(self.counts[block_id])

    def decref(self, block_id: int) -> int:
        if self.counts[self._valid(block_id)] == 0:
            raise ValueError("reference count is already zero")
        self.counts[block_id] -= 1
        return int(self.counts[block_id])

    def release(self, block_id: int) -> None:
        if self.counts[self._valid(block_id)] != 0:
            raise ValueError("block still referenced")
        if self.on_list[block_id]:
            raise ValueError("block already on the free list")
        self._push_tail(block_id)
