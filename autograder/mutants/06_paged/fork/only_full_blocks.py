# MISTAKE: only the full blocks gain an owner; the partly filled last block is listed but not incref'd
# EXPECT: partly filled last block too
def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    """A child sequence that shares every block of `parent` (parallel sampling, beam search).

    - Returns a new BlockTable(child_id, tokens, block_ids) whose lists are copies of the parent's,
      not the same list objects: a later append to one sequence must not show in the other.
    - Each of the parent's blocks gains one owner (allocator.incref); no block is allocated or copied.
    - The parent's table is not changed.
    """
    num_full = len(parent.tokens) // allocator.block_size
    for block_id in parent.block_ids[:num_full]:  # full blocks never change: share them
        allocator.incref(block_id)
    return BlockTable(child_id, list(parent.tokens), list(parent.block_ids))
