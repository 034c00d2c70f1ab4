"""kvlib.paged.stress: the recorded serving loop exercises every operation, replays deterministically,
and a manager assembled from the table functions makes kvlib's decisions on it (the notebook's claim)."""

from __future__ import annotations

import pytest

from kvlib.paged import BlockManager, HashPrefixCache
from kvlib.paged.stress import StressConfig, record_stress_ops, replay_decisions

pytestmark = pytest.mark.ch06

SMALL = StressConfig(
    num_requests=120,
    num_blocks=64,
    block_size=4,
    system_len=18,
    max_question=20,
    max_output=30,
    max_running=16,
)


def test_recording_is_seeded_and_covers_every_operation_under_pressure() -> None:
    ops = record_stress_ops(SMALL, seed=3)
    assert ops == record_stress_ops(SMALL, seed=3) and ops != record_stress_ops(SMALL, seed=4)
    assert {op[0] for op in ops} == {"allocate", "append", "fork", "free"}
    outcomes = replay_decisions(ops, BlockManager(SMALL.num_blocks, SMALL.block_size, "hash"))
    assert ("OutOfBlocks",) in outcomes  # the pool ran out: preemption happened
    assert any(out for op, out in zip(ops, outcomes) if op[0] == "append" and out != ("OutOfBlocks",))  # CoW
    assert any(out[1] for op, out in zip(ops, outcomes) if op[0] == "allocate")  # prefix hits


def test_every_request_ends_freed_and_no_block_leaks() -> None:
    ops = record_stress_ops(SMALL, seed=1)
    manager = BlockManager(SMALL.num_blocks, SMALL.block_size, "hash")
    replay_decisions(ops, manager)
    manager.check_invariants()
    assert not manager.seqs
    assert manager.num_free_blocks + manager.cache.num_evictable == SMALL.num_blocks
    admitted = {op[1] for op in ops if op[0] == "allocate"} | {op[2] for op in ops if op[0] == "fork"}
    assert admitted == {op[1] for op in ops if op[0] == "free"}


def test_replay_compares_decisions_and_rejects_bad_ops() -> None:
    ops = record_stress_ops(SMALL, seed=2)
    first = replay_decisions(ops, BlockManager(SMALL.num_blocks, SMALL.block_size, "hash"))
    same_design = BlockManager(SMALL.num_blocks, SMALL.block_size, HashPrefixCache(SMALL.block_size))
    assert first == replay_decisions(ops, same_design)
    # a manager without prefix caching decides differently on the same operations: no hit at the first one
    hit = next(i for i, (op, out) in enumerate(zip(ops, first)) if op[0] == "allocate" and out[1])
    uncached = replay_decisions(ops[: hit + 1], BlockManager(SMALL.num_blocks, SMALL.block_size))
    assert uncached[hit][1] == 0 and uncached[hit] != first[hit]
    with pytest.raises(ValueError, match="unknown operation 'evict'"):
        replay_decisions([("evict", 1)], BlockManager(4, 4))
    with pytest.raises(TypeError, match="list of operation tuples"):
        replay_decisions("allocate", BlockManager(4, 4))


def test_config_refuses_a_pool_too_small_for_one_request() -> None:
    with pytest.raises(ValueError, match="too small"):
        StressConfig(num_blocks=8, block_size=4)
    with pytest.raises(ValueError, match="fork_share"):
        StressConfig(fork_share=1.5)
    with pytest.raises(TypeError, match="StressConfig"):
        record_stress_ops({"num_blocks": 8})


def test_allocator_level_refusal_is_reported_not_raised() -> None:
    manager = BlockManager(2, 2)
    assert replay_decisions([("allocate", 0, [1, 2, 3, 4]), ("append", 0, 5)], manager) == [
        ([0, 1], 0),
        ("OutOfBlocks",),
    ]
