"""Block allocator, block tables, fork + copy-on-write, prefix caching and the known bugs of small engines."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from kvlib.paged import BlockAllocator, BlockManager, HashPrefixCache, OutOfBlocks, RadixPrefixCache
from kvlib.paged.prefix import RadixNode
from kvlib.paged.tracking import TokenKV as FakeKV

pytestmark = pytest.mark.ch06

KINDS = [None, "hash", "radix"]
CACHED = ["hash", "radix"]


# --- allocator --------------------------------------------------------------------------------
def test_allocator_all_or_nothing_and_counters():
    a = BlockAllocator(4, 16)
    ids = a.allocate(3)
    assert sorted(ids) == [0, 1, 2] and a.num_used == 3 and a.num_free == 1
    before = (list(a.free_ids), [b.ref_count for b in a.blocks])
    with pytest.raises(OutOfBlocks, match="needed 2 block"):
        a.allocate(2)
    assert (list(a.free_ids), [b.ref_count for b in a.blocks]) == before
    assert a.incref(ids[0]) == 2
    assert a.decref(ids[0]) == 1
    assert a.decref(ids[0]) == 0
    assert a.num_idle == 1  # ref 0, not yet released
    a.release(ids[0])
    assert a.num_free == 2 and a.num_idle == 0
    a.check_invariants()


def test_allocator_boundaries_and_out_of_blocks_details():
    """The smallest pool (one block of one token) works; allocating exactly the free blocks succeeds;
    OutOfBlocks carries what was needed and what was available, and says how to recover; a block
    with a single owner cannot be released, and an id one past the pool is out of range."""
    a = BlockAllocator(1, 1)
    assert a.allocate(0) == [] and a.allocate(1) == [0] and a.num_free == 0
    with pytest.raises(OutOfBlocks) as err:
        a.allocate(2)
    assert (err.value.needed, err.value.available) == (2, 0)
    assert str(err.value) == (
        "out of KV blocks: needed 2 block(s) but only 0 can be made free (free + evictable cached "
        "blocks); free or preempt a sequence and retry"
    )
    with pytest.raises(ValueError, match="block_id 0 is still owned 1 time"):
        a.release(0)
    assert a.ref_count(0) == 1 and a.num_free == 0
    for call in (a.is_free, a.ref_count, a.incref, a.decref, a.release):
        with pytest.raises(IndexError, match=re.escape("block_id 1 out of range [0, 1)")):
            call(1)
    a.check_invariants()


def test_allocator_rejects_misuse():
    with pytest.raises(ValueError, match="num_blocks"):
        BlockAllocator(0, 16)
    a = BlockAllocator(2, 4)
    with pytest.raises(IndexError):
        a.ref_count(5)
    (b,) = a.allocate(1)
    a.decref(b)
    with pytest.raises(ValueError, match="double free"):  # a real exception: it survives python -O
        a.decref(b)
    a.release(b)
    with pytest.raises(ValueError, match="is free"):
        a.incref(b)


# --- block tables -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_append_takes_a_block_at_each_boundary_and_slots_follow_the_table(kind):
    mgr = BlockManager(16, 4, kind)
    seq = mgr.allocate(0, [1, 2, 3])
    assert len(seq.block_ids) == 1
    mgr.append(0, 4)
    assert len(seq.block_ids) == 1
    mgr.append(0, 5)
    assert len(seq.block_ids) == 2
    table = mgr.block_table(0)
    assert mgr.slot_mapping(0) == [table[p // 4] * 4 + p % 4 for p in range(5)]
    with pytest.raises(IndexError):
        mgr.slot(0, 5)
    mgr.check_invariants()
    mgr.free(0)
    assert mgr.num_used_blocks == 0 and mgr.num_available_blocks == 16
    mgr.check_invariants()


def test_bad_input_messages():
    mgr = BlockManager(4, 4)
    with pytest.raises(ValueError, match="at least one prompt token"):
        mgr.allocate(0, [])
    mgr.allocate(0, [1])
    with pytest.raises(ValueError, match="already exists"):
        mgr.allocate(0, [1])
    with pytest.raises(KeyError, match="unknown sequence"):
        mgr.append(7, 1)
    with pytest.raises(ValueError, match="prefix cache must be"):
        BlockManager(4, 4, "lru")


# --- fork + copy on write ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_fork_shares_and_copy_on_write_reports_the_copy(kind):
    mgr = BlockManager(16, 4, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5, 6])  # blocks: [full][2 of 4]
    child = mgr.fork(0, 1)
    assert child.block_ids == mgr.block_table(0)
    assert all(mgr.allocator.ref_count(b) == 2 for b in child.block_ids)
    last = mgr.block_table(0)[-1]
    copies = kv.append(1, 70)  # child writes into the shared partial block: copy first
    assert len(copies) == 1 and copies[0][0] == last and copies[0][1] != last
    assert mgr.block_table(1)[-1] == copies[0][1]
    assert mgr.block_table(1)[0] == mgr.block_table(0)[0]  # the full block stays shared
    assert kv.append(0, 80) == []  # the parent is now the sole owner of its last block
    kv.check()
    mgr.check_invariants()
    assert [mgr.allocator.ref_count(b) for b in mgr.block_table(0)] == [2, 1]


@pytest.mark.parametrize("kind", CACHED)
def test_a_fork_inherits_what_its_parent_found_in_the_cache(kind):
    """A fork's table, tokens and cache bookkeeping are its parent's, including ``num_cached_tokens``
    (the leading prompt tokens whose KV the parent did not compute)."""
    mgr = BlockManager(16, 2, kind)
    mgr.allocate(0, [1, 2, 3, 4, 5])
    parent = mgr.allocate(1, [1, 2, 3, 4, 9])
    assert parent.num_cached_tokens == 4
    child = mgr.fork(1, 2)
    assert (child.tokens, child.block_ids) == (parent.tokens, parent.block_ids)
    assert (child.num_cached_tokens, child.num_registered, child.cache_open) == (4, 2, True)
    assert child.tokens is not parent.tokens and child.block_ids is not parent.block_ids
    mgr.check_invariants()


@pytest.mark.parametrize("kind", KINDS)
def test_fork_of_a_full_last_block_needs_no_copy(kind):
    mgr = BlockManager(16, 4, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4])
    mgr.fork(0, 1)
    assert kv.append(0, 5) == [] and kv.append(1, 6) == []
    assert mgr.block_table(0)[0] == mgr.block_table(1)[0]
    kv.check()
    mgr.check_invariants()


@pytest.mark.parametrize("kind", KINDS)
def test_out_of_blocks_changes_nothing(kind):
    mgr = BlockManager(3, 4, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5, 6])  # 2 blocks
    mgr.fork(0, 1)
    kv.append(1, 9)  # copy-on-write takes the 3rd block
    before = mgr.snapshot()
    with pytest.raises(OutOfBlocks):
        mgr.allocate(2, [5] * 9)  # needs 3 blocks, 0 free
    assert mgr.snapshot() == before
    kv.append(0, 7)  # parent is now sole owner of its partial block
    kv.append(0, 8)
    before = mgr.snapshot()
    with pytest.raises(OutOfBlocks):
        mgr.append(0, 10)  # last block full, no free block
    assert mgr.snapshot() == before
    mgr.fork(1, 3)
    before = mgr.snapshot()
    with pytest.raises(OutOfBlocks):
        mgr.append(3, 11)  # copy-on-write needs a block too
    assert mgr.snapshot() == before
    mgr.check_invariants()


# --- prefix caching ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CACHED)
def test_prefix_hit_reuses_full_blocks_only(kind):
    mgr = BlockManager(32, 4, kind)
    kv = FakeKV(mgr)
    assert kv.admit(0, list(range(10))) == 0
    hit = kv.admit(1, list(range(9)) + [99, 100])
    assert hit == 8  # two full blocks; block 2 differs (8, 99, ... vs 8, 9)
    assert mgr.block_table(1)[:2] == mgr.block_table(0)[:2]
    assert mgr.block_table(1)[2] != mgr.block_table(0)[2]
    kv.check()
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_cached_blocks_survive_free_until_evicted_lru(kind):
    mgr = BlockManager(6, 2, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5])  # blocks A(1,2) B(3,4) + partial
    kv.admit(1, [7, 8, 9, 10, 11])  # blocks C(7,8) D(9,10) + partial
    mgr.free(0)
    mgr.free(1)
    assert mgr.num_cached_blocks == 4 and mgr.num_free_blocks == 2 and mgr.num_used_blocks == 0
    # reuse of the older prefix refreshes it, so the newer-but-unused one is evicted first
    assert kv.admit(2, [1, 2, 3, 4, 6]) == 4
    mgr.free(2)
    kv.admit(3, [20, 21, 22, 23, 24, 25, 26, 27])  # needs 4 blocks: 2 free + evict 2
    assert len(mgr.cache.match([1, 2, 3, 4])) == 2, "least recently used prefix should have been evicted"
    assert mgr.cache.match([7, 8, 9, 10]) == []
    kv.check()
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_eviction_never_orphans_descendants(kind):
    mgr = BlockManager(8, 2, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5, 6, 7])  # chain of 3 full blocks + a partial one
    table = mgr.block_table(0)
    mgr.free(0)
    evicted = mgr.reclaim(1)
    cache = mgr.cache
    assert evicted == [table[2]], "the chain's tail must go first"
    assert cache.match([1, 2, 3, 4, 5, 6]) == table[:2]  # the head is still reachable
    cache.check_invariants()
    mgr.reclaim(2)
    assert cache.num_cached == 0
    mgr.check_invariants()


def test_hash_collisions_never_give_false_hits():
    cache = HashPrefixCache(2, hash_fn=lambda parent, tokens: 0)  # every key collides
    mgr = BlockManager(16, 2, cache)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5])
    assert kv.admit(1, [1, 2, 9, 9, 5]) == 2
    assert kv.admit(2, [3, 4, 1, 2, 5]) == 0  # same blocks, other order: different prefixes
    assert kv.admit(3, [1, 2, 3, 4, 5]) == 4
    kv.check()
    mgr.check_invariants()


def test_evicting_a_colliding_block_keeps_the_rest_of_its_slot():
    """With every key colliding, all blocks share one table slot: evicting one must leave the others
    findable, and the slot goes once it is empty."""
    cache = HashPrefixCache(2, hash_fn=lambda parent, tokens: 0)
    for tokens, block_id in (([1, 2], 10), ([3, 4], 11), ([5, 6], 12)):
        cache.insert(tokens, [block_id])
    cache.unlock(10)
    assert cache.evict(1) == [10]
    assert cache.match([3, 4], touch=False) == [11] and cache.match([5, 6], touch=False) == [12]
    assert cache.match([1, 2], touch=False) == []
    cache.check_invariants()
    cache.unlock(11)
    cache.unlock(12)
    assert cache.evict(2) == [11, 12] and cache.num_cached == 0
    assert cache._table == {}, "an emptied slot was left behind"
    cache.check_invariants()


def test_radix_splits_runs_and_extends_leaves():
    cache = RadixPrefixCache(2)
    mgr = BlockManager(32, 2, cache)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5, 6, 7, 8, 0])
    (run,) = cache.root.children.values()
    assert len(run.block_ids) == 4  # one path-compressed node
    kv.admit(1, [1, 2, 3, 4, 9, 9, 0])  # branches after two blocks: the run splits
    (head,) = cache.root.children.values()
    assert len(head.block_ids) == 2 and len(head.children) == 2
    kv.append(1, 5)  # completes block (0, 5): it extends the new leaf's run
    leaf = cache._node_of[mgr.block_table(1)[3]]
    assert leaf.block_ids == mgr.block_table(1)[2:4]
    kv.check()
    mgr.check_invariants()


# --- the known bugs of small engines ----------------------------------------------------------
@pytest.mark.parametrize("kind", CACHED)
def test_regression_stale_hash_entry_after_block_reuse(kind):
    """A block evicted and reused for other tokens must not stay findable under its old prefix."""
    mgr = BlockManager(3, 2, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5])
    old = mgr.block_table(0)
    mgr.free(0)
    kv.admit(1, [8, 9, 8, 9, 8, 9])  # takes every block: the cached ones are reused
    assert set(mgr.block_table(1)) == set(old)
    assert mgr.cache.match([1, 2, 3, 4]) == [], "stale entry: old prefix maps to a reused block"
    mgr.free(1)
    assert kv.admit(2, [1, 2, 3, 4, 5]) == 0
    kv.check()
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_regression_same_step_admission_shares_the_prefix(kind):
    """Two sequences admitted back to back (before any forward pass) share the prompt's blocks."""
    mgr = BlockManager(16, 4, kind)
    prompt = list(range(100, 113))
    a = mgr.allocate(0, prompt + [1])
    b = mgr.allocate(1, prompt + [2])
    assert b.block_ids[:3] == a.block_ids[:3] and b.num_cached_tokens == 12
    assert mgr.num_used_blocks == 3 + 2
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
@pytest.mark.parametrize("length", [8, 9, 1, 4])
def test_regression_full_prefix_hit_recomputes_the_last_token(kind, length):
    """A prompt found entirely in the cache must still compute >= 1 token (its logits)."""
    mgr = BlockManager(16, 4, kind)
    kv = FakeKV(mgr)
    prompt = list(range(length))
    kv.admit(0, prompt)
    hit = kv.admit(1, prompt)
    assert hit < length, "a full hit left zero tokens to compute"
    assert hit == (length - 1) // 4 * 4
    # the recomputed last token is written into a private block, never into a shared one
    last = mgr.block_table(1)[(length - 1) // 4]
    assert mgr.allocator.ref_count(last) == 1
    kv.check()
    mgr.check_invariants()


# --- the cache interface on its own -----------------------------------------------------------
@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_cache_interface_match_insert_lock_unlock_evict(cls):
    cache = cls(2)
    assert cache.insert([1, 2, 3, 4, 5, 6, 9], [10, 11, 12]) == 3  # the partial block (9) is ignored
    assert cache.insert([1, 2, 3, 4, 7, 7], [10, 11, 13]) == 3  # branches after two blocks
    assert cache.insert([1, 2, 3, 4], [10, 99]) == 1, "a prefix cached in another block stops the chain"
    assert cache.match([1, 2, 3, 4, 5, 6, 8]) == [10, 11, 12]
    assert cache.match([1, 2, 3, 5]) == [10]
    assert cache.match([2, 1]) == []
    assert cache.num_cached == 4 and cache.num_evictable == 0  # inserted blocks are in use
    with pytest.raises(ValueError, match="only 0 are unlocked"):
        cache.evict(1)
    for b in (12, 13, 11, 10):
        cache.unlock(b)
    cache.match([1, 2, 3, 4, 7, 7])  # refresh the (7, 7) branch: (5, 6) is now least recent
    assert cache.evict(1) == [12]
    cache.lock(10)
    cache.lock(11)
    cache.lock(13)
    assert cache.num_evictable == 0
    cache.unlock(13)
    assert cache.evict(1) == [13]  # a leaf whose ancestors stay locked
    cache.check_invariants()
    with pytest.raises(KeyError, match="not cached"):
        cache.insert_block(12, (5, 6), 12)  # 12 was evicted: nothing may hang below it
    with pytest.raises(ValueError, match="only full blocks"):
        cache.insert_block(None, (1,), 50)


# --- least recently used first, at block granularity -----------------------------------------
@pytest.mark.parametrize("kind", CACHED)
def test_lru_is_per_block_so_both_designs_evict_the_same_block(kind):
    """A hit on a prefix of a cached run refreshes only the blocks it matched.

    [1,2 | 3,4] and [7,8 | 9,10] are cached and idle; a hit on (1, 2) alone makes (3, 4) the least
    recently used block, so it goes first, in the hash design and the radix design alike."""
    mgr = BlockManager(8, 2, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5])
    first = mgr.block_table(0)
    mgr.free(0)
    kv.admit(1, [7, 8, 9, 10, 11])
    second = mgr.block_table(1)
    mgr.free(1)
    assert kv.admit(2, [1, 2, 0]) == 2  # hit on the first block only
    mgr.free(2)
    assert mgr.reclaim(1) == [first[1]], "the block of (3, 4) is the least recently used one"
    assert mgr.reclaim(1) == [second[1]], "then the block of (9, 10)"
    mgr.check_invariants()


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_match_touches_only_the_matched_blocks(cls):
    cache = cls(2)
    cache.insert([1, 2, 3, 4], [10, 11])
    cache.insert([7, 8, 9, 9], [20, 21])
    for b in (11, 10, 21, 20):  # freed tail first, as the block manager does
        cache.unlock(b)
    before = cache.last_access(11)
    assert cache.match([1, 2, 5, 5], touch=False) == [10]
    assert cache.last_access(10) < cache.last_access(20), "touch=False must not refresh anything"
    assert cache.match([1, 2, 5, 5]) == [10]
    assert cache.last_access(10) > cache.last_access(20) and cache.last_access(11) == before
    assert cache.evict(2) == [11, 21]  # the unmatched tail is older than the whole other chain
    cache.check_invariants()


