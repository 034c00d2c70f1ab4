# MISTAKE: marks the parent's table as closed to the prefix cache while forking
# EXPECT: fork changed the parent's cache_open
def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    for block_id in parent.block_ids:
        allocator.incref(block_id)
    parent.cache_open = False  # "the blocks are shared now, stop registering them"
    return BlockTable(child_id, list(parent.tokens), list(parent.block_ids))
