"""Block-table operations on a bare allocator: chapter 06's exercises 2 and 3, in kvlib's words.

These are the steps a block manager takes for one sequence when no prefix cache is involved: append a
token (taking a block when the last one is full), fork (share every block), and append with
copy-on-write (copy a shared, partly filled last block before writing into it). :class:`BlockManager`
(:mod:`kvlib.paged.manager`) does the same inside ``append`` and ``fork``, with its prefix cache in
the loop (a fresh block may come from evicting an idle cached one, a dropped block may go idle).

Each function either succeeds or raises :class:`~kvlib.paged.blocks.OutOfBlocks` with the table and
every reference count unchanged.
"""

from __future__ import annotations

from kvlib.paged.blocks import BlockAllocator
from kvlib.paged.manager import BlockTable
from kvlib.validate import describe, require_int

__all__ = ["append_token", "fork_table", "append_token_cow", "slot_of"]


def _require_table(table: BlockTable, block_size: int) -> None:
    if not isinstance(table, BlockTable):
        raise TypeError(f"table must be a kvlib.paged.BlockTable, got {describe(table)}")
    if len(table.block_ids) != -(-len(table.tokens) // block_size):
        raise ValueError(
            f"table of sequence {table.seq_id}: {len(table.tokens)} tokens need "
            f"{-(-len(table.tokens) // block_size)} block(s) of {block_size}, it lists {len(table.block_ids)}"
        )


def slot_of(table: BlockTable, position: int, block_size: int) -> int:
    """Flat KV slot of logical ``position``: ``block_ids[position // B] * B + position % B``."""
    return table.block_ids[position // block_size] * block_size + position % block_size


def append_token(table: BlockTable, token: int, allocator: BlockAllocator) -> int:
    """Append ``token`` to ``table`` (in place) and return the slot its K/V goes to.

    A block is taken exactly when the table has no room: no block yet, or the last one full."""
    _require_table(table, allocator.block_size)
    token = require_int("token", token, minimum=0)
    position = len(table.tokens)
    if position % allocator.block_size == 0:
        table.block_ids.extend(allocator.allocate(1))  # raises before anything changed
    table.tokens.append(token)
    return slot_of(table, position, allocator.block_size)


def fork_table(parent: BlockTable, child_id: int, allocator: BlockAllocator) -> BlockTable:
    """A child table sharing every block of ``parent``: one more owner per block, new lists."""
    _require_table(parent, allocator.block_size)
    child_id = require_int("child_id", child_id)
    for block_id in parent.block_ids:
        allocator.incref(block_id)
    return BlockTable(child_id, list(parent.tokens), list(parent.block_ids))


def append_token_cow(table: BlockTable, token: int, allocator: BlockAllocator) -> list[tuple[int, int]]:
    """Append ``token`` to ``table`` (in place); returns the ``(src, dst)`` block copies to perform first.

    A partly filled last block with other owners is replaced by a fresh copy (copy-on-write); a full
    last block is never written again, so a new block follows it without any copy."""
    _require_table(table, allocator.block_size)
    token = require_int("token", token, minimum=0)
    copies: list[tuple[int, int]] = []
    if len(table.tokens) % allocator.block_size == 0:
        table.block_ids.extend(allocator.allocate(1))
    else:
        last = table.block_ids[-1]
        if allocator.ref_count(last) > 1:
            (fresh,) = allocator.allocate(1)  # raises before anything changed
            allocator.decref(last)  # the other owners keep it: its count stays >= 1
            table.block_ids[-1] = fresh
            copies.append((last, fresh))
    table.tokens.append(token)
    return copies
