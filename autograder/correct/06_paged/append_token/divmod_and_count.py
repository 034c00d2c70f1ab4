# VALID: compares the block index with the number of blocks (divmod), appends the unpacked id
def append_token(table: BlockTable, token: int, allocator) -> int:
    """Append `token` to the sequence whose block table is `table`; return the flat KV slot it goes to.

    - The token's position is p = len(table.tokens) before the call. Its slot is
      table.block_ids[p // B] * B + p % B, with B = allocator.block_size (an int).
    - A new block is taken, with allocator.allocate(1), exactly when the table has no room for the token:
      it has no block yet, or its last block is full. Otherwise no block is taken.
    - `table.tokens` and `table.block_ids` are updated in place: the table is the sequence's state.
    - Out of blocks: the allocator's OutOfBlocks propagates and the table is left as it was.
    """
    block_index, offset = divmod(len(table.tokens), allocator.block_size)
    if block_index == len(table.block_ids):  # no room: the table needs one more block
        (new_block,) = allocator.allocate(1)
        table.block_ids.append(new_block)
    table.tokens.append(token)
    return table.block_ids[block_index] * allocator.block_size + offset
