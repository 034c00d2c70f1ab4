# MISTAKE: each block is incref'd once for the parent and once more for the child
# EXPECT: exactly one owner
def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    """A child sequence that shares every block of `parent` (parallel sampling, beam search).

    - Returns a new BlockTable(child_id, tokens, block_ids) whose lists are copies of the parent's,
      not the same list objects: a later append to one sequence must not show in the other.
    - Each of the parent's blocks gains one owner (allocator.incref); no block is allocated or copied.
    - The parent's table is not changed.
    """
    for block_id in parent.block_ids:  # the parent keeps its share
        allocator.incref(block_id)
    child = BlockTable(child_id, list(parent.tokens), list(parent.block_ids))
    for block_id in child.block_ids:  # and the child takes one
        allocator.incref(block_id)
    return child
