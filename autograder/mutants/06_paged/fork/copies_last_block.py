# MISTAKE: the partly filled last block is copied into a fresh block at fork time instead of shared
# EXPECT: every block shared
def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    """A child sequence that shares every block of `parent` (parallel sampling, beam search).

    - Returns a new BlockTable(child_id, tokens, block_ids) whose lists are copies of the parent's,
      not the same list objects: a later append to one sequence must not show in the other.
    - Each of the parent's blocks gains one owner (allocator.incref); no block is allocated or copied.
    - The parent's table is not changed.
    """
    block_size = allocator.block_size
    num_full = len(parent.tokens) // block_size
    block_ids = list(parent.block_ids[:num_full])
    for block_id in block_ids:
        allocator.incref(block_id)
    if len(parent.tokens) % block_size:  # both will write into the last block: give the child its own
        block_ids.extend(allocator.allocate(1))
    return BlockTable(child_id, list(parent.tokens), block_ids)
