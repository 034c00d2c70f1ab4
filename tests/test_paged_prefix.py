"""The prefix caches on their own (kvlib.paged.prefix): ``insert`` against ``insert_block``, and what
re-registering an already cached chain does. Both designs are run through every test."""

from __future__ import annotations

import copy
import random

import pytest

from kvlib.paged import BlockManager, HashPrefixCache, RadixPrefixCache
from kvlib.paged.prefix import default_block_hash

pytestmark = pytest.mark.ch06

CLASSES = [HashPrefixCache, RadixPrefixCache]


def _chain(cls: type, tokens: list[int], block_ids: list[int], idle: int = 0):
    """A block-size-2 cache holding ``tokens`` in ``block_ids``, its last ``idle`` blocks unlocked
    (tail first, as a block manager frees a table)."""
    cache = cls(2)
    assert cache.insert(tokens, block_ids) == len(block_ids)
    for b in reversed(block_ids[len(block_ids) - idle :]):
        cache.unlock(b)
    return cache


# --- re-registering a chain that is already cached under the same ids ------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_reinserting_a_cached_chain_with_an_idle_tail_changes_nothing(cls, n_blocks):
    """Every block's parent is in use, only the tail block itself is idle: insert_block accepts each
    block (its parent is in use), so insert reports the whole chain as cached and changes nothing,
    not even the tail's last-use time or lock."""
    ids = [10 + i for i in range(n_blocks)]
    tokens = list(range(1, 2 * n_blocks + 1))
    cache = _chain(cls, tokens, ids, idle=1)
    before = cache.state()
    assert cache.insert(tokens, ids) == n_blocks
    assert cache.insert(tokens + [99], ids + [50]) == n_blocks  # a trailing partial block is ignored
    assert cache.state() == before
    assert cache.num_evictable == 1 and cache.evict(1) == [ids[-1]]
    cache.check_invariants()


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(("n_blocks", "idle"), [(2, 2), (3, 2), (3, 3)])
def test_reinserting_a_cached_chain_below_an_idle_parent_is_refused(cls, n_blocks, idle):
    """A cached block whose parent is idle cannot be registered again, exactly as insert_block refuses
    it (the parent would count as evictable with a child in use); the refusal names the deepest idle
    parent and changes nothing."""
    ids = [10 + i for i in range(n_blocks)]
    tokens = list(range(1, 2 * n_blocks + 1))
    cache = _chain(cls, tokens, ids, idle=idle)
    before = cache.state()
    with pytest.raises(ValueError, match=f"parent block {ids[-2]} is not in use"):
        cache.insert(tokens, ids)
    with pytest.raises(ValueError, match=f"parent block {ids[-2]} is not in use"):
        cache.insert_block(ids[-2], tokens[-2:], ids[-1])
    assert cache.state() == before
    cache.check_invariants()


@pytest.mark.parametrize("cls", CLASSES)
def test_a_chain_that_stops_at_a_duplicate_still_needs_its_parents_in_use(cls):
    """insert stops at the first block cached under another id; the blocks before it are registered
    under these ids already, and the last of them is the parent insert_block would check there."""
    cache = _chain(cls, [1, 2, 3, 4], [10, 11], idle=2)
    cache.lock(10)  # 10 in use, 11 idle
    assert cache.insert([1, 2, 3, 4], [10, 77]) == 1  # (3, 4) is cached in 11, not 77: stop after 10
    cache.unlock(10)
    with pytest.raises(ValueError, match="parent block 10 is not in use"):
        cache.insert([1, 2, 3, 4], [10, 77])
    cache.check_invariants()


