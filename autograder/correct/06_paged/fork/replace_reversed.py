# VALID: dataclasses.replace with slice copies and keywords, increfs in reverse order
import dataclasses


def fork(parent: BlockTable, child_id: int, allocator) -> BlockTable:
    """A child sequence that shares every block of `parent` (parallel sampling, beam search).

    - Returns a new BlockTable(child_id, tokens, block_ids) whose lists are copies of the parent's,
      not the same list objects: a later append to one sequence must not show in the other.
    - Each of the parent's blocks gains one owner (allocator.incref); no block is allocated or copied.
    - The parent's table is not changed.
    """
    child = dataclasses.replace(parent, seq_id=child_id, tokens=parent.tokens[:], block_ids=[*parent.block_ids])
    for block_id in reversed(parent.block_ids):
        allocator.incref(block_id)
    return child
