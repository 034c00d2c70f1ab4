# MISTAKE: dataclasses.replace copies the lists but the child keeps the parent's seq_id
# EXPECT: child_id
import dataclasses


def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    """A child sequence that shares every block of `parent` (parallel sampling, beam search).

    - Returns a new BlockTable(child_id, tokens, block_ids) whose lists are copies of the parent's,
      not the same list objects: a later append to one sequence must not show in the other.
    - Each of the parent's blocks gains one owner (allocator.incref); no block is allocated or copied.
    - The parent's table is not changed.
    """
    for block_id in parent.block_ids:
        allocator.incref(block_id)
    return dataclasses.replace(parent, tokens=list(parent.tokens), block_ids=list(parent.block_ids))
