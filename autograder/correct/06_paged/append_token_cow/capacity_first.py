# VALID: tests the partly filled shared case first, reads fullness from the capacity, builds the result at the end
def append_token_cow(table: BlockTable, token: int, allocator) -> list[tuple[int, int]]:
    """Append `token` like `append_token`, copying a shared partly filled last block first (copy-on-write).

    Returns the block copies [(src, dst)] the engine must perform on the KV tensors before it writes
    the token's K/V.
    - No block yet, or the last block full: take a new block (allocator.allocate(1)); return [] even
      when the full last block is shared (nobody writes into a full block).
    - Last block partly filled and shared (reference count > 1): allocate a fresh block, drop this
      table's share of the old one (allocator.decref), put the fresh block in its place in the table,
      and return [(old, fresh)]. The other owners keep the old block.
    - Last block partly filled and owned by this table alone: the token goes into it; return [].
    - `table.tokens` and `table.block_ids` are updated in place.
    - Out of blocks: OutOfBlocks propagates and nothing changes (the table and every reference count).
    """
    size = allocator.block_size
    is_full = len(table.tokens) == len(table.block_ids) * size
    copied = None
    if not is_full and allocator.ref_count(table.block_ids[-1]) >= 2:
        old = table.block_ids[-1]
        new = allocator.allocate(1)[0]
        allocator.decref(old)
        table.block_ids[-1] = new
        copied = (old, new)
    elif is_full:
        table.block_ids += allocator.allocate(1)
    table.tokens.append(token)
    return [] if copied is None else [copied]
