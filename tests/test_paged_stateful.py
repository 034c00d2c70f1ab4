"""Hypothesis state machine over the block manager: random allocate / append / fork / free / cache hit /
evict sequences, with every invariant checked after every step.

Checked after each operation:
- no leaks: every block is free, owned, or idle in the prefix cache, exactly one of them;
- every reference count equals the number of block tables that list the block (so a block owned
  twice is always a shared one, and copy-on-write kept writes private);
- a fake KV store written like an engine would (prefix hits read, copies done, new tokens
  written) reads back every sequence's own tokens: no stale or wrongly shared block;
- a failed allocation (OutOfBlocks) leaves the whole state unchanged, including the prefix
  cache's per-block last-use times, its clock and the radix tree's shape (``snapshot``);
- ``can_allocate`` predicts exactly whether ``allocate`` succeeds, also where the answer turns on the
  idle cached blocks the prompt hits (locked by the allocation, so no longer evictable room).

The three machines (no cache, hash chain, radix tree) together run >= 10,000 operations; each test
counts the operations it really executed and checks the total.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kvlib.paged import BlockManager, OutOfBlocks
from kvlib.paged.tracking import TokenKV as FakeKV

pytestmark = pytest.mark.ch06

BLOCK_SIZE = 4
NUM_BLOCKS = 24
# prompts start with one of a few shared prefixes so that the cache gets hits and partial hits
PREFIXES = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 50, 51, 52, 53], [7, 7, 7, 7], []]
STEPS_PER_EXAMPLE = 50
EXAMPLES_PER_KIND = 200
# what every walk must reach: operations in total, and each interesting event (see the test)
MIN_OPERATIONS, MIN_EVENTS = 5000, 20
UNDER_MUTATION = bool(os.environ.get("MUTANT_UNDER_TEST"))  # set by mutmut
if UNDER_MUTATION:
    # `make mutation` runs this test for each of about 1,200 paged mutants it covers: there it runs a
    # quarter of the walks, derandomized, and checks only the invariants. The walks still differ with
    # the tests mutmut runs before this one (2 of 3 kinds saw no copy-on-write after the other paged
    # tests), so a threshold on operations or events would kill mutants for no fault of theirs; the
    # full suite checks that the walks reach those states. The rate reported is if anything understated.
    EXAMPLES_PER_KIND, MIN_OPERATIONS, MIN_EVENTS = 50, 0, 0

executed: dict[str, int] = {}
events: dict[str, int] = {}


def _event(name: str) -> None:
    events[name] = events.get(name, 0) + 1


def make_machine(kind: str | None) -> type[RuleBasedStateMachine]:
    class PagedMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.mgr = BlockManager(NUM_BLOCKS, BLOCK_SIZE, kind)
            self.kv = FakeKV(self.mgr)
            self.next_id = 0

        def _count(self) -> None:
            executed[str(kind)] = executed.get(str(kind), 0) + 1

        def _expect_unchanged_on_failure(self, action) -> bool:
            before = self.mgr.snapshot()
            try:
                action()
            except OutOfBlocks:
                assert self.mgr.snapshot() == before, "a failed allocation changed the state"
                _event("out_of_blocks")
                return False
            return True

        def _admit(self, prompt: list[int]) -> None:
            seq_id = self.next_id
            if self.mgr.cache is not None:
                _, need, pinned = self.mgr._plan(prompt)
                room = self.mgr.num_available_blocks
                if room - pinned < need <= room:  # only the idle blocks it hits and locks say no
                    _event("pinned_decides")
            predicted = self.mgr.can_allocate(prompt)
            succeeded = self._expect_unchanged_on_failure(lambda: self.kv.admit(seq_id, prompt))
            assert predicted == succeeded, f"can_allocate said {predicted} but allocate succeeded={succeeded}"
            if succeeded:
                self.next_id += 1
                if self.mgr.seqs[seq_id].num_cached_tokens:
                    _event("cache_hit")

        @rule(prefix=st.sampled_from(PREFIXES), suffix=st.lists(st.integers(0, 3), min_size=0, max_size=10))
        def allocate(self, prefix: list[int], suffix: list[int]) -> None:
            self._count()
            self._admit(prefix + suffix or [0])

        @precondition(lambda self: self.mgr.cache is not None)
        @rule(
            prefix=st.sampled_from(PREFIXES[:3]),
            suffix=st.lists(st.integers(0, 3), max_size=10),
            data=st.data(),
        )
        def allocate_at_the_edge(self, prefix: list[int], suffix: list[int], data: st.DataObject) -> None:
            """Admit a prompt whose hit includes idle cached blocks (admitted and freed first if need be)
            when the room is just enough or up to ``pinned`` blocks short: a private prompt first takes
            blocks off the free list so that ``need <= available <= need + pinned``. Locking the hit
            takes its idle blocks out of the evictable room, so only ``available == need + pinned``
            succeeds. Random prompts alone almost never met this edge (it guards the ``pinned`` term)."""
            self._count()
            prompt = prefix + suffix
            _, need, pinned = self.mgr._plan(prompt)
            if pinned == 0 and self.mgr.can_allocate(prompt):  # cache the prompt's blocks, idle
                self._admit(prompt)
                self.mgr.free(self.next_id - 1)
                _, need, pinned = self.mgr._plan(prompt)
            if pinned == 0:  # its blocks are held by other sequences (or it has no full block to hit)
                return
            extra = data.draw(st.integers(0, pinned))  # pinned: the exact fit; fewer: one block short or more
            take = self.mgr.num_available_blocks - (need + extra)
            if 0 < take <= self.mgr.num_free_blocks:  # from the free list only: evicting could drop the hit
                self._admit([1000 + self.next_id] * (take * BLOCK_SIZE))  # a token no other prompt has
            self._admit(prompt)

        @precondition(lambda self: self.mgr.seqs)
        @rule(data=st.data(), tokens=st.lists(st.integers(0, 3), min_size=1, max_size=6))
        def append(self, data: st.DataObject, tokens: list[int]) -> None:
            self._count()
            seq_id = data.draw(st.sampled_from(sorted(self.mgr.seqs)))
            for token in tokens:
                copies: list = []
                if not self._expect_unchanged_on_failure(
                    lambda t=token, out=copies: out.extend(self.kv.append(seq_id, t))
                ):
                    break
                if copies:
                    _event("copy_on_write")

        @precondition(lambda self: self.mgr.seqs)
        @rule(data=st.data())
        def fork(self, data: st.DataObject) -> None:
            self._count()
            parent = data.draw(st.sampled_from(sorted(self.mgr.seqs)))
            self.mgr.fork(parent, self.next_id)
            self.next_id += 1

        @precondition(lambda self: self.mgr.seqs)
        @rule(data=st.data(), token=st.integers(0, 3))
        def fork_and_append(self, data: st.DataObject, token: int) -> None:
            """Beam search's step: fork, then write one token into the child. When the parent's last block
            is partial the write must copy it. Random fork and append rules alone reached copy-on-write as
            few as 19 times in 200 radix walks (a CI run that failed the threshold of 20); with this rule
            each kind saw 390-750."""
            self._count()
            parent = data.draw(st.sampled_from(sorted(self.mgr.seqs)))
            child = self.next_id
            self.mgr.fork(parent, child)
            self.next_id += 1
            copies: list = []
            written = self._expect_unchanged_on_failure(lambda: copies.extend(self.kv.append(child, token)))
            if written and copies:
                _event("copy_on_write")

        @precondition(lambda self: self.mgr.seqs)
        @rule(data=st.data())
        def free(self, data: st.DataObject) -> None:
            self._count()
            self.mgr.free(data.draw(st.sampled_from(sorted(self.mgr.seqs))))

        @precondition(lambda self: len(self.mgr.seqs) > 2)
        @rule()
        def free_oldest(self) -> None:
            """A second way out (finished requests), so the pool is not full most of the time."""
            self._count()
            self.mgr.free(min(self.mgr.seqs))

        @precondition(lambda self: self.mgr.cache is not None and self.mgr.cache.num_evictable > 0)
        @rule(data=st.data())
        def evict(self, data: st.DataObject) -> None:
            self._count()
            available = self.mgr.cache.num_evictable
            n = data.draw(st.integers(1, available + 1))  # sometimes one too many: must fail cleanly
            if n <= available:
                _event("evict")
                evicted = self.mgr.reclaim(n)
                assert len(evicted) == n and all(self.mgr.allocator.is_free(b) for b in evicted)
            else:
                self._expect_unchanged_on_failure(lambda: self.mgr.reclaim(n))

        @invariant()
        def consistent(self) -> None:
            if hasattr(self, "mgr"):
                self.mgr.check_invariants()
                self.kv.check()
                m = self.mgr
                assert m.num_free_blocks + m.num_used_blocks + m.allocator.num_idle == NUM_BLOCKS

    PagedMachine.__name__ = f"PagedMachine_{kind}"
    return PagedMachine


@pytest.mark.parametrize("kind", [None, "hash", "radix"])
def test_block_manager_state_machine(kind):
    executed[str(kind)] = 0
    events.clear()
    start = time.perf_counter()
    run_state_machine_as_test(
        make_machine(kind),
        settings=settings(
            max_examples=EXAMPLES_PER_KIND,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            database=None,
            derandomize=UNDER_MUTATION,
            suppress_health_check=list(HealthCheck),
        ),
    )
    elapsed = time.perf_counter() - start
    summary = dict(sorted(events.items()))
    print(f"\n[{kind}] {executed[str(kind)]} operations in {elapsed:.1f} s; events {summary}")
    # 3 kinds x >= 5,000 = >= 15,000 operations in total (about 8,000 each in practice)
    assert executed[str(kind)] >= MIN_OPERATIONS, f"only {executed[str(kind)]} operations ran"
    # the random walks must reach the interesting states, not just succeed trivially
    expected = {"out_of_blocks", "copy_on_write"}
    if kind:
        expected |= {"cache_hit", "evict", "pinned_decides"}
    assert all(events.get(e, 0) >= MIN_EVENTS for e in expected), f"too few interesting events: {events}"
