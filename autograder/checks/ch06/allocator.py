"""Exercise `block_allocator`: a pool of physical KV blocks with a FIFO free list and reference counts.

The learner's class is graded by replay. A learner allocator and kvlib's (`kvlib.paged.BlockAllocator`)
are built with the same sizes and driven by the same seeded random operations: allocations that fit,
that take the whole pool, that do not fit, of 0 and of a negative count; increfs and decrefs of used,
idle and free blocks; releases of idle, owned and free blocks; ids just outside the pool on both sides.
After every operation the result (ids, counts, or the exception type) and the whole observable state
(`num_free` and every `ref_count`) must match kvlib's; the free list's order, which no counter shows,
is read at the end of every sequence by allocating everything that is left. A failure names the
operation number, the operation, the operations just before it, what was expected and what came back,
and the likely mistake.

Direct tests add what random walks rarely reach: two allocators used in turn, constructor errors, a
pool of 1000 blocks recycled in a scrambled order, a block with 300 owners, and returned lists that
the caller changes (the allocator must not notice) or keeps (later calls must not change them).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..common import CheckFailed, expect
from ..delegation import graded
from ._history import after_context

# A wrapper around kvlib's manager would reach the allocator's code too, but name it: it allocates.
REFERENCES = ("kvlib.paged.blocks.BlockAllocator", "kvlib.paged.manager.BlockManager")

_FULL_STATE_UP_TO = 64  # pools this small have every ref_count compared after every operation
_CONTEXT_OPS = 5  # operations shown before the failing one
# (num_blocks, operations, seed) of the hidden random walks: a pool of one block (every allocate of 2
# fails), tiny pools where idle and free blocks abound, and pools past the visible check's 6 blocks.
HIDDEN_WALKS = ((1, 120, 600), (2, 200, 601), (3, 250, 602), (5, 350, 603), (8, 400, 604), (13, 400, 605),
                (16, 300, 606), (37, 300, 607))  # fmt: skip


def _reference(num_blocks: int, block_size: int) -> Any:
    from kvlib.paged.blocks import BlockAllocator

    return BlockAllocator(num_blocks, block_size)


def _out_of_blocks() -> type:
    from kvlib.paged.blocks import OutOfBlocks

    return OutOfBlocks


def _construct(cls: Callable[..., Any], num_blocks: int, block_size: int, keywords: bool = False) -> Any:
    what = f"BlockAllocator(num_blocks={num_blocks}, block_size={block_size})"
    try:
        if keywords:
            return cls(num_blocks=num_blocks, block_size=block_size)
        return cls(num_blocks, block_size)
    except NotImplementedError:
        raise CheckFailed("BlockAllocator is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from None


def _run(fn: Callable[[Any], Any], arg: Any) -> tuple[Any, BaseException | None]:
    """(result, None) or (None, the exception); NotImplementedError ends the check."""
    try:
        return fn(arg), None
    except NotImplementedError:
        raise CheckFailed("BlockAllocator is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - compared with kvlib's outcome
        return None, exc


def _int_result(value: Any) -> int | None:
    """`value` as an int when it is one (Python or NumPy integer), else None."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, (list, tuple)):
        return None
    try:
        return int(value.__index__())
    except Exception:  # noqa: BLE001 - a tensor with several elements, say
        return None