def test_radix_split_keeps_each_blocks_own_time():
    """Splitting a run must not give its tail the head's (refreshed) time."""
    cache = RadixPrefixCache(2)
    cache.insert([1, 2, 3, 4, 5, 6], [10, 11, 12])
    cache.insert([7, 8], [20])
    for b in (12, 11, 10, 20):
        cache.unlock(b)
    cache.match([1, 2])  # refreshes block 10 only
    cache.lock(10)
    assert cache.insert_block(10, (9, 9), 30)  # branches after block 10: the run splits
    assert len(cache.root.children[(1, 2)].block_ids) == 1
    assert cache.evict(1) == [12], "the split tail (3,4)(5,6) is older than (7, 8)"
    assert cache.evict(2) == [11, 20]
    cache.check_invariants()


def test_radix_failed_insert_leaves_the_tree_unsplit():
    cache = RadixPrefixCache(2)
    cache.insert([1, 2, 3, 4, 5, 6], [10, 11, 12])
    before = cache.state()
    with pytest.raises(ValueError, match="already cached"):
        cache.insert_block(10, (9, 9), 12)  # 12 already holds (5, 6): refused before any split
    assert cache.state() == before
    cache.check_invariants()


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_insert_block_rejects_a_parent_not_in_use(cls):
    """A child registered (locked) under an idle parent would make the parent count as evictable
    although it cannot be evicted before its child: insert_block refuses it."""
    cache = cls(2)
    cache.insert([1, 2], [10])
    cache.unlock(10)
    before = cache.state()
    with pytest.raises(ValueError, match="parent block 10 is not in use"):
        cache.insert_block(10, (3, 4), 11)
    assert cache.state() == before and cache.num_evictable == 1
    assert cache.evict(1) == [10]
    cache.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_failed_allocation_does_not_refresh_the_lru_order(kind):
    mgr = BlockManager(6, 2, kind)
    kv = FakeKV(mgr)
    kv.admit(0, [1, 2, 3, 4, 5])
    first = mgr.block_table(0)
    mgr.free(0)
    kv.admit(1, [7, 8, 9, 10, 11])
    mgr.free(1)
    before = mgr.snapshot()
    prompt = [1, 2, 3, 4] + [0] * 20  # hits (1,2)(3,4) but needs 12 blocks in a pool of 6
    assert not mgr.can_allocate(prompt)
    with pytest.raises(OutOfBlocks):
        mgr.allocate(2, prompt)
    assert mgr.snapshot() == before, "a failed allocation changed the state (LRU times or clock)"
    assert mgr.reclaim(1) == [first[1]], "the failed request's hit must not count as a use"
    # the snapshot does see LRU times: a real touch changes it
    before = mgr.snapshot()
    mgr.cache.match([7, 8, 9, 10])
    assert mgr.snapshot() != before


