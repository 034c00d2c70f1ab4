"""Exercises `block_hashes` (chain keys of full blocks) and `prefix_cache` (the hash-chain prefix cache).

`block_hashes` is compared with kvlib's on lengths around and past the block boundaries (empty, one
token short of a block, exact multiples, a trailing partial block), block size 1, list, tuple and
range inputs and repeated blocks; a wrong answer is diagnosed against the classic wrong chains (no
parent key, the partial block hashed, the last full block dropped, a chain started at 0, ...).

`PrefixCache` is graded by replay. A kvlib `BlockManager` runs a seeded workload (prompts sharing
prefixes, appends, forks, frees, reclaims, a pool small enough that allocations evict) on a kvlib
`HashPrefixCache` wrapped in a recorder; every call the manager makes on its cache is written down
with its result and the cache's state after it (a committed lookup followed by its touch is one
`match(prompt)` of the learner's interface, since the manager looks up `prompt[:-1]`). The calls are
then replayed on the learner's cache, comparing every result, `contains` for every block of the pool
and `num_evictable` after every call. Direct tests add what a manager never does: hash collisions
forced by the `hash_fn`, matches of idle blocks (whose recency only eviction shows), a re-inserted
prefix, `evict` asking for too many blocks, two caches used in turn, and every accepted prompt type.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..common import CheckFailed, call, expect
from ..delegation import graded

HASHES_REFERENCES = ("kvlib.paged.prefix.block_hashes",)
# The setup cell's `block_hash` (kvlib's default_block_hash) is what a learner's code must call, so it
# is not listed; every kvlib class that implements matching and eviction is.
CACHE_REFERENCES = (
    "kvlib.paged.prefix.HashPrefixCache",
    "kvlib.paged.prefix.PrefixCache",
    "kvlib.paged.prefix.RadixPrefixCache",
    "kvlib.paged.prefix.make_prefix_cache",
)


# =====================================================================================================
# block_hashes
# =====================================================================================================
def _block_hash(parent: Any, tokens: tuple[int, ...]) -> int:
    from kvlib.paged.prefix import default_block_hash

    return default_block_hash(parent, tokens)


def _chain(blocks: list[tuple[int, ...]], start: Any = None) -> list[int]:
    keys, parent = [], start
    for blk in blocks:
        parent = _block_hash(parent, blk)
        keys.append(parent)
    return keys


def _blocks(tokens: list[int], block_size: int, partial: bool = False) -> list[tuple[int, ...]]:
    stop = len(tokens) if partial else len(tokens) - len(tokens) % block_size
    return [tuple(tokens[i : i + block_size]) for i in range(0, stop, block_size)]


def _wrong_chains(tokens: list[int], block_size: int) -> dict[str, list[int]]:
    """The keys of the classic wrong chains, each with the message that names its mistake."""
    full, every = _blocks(tokens, block_size), _blocks(tokens, block_size, partial=True)
    right = _chain(full)
    return {
        "each key must fold in the parent key, key_i = block_hash(key_{i-1}, block_i): these keys hash "
        "every block with parent None, so the same tokens at two positions get the same key": [
            _block_hash(None, b) for b in full
        ],
        "the trailing partial block got a key: only full blocks are hashed (a partial block is still being "
        "written), len(tokens) // block_size keys": _chain(every),
        "the last full block has no key: when len(tokens) is a multiple of block_size the loop must still "
        "reach the last block (range(0, len(tokens) - block_size + 1, block_size))": right[:-1],
        "the chain must start from key_{-1} = None (the first block's parent key), not 0": _chain(full, 0),
        "key_i must fold in the previous KEY, not the previous block's tokens": [
            _block_hash(full[i - 1] if i else None, b) for i, b in enumerate(full)
        ],
        "key_i must fold in key_{i-1}, not block_hash(None, block_{i-1}) (a key covers every earlier block, "
        "not only the previous one)": [
            _block_hash(_block_hash(None, full[i - 1]) if i else None, b) for i, b in enumerate(full)
        ],
        "the keys are in reverse order: key_0 (the first block's) comes first": right[::-1],
    }


def _call_hashes(fn: Callable[..., Any], tokens: Any, block_size: int, where: str) -> Any:
    kept = list(tokens)
    try:
        out = fn(tokens, block_size)
    except NotImplementedError:
        raise CheckFailed("block_hashes is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except TypeError as exc:
        hint = ""
        if "unhashable" in str(exc):
            hint = ": block_hash needs the block's tokens as a tuple (a list cannot be hashed): tuple(...)"
        elif "concatenate" in str(exc) or "can only" in str(exc):
            hint = f": tokens may be a {type(tokens).__name__}; slice it, do not add lists to it"
        raise CheckFailed(f"{where}: block_hashes raised TypeError: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        raise CheckFailed(f"{where}: block_hashes raised {type(exc).__name__}: {exc}") from None
    expect(
        list(tokens) == kept,
        f"{where}: block_hashes changed its input tokens (now {len(tokens)} of them, were {len(kept)}): the "
        "caller still needs them; slice them (tokens[a:b] is a copy), never pop, append or assign",
    )
    return out


def _compare_hashes(fn: Callable[..., Any], tokens: Any, block_size: int, what: str) -> list[int]:
    """Call the learner's block_hashes and fail, naming the mistake, unless it equals kvlib's."""
    from kvlib.paged.prefix import block_hashes

    as_list = list(tokens)
    where = f"block_hashes({what}, block_size={block_size})"
    got = _call_hashes(fn, tokens, block_size, where)
    want = block_hashes(as_list, block_size)
    lazy = ": a generator (yield) can be read only once; collect the keys in a list"
    expect(
        isinstance(got, list),
        f"{where} must return a list of ints, got {type(got).__name__}"
        + (lazy if hasattr(got, "__next__") else ""),
    )
    bad = next((k for k in got if not isinstance(k, int) or isinstance(k, bool)), None)
    expect(bad is None, f"{where} must return ints (the values block_hash returns), got {bad!r:.60}")
    if got == want:
        return got
    for message, keys in _wrong_chains(as_list, block_size).items():
        if got == keys and keys != want:
            raise CheckFailed(f"{where}: {message}")
    if len(got) > len(want) and got[len(got) - len(want) :] == want:
        raise CheckFailed(
            f"{where} returned {len(got)} keys, {len(got) - len(want)} before the right ones: it keeps keys "
            "from an earlier call (a mutable default argument or a module-level list?); start a new list "
            "in every call"
        )
    if len(got) != len(want):
        raise CheckFailed(
            f"{where} must return one key per full block, {len(as_list)} // {block_size} = {len(want)}, got "
            f"{len(got)}"
        )
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    raise CheckFailed(
        f"{where}: key {first} is wrong (the keys before it are right): key_i = block_hash(key_{{i-1}}, "
        "tuple of the block_size tokens of block i), with key_{-1} = None"
    )


@graded("block_hashes", *HASHES_REFERENCES)
def block_hashes_visible(fn: Callable[..., Any]) -> None:
    """Two partial-block cases, the same block at two positions, and two prompts sharing a prefix."""
    _compare_hashes(fn, list(range(10)), 4, "list(range(10))")
    _compare_hashes(fn, [5, 6, 7], 4, "[5, 6, 7]")
    keys = _compare_hashes(fn, [1, 2, 1, 2, 1], 2, "[1, 2, 1, 2, 1]")
    expect(keys[0] != keys[1], "the same tokens at two positions must get two keys (the parent key differs)")
    a = _compare_hashes(fn, [9, 8, 7, 6, 5, 4, 3], 2, "[9, 8, 7, 6, 5, 4, 3]")
    b = _compare_hashes(fn, [9, 8, 7, 6, 1, 1], 2, "[9, 8, 7, 6, 1, 1]")
    expect(a[:2] == b[:2] and a[2] != b[2], "two prompts sharing 2 blocks must share exactly 2 keys")
    print("block_hashes: visible tests passed")


@graded("block_hashes", *HASHES_REFERENCES)
def block_hashes_hidden(fn: Callable[..., Any]) -> None:
    """Edge lengths, block size 1, every accepted input type, repeated blocks, sizes past the visible ones,
    inputs unchanged, fresh lists, no state between calls."""
    expect(_compare_hashes(fn, [], 4, "[]") == [], "an empty token list has no full block: return []")
    _compare_hashes(fn, [3, 1, 4], 4, "3 tokens")
    _compare_hashes(fn, [3, 1, 4, 1], 4, "exactly one block")
    _compare_hashes(fn, [3, 1, 4, 1, 5, 9, 2, 6], 4, "exactly two blocks")
    _compare_hashes(fn, [7], 1, "one token")
    ones = _compare_hashes(fn, [0] * 6, 1, "[0] * 6")
    expect(len(set(ones)) == 6, "block_hashes([0] * 6, 1): six equal blocks at six positions need six keys")
    _compare_hashes(fn, (4, 4, 4, 4, 4), 2, "a tuple")
    _compare_hashes(fn, range(3, 3 + 17), 4, "range(3, 20)")
    _compare_hashes(fn, range(16), 16, "range(16)")
    rng = random.Random(606)
    for length, block_size in ((17, 4), (33, 16), (100, 3), (257, 16), (511, 32), (64, 5)):
        tokens = [rng.randrange(4) for _ in range(length)]  # few distinct tokens: many repeated blocks
        _compare_hashes(fn, tokens, block_size, f"{length} random tokens")
        _compare_hashes(fn, tuple(tokens), block_size, f"a tuple of {length} random tokens")
    first = _compare_hashes(fn, [1, 2, 3, 4], 2, "[1, 2, 3, 4]")
    kept = list(first)
    _compare_hashes(fn, [1, 2, 3, 4], 2, "[1, 2, 3, 4] (a second call)")
    _compare_hashes(fn, [5, 6, 7, 8], 2, "[5, 6, 7, 8] (after another call)")
    expect(
        first == kept,
        "a list returned by block_hashes changed after later calls: return a new list each call, not one "
        "kept between calls",
    )
    print("block_hashes: hidden tests passed")


# =====================================================================================================
# prefix_cache: recording kvlib's calls
# =====================================================================================================
@dataclass
class _Op:
    """One call on the cache, in the learner's interface, with kvlib's result and state after it."""

    name: str  # insert_block, match, lock, unlock, evict
    args: tuple
    want: Any
    cached: frozenset[int]
    num_evictable: int
    num_idle_leaves: int
    hint: dict[str, Any] = field(default_factory=dict)  # what diagnoses a wrong result

    def shown(self, prompt: Any = None) -> str:
        args = self.args if prompt is None else (prompt,)
        return f"{self.name}({', '.join(repr(a) for a in args)})"


@dataclass
class _Recording:
    title: str
    block_size: int
    num_blocks: int
    hash_fn: Callable[..., int] | None
    ops: list[_Op]


def _recorder_class() -> type:
    """A kvlib HashPrefixCache that writes down every call the BlockManager makes on it."""
    from kvlib.paged.prefix import HashPrefixCache

    class Recorder(HashPrefixCache):
        def __init__(self, block_size: int, hash_fn: Callable[..., int] | None) -> None:
            super().__init__(block_size, hash_fn)
            self.ops: list[_Op] = []
            self.prompt: list[int] = []
            self.pending: list[int] | None = None
            self.no_unlock_time: dict[int, int] = {}  # last use as if unlock were none (a diagnosis)

        def _log(self, name: str, args: tuple, want: Any, **hint: Any) -> None:
            cached = frozenset(self._by_block)
            self.ops.append(_Op(name, args, want, cached, self.num_evictable, len(self._leaves), hint))

        def _lookup(self, tokens: Any) -> list[int]:
            ids = super()._lookup(tokens)
            self.pending = ids
            return ids

        def touch(self, block_ids: Any) -> None:
            assert self.pending == list(block_ids), "the manager touched blocks it did not look up"
            hint = _wrong_matches(self, self.prompt)
            super().touch(block_ids)
            for b in block_ids:
                self.no_unlock_time[b] = self._clock
            self._log("match", (list(self.prompt),), list(block_ids), **hint)
            self.pending = None

        def _insert_block(self, parent: int | None, tokens: tuple, block_id: int) -> bool:
            existing = self._by_block.get(block_id)
            out = super()._insert_block(parent, tokens, block_id)
            if existing is None and block_id in self._by_block:
                self.no_unlock_time[block_id] = self._clock
            self._log("insert_block", (parent, tokens, block_id), out)
            return out

        def lock(self, block_id: int) -> None:
            super().lock(block_id)
            self._log("lock", (block_id,), None)

        def unlock(self, block_id: int) -> None:
            super().unlock(block_id)
            self._log("unlock", (block_id,), None)

        def evict(self, n: int) -> list[int]:
            before = {
                "parents": self.cached_blocks(),
                "locked": self.locked_blocks(),
                "times": dict(self._last_access),
                "no_unlock": dict(self.no_unlock_time),
            }
            out = super().evict(n)
            for b in out:
                self.no_unlock_time.pop(b, None)
            self._log("evict", (n,), list(out), **before)
            return out

    return Recorder


_WHOLE_PROMPT = (
    "it matched blocks of the whole prompt; match prompt[:-1]: the last prompt token is always computed (its "
    "forward pass gives the first output token's logits), so a prompt of exactly k cached blocks reuses k - 1"
)
_KEY_ONLY = (
    "it served a block found by its key alone, whose tokens or parent differ: keys collide, so compare the "
    "entry's tokens and parent too"
)
_NO_PARENT = (
    "it served a block with the right tokens after another parent (the same tokens at another position): "
    "compare the entry's parent too"
)
_FIRST_ONLY = (
    "it looked only at the first entry under the key: several entries can share a key (a collision), so look "
    "through all of them for one with the right tokens and parent"
)


def _wrong_matches(ref: Any, prompt: list[int]) -> dict[str, Any]:
    """What the classic wrong lookups return on kvlib's state: the message of each one that differs."""
    right = ref._lookup(prompt[:-1])
    out: dict[str, Any] = {}

    def walk(tokens: list[int], accept: Callable[[Any, Any, tuple], Any]) -> list[int]:
        parent, ids = None, []
        bs = ref.block_size
        for i in range(len(tokens) // bs):
            blk = tuple(tokens[i * bs : (i + 1) * bs])
            bucket = ref._table.get(ref.hash_fn(parent.key if parent else None, blk), [])
            entry = accept(bucket, parent, blk)
            if entry is None:
                break
            ids.append(entry.block_id)
            parent = entry
        return ids

    variants = {
        _WHOLE_PROMPT: ref._lookup(prompt),
        _KEY_ONLY: walk(prompt[:-1], lambda bucket, parent, blk: bucket[0] if bucket else None),
        _NO_PARENT: walk(
            prompt[:-1], lambda bucket, parent, blk: next((e for e in bucket if e.tokens == blk), None)
        ),
        _FIRST_ONLY: walk(
            prompt[:-1],
            lambda bucket, parent, blk: (
                bucket[0] if bucket and bucket[0].parent is parent and bucket[0].tokens == blk else None
            ),
        ),
    }
    for message, ids in variants.items():
        if ids != right:
            out[message] = ids
    return out


def _workload(seed: int, num_blocks: int, block_size: int, vocab: int, steps: int, rec: Any) -> None:
    """Drive a kvlib BlockManager holding ``rec`` with a seeded mix of admissions, appends, forks, frees
    and reclaims; the pool is small, so admissions and appends evict idle cached blocks."""
    from kvlib.paged import BlockManager, OutOfBlocks

    rng = random.Random(seed)
    mgr = BlockManager(num_blocks, block_size, prefix_cache=rec)
    rand = lambda n: [rng.randrange(vocab) for _ in range(n)]  # noqa: E731
    systems = [rand(rng.randint(1, 3) * block_size + rng.randrange(block_size)) for _ in range(3)]
    history: list[list[int]] = []  # tokens of finished sequences (the next turn of a chat resends them)
    live: list[int] = []
    next_id = 0
    for _ in range(steps):
        r = rng.random()
        if r < 0.3 or not live:
            kind = rng.random()
            if kind < 0.4 and history:  # a next turn: an earlier conversation plus new tokens
                prompt = rng.choice(history) + rand(rng.randint(0, 2 * block_size))
            elif kind < 0.6:  # a prompt of exactly k full blocks of a system prompt
                base = rng.choice(systems)
                prompt = base[: max(1, rng.randint(1, len(base) // block_size)) * block_size]
            else:
                base = rng.choice(systems)
                prompt = base[: rng.randint(0, len(base))] + rand(rng.randint(1, 2 * block_size))
            prompt = prompt or rand(1)
            rec.prompt = prompt
            try:
                mgr.allocate(next_id, tuple(prompt) if rng.random() < 0.5 else prompt)
            except OutOfBlocks:
                continue
            live.append(next_id)
            next_id += 1
        elif r < 0.6:
            try:
                mgr.append(rng.choice(live), rng.randrange(vocab))
            except OutOfBlocks:
                pass
        elif r < 0.68:
            try:
                mgr.fork(rng.choice(live), next_id)
            except OutOfBlocks:
                continue
            live.append(next_id)
            next_id += 1
        elif r < 0.9 or len(live) > 6:
            seq = live.pop(rng.randrange(len(live)))
            history.append(list(mgr.seqs[seq].tokens))
            mgr.free(seq)
        elif r < 0.95:
            idle = rec.num_evictable
            if idle:
                mgr.reclaim(rng.randint(1, idle))
        else:
            rec.prompt = rng.choice(history) if history else rand(3)
            mgr.can_allocate(rec.prompt)  # a lookup that is not committed: no match for the learner
    for seq in live:  # the end of the run: everything goes idle, then is evicted
        mgr.free(seq)
    if rec.num_evictable:
        mgr.reclaim(rec.num_evictable)


def _record(title: str, seed: int, num_blocks: int, block_size: int, vocab: int, steps: int,
            hash_fn: Callable[..., int] | None = None) -> _Recording:  # fmt: skip
    rec = _recorder_class()(block_size, hash_fn)
    _workload(seed, num_blocks, block_size, vocab, steps, rec)
    return _Recording(title, block_size, num_blocks, hash_fn, rec.ops)


# =====================================================================================================
# prefix_cache: replaying on the learner's cache
# =====================================================================================================
def _new_cache(cls: Any, block_size: int, hash_fn: Callable[..., int] | None, what: str) -> Any:
    if hash_fn is None:
        cache = call(cls, block_size, what=f"PrefixCache({block_size})")
    else:
        cache = call(cls, block_size, hash_fn=hash_fn, what=f"PrefixCache({block_size}, hash_fn=...)")
    n = _num_evictable(cache, f"a new PrefixCache ({what})")
    stale = [b for b in range(4) if call(cache.contains, b, what="PrefixCache.contains")]
    expect(
        not stale and n == 0,
        f"a new PrefixCache ({what}) already contains block(s) {stale} (num_evictable {n}): two instances "
        "share state; keep the tables on self, created in __init__, not in class attributes or module-level "
        "dicts",
    )
    return cache


def _num_evictable(cache: Any, where: str) -> int:
    n = call(lambda: cache.num_evictable, what="PrefixCache.num_evictable")
    expect(
        not callable(n),
        f"{where}: num_evictable must be a property (cache.num_evictable is an int): put @property above it",
    )
    expect(
        isinstance(n, int) and not isinstance(n, bool),
        f"{where}: num_evictable must be an int, got {type(n).__name__} {n!r:.40}",
    )
    return n


class _Replay:
    """Replays one recording on one learner cache, one call per ``step()``."""

    def __init__(self, cls: Any, recording: _Recording, seed: int, hash_fn: Callable[..., int] | None = None):
        self.rec = recording
        self.fn = recording.hash_fn if hash_fn is None else hash_fn
        self.cache = _new_cache(cls, recording.block_size, self.fn, recording.title)
        self.rng = random.Random(seed)
        self.returned: list[tuple[str, list, list]] = []
        self.i = 0

    def where(self, op: _Op, prompt: Any = None) -> str:
        recent = "; ".join(o.shown() for o in self.rec.ops[max(0, self.i - 3) : self.i])
        return f"{self.rec.title}, operation {self.i + 1} of {len(self.rec.ops)}: {op.shown(prompt)}" + (
            f" (after {recent})" if recent else ""
        )

    def done(self) -> bool:
        return self.i >= len(self.rec.ops)

    def step(self) -> None:
        op = self.rec.ops[self.i]
        cache = self.cache
        prompt = None
        try:
            if op.name == "match":
                tokens = op.args[0]
                prompt = tokens if self.rng.random() < 0.5 else tuple(tokens)
                kept = list(prompt)
                got = cache.match(prompt)
                if list(prompt) != kept:
                    raise CheckFailed(
                        f"{self.where(op)}: match changed the prompt it was given (now {list(prompt)!r:.60}):"
                        " the caller still needs it; slice it (prompt[:-1] is a copy), never pop or assign"
                    )
            elif op.name == "insert_block":
                got = cache.insert_block(*op.args)
            elif op.name == "lock":
                got = cache.lock(*op.args)
            elif op.name == "unlock":
                got = cache.unlock(*op.args)
            else:
                got = cache.evict(*op.args)
        except NotImplementedError:
            raise CheckFailed(f"PrefixCache.{op.name} is not implemented yet (NotImplementedError)") from None
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
            raise CheckFailed(f"{self.where(op, prompt)} raised {type(exc).__name__}: {exc}") from None
        self.compare(op, got, prompt)
        self.i += 1

    def compare(self, op: _Op, got: Any, prompt: Any) -> None:
        where = self.where(op, prompt)
        if op.name in ("match", "evict"):
            expect(
                isinstance(got, list), f"{where} must return a list of block ids, not {type(got).__name__}"
            )
            if got != op.want:
                raise CheckFailed(f"{where} returned {got}, expected {op.want}: " + _explain(op, got))
            self.returned.append((where, got, list(got)))
        elif op.name == "insert_block":
            expect(isinstance(got, bool), f"{where} must return True or False, got {got!r:.40}")
            if got != op.want:
                raise CheckFailed(f"{where} returned {got}, expected {op.want}: " + _explain_insert(op, got))
        contains = self.cache.contains
        cached = {b for b in range(self.rec.num_blocks) if contains(b)}
        if cached != op.cached:
            raise CheckFailed(f"after {where}: " + _explain_cached(op, cached))
        n = _num_evictable(self.cache, f"after {where}")
        if n != op.num_evictable:
            leaves = " (that is the number of idle blocks without a cached child: every idle block counts)"
            raise CheckFailed(
                f"after {where}: num_evictable is {n}, expected {op.num_evictable}, the number of idle "
                "cached blocks (unlock makes a block idle, lock, evict and a new insert_block do not add one)"
                + (leaves if n == op.num_idle_leaves != op.num_evictable else "")
            )

    def check_returned(self) -> None:
        for where, got, copy in self.returned:
            expect(
                got == copy,
                f"the list returned by {where} changed after later calls (now {got}): return a new list, not "
                "one the cache keeps and changes",
            )


def _explain(op: _Op, got: list[int]) -> str:
    if op.name == "match":
        for message, ids in op.hint.items():
            if got == ids:
                return message
        if len(got) > len(op.want):
            return "it matched more blocks than are cached for this prefix (only full blocks of prompt[:-1])"
        return "it matched fewer blocks than are cached for this prefix (walk block by block from the first)"
    parents, locked, times = op.hint["parents"], op.hint["locked"], op.hint["times"]
    j = next((k for k, (a, b) in enumerate(zip(got, op.want)) if a != b), min(len(got), len(op.want)))
    if len(got) != len(op.want):
        return f"evict(n) must return exactly n = {op.args[0]} block ids"
    gone = set(got[:j])
    block = got[j]
    children = [b for b, p in parents.items() if p == block and b not in gone]
    if block not in parents:
        return f"block {block} is not cached"
    if block in locked:
        return f"block {block} is locked (in use): only idle blocks may be evicted"
    if children:
        return (
            f"block {block} went before its cached child {children[0]}: only a block that is nobody's parent "
            "may go (a lookup walks from the first block, so a child without its parent could never be found)"
        )
    if op.hint["no_unlock"].get(block, -1) < op.hint["no_unlock"].get(op.want[j], -1):
        return (
            f"block {op.want[j]} was used less recently than block {block}, whose last use was an unlock: "
            "unlock counts as a use (record the time in unlock)"
        )
    return (
        f"block {op.want[j]} was used less recently (at time {times[op.want[j]]} against {times[block]} in "
        "a clock that advances once per operation); evict the least recently used idle leaf first"
    )


def _explain_insert(op: _Op, got: bool) -> str:
    if op.want:
        return "a new block, or the block that already holds this prefix, returns True"
    return (
        "this prefix (parent and tokens) is already cached under another block: return False and change "
        "nothing"
    )


def _explain_cached(op: _Op, cached: set[int]) -> str:
    extra, missing = sorted(cached - op.cached), sorted(op.cached - cached)
    if op.name == "insert_block" and extra == [op.args[2]] and not op.want:
        return (
            f"contains({extra[0]}) is True, but its prefix was already cached under another block: "
            "insert_block must change nothing then (not replace the entry) and return False"
        )
    if op.name == "evict" and extra:
        return f"contains({extra[0]}) is still True, but evict returned it: unregister every evicted block"
    if op.name == "insert_block" and missing == [op.args[2]]:
        return f"contains({missing[0]}) must be True once insert_block registered it"
    if extra:
        return f"contains({extra[0]}) is True, but block {extra[0]} is not cached"
    return f"contains({missing[0]}) is False, but block {missing[0]} is cached"


def _replay(cls: Any, recording: _Recording, seed: int) -> None:
    run = _Replay(cls, recording, seed)
    while not run.done():
        run.step()
    run.check_returned()


def _replay_two(cls: Any, first: _Recording, second: _Recording) -> None:
    """Two caches replayed in turn, one call each: state kept anywhere but on self shows up."""
    runs = [_Replay(cls, first, 1), _Replay(cls, second, 2)]
    while not all(r.done() for r in runs):
        for which, run in enumerate(runs):
            if run.done():
                continue
            try:
                run.step()
            except CheckFailed as exc:
                raise CheckFailed(
                    f"with two PrefixCache objects used in turn, cache {which + 1} failed: {exc} (do the two "
                    "instances share state? keep it on self, created in __init__)"
                ) from None


# =====================================================================================================
# prefix_cache: direct tests
# =====================================================================================================
class _Direct:
    """Calls on one learner cache with the failure message naming the test."""

    def __init__(self, cls: Any, block_size: int, title: str, hash_fn: Callable[..., int] | None = None):
        self.title = title
        self.cache = _new_cache(cls, block_size, hash_fn, title)
        self.log: list[str] = []

    def do(self, name: str, *args: Any) -> Any:
        self.log.append(f"{name}({', '.join(repr(a) for a in args)})")
        return call(getattr(self.cache, name), *args, what=f"{self.title}: {self.log[-1]}")

    def fail(self, message: str) -> None:
        raise CheckFailed(f"{self.title}, after {'; '.join(self.log)}: {message}")

    def insert(self, parent: int | None, tokens: tuple, block_id: int, want: bool = True) -> None:
        got = self.do("insert_block", parent, tokens, block_id)
        if got is not want:
            self.fail(f"insert_block returned {got!r}, expected {want}")

    def match(self, prompt: Any, want: list[int], why: str, wrong: dict[tuple, str] | None = None) -> None:
        """``wrong`` maps a wrong result to the mistake that gives it."""
        kept = list(prompt)
        got = self.do("match", prompt)
        if list(prompt) != kept:
            self.fail("match changed the prompt it was given: slice it (prompt[:-1] is a copy), never pop")
        if got != want:
            known = (wrong or {}).get(tuple(got)) if isinstance(got, list) else None
            self.fail(f"match returned {got!r}, expected {want}: {known or why}")

    def evict(self, n: int, want: list[int], why: str) -> None:
        got = self.do("evict", n)
        if got != want:
            self.fail(f"evict returned {got!r}, expected {want}: {why}")

    def state(self, blocks: range, cached: set[int], idle: int, why: str) -> None:
        contains = self.cache.contains
        now = {b for b in blocks if call(contains, b, what=f"{self.title}: contains({b})")}
        n = _num_evictable(self.cache, self.title)
        if now != cached or n != idle:
            got, want = f"{sorted(now)} and num_evictable {n}", f"{sorted(cached)} and {idle}"
            self.fail(f"cached blocks {got}, expected {want}: {why}")


def _direct_prompt_end(cls: Any) -> None:
    """prompt[:-1], full blocks only, every accepted prompt type."""
    t = _Direct(cls, 2, "the chain (1, 2) -> (3, 4) cached in blocks 5 -> 6")
    t.insert(None, (1, 2), 5)
    t.insert(5, (3, 4), 6)
    for block, want in ((5, True), (6, True), (0, False)):
        got = t.do("contains", block)
        if got is not want:
            t.fail(f"contains({block}) must be {want} (a bool), got {got!r:.40}")
    t.match([1, 2, 3, 4], [5], "a prompt of exactly 2 cached blocks reuses 1: match prompt[:-1] (the last "
            "prompt token is always computed, for the first output token's logits)")  # fmt: skip
    t.match([1, 2, 3, 4, 7], [5, 6], "both blocks are cached and the last token (7) is past them")
    t.match([1, 2, 3], [5], "the trailing partial block never matches (only full blocks of prompt[:-1])")
    t.match((1, 2, 3, 4, 0, 0), [5, 6], "a tuple prompt is accepted")
    t.match(range(1, 6), [5, 6], "a range prompt is accepted (range(1, 6) is 1, 2, 3, 4, 5)")
    t.match([1, 2], [], "prompt[:-1] = [1] has no full block")
    t.match([1], [], "a one-token prompt has nothing to match")
    t.match([3, 4, 1, 2, 0], [], "matching starts at the first block: (3, 4) is cached only after (1, 2)")
    t.match([1, 2, 4, 3, 0], [5], "the second block differs (4, 3): the match stops after the first")


def _direct_collisions(cls: Any) -> None:
    """Keys that collide: the tokens and the parent must be compared, and a bucket searched to the end."""
    for title, fn in (
        ("with hash_fn = lambda parent_key, tokens: 0 (every key collides)", lambda p, t: 0),
        ("with hash_fn = lambda parent_key, tokens: sum(tokens) % 2 (a hash that ignores the parent)",
         lambda p, t: sum(t) % 2),
    ):  # fmt: skip
        t = _Direct(cls, 2, title, fn)
        t.insert(None, (1, 2), 0)
        t.insert(0, (3, 4), 1)
        t.insert(None, (3, 4), 2)  # the same tokens as block 1, at position 0
        t.insert(2, (3, 4), 3)
        t.match([3, 4, 9], [2], "(3, 4) at position 0 is block 2",
                {(0,): _KEY_ONLY, (1,): _NO_PARENT, (): _FIRST_ONLY})  # fmt: skip
        t.match([1, 2, 3, 4, 9], [0, 1], "block 1 holds (3, 4) after block 0")
        t.match([3, 4, 3, 4, 9], [2, 3], "block 3 holds (3, 4) after block 2",
                {(0, 0): _KEY_ONLY, (1, 1): _NO_PARENT, (): _FIRST_ONLY})  # fmt: skip
        t.match([1, 2, 1, 2, 9], [0], "no block holds (1, 2) after block 0", {(0, 0): _NO_PARENT})
        t.match([5, 6, 9], [], "nothing holds (5, 6), whatever its key")
        t.insert(None, (2, 1), 4)  # collides with (1, 2) under both hashes
        t.match([2, 1, 3, 4, 0], [4], "(2, 1) is block 4; (3, 4) is cached only after blocks 0 and 2")


def _keyed_hash() -> tuple[Callable[..., int], list[str]]:
    """A hash_fn that checks how it is called: tuples of the block's tokens, and a parent key it returned."""
    returned: set[int] = set()
    problems: list[str] = []

    def hash_fn(parent_key: Any, tokens: Any) -> int:
        if not isinstance(tokens, tuple):
            problems.append(f"hash_fn was called with tokens as a {type(tokens).__name__}: pass a tuple")
        if parent_key is not None and parent_key not in returned:
            problems.append(
                f"hash_fn was called with parent_key={parent_key!r}, which hash_fn never returned: pass the "
                "parent block's key (what hash_fn returned for it), not its block id"
            )
        key = 10**9 + hash((parent_key, tuple(tokens))) % 10**6
        returned.add(key)
        return key

    return hash_fn, problems


def _direct_keys(cls: Any) -> None:
    fn, problems = _keyed_hash()
    t = _Direct(cls, 3, "with a hash_fn that checks its arguments", fn)
    t.insert(None, (1, 2, 3), 0)
    t.insert(0, (4, 5, 6), 1)
    t.insert(1, (7, 8, 9), 2)
    t.match([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], [0, 1, 2], "the three blocks are cached in a chain")
    t.match([1, 2, 3, 4, 5, 6, 0], [0, 1], "")
    if problems:
        t.fail(problems[0] + " (keys: hash_fn(parent_key, tokens_tuple), parent_key None for a first block)")


def _direct_insert_existing(cls: Any) -> None:
    """An already cached prefix: True under the same block, False under another, and nothing changes."""
    t = _Direct(cls, 2, "blocks 0 = (1, 2) and 1 = (3, 4) cached first, both unlocked (0 first)")
    t.insert(None, (1, 2), 0)
    t.insert(None, (3, 4), 1)
    t.do("unlock", 0)
    t.do("unlock", 1)
    t.insert(None, (1, 2), 0, True)
    t.insert(None, (1, 2), 7, False)
    t.state(range(9), {0, 1}, 2, "an insert_block of a cached prefix changes nothing (block 7 stays out)")
    t.evict(1, [0], "block 0 was unlocked first; an insert_block of a prefix that is already cached must "
            "change nothing, not even the block's last-use time")  # fmt: skip
    t.state(range(9), {1}, 1, "evict(1) removes one block")


def _direct_recency(cls: Any) -> None:
    """match stamps the matched blocks; unlock stamps; leaves go first (a parent stamped with its child)."""
    t = _Direct(cls, 2, "a chain 0 = (1, 2) -> 1 = (3, 4) and a block 2 = (5, 6), unlocked 1, 0, 2")
    t.insert(None, (1, 2), 0)
    t.insert(0, (3, 4), 1)
    t.insert(None, (5, 6), 2)
    for b in (1, 0, 2):
        t.do("unlock", b)
    t.state(range(4), {0, 1, 2}, 3, "unlocked blocks stay cached and are idle")
    t.match([1, 2, 3, 4, 0], [0, 1], "idle blocks are matched too")
    t.evict(1, [2], "block 2 is now the least recently used: the blocks a match returns count as used now")
    t.evict(2, [1, 0], "blocks 0 and 1 were last used by the same match: the child (deeper) goes first, "
            "since a parent may not go before its cached child")  # fmt: skip
    t.state(range(4), set(), 0, "every block was evicted")

    t = _Direct(cls, 2, "blocks 0 = (1, 2), 1 = (3, 4), 2 = (5, 6) inserted in this order, unlocked 1, 2, 0")
    for b, tokens in enumerate(((1, 2), (3, 4), (5, 6))):
        t.insert(None, tokens, b)
    for b in (1, 2, 0):
        t.do("unlock", b)
    t.evict(2, [1, 2], "unlock counts as a use: block 0 was unlocked last")
    t.do("lock", 0)
    t.state(range(4), {0}, 0, "a locked block is not idle")
    t.do("unlock", 0)
    t.evict(1, [0], "block 0 is idle again")


def _direct_evict_errors(cls: Any) -> None:
    t = _Direct(cls, 2, "blocks 0 -> 1 and 2 cached, 0 and 1 locked, 2 idle")
    t.insert(None, (1, 2), 0)
    t.insert(0, (3, 4), 1)
    t.insert(None, (5, 6), 2)
    t.do("unlock", 2)
    t.evict(0, [], "evict(0) evicts nothing")
    t.evict(1, [2], "blocks 0 and 1 are locked: only block 2 is idle")
    t.insert(None, (7, 8), 3)
    t.do("unlock", 3)
    t.do("unlock", 1)
    try:
        got = t.cache.evict(3)
    except ValueError:
        pass
    except NotImplementedError:
        raise CheckFailed("PrefixCache.evict is not implemented yet (NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - the wrong exception is feedback
        t.fail(f"evict(3) with 2 idle blocks must raise ValueError, it raised {type(exc).__name__}: {exc}")
    else:
        t.fail(f"evict(3) with only 2 idle blocks must raise ValueError, it returned {got!r}")
    t.log.append("evict(3) (ValueError)")
    t.state(range(5), {0, 1, 3}, 2, "an evict that raises ValueError must evict nothing: check that n blocks "
            "are idle before removing any")  # fmt: skip
    t.evict(2, [3, 1], "block 3 was unlocked before block 1")


_REPLAY_SUM = (
    "a replay of a BlockManager (block_size 2, 16 blocks, hash_fn = sum(tokens) % 3, which ignores the "
    "parent)"
)
_REPLAY_ZERO = "a replay of a BlockManager (block_size 1, 12 blocks, hash_fn = 0 for every block)"


def _recordings(visible: bool) -> list[_Recording]:
    if visible:
        return [_record("a replay of a BlockManager (block_size 2, 12 blocks)", 6, 12, 2, 3, 60)]
    return [
        _record("a replay of a BlockManager (block_size 4, 24 blocks)", 61, 24, 4, 3, 700),
        _record(_REPLAY_SUM, 62, 16, 2, 3, 600, lambda p, t: sum(t) % 3),
        _record(_REPLAY_ZERO, 63, 12, 1, 3, 400, lambda p, t: 0),
        _record("a replay of a BlockManager (block_size 3, 20 blocks)", 64, 20, 3, 2, 600),
    ]


@graded("prefix_cache", *CACHE_REFERENCES)
def prefix_cache_visible(cls: Any) -> None:
    """prompt[:-1] and full blocks only, collisions, and a short BlockManager replay."""
    _direct_prompt_end(cls)
    _direct_collisions(cls)
    for recording in _recordings(visible=True):
        _replay(cls, recording, 0)
    print("prefix_cache: visible tests passed")


@graded("prefix_cache", *CACHE_REFERENCES)
def prefix_cache_hidden(cls: Any) -> None:
    """Recency and eviction order, re-inserted prefixes, evict errors, hash_fn's arguments, long replays
    with colliding hashes and block size 1, two caches in turn, returned lists not aliased."""
    _direct_insert_existing(cls)
    _direct_recency(cls)
    _direct_evict_errors(cls)
    _direct_keys(cls)
    recordings = _recordings(visible=False)
    for seed, recording in enumerate(recordings[:2]):
        _replay(cls, recording, seed)
    _replay_two(cls, recordings[2], recordings[3])
    fn, problems = _keyed_hash()
    run = _Replay(cls, recordings[0], 9, hash_fn=fn)
    while not run.done():
        run.step()
    expect(not problems, f"{recordings[0].title}: " + (problems[0] if problems else ""))
    print("prefix_cache: hidden tests passed")
