"""Exercises `append_token`, `fork` and `append_token_cow`: block tables on a shared pool of blocks.

Each exercise is graded on its own. The check builds two pools, both kvlib allocators
(`kvlib.paged.BlockAllocator`) of the same size, and two sets of block tables (`kvlib.paged.BlockTable`):
the learner's side, where the exercise's operation is the learner's function, and kvlib's side, where it
is kvlib's (`kvlib.paged.tables`). Every other operation is the same on both sides: new sequences,
appends and forks through kvlib when they are not the exercise, and frees by the notebook's rule
(decref each block, release it at 0). Pools start with blocks held by someone else and a scrambled
free list, so block ids never equal positions.

After every operation the return value (a slot, a child table, a list of copies, or OutOfBlocks), every
live table's tokens and block ids, every reference count and the free list must match kvlib's side. A
failure names the walk, the operation number, the operation with the table it was given, the operations
just before it, what was expected and what came back, and the likely mistake.

Seeded random walks (block sizes 1, 3, 4 and 16; pools small enough to run out) are followed by
scripted cases that walks reach rarely: a fork of an empty table and of one ending at a block boundary,
each copy-on-write case one at a time, two children and their parent writing after a fork, a pool that
runs out in the middle of a copy, and returned lists kept by the caller.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Callable
from typing import Any

from ..common import CheckFailed
from ..delegation import graded
from ._history import after_context

# kvlib's implementation of each exercise first; the block manager's append/fork do the same with a
# prefix cache, and slot_of / kvlib's plain append are the parts a copy-on-write append could hand in.
APPEND_REFERENCES = (
    "kvlib.paged.tables.append_token",
    "kvlib.paged.tables.slot_of",
    "kvlib.paged.manager.BlockManager",
)
FORK_REFERENCES = ("kvlib.paged.tables.fork_table", "kvlib.paged.manager.BlockManager")
COW_REFERENCES = (
    "kvlib.paged.tables.append_token_cow",
    "kvlib.paged.tables.append_token",
    "kvlib.paged.tables.slot_of",
    "kvlib.paged.manager.BlockManager",
)

_CONTEXT_OPS = 3  # operations shown before the failing one
_MAX_SEQS = 4  # live sequences in a random walk
_TOKENS = 50_000  # token ids are drawn below this

# (block_size, num_blocks, operations, seed) of the hidden random walks, per exercise. The pools are
# small enough that appends (and copies) run out of blocks in the middle of every walk.
APPEND_WALKS = ((1, 14, 300, 801), (3, 10, 500, 802), (4, 12, 500, 803), (16, 7, 700, 804))
FORK_WALKS = ((1, 14, 300, 811), (3, 12, 400, 812), (4, 14, 400, 813), (16, 8, 500, 814))
COW_WALKS = ((1, 14, 300, 821), (3, 12, 500, 822), (4, 14, 500, 823), (16, 8, 700, 824))


def _kvlib() -> Any:
    import kvlib.paged.tables as tables

    return tables


def _block_table() -> type:
    from kvlib.paged import BlockTable

    return BlockTable


def _out_of_blocks() -> type:
    from kvlib.paged import OutOfBlocks

    return OutOfBlocks


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _short(values: list) -> str:
    """A list shown whole when short, else its length, head and tail."""
    if len(values) <= 12:
        return repr(values)
    head, tail = ", ".join(map(repr, values[:4])), ", ".join(map(repr, values[-4:]))
    return f"[{head}, ... {len(values) - 8} more ..., {tail}]"


class _Side:
    """One pool (a kvlib BlockAllocator) and the block tables of the sequences living in it."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        from kvlib.paged import BlockAllocator

        self.alloc = BlockAllocator(num_blocks, block_size)
        self.tables: dict[int, Any] = {}

    def counts(self) -> list[int]:
        return [block.ref_count for block in self.alloc.blocks]

    def free(self, seq_id: int) -> None:
        """The notebook's rule: decref each of the table's blocks, release the ones that reach 0."""
        table = self.tables.pop(seq_id)
        for block_id in reversed(table.block_ids):
            if self.alloc.decref(block_id) == 0:
                self.alloc.release(block_id)


class _Before:
    """kvlib's side just before an operation on sequence `seq_id` (for the explanations)."""

    def __init__(self, side: _Side, seq_id: int) -> None:
        table = side.tables[seq_id]
        self.seq_id = seq_id
        self.tokens = list(table.tokens)
        self.block_ids = list(table.block_ids)
        self.counts = side.counts()
        self.num_free = side.alloc.num_free
        self.p = len(self.tokens)
        self.block_size = side.alloc.block_size
        self.last = self.block_ids[-1] if self.block_ids else None

    @property
    def offset(self) -> int:
        return self.p % self.block_size

    @property
    def shared(self) -> bool:
        return self.last is not None and self.counts[self.last] > 1

    def case(self) -> str:
        """Which rule of the copy-on-write docstring applies: 'new', 'copy' or 'in place'."""
        if self.offset == 0:
            return "new"
        return "copy" if self.shared else "in place"