@pytest.mark.parametrize("kind", KINDS)
def test_can_allocate_counts_free_and_idle_blocks_exactly(kind):
    """can_allocate says yes up to the last block that can be had, free or evictable, and no one
    block past it, with or without a prefix cache (and allocate agrees)."""
    mgr = BlockManager(4, 2, kind)
    mgr.allocate(0, [7, 8, 9])  # 2 blocks; with a cache, (7, 8) stays idle once freed
    mgr.free(0)
    assert mgr.num_available_blocks == 4 and mgr.num_free_blocks == (4 if kind is None else 3)
    assert mgr.can_allocate([1] * 8) and not mgr.can_allocate([1] * 9)
    before = mgr.snapshot()
    with pytest.raises(OutOfBlocks) as err:
        mgr.allocate(1, [1] * 9)
    assert (err.value.needed, err.value.available) == (5, 4) and mgr.snapshot() == before
    assert mgr.allocate(1, [1] * 8).block_ids and mgr.num_available_blocks == 0
    mgr.check_invariants()


def test_unknown_and_taken_ids_are_named_exactly():
    """The id errors start with the argument's exact name (as the caller spelled it) and the id."""
    mgr = BlockManager(8, 2, "hash")
    mgr.allocate(0, [1, 2, 3])
    cases = [
        (lambda: mgr.append(9, 1), KeyError, "seq_id 9: unknown sequence id"),
        (lambda: mgr.fork(7, 8), KeyError, "parent_id 7: unknown sequence id"),
        (lambda: mgr.allocate(0, [1]), ValueError, "seq_id 0 already exists: free it first"),
    ]
    mgr.allocate(1, [4])
    cases.append((lambda: mgr.fork(0, 1), ValueError, "child_id 1 already exists: free it first"))
    for call, error, start in cases:
        with pytest.raises(error) as err:
            call()
        assert err.value.args[0].startswith(start), err.value.args[0]


