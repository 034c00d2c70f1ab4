"""Bad input to the paged block manager and its simulator (issue 11): every mistake a caller can make
ends in one line naming the argument, and a failed call leaves the manager exactly as it was.

The guards are real exceptions, not asserts, so they hold under ``python -O`` too:
tests/test_paged_optimized.py runs this module (and the other paged tests) once that way.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from bad_input import Case, assert_clear_error, params

from kvlib.paged import BlockAllocator, BlockManager, HashPrefixCache, RadixPrefixCache, make_prefix_cache
from kvlib.paged import simulate as sim

pytestmark = pytest.mark.ch06

BS = 4  # block size of every manager below


def manager(cache: str | None = "hash") -> BlockManager:
    """Three sequences: 0 with two full cached blocks + one partial, 1 a fork of 0 (shared blocks),
    2 sharing 0's cached prefix; sequence 3 was freed, so cached blocks sit idle too."""
    mgr = BlockManager(16, BS, cache)
    mgr.allocate(0, list(range(1, 11)))
    mgr.fork(0, 1)
    mgr.allocate(2, list(range(1, 9)) + [99])
    mgr.allocate(3, [50, 51, 52, 53, 54])
    mgr.free(3)
    mgr.check_invariants()
    return mgr


def allocator_with_states() -> BlockAllocator:
    """Block 0 used twice, block 1 idle (ref 0, not released), the rest free."""
    a = BlockAllocator(4, BS)
    a.allocate(2)
    a.incref(0)
    a.decref(1)
    return a


def allocator_state(a: BlockAllocator) -> tuple:
    return tuple(a.free_ids), tuple(b.ref_count for b in a.blocks), a.num_used


def _requests() -> list[sim.Request]:
    return [sim.Request(5, 3), sim.Request(9, 2)]


def cached(cls: type) -> HashPrefixCache | RadixPrefixCache:
    """A block-size-2 prefix cache holding [1, 2, 3, 4] in blocks 0 and 1 (both still locked)."""
    cache = cls(2)
    cache.insert([1, 2, 3, 4], [0, 1])
    return cache


def _unlocked(cache: HashPrefixCache | RadixPrefixCache, block_id: int) -> HashPrefixCache | RadixPrefixCache:
    cache.unlock(block_id)
    return cache


def two_managers(cache: HashPrefixCache | RadixPrefixCache) -> None:
    BlockManager(8, BS, cache).allocate(0, list(range(9)))
    BlockManager(8, BS, cache)


def used(allocator: sim.ContiguousAllocator | sim.PagedAllocator):
    """An allocator that still holds request 0 (5 prompt tokens + 1), as after a partial hand-made run."""
    allocator.admit(0, _requests()[0])
    return allocator


