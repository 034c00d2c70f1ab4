# VALID: a helper decides what the append needs; ids from the allocator kept as NumPy integers in the pair
import numpy as np


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
    def needs(table, allocator):
        offset = len(table.tokens) % allocator.block_size
        if offset == 0:
            return "new"
        return "copy" if allocator.ref_count(table.block_ids[-1]) > 1 else "write"

    what = needs(table, allocator)
    result = []
    if what == "new":
        table.block_ids.extend(allocator.allocate(1))
    elif what == "copy":
        [fresh] = allocator.allocate(1)
        src = table.block_ids.pop()
        allocator.decref(src)
        table.block_ids.append(fresh)
        result.append((np.int64(src), np.int64(fresh)))
    table.tokens.append(token)
    return result