@pytest.mark.parametrize("kind", KINDS)
def test_reclaiming_more_than_the_idle_blocks_is_out_of_blocks(kind):
    """reclaim(n) past the idle cached blocks raises OutOfBlocks (needed n, available the idle count,
    0 without a cache) and evicts nothing; exactly the idle count is fine."""
    mgr = BlockManager(8, 2, kind)
    mgr.allocate(0, [1, 2, 3, 4, 5])
    mgr.free(0)
    idle = 0 if kind is None else 2
    before = mgr.snapshot()
    with pytest.raises(OutOfBlocks) as err:
        mgr.reclaim(idle + 1)
    assert (err.value.needed, err.value.available) == (idle + 1, idle)
    assert mgr.snapshot() == before
    assert len(mgr.reclaim(idle)) == idle and mgr.num_free_blocks == 8
    mgr.check_invariants()


def test_can_allocate_and_allocate_agree_on_an_empty_prompt():
    mgr = BlockManager(4, 4, "hash")
    for call in (lambda: mgr.can_allocate([]), lambda: mgr.allocate(0, [])):
        with pytest.raises(ValueError, match="at least one prompt token"):
            call()


@pytest.mark.parametrize("seed", range(5))
def test_hash_and_radix_make_the_same_decisions(seed):
    """The two designs are interchangeable: on one random walk they hand out, share and evict the
    same blocks at every step (both evict least recently used leaf blocks, deepest first on ties)."""
    rng = random.Random(seed)
    mgrs = [BlockManager(12, 2, kind) for kind in CACHED]
    live: list[int] = []
    next_id = 0
    for _ in range(300):
        op = rng.choice(["allocate", "allocate", "append", "fork", "free", "reclaim"])
        draws = rng.random()  # both managers see the same random choices
        outcomes = [_random_step(mgr, op, live, next_id, random.Random(draws)) for mgr in mgrs]
        assert outcomes[0] == outcomes[1], f"designs disagree on {op}: {outcomes}"
        ok, _ = outcomes[0]
        if ok and op in ("allocate", "fork"):
            live.append(next_id)
            next_id += 1
        elif ok and op == "free":
            live.remove(outcomes[0][1][0])
        assert mgrs[0].snapshot()[:3] == mgrs[1].snapshot()[:3]  # tables, refcounts, free list
        for mgr in mgrs:
            mgr.check_invariants()


