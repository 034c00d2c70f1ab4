# VALID: no free set: the free list is a plain list searched with `in`, counts in a list, the range check done by catching the list's own IndexError after rejecting negatives
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
        if not (num_blocks >= 1 and block_size >= 1):
            raise ValueError(f"bad sizes {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.free = list(range(num_blocks))
        self.counts = [0 for _ in range(num_blocks)]

    @property
    def num_free(self) -> int:
        return len(self.free)

    def ref_count(self, block_id: int) -> int:
        if block_id < 0:
            raise IndexError(block_id)
        return self.counts[block_id]  # IndexError past the end

    def allocate(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError(n)
        if n > self.num_free:
            raise OutOfBlocks(n, self.num_free)
        result = self.free[:n]
        del self.free[:n]
        for block_id in result:
            self.counts[block_id] += 1
        return result

    def incref(self, block_id: int) -> int:
        self.ref_count(block_id)
        if block_id in self.free:
            raise ValueError(f"{block_id} is free")
        self.counts[block_id] += 1
        return self.counts[block_id]

    def decref(self, block_id: int) -> int:
        if not self.ref_count(block_id):
            raise ValueError(f"{block_id} has count 0")
        self.counts[block_id] -= 1
        return self.counts[block_id]

    def release(self, block_id: int) -> None:
        if self.ref_count(block_id):
            raise ValueError(f"{block_id} is still in use")
        if block_id in self.free:
            raise ValueError(f"{block_id} is already free")
        self.free.append(block_id)