@pytest.mark.parametrize("cls", CLASSES)
def test_insert_block_of_a_cached_block_is_true_and_a_new_branch_hangs_off_its_parent(cls):
    """Registering a block again under its own parent returns True and changes nothing, also for a
    block inside a radix run; a block whose tokens follow the parent nowhere yet is new (True), even
    when the same tokens sit elsewhere below the parent's run; another block for a cached prefix is
    refused with False."""
    a, b, c, d = (1, 2), (3, 4), (5, 6), (7, 8)
    cache = cls(2)
    cache.insert([*a, *b, *c], [10, 11, 12])  # one radix run 10 11 12
    before = cache.state()
    assert cache.insert_block(10, b, 11) is True and cache.insert_block(11, c, 12) is True
    assert cache.insert_block(None, a, 10) is True
    assert cache.state() == before
    assert cache.insert_block(10, b, 99) is False and cache.state() == before
    cache.insert([*a, *b, *d], [10, 11, 14])  # now the run 10 11 branches into 12 (c) and 14 (d)
    assert cache.insert_block(10, c, 13) is True, "c after a is new: the cached c follows a b"
    assert cache.match([*a, *c], touch=False) == [10, 13]
    assert cache.match([*a, *b, *c], touch=False) == [10, 11, 12]
    cache.check_invariants()


