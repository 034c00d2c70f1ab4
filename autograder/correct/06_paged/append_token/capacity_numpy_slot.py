# VALID: checks capacity len(block_ids) * B, computes the slot from the last block as a NumPy integer
import numpy as np


def append_token(table: BlockTable, token: int, allocator) -> int:
    """Append `token` to the sequence whose block table is `table`; return the flat KV slot it goes to.

    - The token's position is p = len(table.tokens) before the call. Its slot is
      table.block_ids[p // B] * B + p % B, with B = allocator.block_size (an int).
    - A new block is taken, with allocator.allocate(1), exactly when the table has no room for the token:
      it has no block yet, or its last block is full. Otherwise no block is taken.
    - `table.tokens` and `table.block_ids` are updated in place: the table is the sequence's state.
    - Out of blocks: the allocator's OutOfBlocks propagates and the table is left as it was.
    """
    size = allocator.block_size
    capacity = len(table.block_ids) * size
    if len(table.tokens) >= capacity:
        new_blocks = allocator.allocate(1)
        table.block_ids += new_blocks
    offset = len(table.tokens) % size
    table.tokens += [token]
    return np.int64(table.block_ids[-1]) * size + offset