def _random_step(mgr: BlockManager, op: str, live: list[int], new_id: int, r: random.Random):
    """One random operation; returns (succeeded, what it returned) for comparing managers."""
    try:
        if op == "allocate":
            prefix = r.choice([[1, 2, 3, 4], [1, 2, 5, 6], [7, 7]])
            prompt = prefix + [r.randrange(3) for _ in range(r.randrange(5))]
            return True, (mgr.allocate(new_id, prompt).block_ids,)
        if not live:
            return False, None
        seq = r.choice(live)
        if op == "append":
            return True, (mgr.append(seq, r.randrange(3)),)
        if op == "fork":
            return True, (mgr.fork(seq, new_id).block_ids,)
        if op == "free":
            mgr.free(seq)
            return True, (seq,)
        return True, (mgr.reclaim(min(mgr.cache.num_evictable, 1 + r.randrange(2))),)
    except OutOfBlocks:
        return False, None


# --- quiet bugs no earlier test caught (issue 20): each test below failed with its bug applied ---
@pytest.mark.parametrize("kind", CACHED)
def test_idle_blocks_a_prompt_hits_are_not_counted_as_evictable_room(kind):
    """Guards the ``pinned`` term of the availability check. The idle cached blocks a new prompt hits
    are locked by its allocation, so they cannot also be evicted to make room for its fresh blocks.
    Without the term can_allocate said yes and allocate failed (after locking the hit)."""
    mgr = BlockManager(4, 2, kind)
    first = mgr.allocate(0, [1, 2, 3, 4, 5]).block_ids  # (1,2)(3,4) cached + a partial block
    mgr.free(0)
    assert (mgr.num_free_blocks, mgr.cache.num_evictable) == (2, 2)
    # hits both idle blocks, needs ceil(9 / 2) - 2 = 3 fresh ones; the 2 free blocks are all there is
    too_long = [1, 2, 3, 4, 9, 9, 9, 9, 9]
    before = mgr.snapshot()
    assert not mgr.can_allocate(too_long), "the 2 hit blocks were counted as evictable room"
    with pytest.raises(OutOfBlocks, match="needed 3 block.*only 2 can be made free"):
        mgr.allocate(1, too_long)
    assert mgr.snapshot() == before
    # one token block fewer: 2 hits + 2 fresh blocks fit exactly
    fits = [1, 2, 3, 4, 9, 9, 9]
    assert mgr.can_allocate(fits)
    seq = mgr.allocate(1, fits)
    assert seq.block_ids[:2] == first[:2] and seq.num_cached_tokens == 4
    assert mgr.num_free_blocks == 0 and mgr.cache.num_evictable == 0
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_fork_keeps_a_closed_registration_closed(kind):
    """Guards fork copying ``cache_open``: a sequence whose block duplicated a cached one keeps its
    later blocks private, and so must its fork (a fork that re-opened registration registered the
    duplicate and everything after it once the cached twin was evicted)."""
    mgr = BlockManager(16, 2, kind)
    a = mgr.allocate(0, [1, 2, 3, 4, 0]).block_ids  # registers (1,2) and (3,4)
    mgr.allocate(1, [1, 2, 3, 4])  # hits (1,2) only (the last token is recomputed): (3,4) again
    parent = mgr.seqs[1]
    assert parent.block_ids[0] == a[0] and parent.block_ids[1] != a[1]
    assert (parent.num_registered, parent.cache_open) == (1, False)  # its (3,4) is a private duplicate
    mgr.free(0)
    assert mgr.reclaim(1) == [a[1]]  # the cached twin of the duplicate goes; (1,2) stays, in use
    child = mgr.fork(1, 2)
    for token in (5, 6, 7, 8):  # two more full blocks for the child
        mgr.append(2, token)
    assert mgr.cache.cached_blocks() == {a[0]: None}, "the fork registered blocks after the duplicate"
    assert mgr.cache.match([1, 2, 3, 4, 5, 6, 7, 8], touch=False) == [a[0]]
    assert (child.num_registered, child.cache_open) == (1, False)
    mgr.check_invariants()


def _fork_prompts() -> tuple[list[int], list[int]]:
    """Blocks X=(1,2), Y=(3,4), W=(5,6), Z=(7,8): prompts X Y W . and X Y Z . share the run X Y."""
    return [1, 2, 3, 4, 5, 6, 0], [1, 2, 3, 4, 7, 8, 0]


def test_radix_lookup_stops_at_a_partial_match_of_a_run():
    """Guards against a radix lookup that keeps descending after a run matched only partly: X W would
    then skip Y and take the W block below X Y, so the sequence read another prompt's KV."""
    cache = RadixPrefixCache(2)
    p, q = _fork_prompts()
    cache.insert(p, [10, 11, 12])
    cache.insert(q, [10, 11, 13])
    (run,) = cache.root.children.values()
    assert run.block_ids == [10, 11] and len(run.children) == 2  # a run X Y, branching into W and Z
    assert cache.match([1, 2, 5, 6, 0], touch=False) == [10], "false hit: W was found below X Y"
    assert cache.match([1, 2, 7, 8, 5, 6], touch=False) == [10]
    assert cache.match([1, 2, 3, 4, 7, 8], touch=False) == [10, 11, 13]
    cache.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_a_partial_run_hit_reads_only_the_true_common_prefix(kind):
    """The same false hit seen through the block manager: the new sequence would read W's KV."""
    mgr = BlockManager(16, 2, kind)
    kv = FakeKV(mgr)
    p, q = _fork_prompts()
    kv.admit(0, p)
    kv.admit(1, q)
    assert kv.admit(2, [1, 2, 5, 6, 9]) == 2, "only X is a common prefix"  # FakeKV checks what it reads
    assert mgr.block_table(2)[1] not in mgr.block_table(0)
    kv.check()
    mgr.check_invariants()


@pytest.mark.parametrize("kind", CACHED)
def test_a_block_freed_later_is_evicted_later_whatever_its_age(kind):
    """Guards unlock refreshing the LRU time: a block's last owner leaving counts as a use. A was
    admitted (and registered) long before B, but freed after it, so B goes first."""
    mgr = BlockManager(8, 2, kind)
    a = mgr.allocate(0, [1, 2, 0]).block_ids[0]
    b = mgr.allocate(1, [3, 4, 0]).block_ids[0]
    mgr.free(1)
    mgr.free(0)
    assert mgr.cache.last_access(b) < mgr.cache.last_access(a), "unlock must stamp the block"
    assert mgr.reclaim(1) == [b], "the block freed first must be evicted first"
    assert mgr.reclaim(1) == [a]