# --- insert is insert_block block by block, all or nothing ------------------------------------
def _reference_insert(cache, tokens: list[int], block_ids: list[int]):
    """What ``insert`` must do, from ``insert_block`` on a copy: register block after block, stopping
    at the first whose prefix is cached in another block. Returns (count, copy) or the exception."""
    ref = copy.deepcopy(cache)
    bs = cache.block_size
    count = 0
    try:
        for i in range(len(tokens) // bs):
            parent = block_ids[i - 1] if i else None
            if not ref.insert_block(parent, tokens[i * bs : (i + 1) * bs], block_ids[i]):
                break
            count += 1
    except (ValueError, KeyError) as error:
        return type(error), None
    return count, ref


def _random_lock_change(cache, rng: random.Random) -> None:
    """Unlock an in-use block none of whose children is in use, lock an idle block whose parent is in
    use, or evict: the moves a block manager makes, keeping an in-use block's ancestors in use."""
    parents, locked = cache.cached_blocks(), cache.locked_blocks()
    busy_parents = {parents[b] for b in locked}
    unlockable = sorted(b for b in locked if b not in busy_parents)
    lockable = sorted(b for b in parents if b not in locked and (parents[b] is None or parents[b] in locked))
    move = rng.choice(["unlock", "unlock", "lock", "evict"])
    if move == "unlock" and unlockable:
        cache.unlock(rng.choice(unlockable))
    elif move == "lock" and lockable:
        cache.lock(rng.choice(lockable))
    elif move == "evict" and cache.num_evictable:
        cache.evict(1)


def _random_ids(cache, n: int, rng: random.Random) -> list[int]:
    """``n`` ids out of 16, mostly fresh ones (neither cached nor listed yet), sometimes any."""
    ids: list[int] = []
    for _ in range(n):
        fresh = [b for b in range(16) if not cache.contains(b) and b not in ids]
        ids.append(rng.choice(fresh) if fresh and rng.random() < 0.8 else rng.randrange(16))
    return ids


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("seed", range(3))
def test_insert_does_what_insert_block_does_block_by_block(cls, seed):
    """On random caches (two token values, so prefixes are shared; 16 block ids, a fifth of them
    drawn among cached or repeated ones; often an earlier prompt under the cached ids of its prefix,
    so chains are registered again), insert returns the number of leading blocks insert_block accepts
    and leaves the same state, or raises what insert_block would raise and changes nothing at all
    (insert_block may have registered a few blocks by then)."""
    rng = random.Random(seed)
    cache = cls(2)
    outcomes = set()
    history: list[list[int]] = []
    for _ in range(150):
        for _ in range(rng.randrange(4)):
            _random_lock_change(cache, rng)
        tokens = [rng.randrange(2) for _ in range(rng.randrange(9))]
        if history and rng.random() < 0.5:  # often an earlier prompt, cut or extended
            tokens = rng.choice(history)[: rng.randrange(2, 9)] + tokens[: rng.choice([0, 2])]
        history.append(tokens)
        block_ids = _random_ids(cache, len(tokens) // 2 + rng.randrange(2), rng)
        if rng.random() < 0.5:  # often the ids the cache holds for a prefix: re-registering a chain
            hit = cache.match(tokens, touch=False)[: rng.choice([len(block_ids), rng.randrange(3)])]
            block_ids[: len(hit)] = hit
        expected, ref = _reference_insert(cache, tokens, block_ids)
        before = cache.state()
        if ref is None:
            with pytest.raises(expected):
                cache.insert(tokens, block_ids)
            assert cache.state() == before, "a refused insert changed the cache"
            outcomes.add("refused")
        else:
            assert cache.insert(tokens, block_ids) == expected
            assert cache.state() == ref.state()
            outcomes.add("stopped" if expected < len(tokens) // 2 else "registered")
        cache.check_invariants()
    assert outcomes == {"refused", "stopped", "registered"}


def test_insert_hashes_a_cached_prefix_once():
    """The cached part of a chain is found by one lookup and not registered again: inserting a chain
    whose first three blocks are cached hashes each block once for the lookup and only the new block a
    second time (to register it), not every block of the cached prefix again."""
    calls = []

    def counting_hash(parent_key, tokens):
        calls.append(tokens)
        return hash((parent_key, tokens))

    cache = HashPrefixCache(2, hash_fn=counting_hash)
    cache.insert([1, 2, 3, 4, 5, 6], [10, 11, 12])
    calls.clear()
    assert cache.insert([1, 2, 3, 4, 5, 6, 7, 8], [10, 11, 12, 13]) == 4
    assert calls == [(1, 2), (3, 4), (5, 6), (7, 8), (7, 8)]


# --- the logical clock and the adoption flag ---------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
def test_the_lru_clock_counts_uses_one_tick_each(cls):
    """Logical time starts at 0 and every use is one tick: registering a block, a committed match
    (one tick for all the blocks it matched), and a block's last owner leaving."""
    cache = cls(2)
    assert cache.state()[3] == 0
    cache.insert([1, 2, 3, 4], [10, 11])  # two registrations: times 1 and 2
    assert (cache.last_access(10), cache.last_access(11)) == (1, 2)
    assert cache.match([1, 2, 3, 4, 5]) == [10, 11]  # one use of both: time 3
    assert (cache.last_access(10), cache.last_access(11)) == (3, 3)
    cache.match([1, 2], touch=False)  # no use
    cache.unlock(11)
    assert (cache.last_access(10), cache.last_access(11)) == (3, 4)
    cache.touch([])  # touching nothing is no use either
    assert cache.state()[3] == 4


@pytest.mark.parametrize("cls", CLASSES)
def test_a_cache_is_attached_once_a_manager_adopts_it(cls):
    """``attached`` is a plain bool: False for a new cache, True once a BlockManager adopts it."""
    cache = cls(4)
    assert cache.attached is False
    BlockManager(8, 4, cache)
    assert cache.attached is True


def test_the_default_block_hash_covers_the_tokens_and_the_parent_key():
    """Equal keys for equal (parent key, tokens), different ones when either differs, so distinct
    prefixes land in distinct table slots (a constant hash would still be correct, since every slot
    compares tokens and parents, but every lookup would scan one slot holding every block)."""
    root = default_block_hash(None, (1, 2))
    assert root == default_block_hash(None, (1, 2)) and isinstance(root, int)
    assert root != default_block_hash(None, (1, 3))
    child = default_block_hash(root, (5, 6))
    assert child != default_block_hash(None, (5, 6)) and child != default_block_hash(root, (5, 7))
    cache = HashPrefixCache(2)
    cache.insert([1, 2, 5, 6, 1, 2, 5, 6], [0, 1, 2, 3])
    assert len(cache._table) == 4, "four different prefixes share a slot"