class _WrongOrders:
    """Free lists kept in the classic wrong orders, to name the one a learner's allocate follows.

    Each model hands out ids by its own rule; a model is dropped as soon as it would have answered an
    allocate differently from kvlib (the learner, who matched kvlib there, does not follow it)."""

    MESSAGES = {
        "front": "the free list is first-in, first-out: release appends a block at the BACK and allocate "
        "takes from the FRONT, so the block freed longest ago is reused first; yours put the released block "
        "at the front, which makes it a stack (LIFO)",
        "stack": "the free list is first-in, first-out: allocate takes from the FRONT; yours takes the "
        "ids from the END of the list (list.pop()), which makes it a stack (LIFO)",
        "smallest": "yours hands out the smallest free ids (a heap, a sorted set, min()): the free list "
        "keeps the order of release, first-in, first-out, so the block freed longest ago is reused first",
    }

    def __init__(self, num_blocks: int) -> None:
        self.lists = {kind: list(range(num_blocks)) for kind in self.MESSAGES}

    def take(self, kind: str, n: int) -> list[int]:
        free = self.lists[kind]
        return free[:n] if kind == "front" else free[::-1][:n] if kind == "stack" else sorted(free)[:n]

    def allocated(self, n: int, right: list[int]) -> None:
        for kind in list(self.lists):
            if self.take(kind, n) != right:
                del self.lists[kind]
                continue
            for block_id in right:
                self.lists[kind].remove(block_id)

    def released(self, block_id: int) -> None:
        for kind, free in self.lists.items():
            free.insert(0, block_id) if kind == "front" else free.append(block_id)

    def diagnose(self, n: int, got: list[int]) -> str | None:
        kinds = [k for k in self.lists if self.take(k, n) == got]
        if len(kinds) > 1:  # this step cannot tell them apart: name every order it fits
            return (
                "the free list is first-in, first-out: release appends a block at the BACK and allocate "
                "takes from the FRONT; yours handed out another block, as a stack (LIFO) or a free list "
                "sorted by id (a heap, min()) would"
            )
        return self.MESSAGES[kinds[0]] if kinds else None