@pytest.mark.parametrize("kind", CACHED)
def test_free_stamps_a_chain_tail_first_and_eviction_climbs_it(kind):
    """``free`` drops a table last block first, so the tail's recorded last use is the older one
    (visible through ``last_access`` and ``snapshot``). Which block is *evicted* does not depend
    on that order: only leaves are evicted, so a chain is trimmed from its tail whatever its times
    (see test_free_order_never_changes_an_eviction), and a parent never goes while a child is cached."""
    mgr = BlockManager(8, 2, kind)
    table = mgr.allocate(0, [1, 2, 3, 4, 5, 6, 0]).block_ids
    mgr.free(0)
    times = [mgr.cache.last_access(b) for b in table[:3]]
    assert times == sorted(times, reverse=True) and len(set(times)) == 3, "dropped head-first"
    cache = mgr.cache
    for expected in reversed(table[:3]):
        assert mgr.reclaim(1) == [expected]
        parents = cache.cached_blocks()
        assert all(up is None or up in parents for up in parents.values()), "a parent went before its child"


class _HeadFirstFree(BlockManager):
    """``free`` dropping a table head-first: the change issue 20 found no test could tell apart."""

    def free(self, seq_id: int) -> None:
        seq = self._get(seq_id)
        del self.seqs[seq.seq_id]
        for block_id in seq.block_ids:
            self._drop(block_id)


@pytest.mark.parametrize("kind", CACHED)
def test_free_order_never_changes_an_eviction(kind):
    """Why dropping a table head-first is no bug: the blocks one ``free`` makes idle are a chain (an
    in-use block's ancestors stay in use), stamped on consecutive clock ticks, so against every other
    block they are all older or all newer either way, and within the chain only its deepest idle
    block is a leaf. The order does show in the last-use times and in which physical blocks come
    back off the free list first, so the two managers are compared with block ids renamed away: on
    random walks they succeed, hit, copy, share and evict alike at every step (5 walks of 300 steps
    evict about 100 blocks and free about 30 chains of two or more idle blocks)."""
    for seed in range(5):
        _same_decisions_on_a_walk(kind, seed)


