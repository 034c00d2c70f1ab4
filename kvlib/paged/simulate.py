"""Fragmentation and capacity simulator: how much KV memory holds real tokens under each allocator.

Workloads
---------
*Mixed chat stream* (:func:`chat_workload`). Prompt and output lengths are drawn from log-normal
distributions, clipped to the context window. We chose the log-normal because published
length distributions of chat traffic have its shape: most requests are short, a long right tail
of long ones, a mode well below the mean. This holds for the ShareGPT conversations used by
the vLLM paper (Kwon et al., SOSP 2023, whose length histograms are right-skewed with a long tail),
for LMSYS-Chat-1M (Zheng et al., 2023) and for the production traces Microsoft released with the
Splitwise paper (Patel et al., ISCA 2024), where conversation prompts and outputs are also
heavy-tailed. The medians and spreads below are our own round numbers in the range those sources
show (prompts of a few hundred tokens, outputs of a few hundred tokens), not fitted values:
``prompt ~ LogNormal(ln 200, 1.0)`` (median 200, mean ~330) and ``output ~ LogNormal(ln 250, 0.8)``
(median 250, mean ~345), with ``prompt + output <= max_len`` (2048).

*Shared system prompt* (:func:`shared_prefix_savings`): ``N`` groups of ``K`` prompts; the prompts
of one group start with the same ``L``-token prefix followed by a distinct ``Q``-token question.
With prefix caching over full blocks of ``B`` tokens, each group stores its ``floor(L/B)`` full
prefix blocks once instead of ``K`` times, so the share of KV memory saved is

    saving = (K - 1) * floor(L / B) * B / (K * (L + Q)).

*Parallel sampling and beam search* (:func:`parallel_sampling_savings`, :func:`beam_search_savings`):
``n`` samples of one prompt share the prompt's blocks (fork, then copy-on-write of the last partial
block); ``k`` beams share their common history. The vLLM paper reports 6.1-9.8% saving for
parallel sampling and 37.6-55.2% for beam search on Alpaca-style prompts, and 16.2-30.5% and
44.3-66.3% on ShareGPT. Our beam search runs on a synthetic language model (random next-token
distributions), so its saving shows the mechanism in kind, not the paper's exact figure.

Allocators compared on one stream
---------------------------------
- contiguous, max reservation: each request reserves ``max_len`` slots in one contiguous range
  (first-fit in a linear arena, so holes between ranges are external fragmentation);
- contiguous, oracle: reserves exactly ``prompt + output`` slots (knows the output length);
- paged with block size ``B``: ``ceil(n / B)`` blocks for ``n`` live tokens, one block at a time.

The scheduler is the same for all: first-come-first-served admission while memory allows,
one decode step per running request per step, a finished request frees its memory, and a paged
request that cannot grow preempts the latest admitted request (possibly itself). Preemption is
vLLM's *recompute*: the victim frees all its blocks and waits at the head of the queue, keeping
the tokens it has generated; readmitted, it re-prefills prompt + generated tokens (``n`` in all,
so it needs ``ceil((n + 1) / B)`` blocks, the extra token being the next one it generates) and
carries on from there. Every request must fit the memory on its own (``ceil(total / B)`` blocks
paged; its reservation contiguous), else :func:`simulate_stream` raises ValueError up front.

Metrics (all time-averaged over the steps of the run)
-----------------------------------------------------
- token-state utilization: live tokens / reserved slots (the share of reserved KV memory that
  holds real tokens); the rest of the reservation splits into *reservation* (slots held for this
  request's future tokens) and *internal fragmentation* (slots it will never use);
- internal fragmentation per live sequence against its bound ``B - 1`` (paged);
- external fragmentation: free slots that could not serve the waiting request (contiguous);
- concurrency: mean and max running requests under the fixed budget.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kvlib.paged.manager import BlockManager
from kvlib.validate import describe, require_int, require_number

__all__ = [
    "Request",
    "chat_workload",
    "ContiguousAllocator",
    "PagedAllocator",
    "StreamResult",
    "simulate_stream",
    "compare_allocators",
    "SharingResult",
    "analytic_prefix_saving",
    "block_waste",
    "shared_prefix_savings",
    "parallel_sampling_savings",
    "beam_search_savings",
    "PAPER_RANGES",
    "paper_range_verdict",
    "MAX_LENGTH_SIGMA",
    "WORKLOADS",
]


def _require_requests(requests: Any) -> list[Request]:
    """A non-empty sequence of :class:`Request` (a bare tuple of lengths is a common slip)."""
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise TypeError(f"requests must be a non-empty list of Request, got {describe(requests)}")
    if not requests:
        raise ValueError("requests must be a non-empty list of Request, got an empty one")
    for i, req in enumerate(requests):
        if not isinstance(req, Request):
            raise TypeError(f"requests[{i}] must be a Request, got {describe(req)}")
    return list(requests)


# savings reported by the vLLM paper (section 6.3), as fractions
PAPER_RANGES = {
    "parallel_alpaca": (0.061, 0.098),
    "beam_alpaca": (0.376, 0.552),
    "parallel_sharegpt": (0.162, 0.305),
    "beam_sharegpt": (0.443, 0.663),
}


def paper_range_verdict(saving: float, key: str) -> str:
    """Where a measured saving falls against the paper's range ``PAPER_RANGES[key]``:
    ``"in range"``, ``"below"`` or ``"above"``.

    The paper's range spans its sweep (n or k = 2, 4, 6) on its real engine and traces; our
    sharing workloads are synthetic, so single rows may fall outside (the bench says which)."""
    if key not in PAPER_RANGES:
        raise ValueError(f"key must be one of {sorted(PAPER_RANGES)}, got {key!r}")
    # NaN compares False both ways and would read as "in range"; 45 (a percentage) would read "above"
    saving = require_number("saving (a fraction, not a percentage)", saving, maximum=1.0)
    lo, hi = PAPER_RANGES[key]
    return "below" if saving < lo else "above" if saving > hi else "in range"


@dataclass(frozen=True)
class Request:
    """One request: prompt tokens and the number of tokens it will generate (>= 1)."""

    prompt_len: int
    output_len: int

    def __post_init__(self) -> None:
        # a negative or zero length would make the simulator report shares above 100% or never end
        require_int("prompt_len", self.prompt_len, minimum=1)
        require_int("output_len", self.output_len, minimum=1)

    @property
    def total_len(self) -> int:
        return self.prompt_len + self.output_len


# log-normal (median, sigma) presets: ``chat`` is the mixed stream; the other two mimic the mean
# lengths the vLLM paper reports for its two sharing data sets (ShareGPT: about 161 prompt /
# 338 output tokens on average; Alpaca: about 19 / 58), keeping the log-normal shape
WORKLOADS: dict[str, dict[str, float]] = {
    "chat": {"prompt_median": 200.0, "prompt_sigma": 1.0, "output_median": 250.0, "output_sigma": 0.8},
    "sharegpt": {"prompt_median": 100.0, "prompt_sigma": 1.0, "output_median": 245.0, "output_sigma": 0.8},
    "alpaca": {"prompt_median": 15.0, "prompt_sigma": 0.7, "output_median": 45.0, "output_sigma": 0.7},
}


def chat_workload(
    n: int,
    seed: int = 0,
    max_len: int = 2048,
    prompt_median: float = 200.0,
    prompt_sigma: float = 1.0,
    output_median: float = 250.0,
    output_sigma: float = 0.8,
) -> list[Request]:
    """``n`` requests with log-normal prompt/output lengths (see the module docstring for why).

    Lengths are rounded, at least 1, and clipped so that ``prompt + output <= max_len``."""
    n = require_int("n", n, minimum=0)
    max_len = require_int("max_len", max_len, minimum=2)  # room for one prompt and one output token
    prompt_median = require_number("prompt_median", prompt_median, inclusive=False)
    output_median = require_number("output_median", output_median, inclusive=False)
    prompt_sigma = require_number("prompt_sigma", prompt_sigma)
    output_sigma = require_number("output_sigma", output_sigma)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = min(max(1, round(rng.lognormvariate(math.log(prompt_median), prompt_sigma))), max_len - 1)
        o = min(max(1, round(rng.lognormvariate(math.log(output_median), output_sigma))), max_len - p)
        out.append(Request(p, o))
    return out


# ---------------------------------------------------------------------------------------------
# allocators: reserve / grow / release token slots for one request at a time
# ---------------------------------------------------------------------------------------------
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


@dataclass
class StreamResult:
    """Time-averaged outcome of one allocator on one request stream (shares are fractions)."""

    name: str
    block_size: int | None
    budget: int
    steps: int
    token_share: float  # live tokens / reserved slots: the token-state utilization
    reservation_share: float  # reserved for the same requests' future tokens
    internal_share: float  # reserved but never used (internal fragmentation)
    budget_utilization: float  # live tokens / budget
    external_share: float  # free slots unusable by the waiting request, / budget
    mean_running: float
    max_running: int
    preemptions: int
    internal_per_seq: float  # mean unused slots per live sequence
    internal_per_seq_max: int
    internal_bound: int | None  # block_size - 1 for paged
    per_step: dict[str, list[float]] = field(default_factory=dict, repr=False)

    @property
    def utilization(self) -> float:
        return self.token_share


def simulate_stream(requests: list[Request], allocator: Allocator, keep_trace: bool = False) -> StreamResult:
    """Serve ``requests`` (all waiting at t=0, FCFS) with ``allocator``; see the module docstring."""
    requests = _require_requests(requests)
    if not isinstance(allocator, (ContiguousAllocator, PagedAllocator)):
        raise TypeError(
            f"allocator must be a ContiguousAllocator or PagedAllocator, got {describe(allocator)}"
        )
    held = allocator.holding()
    if held:  # its reservations would crowd the stream and its request ids collide with the stream's
        raise ValueError(
            f"allocator must be empty (unused, or used only by earlier simulate_stream calls), but it "
            f"holds {held}: pass a new {type(allocator).__name__}"
        )
    for rid, req in enumerate(requests):  # a request that cannot run alone would loop for ever
        allocator.check_fits(rid, req)
    waiting: deque[int] = deque(range(len(requests)))
    running: dict[int, int] = {}  # rid -> live tokens, in admission order
    kept: dict[int, int] = {}  # preempted rid -> tokens (prompt + generated) it will re-prefill
    tot_live = tot_reserved = tot_future = tot_never = tot_external = tot_running = 0
    n_seq_steps = 0
    max_running = preemptions = steps = frag_max = 0
    trace: dict[str, list[float]] = {"live": [], "reserved": [], "running": []}
    bs = allocator.block_size
    while waiting or running:
        steps += 1
        # 1) finished requests leave, the others generate one token
        for rid in [r for r, n in running.items() if n == requests[r].total_len]:
            allocator.release(rid)
            del running[rid]
        for rid in list(running):
            if rid not in running:
                continue  # preempted earlier in this loop
            while not allocator.grow(rid, running[rid] + 1):
                victim = next(reversed(running))  # the latest admitted request
                allocator.release(victim)
                kept[victim] = running.pop(victim)  # recompute preemption keeps generated tokens
                waiting.appendleft(victim)
                preemptions += 1
                if victim == rid:
                    break
            else:
                running[rid] += 1
        # 2) admit waiting requests first-come-first-served; (re)prefill yields one new token
        while waiting:
            rid = waiting[0]
            num_tokens = kept.get(rid, requests[rid].prompt_len) + 1
            if not allocator.admit(rid, requests[rid], num_tokens):
                break
            waiting.popleft()
            kept.pop(rid, None)
            running[rid] = num_tokens
        if not running and not waiting:
            steps -= 1  # nothing ran in this step
            break
        # with nothing running the whole memory is free, and check_fits said the head fits in it;
        # a real exception, not an assert: under python -O this loop would otherwise spin for ever
        if not running:
            raise RuntimeError(f"request {waiting[0]} was not admitted into an empty memory")
        if waiting and isinstance(allocator, ContiguousAllocator):
            need = allocator.need(requests[waiting[0]])
            free = allocator.free()
            if free >= need:  # enough memory in total, but no hole is large enough
                tot_external += free
        # 3) account this step
        live = sum(running.values())
        reserved = allocator.reserved()
        for rid, n in running.items():
            future, never = allocator.slack(requests[rid], n)
            tot_future += future
            tot_never += never
            if bs is not None:
                frag_max = max(frag_max, never)
        tot_live += live
        tot_reserved += reserved
        tot_running += len(running)
        n_seq_steps += len(running)
        max_running = max(max_running, len(running))
        if keep_trace:
            trace["live"].append(live)
            trace["reserved"].append(reserved)
            trace["running"].append(len(running))
    budget = allocator.budget if isinstance(allocator, ContiguousAllocator) else allocator.num_blocks * bs
    return StreamResult(
        name=allocator.name,
        block_size=bs,
        budget=budget,
        steps=steps,
        token_share=tot_live / tot_reserved,
        reservation_share=tot_future / tot_reserved,
        internal_share=tot_never / tot_reserved,
        budget_utilization=tot_live / (steps * budget),
        external_share=tot_external / (steps * budget),
        mean_running=tot_running / steps,
        max_running=max_running,
        preemptions=preemptions,
        internal_per_seq=tot_never / n_seq_steps if bs is not None else math.nan,
        internal_per_seq_max=frag_max,
        internal_bound=bs - 1 if bs is not None else None,
        per_step=trace if keep_trace else {},
    )


def compare_allocators(
    requests: list[Request],
    budget: int = 65536,
    max_len: int = 2048,
    block_sizes: tuple[int, ...] = (1, 8, 16, 32, 128, 256),
) -> list[StreamResult]:
    """Run the same stream through contiguous (max, oracle) and paged (each block size)."""
    if isinstance(block_sizes, (str, bytes)) or not isinstance(block_sizes, Sequence):
        raise TypeError(f"block_sizes must be a sequence of integers >= 1, got {describe(block_sizes)}")
    block_sizes = tuple(require_int(f"block_sizes[{i}]", b, minimum=1) for i, b in enumerate(block_sizes))
    allocators: list[Allocator] = [
        ContiguousAllocator(budget, "max", max_len),
        ContiguousAllocator(budget, "oracle"),  # an exact reservation never looks at max_len
    ]
    allocators += [PagedAllocator(budget, b) for b in block_sizes]
    return [simulate_stream(requests, a) for a in allocators]


# ---------------------------------------------------------------------------------------------
# sharing workloads, run on the real BlockManager
# ---------------------------------------------------------------------------------------------
@dataclass
class SharingResult:
    """Memory with sharing vs without, summed over time (block-steps) or at one instant."""

    workload: str
    block_size: int
    blocks_shared: int  # blocks used with sharing (summed over steps for generation workloads)
    blocks_unshared: int  # blocks an engine without sharing would use
    copies: int = 0  # copy-on-write block copies performed
    analytic: float | None = None  # closed-form saving, when there is one
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # every workload stores at least one block without sharing, and saving divides by it
        require_int("block_size", self.block_size, minimum=1)
        require_int("blocks_shared", self.blocks_shared, minimum=0)
        require_int("blocks_unshared (the saving's denominator)", self.blocks_unshared, minimum=1)
        require_int("copies", self.copies, minimum=0)

    @property
    def saving(self) -> float:
        """Share of KV blocks saved by sharing: ``1 - shared / unshared``."""
        return 1.0 - self.blocks_shared / self.blocks_unshared


def analytic_prefix_saving(k: int, prefix_len: int, question_len: int, block_size: int) -> float:
    """``(K-1) * floor(L/B) * B / (K * (L+Q))``: token share saved by sharing full prefix blocks."""
    k = require_int("k", k, minimum=1)
    prefix_len = require_int("prefix_len", prefix_len, minimum=0)
    question_len = require_int("question_len", question_len, minimum=1)
    block_size = require_int("block_size", block_size, minimum=1)
    return (k - 1) * (prefix_len // block_size) * block_size / (k * (prefix_len + question_len))


def block_waste(lengths: Sequence[int], shares: Sequence[float], block_size: int) -> float:
    """Share of allocated slots that hold no token when a fraction ``shares[i]`` of the sequences has
    ``lengths[i]`` tokens and each holds ``ceil(length / B)`` blocks: the internal fragmentation of
    paging, ``sum_i s_i (ceil(n_i / B) B - n_i) / sum_i s_i ceil(n_i / B) B``."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence):
        raise TypeError(f"lengths must be a sequence of token counts, got {describe(lengths)}")
    if isinstance(shares, (str, bytes)) or not isinstance(shares, Sequence) or len(shares) != len(lengths):
        raise ValueError(
            f"shares must be a sequence of {len(lengths)} fraction(s), one per length, got {describe(shares)}"
        )
    lengths = [require_int(f"lengths[{i}]", n, minimum=1) for i, n in enumerate(lengths)]
    shares = [require_number(f"shares[{i}]", s, minimum=0) for i, s in enumerate(shares)]
    block_size = require_int("block_size", block_size, minimum=1)
    if not lengths or sum(shares) <= 0:
        raise ValueError("block_waste needs at least one length with a positive share")
    allocated = sum(s * -(-n // block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    return (allocated - tokens) / allocated


def shared_prefix_savings(
    num_groups: int,
    per_group: int,
    prefix_len: int,
    question_len: int,
    block_size: int = 16,
    cache: str = "hash",
    seed: int = 0,
) -> SharingResult:
    """Admit ``N x K`` prompts (shared ``L``-token prefix per group + distinct ``Q``-token questions)
    into a BlockManager with prefix caching; compare with the no-sharing block count.

    ``detail["saved_tokens"]`` is the measured ``(blocks without - blocks with) * B`` and
    ``detail["measured_token_saving"]`` that over ``N * K * (L + Q)``, the analytic formula's terms."""
    num_groups = require_int("num_groups", num_groups, minimum=1)
    per_group = require_int("per_group", per_group, minimum=1)
    prefix_len = require_int("prefix_len", prefix_len, minimum=0)
    question_len = require_int("question_len", question_len, minimum=1)
    block_size = require_int("block_size", block_size, minimum=1)
    if cache not in ("hash", "radix"):  # without a prefix cache there is nothing to measure
        raise ValueError(f"cache must be 'hash' or 'radix', got {describe(cache)}")
    rng = random.Random(seed)
    per_seq = -(-(prefix_len + question_len) // block_size)
    mgr = BlockManager(num_groups * per_group * per_seq + 1, block_size, cache)
    sid = 0
    for g in range(num_groups):
        prefix = [rng.randrange(32000) for _ in range(prefix_len)]
        prefix[:1] = [100_000 + g] if prefix else []  # groups never share a first block
        for _ in range(per_group):
            # a first question token unique to the request, so questions never share blocks
            question = [200_000 + sid] + [rng.randrange(32000) for _ in range(question_len - 1)]
            mgr.allocate(sid, prefix + question)
            sid += 1
    mgr.check_invariants()
    unshared = num_groups * per_group * per_seq
    shared = mgr.num_used_blocks
    saved_tokens = (unshared - shared) * block_size
    total_tokens = num_groups * per_group * (prefix_len + question_len)
    analytic = analytic_prefix_saving(per_group, prefix_len, question_len, block_size)
    return SharingResult(
        workload=f"shared prefix ({cache})",
        block_size=block_size,
        blocks_shared=shared,
        blocks_unshared=unshared,
        analytic=analytic,
        detail={
            "N": num_groups, "K": per_group, "L": prefix_len, "Q": question_len,
            "saved_tokens": saved_tokens,
            "measured_token_saving": saved_tokens / total_tokens,
            "analytic_saved_tokens": analytic * total_tokens,
            "tolerance_tokens": num_groups * block_size,  # one block per group
        },
    )  # fmt: skip


# Upper bound on parallel_sampling_savings' length_sigma. The run takes as many steps as the longest
# sample, and a log-normal's tail grows as exp(sigma * z): at 1.5 one sample in a hundred already runs
# exp(1.5 * 2.33) ~ 33x its request's output length (far wider than samples of one prompt differ in
# practice; the default 0.5 keeps 95% of them within 0.4x-2.7x), and a run of 2000-token outputs
# stays under a second. At 2 it takes tens of seconds, and at 5 (exp(5 * 3) ~ 3e6x) it never ends.
MAX_LENGTH_SIGMA = 1.5


def parallel_sampling_savings(
    requests: list[Request], n: int, block_size: int = 16, length_sigma: float = 0.5, seed: int = 0
) -> SharingResult:
    """``n`` samples per request: fork after the prompt, then each sample generates until its own end.

    Samples of one prompt stop at different times (each meets its end-of-sequence token on its
    own), so sample ``i`` generates ``O_i = O * X_i`` tokens, ``X_i`` log-normal with median 1 and
    log-spread ``length_sigma`` in ``[0, MAX_LENGTH_SIGMA]`` (0 gives all samples the request's
    ``output_len``). Blocks are summed over generation steps (memory-time), with sharing vs every
    sample owning a copy."""
    requests = _require_requests(requests)
    n = require_int("n", n, minimum=1)
    block_size = require_int("block_size", block_size, minimum=1)
    length_sigma = require_number("length_sigma", length_sigma, maximum=MAX_LENGTH_SIGMA)
    rng = random.Random(seed)
    shared = unshared = copies = 0
    for req in requests:
        lens = [max(1, round(req.output_len * rng.lognormvariate(0.0, length_sigma))) for _ in range(n)]
        need = n * -(-(req.prompt_len + max(lens)) // block_size) + 1
        mgr = BlockManager(need, block_size)
        mgr.allocate(0, [rng.randrange(32000) for _ in range(req.prompt_len)])
        for i in range(1, n):
            mgr.fork(0, i)
        for step in range(max(lens)):
            for i in range(n):
                if step < lens[i]:
                    copies += len(mgr.append(i, rng.randrange(32000)))
                elif step == lens[i]:  # the step after its last token
                    mgr.free(i)
            shared += mgr.num_used_blocks
            unshared += sum(len(s.block_ids) for s in mgr.seqs.values())
        mgr.check_invariants()
    return SharingResult(f"parallel sampling n={n}", block_size, shared, unshared, copies)


def beam_search_savings(
    requests: list[Request],
    width: int,
    block_size: int = 16,
    vocab: int = 50,
    temperature: float = 2.0,
    seed: int = 0,
) -> SharingResult:
    """Beam search of ``width`` beams on a synthetic language model, on the real BlockManager.

    At each step every beam scores ``vocab`` next tokens (log-softmax of Gaussian logits with
    standard deviation ``temperature``: larger means peakier distributions); the ``width`` best
    (beam score + token log-prob) candidates survive. A beam chosen ``c`` times is forked
    ``c - 1`` times, an unchosen one is freed; each survivor appends its token (copy-on-write
    where blocks are shared). Blocks summed over steps, vs every beam owning its own copy."""
    requests = _require_requests(requests)
    width = require_int("width", width, minimum=1)
    block_size = require_int("block_size", block_size, minimum=1)
    vocab = require_int("vocab", vocab, minimum=1)
    temperature = require_number("temperature", temperature)
    rng = random.Random(seed)
    shared = unshared = copies = 0
    for req in requests:
        need = 2 * width * -(-req.total_len // block_size) + width + 1
        mgr = BlockManager(need, block_size)
        mgr.allocate(0, [rng.randrange(32000) for _ in range(req.prompt_len)])
        beams: dict[int, float] = {0: 0.0}  # seq id -> cumulative log-prob
        next_id = 1
        for _ in range(req.output_len):
            cands: list[tuple[float, int, int]] = []
            for sid, score in beams.items():
                logits = [rng.gauss(0.0, temperature) for _ in range(vocab)]
                top = max(logits)
                log_z = top + math.log(sum(math.exp(x - top) for x in logits))
                cands.extend((score + x - log_z, sid, tok) for tok, x in enumerate(logits))
            cands.sort(reverse=True)
            chosen = cands[:width]
            parents = {sid for _, sid, _ in chosen}
            new_beams: dict[int, float] = {}
            plan: list[tuple[int, int]] = []  # (beam, the token it appends)
            for score, sid, tok in chosen:  # first use keeps the parent's id, later ones fork it
                if sid not in new_beams:
                    new_beams[sid] = score
                    plan.append((sid, tok))
                else:
                    mgr.fork(sid, next_id)
                    new_beams[next_id] = score
                    plan.append((next_id, tok))
                    next_id += 1
            for sid in beams:
                if sid not in parents:
                    mgr.free(sid)
            for sid, tok in plan:
                copies += len(mgr.append(sid, tok))
            beams = new_beams
            shared += mgr.num_used_blocks
            unshared += sum(len(s.block_ids) for s in mgr.seqs.values())
        mgr.check_invariants()
    return SharingResult(f"beam search k={width}", block_size, shared, unshared, copies)