CASES = [
    # --- BlockAllocator: sizes, counts, ids ---------------------------------------------------
    Case(
        "allocator-float-sizes", lambda: BlockAllocator(4.5, 2.5), TypeError, ("num_blocks", "integer", "4.5")
    ),
    Case(
        "allocator-float-block-size",
        lambda: BlockAllocator(4, 2.5),
        TypeError,
        ("block_size", "integer", "2.5"),
    ),
    Case("allocator-str-num-blocks", lambda: BlockAllocator("4", 2), TypeError, ("num_blocks", "'4'")),
    Case("allocator-zero-blocks", lambda: BlockAllocator(0, 16), ValueError, ("num_blocks", ">= 1", "0")),
    Case("allocator-negative-block-size", lambda: BlockAllocator(4, -1), ValueError, ("block_size", ">= 1")),
    Case("allocator-bool-block-size", lambda: BlockAllocator(4, True), TypeError, ("block_size", "bool")),
    Case(
        "allocate-float-n",
        lambda: BlockAllocator(4, 2).allocate(2.0),
        TypeError,
        ("blocks to allocate", "2.0"),
    ),
    Case(
        "allocate-negative-n",
        lambda: BlockAllocator(4, 2).allocate(-1),
        ValueError,
        ("blocks to allocate", ">= 0"),
    ),
    Case(
        "allocate-str-n", lambda: BlockAllocator(4, 2).allocate("2"), TypeError, ("blocks to allocate", "str")
    ),
    Case(
        "incref-negative-id",
        lambda: BlockAllocator(4, 2).incref(-1),
        IndexError,
        ("block_id", "-1", "[0, 4)"),
    ),
    Case(
        "incref-id-past-end",
        lambda: allocator_with_states().incref(4),
        IndexError,
        ("block_id", "4", "range"),
    ),
    Case("incref-float-id", lambda: allocator_with_states().incref(0.0), TypeError, ("block_id", "float")),
    Case("incref-bool-id", lambda: allocator_with_states().incref(True), TypeError, ("block_id", "bool")),
    Case("incref-free-block", lambda: allocator_with_states().incref(2), ValueError, ("block_id 2", "free")),
    Case(
        "decref-free-block",
        lambda: allocator_with_states().decref(2),
        ValueError,
        ("block_id 2", "double free"),
    ),
    Case(
        "decref-idle-block",
        lambda: allocator_with_states().decref(1),
        ValueError,
        ("block_id 1", "double free"),
    ),
    Case("decref-out-of-range", lambda: allocator_with_states().decref(9), IndexError, ("block_id", "9")),
    Case(
        "release-owned-block",
        lambda: allocator_with_states().release(0),
        ValueError,
        ("block_id 0", "owned 2"),
    ),
    Case(
        "release-free-block", lambda: allocator_with_states().release(3), ValueError, ("block_id 3", "twice")
    ),
    Case("release-out-of-range", lambda: allocator_with_states().release(-2), IndexError, ("block_id", "-2")),
    Case("ref-count-out-of-range", lambda: BlockAllocator(2, 4).ref_count(5), IndexError, ("block_id", "5")),
    Case("is-free-out-of-range", lambda: BlockAllocator(2, 4).is_free(99), IndexError, ("block_id", "99")),
    # --- BlockManager -------------------------------------------------------------------------
    Case("manager-float-sizes", lambda: BlockManager(4.5, 2), TypeError, ("num_blocks", "4.5")),
    Case("manager-zero-block-size", lambda: BlockManager(4, 0), ValueError, ("block_size", ">= 1")),
    Case(
        "manager-unknown-cache",
        lambda: BlockManager(4, 4, "lru"),
        ValueError,
        ("prefix cache", "hash", "'lru'"),
    ),
    Case(
        "manager-cache-wrong-type", lambda: BlockManager(4, 4, 5), TypeError, ("prefix cache", "radix", "int")
    ),
    Case(
        "manager-cache-block-size",
        lambda: BlockManager(4, 4, HashPrefixCache(8)),
        ValueError,
        ("block_size",),
    ),
    Case(
        "allocate-string-prompt",
        lambda: manager().allocate(9, "hello"),
        TypeError,
        ("prompt", "token ids", "str"),
    ),
    Case("allocate-bytes-prompt", lambda: manager().allocate(9, b"hi"), TypeError, ("prompt", "bytes")),
    Case("allocate-none-prompt", lambda: manager().allocate(9, None), TypeError, ("prompt", "NoneType")),
    Case("allocate-int-prompt", lambda: manager().allocate(9, 5), TypeError, ("prompt", "token ids")),
    Case("allocate-float-token", lambda: manager().allocate(9, [1, 2.5]), TypeError, ("prompt[1]", "2.5")),
    Case(
        "allocate-negative-token", lambda: manager().allocate(9, [1, -1]), ValueError, ("prompt[1]", ">= 0")
    ),
    Case("allocate-empty-prompt", lambda: manager().allocate(9, []), ValueError, ("prompt", "at least one")),
    Case("allocate-str-seq-id", lambda: manager().allocate("a", [1]), TypeError, ("seq_id", "'a'")),
    Case("allocate-float-seq-id", lambda: manager().allocate(1.5, [1]), TypeError, ("seq_id", "1.5")),
    Case("allocate-none-seq-id", lambda: manager().allocate(None, [1]), TypeError, ("seq_id", "NoneType")),
    Case(
        "allocate-existing-id", lambda: manager().allocate(0, [1]), ValueError, ("seq_id 0", "already exists")
    ),
    Case("allocate-swapped-args", lambda: manager().allocate([1, 2], 9), TypeError, ("seq_id", "list")),
    Case("can-allocate-string", lambda: manager().can_allocate("hello"), TypeError, ("prompt", "str")),
    Case("append-str-token", lambda: manager().append(0, "x"), TypeError, ("token", "'x'")),
    Case("append-float-token", lambda: manager().append(0, 1.5), TypeError, ("token", "1.5")),
    Case("append-negative-token", lambda: manager().append(0, -3), ValueError, ("token", ">= 0", "-3")),
    Case("append-unknown-seq", lambda: manager().append(9, 1), KeyError, ("seq_id 9", "unknown")),
    Case("append-str-seq-id", lambda: manager().append("0", 1), TypeError, ("seq_id", "'0'", "str")),
    Case("fork-onto-itself", lambda: manager().fork(0, 0), ValueError, ("child_id", "parent_id", "0")),
    Case("fork-unknown-parent", lambda: manager().fork(7, 8), KeyError, ("parent_id 7", "unknown")),
    Case("fork-existing-child", lambda: manager().fork(0, 2), ValueError, ("child_id 2", "already exists")),
    Case("fork-str-child", lambda: manager().fork(0, "c"), TypeError, ("child_id", "'c'")),
    Case("free-unknown-seq", lambda: manager().free(3), KeyError, ("seq_id 3", "unknown")),
    Case("free-list-seq-id", lambda: manager().free([0]), TypeError, ("seq_id", "list")),
    Case(
        "blocks-needed-negative",
        lambda: manager().blocks_needed(-5),
        ValueError,
        ("num_tokens", ">= 0", "-5"),
    ),
    Case("blocks-needed-float", lambda: manager().blocks_needed(2.5), TypeError, ("num_tokens", "2.5")),
    Case("reclaim-negative", lambda: manager().reclaim(-2), ValueError, ("blocks to reclaim", ">= 0", "-2")),
    Case("reclaim-float", lambda: manager().reclaim(1.5), TypeError, ("blocks to reclaim", "1.5")),
    Case("reclaim-negative-no-cache", lambda: manager(None).reclaim(-2), ValueError, ("blocks to reclaim",)),
    Case(
        "slot-negative-position", lambda: manager().slot(0, -1), IndexError, ("position -1", "out of range")
    ),
    Case("slot-position-past-end", lambda: manager().slot(0, 10), IndexError, ("position 10", "10 tokens")),
    Case("slot-float-position", lambda: manager().slot(0, 1.5), TypeError, ("position", "1.5")),
    Case("slot-str-position", lambda: manager().slot(0, "1"), TypeError, ("position", "str")),
    Case("slot-unknown-seq", lambda: manager().slot(9, 0), KeyError, ("seq_id 9",)),
    Case("slot-mapping-unknown-seq", lambda: manager().slot_mapping(9), KeyError, ("seq_id 9",)),
    Case("slot-mapping-str-seq", lambda: manager().slot_mapping("0"), TypeError, ("seq_id", "str")),
    Case("block-table-unknown-seq", lambda: manager().block_table(9), KeyError, ("seq_id 9",)),
    # --- prefix caches --------------------------------------------------------------------------
    *[
        case
        for kind, cls in (("hash", HashPrefixCache), ("radix", RadixPrefixCache))
        for case in (
            Case(
                f"{kind}-insert-block-id-minus-one",
                lambda cls=cls: cls(2).insert_block(None, [1, 2], -1),
                ValueError,
                ("block_id", ">= 0", "-1"),
            ),
            Case(
                f"{kind}-insert-float-block-id",
                lambda cls=cls: cls(2).insert_block(None, [1, 2], 1.5),
                TypeError,
                ("block_id", "1.5"),
            ),
            Case(
                f"{kind}-insert-negative-parent",
                lambda cls=cls: cls(2).insert_block(-1, [1, 2], 0),
                ValueError,
                ("parent_block", ">= 0"),
            ),
            Case(
                f"{kind}-insert-string-tokens",
                lambda cls=cls: cls(2).insert_block(None, "ab", 0),
                TypeError,
                ("tokens", "str"),
            ),
            Case(
                f"{kind}-insert-float-tokens",
                lambda cls=cls: cls(2).insert_block(None, [1.0, 2.0], 0),
                TypeError,
                ("tokens[0]", "1.0"),
            ),
            Case(
                f"{kind}-insert-partial-block",
                lambda cls=cls: cls(2).insert_block(None, [1], 0),
                ValueError,
                ("tokens", "full blocks", "block_size 2"),
            ),
            Case(
                f"{kind}-insert-short-block-ids",
                lambda cls=cls: cls(2).insert([1, 2, 3, 4], [0]),
                ValueError,
                ("block_ids", "2 full block"),
            ),
            Case(
                f"{kind}-insert-string-block-ids",
                lambda cls=cls: cls(2).insert([1, 2], "0"),
                TypeError,
                ("block_ids", "str"),
            ),
            Case(
                f"{kind}-insert-bad-block-id-in-list",
                lambda cls=cls: cls(2).insert([1, 2, 3, 4], [0, -1]),
                ValueError,
                ("block_ids[1]", ">= 0"),
            ),
            Case(f"{kind}-match-string", lambda cls=cls: cls(2).match("abcd"), TypeError, ("tokens", "str")),
            Case(
                f"{kind}-evict-negative",
                lambda cls=cls: cls(2).evict(-1),
                ValueError,
                ("blocks to evict", ">= 0"),
            ),
            Case(
                f"{kind}-evict-too-many", lambda cls=cls: cls(2).evict(1), ValueError, ("evict 1", "only 0")
            ),
            Case(f"{kind}-float-block-size", lambda cls=cls: cls(2.5), TypeError, ("block_size", "2.5")),
            Case(f"{kind}-zero-block-size", lambda cls=cls: cls(0), ValueError, ("block_size", ">= 1")),
            Case(
                f"{kind}-lock-uncached",
                lambda cls=cls: cls(2).lock(3),
                KeyError,
                ("block_id 3", "not cached"),
            ),
            Case(
                f"{kind}-unlock-uncached",
                lambda cls=cls: cls(2).unlock(3),
                KeyError,
                ("block_id 3", "not cached"),
            ),
            Case(
                f"{kind}-lock-twice",
                lambda cls=cls: cached(cls).lock(1),
                ValueError,
                ("block_id 1", "already locked", "locked twice"),
            ),
            Case(
                f"{kind}-unlock-twice",
                lambda cls=cls: _unlocked(cached(cls), 1).unlock(1),
                ValueError,
                ("block_id 1", "not locked", "unlocked twice"),
            ),
            Case(
                f"{kind}-touch-uncached", lambda cls=cls: cls(2).touch([3]), KeyError, ("[3]", "not cached")
            ),
            Case(
                f"{kind}-touch-bare-int",
                lambda cls=cls: cls(2).touch(5),
                TypeError,
                ("block_ids", "sequence", "5 (int)"),
            ),
            Case(
                f"{kind}-touch-float-id",
                lambda cls=cls: cls(2).touch([1.5]),
                TypeError,
                ("block_ids[0]", "1.5"),
            ),
            Case(
                f"{kind}-insert-id-cached-for-another-prefix",
                lambda cls=cls: cached(cls).insert([9, 9, 8, 8], [5, 0]),
                ValueError,
                ("block_ids[1] = 0", "already cached", "another prefix"),
            ),
            Case(
                f"{kind}-insert-block-id-cached-for-another-prefix",
                lambda cls=cls: cached(cls).insert_block(0, [9, 9], 1),
                ValueError,
                ("block 1 is already cached", "another prefix"),
            ),
            Case(
                f"{kind}-insert-id-twice",
                lambda cls=cls: cls(2).insert([1, 2, 3, 4], [7, 7]),
                ValueError,
                ("block_ids", "block 7 twice", "positions 0 and 1"),
            ),
            Case(  # positions count from the start of the prompt, not from the first new block
                f"{kind}-insert-id-cached-after-a-cached-prefix",
                lambda cls=cls: cached(cls).insert([1, 2, 3, 4, 5, 6], [0, 1, 0]),
                ValueError,
                ("block_ids[2] = 0", "already cached", "another prefix"),
            ),
            Case(
                f"{kind}-insert-id-twice-after-a-cached-prefix",
                lambda cls=cls: cached(cls).insert([1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 9, 9]),
                ValueError,
                ("block 9 twice", "positions 2 and 3"),
            ),
            Case(
                f"{kind}-manager-shares-a-cache",
                lambda cls=cls: two_managers(cls(BS)),
                ValueError,
                ("prefix_cache", "already serves another BlockManager", cls.__name__),
            ),
            Case(
                f"{kind}-manager-cache-with-entries",
                lambda cls=cls: BlockManager(8, 2, cached(cls)),
                ValueError,
                ("prefix_cache", "must be empty", "2 cached block"),
            ),
        )
    ],
    Case(
        "make-prefix-cache-unknown",
        lambda: make_prefix_cache("lru", 4),
        ValueError,
        ("'hash'", "'radix'", "'lru'"),
    ),
    Case("make-prefix-cache-int", lambda: make_prefix_cache(5, 4), TypeError, ("prefix cache", "5 (int)")),
    Case(
        "make-prefix-cache-bad-size", lambda: make_prefix_cache("hash", 0), ValueError, ("block_size", ">= 1")
    ),
    # --- simulate.py's public entry points ------------------------------------------------------
    Case("request-negative-prompt", lambda: sim.Request(-1, 3), ValueError, ("prompt_len", ">= 1", "-1")),
    Case("request-zero-output", lambda: sim.Request(3, 0), ValueError, ("output_len", ">= 1", "0")),
    Case("request-float-prompt", lambda: sim.Request(2.5, 3), TypeError, ("prompt_len", "2.5")),
    Case("chat-workload-negative-n", lambda: sim.chat_workload(-1), ValueError, ("n", ">= 0", "-1")),
    Case("chat-workload-float-n", lambda: sim.chat_workload(2.5), TypeError, ("n", "2.5")),
    Case("chat-workload-max-len-1", lambda: sim.chat_workload(3, max_len=1), ValueError, ("max_len", ">= 2")),
    Case(
        "chat-workload-zero-median",
        lambda: sim.chat_workload(3, prompt_median=0),
        ValueError,
        ("prompt_median", "> 0"),
    ),
    Case(
        "chat-workload-nan-median",
        lambda: sim.chat_workload(3, output_median=float("nan")),
        ValueError,
        ("output_median", "finite"),
    ),
    Case(
        "chat-workload-negative-sigma",
        lambda: sim.chat_workload(3, prompt_sigma=-1),
        ValueError,
        ("prompt_sigma", ">= 0"),
    ),
    Case(
        "chat-workload-str-sigma",
        lambda: sim.chat_workload(3, output_sigma="1"),
        TypeError,
        ("output_sigma", "str"),
    ),
    Case("contiguous-zero-budget", lambda: sim.ContiguousAllocator(0), ValueError, ("budget", ">= 1", "0")),
    Case("contiguous-negative-budget", lambda: sim.ContiguousAllocator(-5), ValueError, ("budget", "-5")),
    Case(
        "contiguous-zero-max-len",
        lambda: sim.ContiguousAllocator(100, max_len=0),
        ValueError,
        ("max_len", ">= 1"),
    ),
    Case(
        "contiguous-bad-policy",
        lambda: sim.ContiguousAllocator(100, "min"),
        ValueError,
        ("policy", "'oracle'"),
    ),
    Case("paged-zero-budget", lambda: sim.PagedAllocator(0, 16), ValueError, ("budget", ">= 1")),
    Case(
        "paged-budget-below-one-block",
        lambda: sim.PagedAllocator(10, 16),
        ValueError,
        ("budget", "one block", "16", "10"),
    ),
    Case("paged-zero-block-size", lambda: sim.PagedAllocator(100, 0), ValueError, ("block_size", ">= 1")),
    Case("paged-float-block-size", lambda: sim.PagedAllocator(100, 2.5), TypeError, ("block_size", "2.5")),
    Case(
        "simulate-no-requests",
        lambda: sim.simulate_stream([], sim.PagedAllocator(100, 4)),
        ValueError,
        ("requests", "non-empty"),
    ),
    Case(
        "simulate-not-requests",
        lambda: sim.simulate_stream([(5, 3)], sim.PagedAllocator(100, 4)),
        TypeError,
        ("requests[0]", "Request", "tuple"),
    ),
    Case(
        "simulate-bad-allocator",
        lambda: sim.simulate_stream(_requests(), "paged"),
        TypeError,
        ("allocator", "PagedAllocator", "str"),
    ),
    Case(
        "simulate-args-swapped",
        lambda: sim.simulate_stream(sim.PagedAllocator(100, 4), _requests()),
        TypeError,
        ("requests", "PagedAllocator"),
    ),
    Case(
        "compare-zero-budget",
        lambda: sim.compare_allocators(_requests(), budget=0),
        ValueError,
        ("budget", ">= 1"),
    ),
    Case(
        "compare-negative-budget",
        lambda: sim.compare_allocators(_requests(), budget=-5),
        ValueError,
        ("budget",),
    ),
    Case(
        "compare-zero-block-size",
        lambda: sim.compare_allocators(_requests(), block_sizes=(16, 0)),
        ValueError,
        ("block_sizes[1]", ">= 1"),
    ),
    Case(
        "compare-int-block-sizes",
        lambda: sim.compare_allocators(_requests(), block_sizes=16),
        TypeError,
        ("block_sizes", "sequence"),
    ),
    Case(
        "compare-zero-max-len",
        lambda: sim.compare_allocators(_requests(), max_len=0),
        ValueError,
        ("max_len",),
    ),
    Case("analytic-zero-k", lambda: sim.analytic_prefix_saving(0, 10, 5, 4), ValueError, ("k", ">= 1")),
    Case(
        "analytic-zero-block-size",
        lambda: sim.analytic_prefix_saving(2, 10, 5, 0),
        ValueError,
        ("block_size",),
    ),
    Case(
        "analytic-zero-question",
        lambda: sim.analytic_prefix_saving(2, 0, 0, 4),
        ValueError,
        ("question_len",),
    ),
    Case(
        "shared-zero-groups",
        lambda: sim.shared_prefix_savings(0, 2, 10, 5),
        ValueError,
        ("num_groups", ">= 1"),
    ),
    Case(
        "shared-zero-per-group",
        lambda: sim.shared_prefix_savings(2, 0, 10, 5),
        ValueError,
        ("per_group", ">= 1"),
    ),
    Case(
        "shared-negative-per-group",
        lambda: sim.shared_prefix_savings(2, -1, 10, 5),
        ValueError,
        ("per_group",),
    ),
    Case(
        "shared-negative-prefix",
        lambda: sim.shared_prefix_savings(2, 2, -1, 5),
        ValueError,
        ("prefix_len", ">= 0"),
    ),
    Case(
        "shared-zero-question", lambda: sim.shared_prefix_savings(2, 2, 10, 0), ValueError, ("question_len",)
    ),
    Case(
        "shared-zero-block-size",
        lambda: sim.shared_prefix_savings(2, 2, 10, 5, block_size=0),
        ValueError,
        ("block_size", ">= 1"),
    ),
    Case(
        "shared-unknown-cache",
        lambda: sim.shared_prefix_savings(2, 2, 10, 5, cache="lru"),
        ValueError,
        ("cache", "'hash'", "'lru'"),
    ),
    Case(
        "shared-no-cache",
        lambda: sim.shared_prefix_savings(2, 2, 10, 5, cache=None),
        ValueError,
        ("cache", "None"),
    ),
    Case("parallel-zero-n", lambda: sim.parallel_sampling_savings(_requests(), 0), ValueError, ("n", ">= 1")),
    Case(
        "parallel-float-n", lambda: sim.parallel_sampling_savings(_requests(), 2.0), TypeError, ("n", "2.0")
    ),
    Case(
        "parallel-zero-block-size",
        lambda: sim.parallel_sampling_savings(_requests(), 2, block_size=0),
        ValueError,
        ("block_size",),
    ),
    Case(
        "parallel-negative-sigma",
        lambda: sim.parallel_sampling_savings(_requests(), 2, length_sigma=-1),
        ValueError,
        ("length_sigma", ">= 0"),
    ),
    Case(
        "parallel-no-requests",
        lambda: sim.parallel_sampling_savings([], 2),
        ValueError,
        ("requests", "empty"),
    ),
    Case("beam-zero-width", lambda: sim.beam_search_savings(_requests(), 0), ValueError, ("width", ">= 1")),
    Case(
        "beam-zero-vocab",
        lambda: sim.beam_search_savings(_requests(), 2, vocab=0),
        ValueError,
        ("vocab", ">= 1"),
    ),
    Case(
        "beam-zero-block-size",
        lambda: sim.beam_search_savings(_requests(), 2, block_size=0),
        ValueError,
        ("block_size",),
    ),
    Case(
        "beam-inf-temperature",
        lambda: sim.beam_search_savings(_requests(), 2, temperature=float("inf")),
        ValueError,
        ("temperature", "finite"),
    ),
    Case("beam-no-requests", lambda: sim.beam_search_savings([], 2), ValueError, ("requests", "empty")),
    Case(
        "verdict-unknown-key",
        lambda: sim.paper_range_verdict(0.1, "beam"),
        ValueError,
        ("key", "beam_alpaca"),
    ),
    Case(
        "verdict-percentage",
        lambda: sim.paper_range_verdict(45, "beam_alpaca"),
        ValueError,
        ("saving", "fraction, not a percentage", "<= 1", "45"),
    ),
    Case(
        "verdict-negative-saving",
        lambda: sim.paper_range_verdict(-0.1, "beam_alpaca"),
        ValueError,
        ("saving", ">= 0", "-0.1"),
    ),
    Case(
        "verdict-str-saving",
        lambda: sim.paper_range_verdict("0.4", "beam_alpaca"),
        TypeError,
        ("saving", "str"),
    ),
    Case(
        "simulate-used-paged-allocator",
        lambda: sim.simulate_stream(_requests(), used(sim.PagedAllocator(100, 4))),
        ValueError,
        ("allocator", "must be empty", "holds 2 of 25 blocks", "request ids [0]", "new PagedAllocator"),
    ),
    Case(
        "simulate-used-contiguous-allocator",
        lambda: sim.simulate_stream(_requests(), used(sim.ContiguousAllocator(100, "oracle"))),
        ValueError,
        ("allocator", "must be empty", "1 reserved range", "new ContiguousAllocator"),
    ),
    Case(
        "sharing-result-zero-unshared",
        lambda: sim.SharingResult("x", 4, 0, 0),
        ValueError,
        ("blocks_unshared", ">= 1", "got 0"),
    ),
    Case(
        "sharing-result-float-shared",
        lambda: sim.SharingResult("x", 4, 2.5, 4),
        TypeError,
        ("blocks_shared", "2.5"),
    ),
    Case(
        "parallel-huge-sigma",
        lambda: sim.parallel_sampling_savings(_requests(), 2, length_sigma=5),
        ValueError,
        ("length_sigma", f"<= {sim.MAX_LENGTH_SIGMA:g}", "5"),
    ),
    Case(
        "verdict-nan-saving",
        lambda: sim.paper_range_verdict(float("nan"), "beam_alpaca"),
        ValueError,
        ("saving", "finite", "nan"),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_clear_error(case: Case) -> None:
    assert_clear_error(case)


# --- a failed call changes nothing -------------------------------------------------------------
MANAGER_MISTAKES = [
    lambda m: m.allocate(9, "hello"),
    lambda m: m.allocate(9, [1, 2, -1]),
    lambda m: m.allocate(9, [1, 2, 3, 4, 5, 6, 7, 8, 2.5]),  # a cached prefix first: no touch either
    lambda m: m.allocate(0, [1, 2]),
    lambda m: m.allocate("9", [1, 2]),
    lambda m: m.can_allocate("hello"),
    lambda m: m.append(0, "x"),
    lambda m: m.append(1, -1),  # sequence 1 shares a partial block: no copy-on-write may start
    lambda m: m.append(2, 1.0),  # sequence 2's last block is full: no block may be taken
    lambda m: m.append(9, 1),
    lambda m: m.fork(0, 0),
    lambda m: m.fork(0, 2),
    lambda m: m.fork(0, "c"),
    lambda m: m.free(9),
    lambda m: m.free("0"),
    lambda m: m.reclaim(-2),
    lambda m: m.reclaim(99),
    lambda m: m.slot(0, 99),
    lambda m: m.blocks_needed(-5),
    # the manager's allocator and cache are reachable; their guards must hold before any change
    lambda m: m.allocator.decref(m.allocator.free_ids[0]),
    lambda m: m.allocator.release(m.allocator.free_ids[0]),
    lambda m: m.allocator.release(m.block_table(0)[0]),
    lambda m: m.allocator.incref(m.allocator.free_ids[0]),
    lambda m: m.allocator.incref(-1),
    lambda m: m.allocator.allocate(2.0),
    lambda m: m.cache.insert_block(None, [1, 2, 3, 4], -1),
    lambda m: m.cache.insert_block(m.block_table(0)[0], "abcd", 15),
    lambda m: m.cache.lock(m.block_table(0)[0]),
    lambda m: m.cache.evict(-1),
]


@pytest.mark.parametrize("cache", ["hash", "radix"])
@pytest.mark.parametrize("mistake", range(len(MANAGER_MISTAKES)))
def test_failed_call_leaves_the_manager_unchanged(cache: str, mistake: int) -> None:
    mgr = manager(cache)
    before = mgr.snapshot()
    with pytest.raises((TypeError, ValueError, KeyError, IndexError, RuntimeError)):
        MANAGER_MISTAKES[mistake](mgr)
    assert mgr.snapshot() == before
    mgr.check_invariants()


@pytest.mark.parametrize(
    "mistake",
    [
        lambda a: a.decref(2),
        lambda a: a.decref(1),
        lambda a: a.release(0),
        lambda a: a.release(3),
        lambda a: a.incref(2),
        lambda a: a.incref(7),
        lambda a: a.allocate(-1),
        lambda a: a.allocate(3),  # OutOfBlocks: two are free
    ],
)
def test_failed_call_leaves_the_allocator_unchanged(mistake) -> None:
    a = allocator_with_states()
    before = allocator_state(a)
    with pytest.raises((ValueError, IndexError, RuntimeError)):
        mistake(a)
    assert allocator_state(a) == before


def test_double_free_is_refused_and_counts_never_go_negative() -> None:
    """The issue's -O scenario: under asserts a double free left ref count -1 and a block twice on
    the free list. Now the second decref/release raises and the invariants still hold."""
    a = BlockAllocator(2, 4)
    (b,) = a.allocate(1)
    a.decref(b)
    a.release(b)
    with pytest.raises(ValueError, match="double free"):
        a.decref(b)
    with pytest.raises(ValueError, match="twice"):
        a.release(b)
    assert a.ref_count(b) == 0 and list(a.free_ids).count(b) == 1
    a.check_invariants()


def test_check_invariants_raise_assertion_error_explicitly() -> None:
    """check_invariants must catch corruption even under python -O (no bare asserts)."""
    mgr = manager("radix")
    mgr.allocator.blocks[mgr.block_table(0)[0]].ref_count += 1  # corrupt behind the manager's back
    with pytest.raises(AssertionError, match="ref_count"):
        mgr.check_invariants()
    a = BlockAllocator(4, 4)
    a.free_ids.append(0)  # a block twice on the free list
    with pytest.raises(AssertionError, match="free list"):
        a.check_invariants()
    cache = HashPrefixCache(2)
    cache.insert_block(None, [1, 2], 0)
    cache._by_block[0].num_children = 3
    with pytest.raises(AssertionError, match="child count"):
        cache.check_invariants()


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
@pytest.mark.parametrize(
    "mistake",
    [
        lambda c: c.insert([9, 9, 8, 8], [5, 0]),  # block 5 would be registered before 0 is refused
        lambda c: c.insert([9, 9, 8, 8, 7, 7], [5, 6, 5]),
        lambda c: c.insert([1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 9, 9]),  # the new tail repeats an id
        lambda c: c.insert([1, 2, 3, 4, 5, 6], [0, 1, 0]),
        lambda c: c.touch(5),
        lambda c: c.touch([0, "1"]),
    ],
)
def test_failed_insert_or_touch_leaves_the_cache_unchanged(cls, mistake) -> None:
    cache = cached(cls)
    before = cache.state()
    with pytest.raises((TypeError, ValueError)):
        mistake(cache)
    assert cache.state() == before
    cache.check_invariants()


@pytest.mark.parametrize("cls", [HashPrefixCache, RadixPrefixCache])
def test_insert_of_a_prefix_cached_elsewhere_registers_nothing(cls) -> None:
    """The same tokens under other ids: 0 blocks are now cached under them, and nothing was added."""
    cache = cached(cls)
    before = cache.state()
    assert cache.insert([1, 2, 3, 4], [7, 7]) == 0
    assert cache.state() == before
    assert cache.insert([1, 2, 3, 4, 5, 6], [0, 1, 2]) == 3  # extending one's own chain still works
    assert cache.cached_blocks() == {0: None, 1: 0, 2: 1}


@pytest.mark.parametrize("kind", [HashPrefixCache, RadixPrefixCache])
def test_a_cache_object_serves_one_manager(kind) -> None:
    cache = kind(BS)
    with pytest.raises(TypeError):
        BlockManager(4.5, BS, cache)  # a refused manager does not claim the cache
    first = BlockManager(8, BS, cache)
    first.allocate(0, list(range(9)))
    before = first.snapshot()
    with pytest.raises(ValueError, match="another BlockManager"):
        BlockManager(8, BS, cache)
    assert first.snapshot() == before
    first.check_invariants()


def test_a_used_allocator_is_refused_and_a_finished_one_reused() -> None:
    """simulate_stream releases everything it admitted, so the same allocator may run again; one a
    caller filled by hand is refused (it gave 0.76 instead of 0.98 and leaked its blocks)."""
    reqs = sim.chat_workload(30, seed=1)
    for make in (lambda: sim.PagedAllocator(4096, 16), lambda: sim.ContiguousAllocator(16384, "oracle")):
        fresh = sim.simulate_stream(reqs, make())
        allocator = make()
        sim.simulate_stream(reqs, allocator)
        assert allocator.holding() == ""
        again = sim.simulate_stream(reqs, allocator)
        assert (again.token_share, again.steps) == (fresh.token_share, fresh.steps)
        allocator.admit(0, reqs[0])
        with pytest.raises(ValueError, match="must be empty"):
            sim.simulate_stream(reqs, allocator)


# --- correct inputs keep working -------------------------------------------------------------
def test_numpy_integers_and_tuples_are_accepted() -> None:
    mgr = BlockManager(np.int64(8), np.int32(4), "radix")
    seq = mgr.allocate(np.int64(0), np.arange(1, 7))
    assert seq.tokens == [1, 2, 3, 4, 5, 6] and all(type(t) is int for t in seq.tokens)
    mgr.append(np.int64(0), np.int64(7))
    mgr.fork(0, np.int16(1))
    mgr.allocate(2, (1, 2, 3, 4, 9))  # a tuple prompt hits the cached first block
    assert mgr.seqs[2].num_cached_tokens == 4
    assert mgr.slot(0, np.int64(5)) == mgr.slot_mapping(0)[5]
    assert mgr.blocks_needed(np.int64(9)) == 3
    a = BlockAllocator(4, 4)
    (b,) = a.allocate(np.int64(1))
    assert a.incref(np.int64(b)) == 2
    mgr.check_invariants()


def test_edge_values_compute_the_right_thing() -> None:
    mgr = manager(None)
    assert mgr.blocks_needed(0) == 0
    assert mgr.reclaim(0) == []  # nothing asked, nothing to do, even without a prefix cache
    assert BlockManager(4, 4, "hash").reclaim(0) == []
    assert mgr.slot_mapping(0) == [mgr.slot(0, p) for p in range(10)]
    seq = mgr.allocate(-7, [0])  # any integer is a valid sequence id, token 0 a valid token
    assert mgr.block_table(-7) == seq.block_ids
    assert sim.paper_range_verdict(0, "beam_alpaca") == "below"
    assert sim.paper_range_verdict(1, "beam_alpaca") == "above"  # the bounds of a fraction are valid
    assert sim.paper_range_verdict(np.float64(0.4), "beam_alpaca") == "in range"
    assert sim.SharingResult("x", 4, 0, 5).saving == 1.0  # nothing stored with sharing: all saved
    top = sim.parallel_sampling_savings([sim.Request(4, 8)], 2, length_sigma=sim.MAX_LENGTH_SIGMA)
    assert 0 <= top.saving <= 1
    assert sim.chat_workload(0) == []
    assert len(sim.chat_workload(2, prompt_sigma=0, output_sigma=0)) == 2  # sigma 0: fixed lengths


# --- the -O run (tests/test_paged_optimized.py) really is optimized ---------------------------
OPTIMIZED = os.environ.get("KVLIB_EXPECT_OPTIMIZED") == "1"


@pytest.mark.skipif(not OPTIMIZED, reason="only in the python -O run of tests/test_paged_optimized.py")
def test_canary_running_under_python_O() -> None:
    if __debug__:
        pytest.fail("expected python -O (__debug__ False): the -O run would prove nothing")
    # tests/bad_input.py fails through pytest.fail, not assert, so a message missing a word still
    # fails the table here (pytest rewrites the test modules' own asserts under -O as well)
    with pytest.raises(pytest.fail.Exception, match="does not mention"):
        assert_clear_error(Case("x", lambda: BlockAllocator(0, 4), ValueError, ("no such word",)))
