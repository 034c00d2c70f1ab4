# MISTAKE: the old block is decref'd and released, as if this sequence were freed
# EXPECT: only decref it
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
    copies = []
    if len(table.tokens) % allocator.block_size == 0:
        table.block_ids.extend(allocator.allocate(1))
    else:
        last = table.block_ids[-1]
        if allocator.ref_count(last) > 1:
            (fresh,) = allocator.allocate(1)
            allocator.decref(last)
            allocator.release(last)  # this table is done with it
            table.block_ids[-1] = fresh
            copies.append((last, fresh))
    table.tokens.append(token)
    return copies
