# MISTAKE: counts in a dict and a range check with <= num_blocks: id num_blocks gets a KeyError, not IndexError
# EXPECT: off by one
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
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks} and {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.refs = {block_id: 0 for block_id in range(num_blocks)}
        self.free_list = list(range(num_blocks))  # front = next to hand out
        self.free_set = set(self.free_list)

    @property
    def num_free(self) -> int:
        return len(self.free_list)

    def ref_count(self, block_id: int) -> int:
        if not 0 <= block_id <= self.num_blocks:
            raise IndexError(f"block_id {block_id} out of range [0, {self.num_blocks})")
        return self.refs[block_id]

    def allocate(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of blocks ({n})")
        if n > len(self.free_list):
            raise OutOfBlocks(n, len(self.free_list))  # before any change
        ids, self.free_list = self.free_list[:n], self.free_list[n:]  # a new list, not ours
        for block_id in ids:
            self.refs[block_id] = 1
            self.free_set.discard(block_id)
        return ids

    def incref(self, block_id: int) -> int:
        self.ref_count(block_id)  # IndexError for an id outside the pool
        if block_id in self.free_set:
            raise ValueError(f"block {block_id} is free: only a used or idle block can gain an owner")
        self.refs[block_id] += 1
        return self.refs[block_id]

    def decref(self, block_id: int) -> int:
        if self.ref_count(block_id) == 0:
            raise ValueError(f"block {block_id} has no owner: decref would be a double free")
        self.refs[block_id] -= 1
        return self.refs[block_id]

    def release(self, block_id: int) -> None:
        if self.ref_count(block_id) > 0:
            raise ValueError(f"block {block_id} still has {self.refs[block_id]} owner(s)")
        if block_id in self.free_set:
            raise ValueError(f"block {block_id} is already free")
        self.free_list.append(block_id)
        self.free_set.add(block_id)
