# VALID: a deque free list and one state per block ("free", "used", "idle") instead of a free set; ids checked with `in range(...)`
from collections import deque


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
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self._free = deque(range(num_blocks))
        self._count = {block_id: 0 for block_id in range(num_blocks)}
        self._state = dict.fromkeys(range(num_blocks), "free")

    @property
    def num_free(self) -> int:
        return len(self._free)

    def _check(self, block_id):
        if block_id not in range(self.num_blocks):
            raise IndexError(f"no block {block_id} in a pool of {self.num_blocks}")

    def ref_count(self, block_id: int) -> int:
        self._check(block_id)
        return self._count[block_id]

    def allocate(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if len(self._free) < n:
            raise OutOfBlocks(n, len(self._free))
        taken = []
        while len(taken) < n:
            block_id = self._free.popleft()
            self._count[block_id] = 1
            self._state[block_id] = "used"
            taken.append(block_id)
        return taken

    def incref(self, block_id: int) -> int:
        self._check(block_id)
        if self._state[block_id] == "free":
            raise ValueError(f"block {block_id} is free")
        self._count[block_id] += 1
        self._state[block_id] = "used"
        return self._count[block_id]

    def decref(self, block_id: int) -> int:
        self._check(block_id)
        if self._state[block_id] != "used":
            raise ValueError(f"block {block_id} has no owner")
        self._count[block_id] -= 1
        if self._count[block_id] == 0:
            self._state[block_id] = "idle"
        return self._count[block_id]

    def release(self, block_id: int) -> None:
        self._check(block_id)
        if self._state[block_id] != "idle":
            raise ValueError(f"block {block_id} is {self._state[block_id]}, only an idle block can be released")
        self._state[block_id] = "free"
        self._free.append(block_id)
