"""Allocator models: how one request stream's KV memory is reserved, grown and released.

Three ways to hold the KV cache of the requests running at once, in a budget of token slots:

- contiguous, max reservation: each request reserves ``max_len`` slots in one contiguous range
  (first-fit in a linear arena, so holes between ranges are external fragmentation);
- contiguous, oracle: reserves exactly ``prompt + output`` slots (knows the output length);
- paged with block size ``B``: ``ceil(n / B)`` blocks for ``n`` live tokens, one block at a time.

Both classes answer the same calls, one request id at a time, which is all the scheduler in
:mod:`kvlib.paged.simulate` uses: ``check_fits`` (could it ever run alone?), ``admit`` (take memory
for its first tokens), ``grow`` (room for one more token, False when there is none), ``release``,
and the counts ``reserved``, ``free`` and ``slack`` (a live request's reserved slots that hold no
token: kept for its future tokens, or never to be used). They count slots; no KV tensor is stored.
"""

from __future__ import annotations

from kvlib.paged.workload import Request
from kvlib.validate import describe, require_int

__all__ = ["ContiguousAllocator", "PagedAllocator", "Allocator"]


class ContiguousAllocator:
    """One contiguous range per request in a linear arena of ``budget`` slots (first fit).

    ``policy="max"`` reserves ``max_len`` slots (what a system that cannot grow a request's
    buffer must do); ``policy="oracle"`` reserves exactly ``prompt + output``."""

    def __init__(self, budget: int, policy: str = "max", max_len: int = 2048) -> None:
        if policy not in ("max", "oracle"):
            raise ValueError(f"policy must be 'max' or 'oracle', got {describe(policy)}")
        budget = require_int("budget", budget, minimum=1)
        max_len = require_int("max_len", max_len, minimum=1)
        self.budget, self.policy, self.max_len = budget, policy, max_len
        self.name = f"contiguous ({'max reservation' if policy == 'max' else 'oracle'})"
        self.block_size: int | None = None
        self.holes: list[tuple[int, int]] = [(0, budget)]  # sorted (start, length)
        self.ranges: dict[int, tuple[int, int]] = {}

    def need(self, req: Request) -> int:
        return self.max_len if self.policy == "max" else req.total_len

    def check_fits(self, rid: int, req: Request) -> None:
        """Raise ValueError if request ``rid`` could not run even alone in the arena."""
        what = f"request {rid} ({req.prompt_len} + {req.output_len} = {req.total_len} tokens)"
        if self.policy == "max" and req.total_len > self.max_len:
            raise ValueError(f"{what} can never fit: it is longer than max_len {self.max_len}")
        if self.need(req) > self.budget:
            raise ValueError(
                f"{what} can never fit: it reserves {self.need(req)} slots but the arena has a "
                f"budget of {self.budget} slots"
            )

    def admit(self, rid: int, req: Request, num_tokens: int | None = None) -> bool:
        """Reserve the request's whole range (its size does not depend on ``num_tokens``)."""
        size = self.need(req)
        for i, (start, length) in enumerate(self.holes):
            if length >= size:
                self.ranges[rid] = (start, size)
                if length == size:
                    del self.holes[i]
                else:
                    self.holes[i] = (start + size, length - size)
                return True
        return False

    def grow(self, rid: int, new_len: int) -> bool:
        if new_len > self.ranges[rid][1]:
            raise ValueError(
                f"new_len {new_len} outgrows request {rid}'s reservation of {self.ranges[rid][1]}"
            )
        return True

    def release(self, rid: int) -> None:
        start, size = self.ranges.pop(rid)
        self.holes.append((start, size))
        self.holes.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self.holes:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self.holes = merged

    def holding(self) -> str:
        """What the arena holds now, in words ("" when empty): simulate_stream needs an empty one."""
        if not self.ranges:
            return ""
        return f"{len(self.ranges)} reserved range(s) (request ids {sorted(self.ranges)[:8]})"

    def reserved(self) -> int:
        return sum(size for _, size in self.ranges.values())

    def free(self) -> int:
        return self.budget - self.reserved()

    def slack(self, req: Request, live: int) -> tuple[int, int]:
        """(slots kept for this request's future tokens, slots it will never use)."""
        return req.total_len - live, self.need(req) - req.total_len


class PagedAllocator:
    """``budget // block_size`` blocks; a request with ``n`` live tokens holds ``ceil(n / B)``."""

    def __init__(self, budget: int, block_size: int) -> None:
        budget = require_int("budget", budget, minimum=1)
        block_size = require_int("block_size", block_size, minimum=1)
        if budget < block_size:  # zero blocks: no request could ever run
            raise ValueError(f"budget must hold at least one block of block_size {block_size}, got {budget}")
        self.block_size = block_size
        self.name = f"paged (block {block_size})"
        self.num_blocks = budget // block_size
        self.free_blocks = self.num_blocks
        self.held: dict[int, int] = {}

    def check_fits(self, rid: int, req: Request) -> None:
        """Raise ValueError if request ``rid`` could not reach its full length even alone."""
        need = -(-req.total_len // self.block_size)
        if need > self.num_blocks:
            raise ValueError(
                f"request {rid} ({req.prompt_len} + {req.output_len} = {req.total_len} tokens, "
                f"{need} blocks of {self.block_size}) can never fit the pool of {self.num_blocks} blocks "
                f"({self.num_blocks * self.block_size} tokens)"
            )

    def admit(self, rid: int, req: Request, num_tokens: int | None = None) -> bool:
        """Take blocks for ``num_tokens`` live tokens (default: the prompt + its first generated
        token; a preempted request comes back with the tokens it had, re-prefilled, + 1)."""
        if num_tokens is None:
            num_tokens = req.prompt_len + 1
        n = -(-num_tokens // self.block_size)
        if n > self.free_blocks:
            return False
        self.free_blocks -= n
        self.held[rid] = n
        return True

    def grow(self, rid: int, new_len: int) -> bool:
        need = max(0, -(-new_len // self.block_size) - self.held[rid])  # blocks to add; never shrinks
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        self.held[rid] += need
        return True

    def release(self, rid: int) -> None:
        self.free_blocks += self.held.pop(rid)

    def holding(self) -> str:
        """What the pool holds now, in words ("" when empty): simulate_stream needs an empty one."""
        if self.free_blocks == self.num_blocks:
            return ""
        used = self.num_blocks - self.free_blocks
        return f"{used} of {self.num_blocks} blocks for request ids {sorted(self.held)[:8]}"

    def reserved(self) -> int:
        return (self.num_blocks - self.free_blocks) * self.block_size

    def free(self) -> int:
        return self.free_blocks * self.block_size

    def slack(self, req: Request, live: int) -> tuple[int, int]:
        return 0, -(-live // self.block_size) * self.block_size - live


Allocator = ContiguousAllocator | PagedAllocator