class _Walk:
    """The learner's side and kvlib's side, driven with the same operations and compared after each.

    `mode` is the exercise: 'append' (append_token), 'fork' or 'cow' (append_token_cow); `fn` is the
    learner's function, used on the learner's side for that operation only."""

    def __init__(self, fn: Callable[..., Any], mode: str, label: str, block_size: int, num_blocks: int,
                 rng: random.Random, held: int = 0) -> None:  # fmt: skip
        self.fn, self.mode, self.label = fn, mode, label
        self.block_size, self.num_blocks = block_size, num_blocks
        self.mine, self.ref = _Side(num_blocks, block_size), _Side(num_blocks, block_size)
        self.history: list[str] = []
        self.next_id = 3
        self.kept: list[tuple[int, Any, list]] = []  # (operation number, returned list, its copy)
        self.outcomes: dict[str, int] = {}  # what the walk reached, for the tests of the walks
        self.longest = 0  # the most tokens a sequence reached
        if held:  # someone else holds blocks; a scrambled part of them comes back: ids never start at 0
            for side in (self.mine, self.ref):
                side.alloc.allocate(held)
            back = list(range(held))
            rng.shuffle(back)
            for block_id in back[: held // 2 + 1]:
                for side in (self.mine, self.ref):
                    side.alloc.decref(block_id)
                    side.alloc.release(block_id)

    # --- messages ---------------------------------------------------------------------------------
    def fail(self, problem: str) -> None:
        after = after_context(self.history, _CONTEXT_OPS)
        raise CheckFailed(
            f"{self.label}, operation {len(self.history)}: {self.history[-1]}{after}: {problem}"
        )

    def describe(self, name: str, seq_id: int, extra: str = "") -> str:
        table = self.ref.tables[seq_id]
        ids = table.block_ids
        shares = ""
        if ids and self.mode != "append":
            shares = f", ref_count of its last block {self.ref.alloc.blocks[ids[-1]].ref_count}"
        return (
            f"{name}(sequence {seq_id} with {len(table.tokens)} token(s) in blocks "
            f"{_short(list(ids))}{shares}"
            f"{extra}; block_size {self.block_size}, {self.ref.alloc.num_free} free block(s))"
        )

    def _count(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    # --- operations -------------------------------------------------------------------------------
    def new(self) -> int:
        seq_id = self.next_id
        self.next_id += 1
        self.history.append(f"new sequence {seq_id}")
        BlockTable = _block_table()
        self.mine.tables[seq_id], self.ref.tables[seq_id] = BlockTable(seq_id), BlockTable(seq_id)
        return seq_id

    def free(self, seq_id: int) -> None:
        self.history.append(f"free sequence {seq_id}")
        self.mine.free(seq_id)
        self.ref.free(seq_id)
        self.compare_state(None)

    def append(self, seq_id: int, token: int) -> None:
        tables = _kvlib()
        ours = self.mode == "append" or self.mode == "cow"
        name = "append_token" if self.mode == "append" else "append_token_cow"
        self.history.append(self.describe(name, seq_id, f", token={token}"))
        before = _Before(self.ref, seq_id)
        reference = tables.append_token if self.mode == "append" else tables.append_token_cow
        want, want_exc = _attempt(reference, self.ref.tables[seq_id], token, self.ref.alloc)
        if want_exc is not None and not isinstance(want_exc, _out_of_blocks()):
            raise want_exc  # kvlib's side failing otherwise is a bug in the check
        self._count(f"{name} {before.case()}" + (" OutOfBlocks" if want_exc else ""))
        self.longest = max(self.longest, before.p + 1)
        if not ours:  # the fork exercise: appends go through kvlib on both sides
            if want_exc is None:
                reference(self.mine.tables[seq_id], token, self.mine.alloc)
            self.compare_state(before)
            return
        got, got_exc = _attempt(self.fn, self.mine.tables[seq_id], token, self.mine.alloc, learner=name)
        self.compare_outcome(before, want_exc, got, got_exc)
        self.compare_state(before)
        if want_exc is None:
            if self.mode == "append":
                self.compare_slot(before, want, got)
            else:
                self.compare_copies(before, want, got)

    def fork(self, parent_id: int) -> int:
        tables = _kvlib()
        child_id = self.next_id
        self.next_id += 1
        self.history.append(self.describe("fork", parent_id, f", child_id={child_id}"))
        before = _Before(self.ref, parent_id)
        self.ref.tables[child_id] = tables.fork_table(self.ref.tables[parent_id], child_id, self.ref.alloc)
        self._count("fork at a block boundary" if before.offset == 0 else "fork in a block")
        if self.mode != "fork":
            self.mine.tables[child_id] = tables.fork_table(
                self.mine.tables[parent_id], child_id, self.mine.alloc
            )
            return child_id
        parent = self.mine.tables[parent_id]
        parent_lists = (parent.tokens, parent.block_ids)
        child, exc = _attempt(self.fn, parent, child_id, self.mine.alloc, learner="fork")
        if exc is not None:
            self.fail(f"fork raised {type(exc).__name__}: {exc}")
        self.check_child(before, parent, parent_lists, child_id, child)
        self.mine.tables[child_id] = child
        self.compare_state(before)
        return child_id

    # --- comparisons ------------------------------------------------------------------------------
    def compare_outcome(self, before: _Before, want_exc: Any, got: Any, got_exc: Any) -> None:
        OutOfBlocks = _out_of_blocks()
        if want_exc is not None:
            if got_exc is None:
                self.fail(
                    f"expected OutOfBlocks: the table needs a block ({self.why_block(before)}) and the pool "
                    f"has no free block, so allocator.allocate(1) raises OutOfBlocks; let it propagate "
                    f"(do not catch it). Yours returned {got!r:.60}" + self.changed_note(before)
                )
            if not isinstance(got_exc, OutOfBlocks):
                self.fail(
                    f"expected OutOfBlocks (the table needs a block and the pool has none); yours raised "
                    f"{type(got_exc).__name__}: {got_exc}. Let the allocator's OutOfBlocks propagate"
                )
            self.compare_state(before, after_refusal=True)
            return
        if got_exc is None:
            return
        self.check_block_types()  # a list inside block_ids is the cause of the exception that follows
        if isinstance(got_exc, OutOfBlocks):
            self.fail(
                f"yours raised OutOfBlocks, but the pool had {before.num_free} free block(s) and this append "
                f"needs {'one' if before.case() != 'in place' else 'none'}: " + self.block_rule(before)
            )
        hint = ""
        if isinstance(got_exc, ValueError) and self.mode == "cow" and before.case() == "copy":
            hint = (
                f" Block {before.last} keeps its other owners after the copy: only decref it (this table's "
                "share), never release a block that still has owners"
            )
        if isinstance(got_exc, IndexError) and before.offset == 0:
            hint = (
                f" The table needs a new block here ({self.why_block(before)}): take it with "
                "allocator.allocate(1) before computing the slot"
            )
        self.fail(f"yours raised {type(got_exc).__name__}: {got_exc}.{hint}")

    def why_block(self, before: _Before) -> str:
        if not before.block_ids:
            return "it has no block yet"
        return f"position p = {before.p} and p % B == 0: its last block is full"

    def block_rule(self, before: _Before) -> str:
        if self.mode == "append":
            return "take a block only when p % B == 0 (no block yet, or the last block full)"
        return (
            "take a block when the last one is full (or there is none), or to copy a partly filled last "
            "block whose ref_count is > 1"
        )

    def changed_note(self, before: _Before) -> str:
        table = self.mine.tables[before.seq_id]
        if list(table.tokens) != before.tokens:
            return " and appended the token to a table that has no block for it"
        return ""

    def compare_state(self, before: _Before | None, after_refusal: bool = False) -> None:
        """Every live table, every ref_count and the free list against kvlib's side."""
        for seq_id, want in self.ref.tables.items():
            got = self.mine.tables[seq_id]
            for field in ("tokens", "block_ids"):
                value = getattr(got, field)
                if type(value) is not list:
                    self.fail(
                        f"table.{field} of sequence {seq_id} must stay a list, got {type(value).__name__} "
                        f"{value!r:.60}: the table is changed in place with list.append / extend / item "
                        "assignment"
                    )
            self.check_block_types(seq_id)
            if got.tokens != want.tokens or got.block_ids != want.block_ids:
                self.fail(self.explain_table(before, seq_id, got, want, after_refusal))
        got_counts, want_counts = self.mine.counts(), self.ref.counts()
        got_free, want_free = list(self.mine.alloc.free_ids), list(self.ref.alloc.free_ids)
        if got_counts != want_counts or got_free != want_free:
            self.fail(self.explain_pool(before, got_counts, want_counts, got_free, want_free, after_refusal))

    def check_block_types(self, seq_id: int | None = None) -> None:
        for number in self.mine.tables if seq_id is None else (seq_id,):
            ids = self.mine.tables[number].block_ids
            bad = next((b for b in ids if not _is_int(b)), None) if isinstance(ids, list) else None
            if bad is not None:
                self.fail(
                    f"the block_ids of sequence {number} must be ints, got {_short(ids)}"
                    + (
                        ": allocator.allocate(1) returns a LIST of one id; extend the table with it or take "
                        "its element, (block_id,) = allocator.allocate(1)"
                        if isinstance(bad, list)
                        else ""
                    )
                )

    def explain_table(self, before: _Before | None, seq_id: int, got: Any, want: Any, refusal: bool) -> str:
        shown = (
            f"sequence {seq_id} has tokens {_short(got.tokens)} in blocks {_short(got.block_ids)}, expected "
            f"tokens {_short(want.tokens)} in blocks {_short(want.block_ids)}"
        )
        if before is None:
            return shown + ": a table changed while no function of yours ran (aliased lists?)"
        if seq_id != before.seq_id:
            where = "fork" if self.history[-1].startswith("fork") else "the call"
            return (
                f"{shown}: {where} on sequence {before.seq_id} changed sequence {seq_id}'s table. Change "
                "only the table you are given"
                + (
                    " and give a child its own lists (list(parent.tokens)), never the parent's list objects"
                    if self.mode == "fork"
                    else ""
                )
            )
        if refusal:
            return (
                f"{shown}: yours raised OutOfBlocks (right) but changed the table first. When it raises, "
                "nothing may change: call allocator.allocate(1) before touching table.tokens or "
                "table.block_ids"
            )
        if got.tokens != want.tokens:
            if got.tokens == before.tokens:
                return (
                    f"{shown}: the token was not appended to table.tokens. The table is the sequence's "
                    "state: append the token to table.tokens in place (do not build a new table)"
                )
            return f"{shown}: append exactly the one token given, at the end of table.tokens"
        if self.mode == "cow":
            return shown + ": " + self.explain_cow_blocks(before, got.block_ids, want.block_ids)
        return shown + ": " + self.explain_append_blocks(before, got.block_ids, want.block_ids)

    def explain_append_blocks(self, before: _Before, got: list, want: list) -> str:
        p, size = before.p, before.block_size
        if len(got) > len(want):
            return (
                f"a new block was taken at position p = {p}, where the last block still has "
                f"{size - p % size} free slot(s) (p % B = {p % size}, B = {size}): take a block only when "
                "p % B == 0, that is when the table has no block yet or its last block is full"
            )
        if len(got) < len(want):
            return (
                f"no block was taken at position p = {p}, but {self.why_block(before)}: take one with "
                "allocator.allocate(1) whenever p % B == 0"
            )
        if got == before.block_ids:  # the new block put somewhere else, or not at all
            return "the table's blocks did not change, but it needed a new block at the end"
        return (
            "the new block goes at the end of table.block_ids, and it is the one allocator.allocate(1) "
            "returns (the front of the free list)"
        )

    def explain_cow_blocks(self, before: _Before, got: list, want: list) -> str:
        case, last = before.case(), before.last
        if case == "new":
            if len(got) == len(want) and before.block_ids and got[len(before.block_ids) - 1] != last:
                return (
                    f"the last block {last} was full (p % B == 0 with p = {before.p}). Nobody writes into a "
                    "full block again, so it stays shared even with ref_count "
                    f"{before.counts[last]}: keep it, take a new block for the token, and return [] (no copy)"
                )
            return self.explain_append_blocks(before, got, want)
        owners = before.counts[last]
        if case == "copy":
            if got == before.block_ids:
                return (
                    f"the last block {last} is partly filled ({before.offset} of {before.block_size} slots) "
                    f"and shared (ref_count {owners}): writing into it would change the other owners' KV. "
                    "Allocate a fresh block, put it in the old one's place (table.block_ids[-1] = fresh), "
                    f"decref block {last} and return [({last}, fresh)]"
                )
            if len(got) == len(want) + 1:
                return (
                    f"the fresh copy of block {last} goes IN PLACE of the old one (table.block_ids[-1] = "
                    "fresh), not after it: the table keeps one block per B tokens"
                )
            return f"block {last} is copied into the block allocator.allocate(1) returns, in the last place"
        return (
            f"the last block {last} is partly filled and owned by this table alone (ref_count {owners}): the "
            "token goes into it, with no copy and no new block. Copy only when ref_count > 1"
        )

    def explain_pool(self, before: _Before | None, got_counts: list, want_counts: list, got_free: list,
                     want_free: list, refusal: bool) -> str:  # fmt: skip
        diff = [b for b in range(self.num_blocks) if got_counts[b] != want_counts[b]]
        shown = "; ".join(f"ref_count({b}) is {got_counts[b]}, expected {want_counts[b]}" for b in diff[:3])
        if got_free != want_free:
            shown = (shown + "; " if shown else "") + (
                f"the free list is {_short(got_free)}, expected {_short(want_free)}"
            )
        if before is None:
            return shown + ": the pool changed while no function of yours ran"
        if refusal:
            return (
                f"{shown}: yours raised OutOfBlocks (right) but changed the pool first. When it raises, "
                "nothing may change: allocate before any decref or incref"
            )
        if self.mode == "fork":
            return shown + ": " + self.explain_fork_pool(before, got_counts, want_counts, got_free, want_free)
        if len(got_free) < len(want_free):
            return (
                f"{shown}: yours took {len(want_free) - len(got_free)} more block(s) from the pool than "
                "needed. " + self.block_rule(before)
            )
        if self.mode == "cow" and before.case() == "copy":
            last = before.last
            if last in got_free and last not in want_free:
                return (
                    f"{shown}: block {last} went back to the free list, but the other owners still hold it "
                    f"(ref_count {before.counts[last]} before): only drop this table's share, "
                    f"allocator.decref({last}), never release a block that still has owners"
                )
            if got_counts[last] == want_counts[last] + 1:
                return (
                    f"{shown}: this table no longer lists block {last} after the copy, so drop its share of "
                    f"it: allocator.decref({last}) (the other owners keep it)"
                )
        if self.mode == "append":
            return f"{shown}: append_token calls allocator.allocate(1) only, when p % B == 0"
        return f"{shown}: a copy allocates one fresh block and decrefs the old one once; nothing else changes"

    def explain_fork_pool(self, before: _Before, got_counts: list, want_counts: list, got_free: list,
                          want_free: list) -> str:  # fmt: skip
        if len(got_free) < len(want_free):
            return (
                f"fork took {len(want_free) - len(got_free)} block(s) from the free list: at a fork no block "
                "is allocated or copied (the child shares the parent's blocks; a copy happens later, when a "
                "sequence writes into a shared, partly filled block)"
            )
        steps = {got_counts[b] - want_counts[b] for b in before.block_ids}
        if steps == {-1}:
            return (
                "the parent's blocks did not gain an owner: call allocator.incref(block_id) once for each of "
                "the parent's blocks (the child's table lists them too)"
            )
        if steps == {1}:
            return "each of the parent's blocks gains exactly ONE owner (the child): yours added two"
        missing = [b for b in before.block_ids if got_counts[b] < want_counts[b]]
        if missing:
            position = before.block_ids.index(missing[0])
            which = "the last" if position == len(before.block_ids) - 1 else f"block {position} of the table"
            return (
                f"block {missing[0]} ({which}) did not gain an owner: every block of the parent gains one, "
                "the partly filled last block too (the child shares it until one of them writes)"
            )
        return "fork adds one owner to each of the parent's blocks and changes nothing else"

    def check_child(
        self, before: _Before, parent: Any, parent_lists: tuple, child_id: int, child: Any
    ) -> None:
        BlockTable = _block_table()
        if not isinstance(child, BlockTable):
            self.fail(
                f"fork must return a new BlockTable(child_id, tokens, block_ids), got "
                f"{type(child).__name__} {child!r:.60}"
            )
        if child is parent:
            self.fail("fork returned the parent's table itself: build a new BlockTable for the child")
        if parent.tokens is not parent_lists[0] or parent.block_ids is not parent_lists[1]:
            self.fail("fork replaced the parent's lists: the parent's table is not changed by a fork")
        if list(parent.tokens) != before.tokens or list(parent.block_ids) != before.block_ids \
                or parent.seq_id != before.seq_id:  # fmt: skip
            self.fail(
                f"fork changed the parent's table (seq_id {parent.seq_id!r:.20}, tokens "
                f"{_short(list(parent.tokens))}, blocks {_short(list(parent.block_ids))}; it was sequence "
                f"{before.seq_id} with tokens {_short(before.tokens)} in blocks {_short(before.block_ids)}): "
                "a fork leaves the parent as it was"
            )
        reference = self.ref.tables[before.seq_id]
        for field in ("num_cached_tokens", "num_registered", "cache_open"):
            if getattr(parent, field, None) != getattr(reference, field):
                self.fail(
                    f"fork changed the parent's {field} (to {getattr(parent, field, None)!r:.20}, it was "
                    f"{getattr(reference, field)!r}): a fork leaves the parent's table as it was"
                )
        seq_id = child.seq_id
        if not _is_int(seq_id) or seq_id != child_id:
            self.fail(f"the child's seq_id must be child_id = {child_id}, got {seq_id!r:.40}")
        for field in ("tokens", "block_ids"):
            if getattr(child, field) is getattr(parent, field):
                self.fail(
                    f"child.{field} is the parent's list object: a later append to one sequence would show "
                    f"in the other. Give the child copies, list(parent.{field})"
                )
        if child.tokens != before.tokens or child.block_ids != before.block_ids:
            self.fail(
                f"the child has tokens {_short(child.tokens)!s:.200} in blocks {_short(child.block_ids)}, "
                f"expected the parent's: tokens {_short(before.tokens)} in blocks {_short(before.block_ids)} "
                "(copies of the parent's lists, every block shared)"
            )

    def compare_slot(self, before: _Before, want: int, got: Any) -> None:
        if not _is_int(got):
            self.fail(
                f"append_token must return the flat slot as an int, table.block_ids[p // B] * B + p % B = "
                f"{want}; got {type(got).__name__} {got!r:.60}"
                + (": use // and %, not /" if isinstance(got, float) else "")
            )
        if got == want:
            return
        p, size = before.p, before.block_size
        ids = self.ref.tables[before.seq_id].block_ids
        block = ids[p // size]
        variants = {
            p: "that is the position p: the slot uses the PHYSICAL block id, table.block_ids[p // B], "
            "not the block's index in the table",
            block + p % size: "the block id must be multiplied by the block size: block_id * B + p % B",
            block * size + p: "the offset inside the block is p % B, not p",
            block: "that is the block id; the slot is block_id * B + p % B",
        }
        if (p + 1) // size < len(ids):
            variants.setdefault(
                ids[(p + 1) // size] * size + (p + 1) % size,
                "that is the slot of position p + 1: p = len(table.tokens) BEFORE the token is appended",
            )
        if p:
            variants.setdefault(
                ids[(p - 1) // size] * size + (p - 1) % size,
                "that is the slot of the previous token: p = len(table.tokens) before the append is the "
                "new token's position",
            )
        for other in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            if other != size and p // other < len(ids):
                variants.setdefault(
                    ids[p // other] * other + p % other,
                    f"that is the slot for a block size of {other}: B is allocator.block_size (here {size})",
                )
        hint = variants.get(
            int(got), f"slot = table.block_ids[p // B] * B + p % B = {block} * {size} + {p % size}"
        )
        self.fail(f"append_token returned slot {got}, expected {want} (p = {p}, B = {size}): {hint}")

    def compare_copies(self, before: _Before, want: list, got: Any) -> None:
        if _is_int(got):
            self.fail(
                f"append_token_cow returns the list of block copies (here {want}), not the slot: the slot is "
                "read from the table after the call"
            )
        if isinstance(got, tuple) and len(got) == 2 and all(_is_int(x) for x in got):
            self.fail(
                f"return a LIST of (src, dst) pairs, [{got!r}], not the pair itself (and [] when nothing is "
                "copied)"
            )
        if not isinstance(got, list):
            self.fail(
                f"append_token_cow must return a list of (src, dst) tuples (here {want}), got "
                f"{type(got).__name__} {got!r:.60}"
                + (": return [] when nothing is copied" if got is None else "")
            )
        for pair in got:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(_is_int(x) for x in pair)):
                self.fail(
                    f"append_token_cow returned {got!r:.80}: each copy is a tuple (src, dst) of two block "
                    f"ids, got {type(pair).__name__} {pair!r:.40}"
                )
        self.kept.append((len(self.history), got, list(got)))
        if got == want:
            return
        case = before.case()
        if want and got == [(b, a) for a, b in want]:
            hint = (
                "the pair is reversed: (src, dst) = (the shared old block, the fresh block); the engine "
                "copies FROM src TO dst"
            )
        elif not want and got:
            hint = (
                "nothing is copied here: "
                + (
                    "the last block is full, nobody writes into it"
                    if case == "new"
                    else "this table owns its last block alone, the token goes into it"
                )  # fmt: skip
                + "; return []"
            )
        elif len(got) > len(want) and got[len(got) - len(want) :] == want:
            hint = (
                "the list also holds copies from earlier calls: make a new list in each call (a default "
                "argument copies=[] or a global list is shared by every call)"
            )
        elif want and not got:
            hint = f"the last block was shared and partly filled: return the copy [({before.last}, fresh)]"
        else:
            hint = "one pair per block copied, (old block, fresh block)"
        self.fail(f"append_token_cow returned {got!r:.80}, expected {want}: {hint}")

    def check_kept(self) -> None:
        for number, returned, copy in self.kept:
            if returned != copy:
                raise CheckFailed(
                    f"{self.label}: the list returned by operation {number}, {copy}, is now {returned!r:.80} "
                    "after later calls: return a new list on each call (a list kept in a default argument or "
                    "a global is shared by every call)"
                )


def _attempt(fn: Callable[..., Any], *args: Any, learner: str | None = None) -> tuple[Any, Any]:
    """(result, None) or (None, the exception); a learner's NotImplementedError ends the check."""
    try:
        return fn(*args), None
    except NotImplementedError:
        if learner is None:
            raise
        raise CheckFailed(f"{learner} is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - compared with kvlib's outcome
        if learner is None and not isinstance(exc, _out_of_blocks()):
            raise
        return None, exc


# -----------------------------------------------------------------------------------------------------
# Random walks
# -----------------------------------------------------------------------------------------------------
def _random_walk(fn: Callable[..., Any], mode: str, block_size: int, num_blocks: int, steps: int,
                 seed: int, label: str | None = None) -> _Walk:  # fmt: skip
    """`steps` random operations: sequences grow token by token (one of them mostly, so they cross many
    block boundaries), fork, and are freed; a small pool runs out of blocks now and then."""
    rng = random.Random(seed)
    label = label or f"a random walk (block_size {block_size}, {num_blocks} blocks, seed {seed})"
    walk = _Walk(fn, mode, label, block_size, num_blocks, rng, held=rng.randint(1, max(1, num_blocks // 2)))
    current = walk.new()
    for _ in range(steps):
        live = sorted(walk.ref.tables)
        starved = walk.ref.alloc.num_free == 0
        weights = {
            "new": 6 if len(live) < _MAX_SEQS else 0,
            "append": 70,
            "fork": (20 if mode != "append" else 8) if len(live) < _MAX_SEQS else 0,
            "free": 70 if starved else 4 if len(live) > 1 else 0,
        }
        op = rng.choices(list(weights), list(weights.values()))[0]
        if op == "new":
            current = walk.new()
        elif op == "free":
            walk.free(rng.choice(live))
            if current not in walk.ref.tables:
                current = rng.choice(sorted(walk.ref.tables)) if walk.ref.tables else walk.new()
        elif op == "fork":
            # append_token has no copy-on-write: its walks fork only at block boundaries (or empty tables)
            parents = [
                s for s in live if mode != "append" or len(walk.ref.tables[s].tokens) % block_size == 0
            ]
            if parents:
                child = walk.fork(rng.choice(parents))
                current = child if rng.random() < 0.5 else current
        else:
            seq_id = current if rng.random() < 0.7 else rng.choice(live)
            if mode == "append" and _shares_last(walk, seq_id):
                continue  # writing into a shared block is append_token_cow's job
            walk.append(seq_id, rng.randrange(_TOKENS))
            current = seq_id
    walk.check_kept()
    return walk


def _shares_last(walk: _Walk, seq_id: int) -> bool:
    table = walk.ref.tables[seq_id]
    partial = len(table.tokens) % walk.block_size
    return bool(partial) and walk.ref.alloc.blocks[table.block_ids[-1]].ref_count > 1


def _scripted(fn: Callable[..., Any], mode: str, label: str, block_size: int, num_blocks: int, held: int,
              script: Callable[[_Walk], None]) -> _Walk:  # fmt: skip
    walk = _Walk(fn, mode, label, block_size, num_blocks, random.Random(7), held=held)
    script(walk)
    walk.check_kept()
    return walk


def _grow(walk: _Walk, seq_id: int, n: int, start: int = 100) -> None:
    for i in range(n):
        walk.append(seq_id, start + i)


# --- scripts -----------------------------------------------------------------------------------------
def _two_sequences(walk: _Walk) -> None:
    """Two sequences decoding in turn, past block boundaries, then one until the pool runs out."""
    a, b = walk.new(), walk.new()
    for step in range(10):
        walk.append(a, 100 + step)
        if step < 6:
            walk.append(b, 200 + step)
    while walk.ref.alloc.num_free or len(walk.ref.tables[b].tokens) % walk.block_size:
        walk.append(b, 300 + len(walk.ref.tables[b].tokens))
    walk.append(b, 999)  # needs a block, none is free: OutOfBlocks, nothing changes
    walk.append(a, 998)  # a still has room in its last block
    walk.free(a)
    walk.append(b, 997)  # b gets a's old block


def _fork_cases(walk: _Walk) -> None:
    """Fork of a table in a block, at a boundary, empty; the child and the parent then write."""
    a = walk.new()
    _grow(walk, a, 6)  # B = 4: blocks full + 2 of 4
    c = walk.fork(a)
    walk.append(c, 500)  # a shared partly filled block: copied
    walk.append(a, 501)  # a owns its old block alone again: in place
    _grow(walk, a, 1, 502)  # a now ends at a block boundary
    d = walk.fork(a)
    walk.append(d, 600)  # a full shared block: a new one, no copy
    walk.append(a, 601)
    e = walk.fork(walk.new())  # an empty table
    walk.append(e, 700)
    walk.free(a)
    _grow(walk, d, 5, 800)
    walk.fork(d)


def _cow_cases(walk: _Walk) -> None:
    """Each copy-on-write rule alone, then two children and their parent writing after forks."""
    a = walk.new()
    _grow(walk, a, 3)  # B = 4: 3 of 4 slots
    walk.append(a, 103)  # owned alone, partly filled: in place
    c = walk.fork(a)  # the last block is full and shared
    walk.append(c, 200)  # full: a new block, no copy
    walk.append(a, 104)  # full: a new block, no copy
    walk.append(a, 105)  # a's new block is its own: in place
    p = walk.new()
    _grow(walk, p, 5, 300)  # 1 of 4 in its last block
    c1, c2 = walk.fork(p), walk.fork(p)  # its last block has 3 owners
    walk.append(c1, 400)  # copy; the old block keeps 2 owners
    walk.append(c2, 500)  # copy; the old block keeps 1 owner (p)
    walk.append(p, 305)  # p owns it alone now: in place, no copy
    walk.append(c1, 401)  # c1's copy is its own
    walk.free(c2)
    _grow(walk, c1, 3, 402)  # c1 crosses a block boundary
    walk.free(p)


def _cow_exhaustion(walk: _Walk) -> None:
    """The pool runs out exactly when a shared block must be copied: OutOfBlocks, nothing changes."""
    a = walk.new()
    _grow(walk, a, 2)
    c = walk.fork(a)
    while walk.ref.alloc.num_free:
        walk.append(walk.new(), 9)
    walk.append(c, 1)  # needs a copy, nothing is free
    walk.append(a, 2)  # same for the parent
    walk.free(walk.next_id - 1)
    walk.append(c, 3)  # the copy goes through now
    walk.append(a, 4)  # a owns its block alone: in place
    walk.append(a, 5)


@graded("append_token", *APPEND_REFERENCES)
def append_token_visible(fn: Callable[..., Any]) -> None:
    """Two sequences in turn on a pool whose free list does not start at 0, running out; a short walk."""
    label = "two sequences on BlockAllocator(8, 4) whose free list starts at block 3"
    _scripted(fn, "append", label, 4, 8, 3, _two_sequences)
    _random_walk(fn, "append", 3, 10, 120, seed=80)
    print("append_token: visible tests passed")


@graded("append_token", *APPEND_REFERENCES)
def append_token_hidden(fn: Callable[..., Any]) -> None:
    """Random walks of several sequences with block sizes 1, 3, 4 and 16 and pools that run out."""
    for block_size in (1, 3, 16):
        label = f"two sequences on BlockAllocator(8, {block_size}) with blocks held elsewhere"
        _scripted(fn, "append", label, block_size, 8, 2, _two_sequences)
    for block_size, num_blocks, steps, seed in APPEND_WALKS:
        _random_walk(fn, "append", block_size, num_blocks, steps, seed)
    print("append_token: hidden tests passed")


@graded("fork", *FORK_REFERENCES)
def fork_visible(fn: Callable[..., Any]) -> None:
    """A fork in a block, at a boundary and of an empty table, each side writing after it; a short walk."""
    _scripted(fn, "fork", "forks on BlockAllocator(16, 4) with blocks held elsewhere", 4, 16, 3, _fork_cases)
    _random_walk(fn, "fork", 3, 12, 120, seed=81)
    print("fork: visible tests passed")


@graded("fork", *FORK_REFERENCES)
def fork_hidden(fn: Callable[..., Any]) -> None:
    """Random walks with many forks (block sizes 1, 3, 4, 16), children appending through copy-on-write."""
    _scripted(fn, "fork", "forks on BlockAllocator(40, 1)", 1, 40, 5, _fork_cases)
    for block_size, num_blocks, steps, seed in FORK_WALKS:
        _random_walk(fn, "fork", block_size, num_blocks, steps, seed)
    print("fork: hidden tests passed")


@graded("append_token_cow", *COW_REFERENCES)
def append_token_cow_visible(fn: Callable[..., Any]) -> None:
    """Each copy-on-write rule, two children and their parent writing, a short walk with forks."""
    _scripted(fn, "cow", "copy-on-write on BlockAllocator(16, 4) with blocks held elsewhere", 4, 16, 3,
              _cow_cases)  # fmt: skip
    _random_walk(fn, "cow", 3, 12, 120, seed=82)
    print("append_token_cow: visible tests passed")


@graded("append_token_cow", *COW_REFERENCES)
def append_token_cow_hidden(fn: Callable[..., Any]) -> None:
    """A pool running out in a copy, the rules with block sizes 1 and 3, random walks (sizes 1, 3, 4, 16)."""
    _scripted(fn, "cow", "a copy when the pool is empty, BlockAllocator(6, 4)", 4, 6, 1, _cow_exhaustion)
    _scripted(fn, "cow", "copy-on-write on BlockAllocator(20, 3)", 3, 20, 2, _cow_cases)
    for block_size, num_blocks, steps, seed in COW_WALKS:
        _random_walk(fn, "cow", block_size, num_blocks, steps, seed)
    print("append_token_cow: hidden tests passed")
