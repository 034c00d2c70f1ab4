# MISTAKE: a new block is taken when the token fills the last slot (p % B == B - 1), one token early
# EXPECT: still has
def append_token(table: BlockTable, token: int, allocator) -> int:
    """Append `token` to the sequence whose block table is `table`; return the flat KV slot it goes to.

    - The token's position is p = len(table.tokens) before the call. Its slot is
      table.block_ids[p // B] * B + p % B, with B = allocator.block_size (an int).
    - A new block is taken, with allocator.allocate(1), exactly when the table has no room for the token:
      it has no block yet, or its last block is full. Otherwise no block is taken.
    - `table.tokens` and `table.block_ids` are updated in place: the table is the sequence's state.
    - Out of blocks: the allocator's OutOfBlocks propagates and the table is left as it was.
    """
    block_size = allocator.block_size
    position = len(table.tokens)
    if not table.block_ids or position % block_size == block_size - 1:  # this token fills the block
        table.block_ids.extend(allocator.allocate(1))
    table.tokens.append(token)
    return table.block_ids[position // block_size] * block_size + position % block_size
