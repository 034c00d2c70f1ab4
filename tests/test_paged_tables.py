"""kvlib.paged.tables (block-table steps on a bare allocator), block_hashes and block_waste: the
references of chapter 06's exercises 2-5, checked against BlockManager and by hand."""

from __future__ import annotations

import random

import pytest

from kvlib.paged import BlockAllocator, BlockManager, BlockTable, OutOfBlocks
from kvlib.paged.prefix import HashPrefixCache, block_hashes, default_block_hash
from kvlib.paged.simulate import block_waste
from kvlib.paged.tables import append_token, append_token_cow, fork_table, slot_of

pytestmark = pytest.mark.ch06


def _state(allocator: BlockAllocator) -> tuple:
    return tuple(allocator.ref_count(b) for b in range(allocator.num_blocks)), tuple(allocator.free_ids)


@pytest.mark.parametrize("block_size", [1, 3, 4])
def test_random_walk_agrees_with_block_manager(block_size: int) -> None:
    """Appends, forks and frees through the table functions take the same blocks, slots and copies as
    BlockManager without a prefix cache, step for step."""
    rng = random.Random(block_size)
    allocator, manager = BlockAllocator(24, block_size), BlockManager(24, block_size)
    tables: dict[int, BlockTable] = {}
    next_id = 0
    for _ in range(600):
        op = rng.random()
        if op < 0.1 or not tables:
            tables[next_id] = BlockTable(next_id)
            first = rng.randrange(100)
            try:
                append_token(tables[next_id], first, allocator)
            except OutOfBlocks:
                del tables[next_id]
                with pytest.raises(OutOfBlocks):
                    manager.allocate(next_id, [first])
                continue
            manager.allocate(next_id, [first])
            next_id += 1
        elif op < 0.2:
            parent = rng.choice(list(tables))
            tables[next_id] = fork_table(tables[parent], next_id, allocator)
            manager.fork(parent, next_id)
            next_id += 1
        elif op < 0.3:
            seq_id = rng.choice(list(tables))
            for block_id in reversed(tables.pop(seq_id).block_ids):
                if allocator.decref(block_id) == 0:
                    allocator.release(block_id)
            manager.free(seq_id)
        else:
            seq_id, token = rng.choice(list(tables)), rng.randrange(100)
            before = (list(tables[seq_id].tokens), list(tables[seq_id].block_ids), _state(allocator))
            try:
                copies = append_token_cow(tables[seq_id], token, allocator)
            except OutOfBlocks:
                assert (tables[seq_id].tokens, tables[seq_id].block_ids, _state(allocator)) == before
                with pytest.raises(OutOfBlocks):
                    manager.append(seq_id, token)
                continue
            assert copies == manager.append(seq_id, token)
        for seq_id, table in tables.items():
            assert table.block_ids == manager.block_table(seq_id)
            assert [slot_of(table, p, block_size) for p in range(len(table.tokens))] == manager.slot_mapping(
                seq_id
            )
        assert _state(allocator) == (
            tuple(manager.allocator.ref_count(b) for b in range(24)),
            tuple(manager.allocator.free_ids),
        )


def test_append_token_returns_slots_and_takes_blocks_at_boundaries() -> None:
    allocator = BlockAllocator(4, 2)
    allocator.allocate(1)  # block 0 is someone else's
    table = BlockTable(7)
    assert [append_token(table, t, allocator) for t in (5, 6, 7)] == [2, 3, 4]
    assert table.block_ids == [1, 2] and table.tokens == [5, 6, 7]
    allocator.allocate(1)
    append_token(table, 8, allocator)  # fits block 2: no block needed
    with pytest.raises(OutOfBlocks):
        append_token(table, 9, allocator)
    assert table.tokens == [5, 6, 7, 8] and table.block_ids == [1, 2]


def test_copy_on_write_copies_only_a_shared_partial_block() -> None:
    allocator = BlockAllocator(6, 4)
    parent = BlockTable(0)
    for t in range(6):
        append_token(parent, t, allocator)
    child = fork_table(parent, 1, allocator)
    assert child.block_ids == parent.block_ids and child.block_ids is not parent.block_ids
    assert [allocator.ref_count(b) for b in parent.block_ids] == [2, 2]
    assert append_token_cow(child, 9, allocator) == [(1, 2)]
    assert allocator.ref_count(1) == 1 and child.block_ids == [0, 2]
    assert append_token_cow(parent, 8, allocator) == []  # now the parent owns block 1 alone
    full = BlockTable(2)
    for t in range(4):
        append_token(full, t, allocator)
    fork_table(full, 3, allocator)
    assert append_token_cow(full, 4, allocator) == []  # a full shared block is never written


def test_table_functions_reject_bad_input_before_any_change() -> None:
    allocator = BlockAllocator(2, 2)
    table = BlockTable(0)
    with pytest.raises(ValueError, match="token"):
        append_token(table, -1, allocator)
    with pytest.raises(TypeError, match="BlockTable"):
        append_token([1], 1, allocator)
    with pytest.raises(ValueError, match="lists 1"):
        append_token_cow(BlockTable(0, [], [0]), 1, allocator)
    with pytest.raises(TypeError, match="child_id"):
        fork_table(table, "1", allocator)
    assert table.tokens == [] and allocator.num_free == 2


def test_block_hashes_chain_full_blocks_only() -> None:
    keys = block_hashes([1, 2, 3, 4, 5], 2)
    first = default_block_hash(None, (1, 2))
    assert keys == [first, default_block_hash(first, (3, 4))]
    assert block_hashes([], 4) == [] and block_hashes((1, 2, 3), 4) == []
    assert block_hashes([1, 2, 1, 2], 2)[1] != block_hashes([1, 2, 1, 2], 2)[0]  # position matters
    cache = HashPrefixCache(2)
    cache.insert([1, 2, 3, 4], [0, 1])
    assert [entry.key for entry in sorted(cache._by_block.values(), key=lambda e: e.depth)] == keys
    assert block_hashes(range(4), 2, hash_fn=lambda parent, tokens: 0) == [0, 0]
    with pytest.raises(TypeError):
        block_hashes("abcd", 2)


def test_block_waste_by_hand_and_bad_input() -> None:
    assert block_waste([64], [1.0], 16) == 0.0
    assert block_waste([1], [1.0], 16) == pytest.approx(15 / 16)
    # 30% of 37-token and 70% of 1000-token sequences at B = 32: 37 -> 64 slots, 1000 -> 1024
    assert block_waste([37, 1000], [0.3, 0.7], 32) == pytest.approx(
        (0.3 * 27 + 0.7 * 24) / (0.3 * 64 + 0.7 * 1024)
    )
    with pytest.raises(ValueError, match="one per length"):
        block_waste([1, 2], [1.0], 4)
    with pytest.raises(ValueError, match="positive share"):
        block_waste([4], [0.0], 4)
    with pytest.raises(TypeError, match="lengths"):
        block_waste(5, [1.0], 4)