def _same_decisions_on_a_walk(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    mgrs = [BlockManager(12, 2, kind), _HeadFirstFree(12, 2, kind)]
    tokens_of: list[dict[int, tuple[int, ...]]] = [{}, {}]
    live: list[int] = []
    next_id = 0
    for _ in range(300):
        op = rng.choice(["allocate", "allocate", "append", "fork", "free", "reclaim"])
        draws = rng.random()
        outcomes = [_random_step(mgr, op, live, next_id, random.Random(draws)) for mgr in mgrs]
        ok, result = outcomes[0]
        assert [o[0] for o in outcomes] == [ok, ok], f"free orders disagree on {op}: {outcomes}"
        if ok and op in ("allocate", "fork"):
            assert len({mgr.seqs[next_id].num_cached_tokens for mgr in mgrs}) == 1
            live.append(next_id)
            next_id += 1
        elif ok and op == "free":
            live.remove(result[0])
        elif ok:  # append: the copies made; reclaim: the blocks evicted (compared as cached paths below)
            assert len(outcomes[0][1][0]) == len(outcomes[1][1][0])
        views = [_id_free_view(mgr, seen) for mgr, seen in zip(mgrs, tokens_of)]
        assert views[0] == views[1], f"free orders disagree after {op}"


def _id_free_view(mgr: BlockManager, tokens_of: dict[int, tuple[int, ...]]) -> tuple:
    """The manager's state with physical block ids renamed away: tables (tokens, registration, and
    blocks relabelled by first appearance, which keeps who shares what), the cache as the token
    paths of its blocks with their lock state, and the counters. ``tokens_of`` remembers the tokens
    of every full block seen in a table (a cached block was in a table when it was registered)."""
    bs = mgr.block_size
    label: dict[int, int] = {}
    tables = []
    for seq in sorted(mgr.seqs.values(), key=lambda s: s.seq_id):
        for i in range(len(seq.tokens) // bs):
            tokens_of[seq.block_ids[i]] = tuple(seq.tokens[i * bs : (i + 1) * bs])
        labels = tuple(label.setdefault(b, len(label)) for b in seq.block_ids)
        tables.append((seq.seq_id, tuple(seq.tokens), seq.num_registered, seq.cache_open, labels))
    parents, locked = mgr.cache.cached_blocks(), mgr.cache.locked_blocks()

    def path(block_id: int | None) -> tuple:
        return () if block_id is None else path(parents[block_id]) + (tokens_of[block_id],)

    cached = sorted((path(b), b in locked, label.get(b)) for b in parents)
    counts = (mgr.num_free_blocks, mgr.num_used_blocks, mgr.num_cached_blocks, mgr.cache.num_evictable)
    return tuple(tables), cached, counts


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_lru_ties_between_leaves_take_the_deepest_first(cls):
    """The tie-break of equal last-use times, deepest block first. Through a BlockManager two leaves
    never tie (one stamp covers one block or one matched chain, and a chain has one leaf); a caller
    that touches blocks of different branches in one call makes them tie, and then it shows."""
    cache = cls(2)
    cache.insert([1, 2, 3, 4], [10, 11])
    cache.insert([7, 8], [20])
    for b in (11, 10, 20):
        cache.unlock(b)
    cache.touch([20, 11])  # one use of both leaves: equal times, at depths 0 (20) and 1 (11)
    assert cache.last_access(11) == cache.last_access(20)
    assert cache.evict(1) == [11], "among equal times the deepest leaf goes first"
    assert cache.evict(2) == [10, 20]  # 10 (freed earlier) is now a leaf and older than 20
    cache.check_invariants()


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_lru_ties_compare_depth_in_the_whole_sequence(cls):
    """A tie between block 13, three blocks down (below 10, 11, 12, each a radix run of its own since
    a branch leaves after each), and block 22, the third block of the run 20 21 22, which went idle
    first: 13 is the deeper one and goes first. Depth counts blocks from the root, through every run
    above, not a block's place inside its own run."""
    cache = cls(2)
    cache.insert([7, 7, 8, 8, 9, 9], [20, 21, 22])
    cache.insert([1, 2, 3, 4, 5, 6, 0, 0], [10, 11, 12, 13])
    for n in range(1, 4):  # branches after 10, after 11 and after 12: blocks 30, 31, 32
        cache.insert([1, 2, 3, 4, 5, 6][: 2 * n] + [9, 9], [10, 11, 12][:n] + [29 + n])
    for b in (22, 21, 20, 30, 31, 32, 13, 12, 11, 10):
        cache.unlock(b)
    cache.touch([22, 13])
    assert cache.evict(4) == [30, 31, 32, 13], "the old branches first; then, among equal times, the deepest"
    assert cache.evict(1) == [12]  # 12, 11 and 10 went idle before the touch
    cache.check_invariants()


# --- check_invariants catches every kind of corruption it names --------------------------------
# The property tests (tests/test_paged_stateful.py and the random walks above) trust check_invariants
# to notice a broken structure. Each case below breaks one thing behind the API's back, in a state
# where every other invariant still holds, and the check must name that thing.
def _states_allocator() -> BlockAllocator:
    """Block 0 used, block 1 idle (reference count 0, off the free list), blocks 2 and 3 free."""
    a = BlockAllocator(4, 2)
    a.allocate(2)
    a.decref(1)
    return a


def _states_manager(kind):
    """Sequence 0 holds (1,2)(3,4)(5): blocks 0, 1 (full, registered) and 2; a freed sequence left
    block 3, holding (7, 8), idle in the cache (with a cache) or free (without)."""
    mgr = BlockManager(8, 2, kind)
    assert mgr.allocate(0, [1, 2, 3, 4, 5]).block_ids == [0, 1, 2]
    assert mgr.allocate(1, [7, 8, 9]).block_ids == [3, 4]
    mgr.free(1)
    mgr.check_invariants()
    return mgr


def _states_cache(cls):
    """(1,2)(3,4)(5,6) in 10 11 12 and (1,2)(7,8) in 10 13, all in use but the leaf 12; and an idle
    chain (9,9)(9,9) in 20 21. The radix tree: run [10] branching into [11, 12] and [13]; run [20, 21]."""
    cache = cls(2)
    cache.insert([1, 2, 3, 4, 5, 6], [10, 11, 12])
    cache.insert([1, 2, 7, 8], [10, 13])
    cache.insert([9, 9, 9, 9], [20, 21])
    for b in (12, 21, 20):
        cache.unlock(b)
    cache.check_invariants()
    return cache


def _swap_into_free_set(mgr) -> None:
    """Owned block 0 takes free block 5's place in the allocator's free set (the list is unchanged)."""
    mgr.allocator._free_set.discard(5)
    mgr.allocator._free_set.add(0)


def _hide_a_duplicate(mgr) -> None:
    """Free block 7 twice on the free list, and a stray id in the free set to even the lengths."""
    mgr.allocator.free_ids.append(7)
    mgr.allocator._free_set.add(99)


def _hash_clone_parent(cache) -> None:
    """Block 11's parent pointer goes to a copy of 10's entry (10's child count follows, so only the
    pointer is wrong)."""
    entry = cache._by_block[10]
    cache._by_block[11].parent = dataclasses.replace(entry)
    entry.num_children -= 1


def _hash_stale_entry(cache) -> None:
    cache._table.setdefault(12345, []).append(type(cache._by_block[10])(12345, (0, 0), 99, None, 0))


def _radix_node(cache, block_id):
    return cache._node_of[block_id]


ALLOCATOR_CORRUPTIONS = {
    "free-list-duplicate": (lambda a: a.free_ids.append(2), "duplicate block on the free list"),
    "free-block-owned": (lambda a: setattr(a.blocks[2], "ref_count", 1), "free block 2 has owners"),
    "used-counter": (lambda a: setattr(a, "_num_used", 2), "used counter 2 != 1"),
    "negative-count": (lambda a: setattr(a.blocks[1], "ref_count", -1), "negative reference count"),
}


@pytest.mark.parametrize("case", ALLOCATOR_CORRUPTIONS)
def test_allocator_check_invariants_names_the_corruption(case):
    corrupt, message = ALLOCATOR_CORRUPTIONS[case]
    a = _states_allocator()
    a.check_invariants()
    corrupt(a)
    with pytest.raises(AssertionError, match=message):
        a.check_invariants()


MANAGER_CORRUPTIONS = {
    # (kinds it applies to, corruption, what check_invariants must say)
    "allocator-counter": (KINDS, lambda m: setattr(m.allocator, "_num_used", 9), "used counter 9 != 3"),
    "ref-count-low": (KINDS, lambda m: m.allocator.decref(2), "block 2: ref_count 0 but 1 owner"),
    "leak": (
        KINDS,
        lambda m: [m.allocator.decref(b) for b in m.seqs.pop(0).block_ids],
        "must be either free or idle cached (leak?)",
    ),
    "cached-and-free": (CACHED, lambda m: m.allocator.release(3), "unowned block 3 must be either free or"),
    "table-length": (KINDS, lambda m: m.seqs[0].tokens.pop(), "sequence 0: 4 tokens, 3 blocks"),
    "table-repeats": (
        KINDS,
        lambda m: m.seqs[0].block_ids.__setitem__(1, 0),
        "sequence 0 lists a block twice",
    ),
    "unlocked-in-use": (CACHED, lambda m: m.cache.unlock(1), "lock state of block 1 wrong"),
    "locked-idle": (CACHED, lambda m: m.cache.lock(3), "lock state of block 3 wrong"),
    "registered-tokens": (
        CACHED,
        lambda m: m.seqs[0].tokens.__setitem__(0, 9),
        "sequence 0: registered blocks do not match",
    ),
    "registered-count": (
        CACHED,
        lambda m: setattr(m.seqs[0], "num_registered", 3),
        "sequence 0: registered blocks do not match",
    ),
    "cache-inside": (CACHED, lambda m: m.cache.unlock(0), "block 1 is in use but its parent 0 is not"),
    # the allocator compares its free list and free set by length only: a block swapped between them,
    # or a duplicate on the list hidden by a stray id in the set, is left to the manager's checks
    "owned-in-free-set": (KINDS, _swap_into_free_set, "owned block 0 is on the free list"),
    "hidden-duplicate": ([None], _hide_a_duplicate, "-1 idle block(s) but no prefix cache"),
    "hidden-duplicate-cached": (CACHED, _hide_a_duplicate, "0 idle but 1 evictable"),
}


def _applicable(corruptions: dict) -> list:
    """(case, kind or design) pairs, for the kinds or designs each corruption applies to."""
    return [
        pytest.param(case, k, id=f"{case}-{getattr(k, '__name__', k)}")
        for case, (ks, *_) in corruptions.items()
        for k in ks
    ]


@pytest.mark.parametrize(("case", "kind"), _applicable(MANAGER_CORRUPTIONS))
def test_manager_check_invariants_names_the_corruption(case, kind):
    _, corrupt, message = MANAGER_CORRUPTIONS[case]
    mgr = _states_manager(kind)
    corrupt(mgr)
    with pytest.raises(AssertionError, match=re.escape(message)):
        mgr.check_invariants()


CACHE_CORRUPTIONS = {
    # (designs it applies to, corruption, what check_invariants must say)
    "orphan": ([HashPrefixCache], lambda c: c._by_block.pop(20), "cached block 21 lost its parent 20"),
    "locked-uncached": ([RadixPrefixCache], lambda c: c._in_use.add(99), "a locked block is not cached"),
    "idle-parent": ([HashPrefixCache, RadixPrefixCache], lambda c: c.unlock(10), "parent 10 is not"),
    "evictable-count": (
        [HashPrefixCache],
        lambda c: setattr(c, "_num_locked", 4),
        "2 evictable != 6 cached - 3",
    ),
    "parent-entry": (
        [HashPrefixCache],
        _hash_clone_parent,
        "block 11: its parent entry is not the cached one",
    ),
    "child-count": (
        [HashPrefixCache],
        lambda c: setattr(c._by_block[10], "num_children", 3),
        "child count of block 10 is stale",
    ),
    "leaf-missing": ([HashPrefixCache], lambda c: c._leaves.pop(12), "leaf set wrong for block 12"),
    "leaf-locked": (
        [HashPrefixCache],
        lambda c: c._leaves.__setitem__(11, c._by_block[11]),
        "leaf set wrong for block 11",
    ),
    "bucket": (
        [HashPrefixCache],
        lambda c: c._table[c._by_block[12].key].remove(c._by_block[12]),
        "block 12 missing from its bucket",
    ),
    "bucket-gone": (
        [HashPrefixCache],
        lambda c: c._table.pop(c._by_block[12].key),
        "block 12 missing from its bucket",
    ),
    "stale-entry": ([HashPrefixCache], _hash_stale_entry, "stale hash entry"),
    "time-missing": (
        [HashPrefixCache, RadixPrefixCache],
        lambda c: c._last_access.pop(12),
        "last-use times out of sync with the cache",
    ),
    "time-ahead": (
        [HashPrefixCache, RadixPrefixCache],
        lambda c: c._last_access.__setitem__(12, c._clock + 1),
        "a last-use time is in the future",
    ),
    "run-parent": (
        [RadixPrefixCache],
        lambda c: setattr(_radix_node(c, 13), "parent", c.root),
        "run [13] is hooked under the wrong key or parent",
    ),
    "run-key": (
        [RadixPrefixCache],
        lambda c: c.root.children.__setitem__((8, 8), c.root.children.pop((9, 9))),
        "run [20, 21] is hooked under the wrong key or parent",
    ),
    "empty-run": (
        [RadixPrefixCache],
        lambda c: c.root.children.__setitem__((5, 5), RadixNode([(5, 5)], [], c.root)),
        "empty radix node",
    ),
    "run-keys": (
        [RadixPrefixCache],
        lambda c: _radix_node(c, 13).key.append((0, 0)),
        "run [13]: 2 keys, 1 blocks",
    ),
    "block-map": (
        [RadixPrefixCache],
        lambda c: c._node_of.__setitem__(12, _radix_node(c, 13)),
        "run [11, 12]: block map points elsewhere",
    ),
}


@pytest.mark.parametrize(("case", "cls"), _applicable(CACHE_CORRUPTIONS))
def test_cache_check_invariants_names_the_corruption(case, cls):
    _, corrupt, message = CACHE_CORRUPTIONS[case]
    cache = _states_cache(cls)
    corrupt(cache)
    with pytest.raises(AssertionError, match=re.escape(message)):
        cache.check_invariants()


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_covers_the_sequences_and_checking_changes_nothing(kind):
    """snapshot() is what the failure tests compare, so it must see a change that touches only a
    sequence (a token written into its partial block) or only a reference count, and must not depend
    on the order sequences were admitted in. check_invariants only looks: the snapshot (LRU times
    included) is unchanged."""
    mgr = _states_manager(kind)
    mgr.fork(0, 5)
    before = mgr.snapshot()
    mgr.check_invariants()
    assert mgr.snapshot() == before, "check_invariants changed the state"
    mgr.append(0, 6)  # fills sequence 0's partial block: no block taken, only its tokens change
    assert mgr.snapshot() != before
    assert mgr.snapshot()[0][0][:2] == (0, (1, 2, 3, 4, 5, 6))
    before = mgr.snapshot()
    mgr.allocator.incref(0)  # only a reference count changes
    assert mgr.snapshot() != before
    mgr.allocator.decref(0)
    assert mgr.snapshot() == before
    # the same sequences admitted in the other order: equal snapshots
    first, second = BlockManager(8, 2, kind), BlockManager(8, 2, kind)
    first.allocate(0, [1, 2, 3])
    first.fork(0, 1)
    second.allocate(1, [1, 2, 3])
    second.fork(1, 0)
    assert first.snapshot() == second.snapshot()