class _Pair:
    """The learner's allocator and kvlib's, built with the same sizes and driven with the same calls."""

    def __init__(self, cls: Callable[..., Any], num_blocks: int, block_size: int, label: str, keywords=False):
        self.label = label
        self.num_blocks = num_blocks
        self.ref = _reference(num_blocks, block_size)
        self.mine = _construct(cls, num_blocks, block_size, keywords)
        self.history: list[str] = []
        self.touched: set[int] = set()
        self.orders = _WrongOrders(num_blocks)
        self.kept: list[tuple[int, list[int], list[int]]] = []  # (operation number, returned list, copy)
        self.check_attributes(block_size)

    # --- messages ---------------------------------------------------------------------------------
    def where(self, call: str) -> str:
        return (
            f"{self.label}, operation {len(self.history)}: {call}{after_context(self.history, _CONTEXT_OPS)}"
        )

    # --- state ------------------------------------------------------------------------------------
    def check_attributes(self, block_size: int) -> None:
        for name, want in (("num_blocks", self.num_blocks), ("block_size", block_size)):
            got = getattr(self.mine, name, None)
            expect(
                _int_result(got) == want,
                f"{self.label}: the allocator must keep its sizes as attributes, {name} = {want}; got "
                f"{got!r:.60} (append_token reads allocator.block_size, the manager reads num_blocks)",
            )
        self.check_state(
            "when it was just built",
            hint=f"a new allocator has its {self.num_blocks} blocks free, each with count 0; each "
            "allocator keeps "
            "its own state (a free list or counts in a class attribute or a module-level variable are "
            "shared by every allocator)",
        )

    def read_num_free(self, when: str) -> int:
        try:
            got = self.mine.num_free
        except NotImplementedError:
            raise CheckFailed(
                "BlockAllocator is not implemented yet (it raised NotImplementedError)"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(
                f"{self.label}: reading num_free {when} raised {type(exc).__name__}: {exc}"
            ) from None
        if callable(got):
            raise CheckFailed(
                f"{self.label}: num_free must be a property read without parentheses (allocator.num_free), "
                "got a method: put @property above def num_free(self)"
            )
        value = _int_result(got)
        expect(value is not None, f"{self.label}: num_free must be an int, got {got!r:.60} {when}")
        return value

    def read_ref_count(self, block_id: int, when: str) -> int:
        got, exc = _run(self.mine.ref_count, block_id)
        if exc is not None:
            raise CheckFailed(
                f"{self.label}: ref_count({block_id}) raised {type(exc).__name__}: {exc} {when}; it must "
                "return the block's count for every id in [0, num_blocks)"
            )
        value = _int_result(got)
        expect(value is not None, f"{self.label}: ref_count({block_id}) must return an int, got {got!r:.60}")
        return value

    def check_state(self, when: str, hint: str, ids: Any = None) -> None:
        """num_free and the ref_count of `ids` (default: every block, or the touched ones in a big pool)."""
        want = self.ref.num_free
        got = self.read_num_free(when)
        if got != want:
            raise CheckFailed(f"{self.label}: num_free is {got} {when}, expected {want}: {hint}")
        if ids is None:
            ids = range(self.num_blocks) if self.num_blocks <= _FULL_STATE_UP_TO else sorted(self.touched)
        for block_id in ids:
            want = self.ref.blocks[block_id].ref_count
            got = self.read_ref_count(block_id, when)
            if got != want:
                raise CheckFailed(
                    f"{self.label}: ref_count({block_id}) is {got} {when}, expected {want}: {hint}"
                )

    def check_kept_lists(self) -> None:
        for number, returned, copy in self.kept:
            if returned != copy:
                raise CheckFailed(
                    f"{self.label}: the list returned by operation {number}, allocate, was {copy} and is now "
                    f"{returned!r:.80} after later calls: return a new list each time (the caller keeps "
                    "it as its block table), not one list the allocator refills or keeps using"
                )

    # --- one operation ----------------------------------------------------------------------------
    def step(self, op: str, arg: int, state: bool = True) -> Any:
        """Run `op(arg)` on both allocators, compare the outcomes, then the state; return kvlib's result."""
        self.history.append(f"{op}({arg})")
        call = f"{op}({arg})"
        where = self.where(call)
        why, hint = self.expected_error(op, arg)
        want, want_exc = _run(getattr(self.ref, op), arg)
        method = getattr(self.mine, op, None)
        expect(callable(method), f"{self.label}: BlockAllocator has no method {op}(...)")
        got, got_exc = _run(method, arg)
        if want_exc is not None:
            self.compare_error(where, arg, want_exc, got, got_exc, why, hint)
            if state:
                rule = "a call that raises must change nothing: check before you change anything"
                if op == "allocate":
                    rule += " (all or nothing: count the free blocks before taking any)"
                self.check_state(f"after {call} raised", rule)
            return None
        if got_exc is not None:
            raise CheckFailed(
                f"{where} must return {want!r:.80}, but raised {type(got_exc).__name__}: {got_exc}"
                + self.refused_hint(op, arg)
            )
        if op == "allocate":
            self.compare_ids(where, arg, want, got)
            self.orders.allocated(arg, want)
            self.touched.update(want)
            self.check_kept_lists()
            self.kept = [*self.kept[-7:], (len(self.history), got, list(got))]
        elif op != "release":
            value = _int_result(got)
            expect(value is not None, f"{where} must return an int (the new count), got {got!r:.60}")
            if value != want:
                raise CheckFailed(
                    f"{where} returned {value}, expected {want}: {self.count_hint(op, arg, value, want)}"
                )
            self.touched.add(arg)
        else:
            self.orders.released(arg)
            self.touched.add(arg)
        if state:
            self.check_state(f"after {call}", self.state_hint(op, arg, want))
        return want

    def expected_error(self, op: str, arg: int) -> tuple[str, str]:
        """Why kvlib will refuse `op(arg)` (if it will), and the hint for a learner who did not."""
        n = self.num_blocks
        if op == "allocate":
            free = self.ref.num_free
            if arg < 0:
                return "a negative count", (
                    "a negative n is the caller's mistake: raise ValueError (a slice free[:n] with n < 0 "
                    "quietly hands out all but the last blocks)"
                )
            return f"only {free} block(s) are free", (
                f"raise OutOfBlocks(n, num_free) = OutOfBlocks({arg}, {free}) (imported in the setup "
                "cell) before taking any block: a scheduler catches exactly that type to preempt a request "
                "and retry, and a half-done allocation would leak the blocks it took"
            )
        if not 0 <= arg < n:
            if arg < 0:
                return f"ids are 0..{n - 1}", (
                    "a negative id indexes a Python list from the end (refs[-1] is the last block): check "
                    "0 <= block_id < num_blocks before using the id"
                )
            return f"ids are 0..{n - 1}", (
                "off by one at the top: num_blocks itself is outside the pool (ids stop at num_blocks - 1), "
                "check 0 <= block_id < num_blocks"
                if arg == n
                else "check 0 <= block_id < num_blocks and raise IndexError"
            )
        count = self.ref.blocks[arg].ref_count
        free = self.ref.is_free(arg)
        if op == "incref":
            return f"block {arg} is on the free list", (
                "only a block that is not free (used, or idle with count 0 but not released) may gain an "
                "owner: a free block can be handed out by allocate at any moment"
            )
        if op == "decref":
            return f"its count is already 0{' (it is free)' if free else ''}", (
                "a decref at count 0 is a double free: raise ValueError, never go below 0"
            )
        if op == "release":
            if count > 0:
                return f"it still has {count} owner(s)", (
                    "release only a block whose count is 0: a block with owners put on the free list "
                    "would be handed out again while they still use it"
                )
            return "it is already free", (
                "releasing a free block again would put it on the free list twice, so two sequences "
                "would get it"
            )
        return "", ""

    def compare_error(
        self,
        where: str,
        arg: int,
        want_exc: BaseException,
        got: Any,
        got_exc: Any,
        why: str,
        hint: str,
    ) -> None:
        kind = type(want_exc).__name__
        if got_exc is None:
            raise CheckFailed(f"{where} must raise {kind} ({why}), but it returned {got!r:.60}: {hint}")
        if not isinstance(got_exc, type(want_exc)):
            extra = ""
            if isinstance(want_exc, IndexError) and isinstance(got_exc, KeyError):
                extra = " (a dict lookup raises KeyError: check the range yourself and raise IndexError)"
            elif isinstance(want_exc, _out_of_blocks()):
                extra = " (OutOfBlocks, not ValueError or another type)"
            raise CheckFailed(
                f"{where} must raise {kind} ({why}), got {type(got_exc).__name__}: {got_exc}{extra}: {hint}"
            )
        if isinstance(want_exc, _out_of_blocks()):
            needed, available = getattr(got_exc, "needed", None), getattr(got_exc, "available", None)
            expect(
                (needed, available) == (want_exc.needed, want_exc.available),
                f"{where} raised OutOfBlocks(needed={needed}, available={available}); build it as "
                f"OutOfBlocks(n, num_free) = OutOfBlocks({want_exc.needed}, {want_exc.available}): the "
                "scheduler reads both numbers",
            )

    def refused_hint(self, op: str, arg: int) -> str:
        """Why a call kvlib accepts must be accepted."""
        count = self.ref.blocks[arg].ref_count if op != "allocate" and 0 <= arg < self.num_blocks else None
        if op == "incref" and count == 1:  # kvlib's count after the call
            return (
                f": block {arg} had count 0 but was not on the free list (idle: decref'd, not released); "
                "an idle block may gain an owner again (that is how a prefix cache reuses it): refuse only "
                "free blocks"
            )
        if op == "incref" and count is not None and count > 255:
            return ": reference counts must not be capped (a bytearray or uint8 array holds at most 255)"
        if op == "release":
            return (
                f": block {arg} has count 0 and is not on the free list, so release must put it at the "
                "back of the free list"
            )
        if op == "allocate":
            return f": {arg} block(s) were asked for and at least that many were free"
        if op == "decref":
            return f": block {arg} had {count + 1} owner(s), so decref takes one away"
        return f": block {arg} is in the pool (ids are 0..{self.num_blocks - 1})"

    def count_hint(self, op: str, arg: int, got: int, want: int) -> str:
        if op == "ref_count":
            return f"ref_count returns block {arg}'s count as it is now, without changing it"
        if (op == "incref" and got == want - 1) or (op == "decref" and got == want + 1):
            return f"{op} returns the NEW count (after the change), not the old one"
        if op == "incref" and want > 255:
            return "reference counts must not be capped (a bytearray or uint8 array holds at most 255)"
        return f"{op} changes the count by exactly one and returns the new count"

    def state_hint(self, op: str, arg: int, result: Any) -> str:
        if op == "decref" and result == 0:
            return (
                f"block {arg}'s count reached 0, but it stays off the free list until release({arg}): "
                "the caller decides whether to release it or keep it idle in a prefix cache"
            )
        if op == "allocate":
            return "allocate(n) takes exactly n blocks off the free list, each with count 1"
        if op == "release":
            return "release puts exactly that one block back on the free list and changes no count"
        if op in ("incref", "decref"):
            return f"{op} changes only block {arg}'s count, by one, and never the free list"
        return "ref_count only reads"

    def compare_ids(self, where: str, n: int, want: list[int], got: Any) -> None:
        expect(
            isinstance(got, list),
            f"{where} must return a list of block ids, got {type(got).__name__} {got!r:.60}"
            + (
                ": a generator or iterator can be read only once; return a list"
                if hasattr(got, "__next__")
                else ""
            ),
        )
        bad = next((b for b in got if _int_result(b) is None), None)
        expect(bad is None, f"{where} must return a list of ints, got an element {bad!r:.60}")
        got = [int(b) for b in got]
        if got == want:
            return
        message = f"{where} returned {got!r:.100}, expected {want!r:.100}: "
        if n == 0:
            raise CheckFailed(
                message + "allocate(0) takes nothing and returns [] (a slice free[-0:] is the WHOLE list)"
            )
        if len(got) != len(want):
            raise CheckFailed(message + f"allocate(n) returns exactly n = {n} ids")
        wrong_order = self.orders.diagnose(n, got)
        if got == want[::-1]:  # taking the whole free list, a stack also gives this: name both
            raise CheckFailed(
                message
                + "the right blocks in reverse order: return the ids in free-list order, the front first"
                + (f"; or else {wrong_order}" if wrong_order else "")
            )
        if wrong_order:
            raise CheckFailed(message + wrong_order)
        if sorted(got) == sorted(want):
            raise CheckFailed(
                message + "the right blocks in another order: return them in free-list order, front first"
            )
        for block_id in got:
            if not 0 <= block_id < self.num_blocks:
                raise CheckFailed(
                    message + f"{block_id} is not a block id (ids are 0..{self.num_blocks - 1})"
                )
        was_free = set(self.ref.free_ids) | set(want)
        for block_id in got:
            if block_id not in was_free:
                count = self.ref.blocks[block_id].ref_count
                state = (
                    "idle: its count dropped to 0 but it was never released, and a block at 0 stays off "
                    "the free list until release (decref must not free it)"
                    if count == 0
                    else f"in use, with {count} owner(s): the same block now belongs to two sequences"
                )
                raise CheckFailed(message + f"block {block_id} was not free, it was {state}")
        raise CheckFailed(
            message
            + "allocate takes the n ids at the front of the free list and release appends at its back "
            "(first-in, first-out)"
        )

    def drain(self) -> None:
        """Allocate everything left, so the whole free list's order is compared."""
        self.step("allocate", self.ref.num_free)


# -----------------------------------------------------------------------------------------------------
# Random operations
# -----------------------------------------------------------------------------------------------------
def _random_op(rng: random.Random, ref: Any) -> tuple[str, int]:
    """One operation chosen from kvlib's state: mostly valid ones, a steady share that must raise.

    The targets are drawn by the state of the block (used, idle, free, outside the pool), so that idle
    blocks (count 0, not released) are common and every refusal in the docstring comes up often."""
    n = ref.num_blocks
    free = list(ref.free_ids)
    used = [b for b in range(n) if ref.blocks[b].ref_count > 0]
    idle = [b for b in range(n) if ref.blocks[b].ref_count == 0 and not ref.is_free(b)]
    outside = [-1, -n, n, n + 1, n + 7]
    groups = {"used": used, "idle": idle, "free": free, "outside": outside, "any": list(range(n))}
    op = rng.choices(("allocate", "incref", "decref", "release", "ref_count"), (26, 12, 32, 24, 6))[0]
    if op == "allocate":
        count = rng.choices(
            (
                0,
                -rng.randint(1, 3),
                len(free),
                len(free) + rng.randint(1, 3),
                rng.randint(1, max(1, len(free))),
            ),
            (4, 3, 10, 12, 71),
        )[0]
        return op, count
    wanted = {  # (group, weight): the first non-empty group in the drawn order is used
        "incref": (("used", 66), ("idle", 15), ("free", 10), ("outside", 9)),
        "decref": (("used", 80), ("idle", 8), ("free", 7), ("outside", 5)),
        "release": (("idle", 78), ("used", 10), ("free", 7), ("outside", 5)),
        "ref_count": (("any", 60), ("outside", 40)),
    }[op]
    first = rng.choices([g for g, _ in wanted], [w for _, w in wanted])[0]
    for group in (first, *(g for g, _ in wanted)):
        if groups[group]:
            return op, rng.choice(groups[group])
    return op, rng.choice(outside)


def _random_walk(
    cls: Callable[..., Any], num_blocks: int, block_size: int, seed: int, steps: int, label: str
):
    """`steps` random operations on a fresh pair, then everything left allocated (the free list's order)."""
    rng = random.Random(seed)
    pair = _Pair(cls, num_blocks, block_size, label)
    for _ in range(steps):
        pair.step(*_random_op(rng, pair.ref))
    pair.drain()


def _interleaved(cls: Callable[..., Any], seed: int, steps: int) -> None:
    """Two allocators of different sizes driven in turn: each must keep its own state."""
    rng = random.Random(seed)
    a = _Pair(cls, 5, 16, "allocator A = BlockAllocator(5, 16)")
    b = _Pair(cls, 9, 4, "allocator B = BlockAllocator(9, 4), built while A was in use")
    a.check_state(
        "after allocator B was built",
        "building another allocator must not change this one: each "
        "allocator keeps its own state (a class attribute or a module-level list is shared by all)",
    )
    for _ in range(steps):
        this, other = (a, b) if rng.random() < 0.5 else (b, a)
        op, arg = _random_op(rng, this.ref)
        this.step(op, arg)
        other.check_state(
            f"after operation {len(this.history)} on the other allocator, {op}({arg})",
            "an operation on one allocator changed another: each allocator keeps its own state (a free "
            "list or counts kept in a class attribute, a default argument or a module-level variable are "
            "shared by all)",
        )
    a.drain()
    b.drain()


def _aliasing(cls: Callable[..., Any]) -> None:
    """The caller owns the returned lists: changing them changes nothing, later calls do not change them."""
    pair = _Pair(cls, 8, 16, "BlockAllocator(8, 16)")
    pair.step("allocate", 3)
    first = pair.kept[-1][1]  # the learner's own list object
    pair.step("allocate", 0)
    pair.step("allocate", 2)
    second = pair.kept[-1][1]
    pair.step("decref", 0)
    pair.step("release", 0)
    pair.step("allocate", 1)
    pair.check_kept_lists()
    first.append(7)  # the caller grows its own table, and clears another
    second.clear()
    pair.kept = []
    pair.check_state(
        "after the caller appended 7 to the list allocate(3) returned and cleared the one allocate(2) "
        "returned",
        "the returned list must be a new list the caller owns, not the allocator's own list (no aliasing)",
    )
    pair.history.append("(caller changed the returned lists)")
    pair.step("incref", 4)
    pair.drain()
    pair.step("decref", 3)
    pair.step("release", 3)
    pair.drain()


def _large_pool(cls: Callable[..., Any]) -> None:
    """1000 blocks: all of them at once, recycled in a scrambled order, and a block with 300 owners."""
    rng = random.Random(6006)
    pair = _Pair(cls, 1000, 16, "BlockAllocator(1000, 16)")
    pair.step("allocate", 1000, state=False)
    pair.step("allocate", 1, state=False)
    order = list(range(1000))
    rng.shuffle(order)
    for block_id in order[:600]:
        pair.step("decref", block_id, state=False)
        pair.step("release", block_id, state=False)
    pair.check_state(
        "after 600 blocks were released in a scrambled order", "release frees a block", range(1000)
    )
    pair.step("allocate", 250, state=False)
    pair.step("incref", 999, state=False)
    for _ in range(300):
        pair.step("incref", order[700], state=False)
    pair.step("ref_count", 999)
    pair.step("ref_count", 1000)
    pair.step("ref_count", -1000)
    pair.step("allocate", 351)
    pair.drain()
    pair.check_state("at the end", "every block of a large pool counts", ids=range(1000))


def _constructor_errors(cls: Callable[..., Any]) -> None:
    for num_blocks, block_size in ((0, 16), (-3, 16), (8, 0), (8, -1)):
        what = f"BlockAllocator({num_blocks}, {block_size})"
        try:
            cls(num_blocks, block_size)
        except NotImplementedError:
            raise CheckFailed(
                "BlockAllocator is not implemented yet (it raised NotImplementedError)"
            ) from None
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(
                f"{what} must raise ValueError (sizes are ints >= 1), got {type(exc).__name__}: {exc}"
            ) from None
        raise CheckFailed(
            f"{what} must raise ValueError: num_blocks and block_size are both ints >= 1 (a pool of "
            f"{'no blocks' if num_blocks < 1 else 'empty blocks'} cannot hold a token)"
        )


def _scripted(cls: Callable[..., Any]) -> None:
    """The docstring's rules one at a time, on a pool of 4 and a second allocator."""
    pair = _Pair(cls, 4, 16, "a = BlockAllocator(4, 16)")
    for op, arg in (
        ("allocate", 2), ("allocate", 0), ("allocate", 1), ("ref_count", 3), ("incref", 1), ("decref", 0),
        ("release", 0), ("allocate", 3), ("allocate", 1), ("allocate", 1), ("allocate", 1),
        ("decref", 1), ("decref", 1), ("incref", 1), ("decref", 1), ("release", 1),
        ("decref", 1), ("incref", 1), ("release", 1), ("release", 2),
        ("decref", 3), ("release", 3), ("decref", 2), ("release", 2), ("allocate", 3),
        ("ref_count", 4), ("decref", -1),
    ):  # fmt: skip
        pair.step(op, arg)
    other = _Pair(cls, 3, 8, "b = BlockAllocator(3, 8), built after a")
    other.step("allocate", 3)
    pair.check_state(
        "after b.allocate(3)", "allocator b's calls changed a: each allocator keeps its own state"
    )
    pair.drain()


@graded("block_allocator", *REFERENCES)
def block_allocator_visible(cls: Callable[..., Any]) -> None:
    """A scripted walk (FIFO reuse from a non-zero block, idle blocks, the errors) and a short random one."""
    _scripted(cls)
    _random_walk(cls, 6, 4, seed=1, steps=60, label="BlockAllocator(6, 4) in a random walk")
    print("block_allocator: visible tests passed")


@graded("block_allocator", *REFERENCES)
def block_allocator_hidden(cls: Callable[..., Any]) -> None:
    """Random walks on pools of 1 to 37 blocks, two allocators in turn, constructor errors, keyword
    arguments, returned lists the caller changes or keeps, and a pool of 1000 blocks."""
    _constructor_errors(cls)
    pair = _Pair(cls, 3, 2, "BlockAllocator(num_blocks=3, block_size=2)", keywords=True)
    pair.drain()
    for num_blocks, steps, seed in HIDDEN_WALKS:
        _random_walk(cls, num_blocks, 16, seed, steps, label=f"BlockAllocator({num_blocks}, 16)")
    _interleaved(cls, seed=61, steps=300)
    _aliasing(cls)
    _large_pool(cls)
    print("block_allocator: hidden tests passed")
