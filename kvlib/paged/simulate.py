"""Fragmentation and capacity simulator: how much KV memory holds real tokens under each allocator.

The pieces live one idea per module, and this one runs them (its names re-exported, so
``from kvlib.paged.simulate import ...`` reaches all of them):

- :mod:`kvlib.paged.workload`: the request streams (log-normal lengths, and why that shape);
- :mod:`kvlib.paged.allocators`: contiguous (max reservation, oracle) and paged allocators;
- :mod:`kvlib.paged.sharing`: shared prefixes, parallel sampling and beam search on the real
  BlockManager, against the vLLM paper's ranges;
- here: :func:`simulate_stream`, which serves one stream with one allocator, and
  :func:`compare_allocators`, which runs the same stream through each allocator.

The scheduler is the same for every allocator, and the same as the serving engine's
(:class:`kvlib.serve.scheduler.Scheduler`, here with no token budget and whole prompts):
first-come-first-served admission while memory allows,
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
from collections.abc import Sequence
from dataclasses import dataclass, field

from kvlib.paged.allocators import Allocator, ContiguousAllocator, PagedAllocator
from kvlib.paged.sharing import (
    MAX_LENGTH_SIGMA,
    PAPER_RANGES,
    SharingResult,
    analytic_prefix_saving,
    beam_search_savings,
    block_waste,
    paper_range_verdict,
    parallel_sampling_savings,
    shared_prefix_savings,
)
from kvlib.paged.workload import WORKLOADS, Request, _require_requests, chat_workload
from kvlib.serve.scheduler import Scheduler, SequenceState
from kvlib.validate import describe, require_int

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


class _SlotMemory:
    """The scheduler's memory (:class:`~kvlib.serve.scheduler.KVMemory`) over an allocator model.

    A sequence holds ``num_tokens`` tokens after each step, the one the step produced included, so
    admitting and growing it make room for one more token than it holds: the one its step will produce.
    Preemption is by recompute only (an allocator model has no host memory to swap to)."""

    def __init__(self, allocator: Allocator, requests: list[Request]) -> None:
        self.allocator = allocator
        self.requests = requests

    def admit(self, seq: SequenceState) -> bool:
        return self.allocator.admit(seq.seq_id, self.requests[seq.seq_id], seq.num_tokens + 1)

    def grow(self, seq: SequenceState) -> bool:
        return self.allocator.grow(seq.seq_id, seq.num_tokens + 1)

    def release(self, seq: SequenceState) -> None:
        self.allocator.release(seq.seq_id)


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
    scheduler = Scheduler(_SlotMemory(allocator, requests))  # no token budget: every request runs each step
    for rid, req in enumerate(requests):
        scheduler.add(SequenceState(rid, req.prompt_len))
    tot_live = tot_reserved = tot_future = tot_never = tot_external = tot_running = 0
    n_seq_steps = 0
    max_running = steps = frag_max = 0
    trace: dict[str, list[float]] = {"live": [], "reserved": [], "running": []}
    bs = allocator.block_size
    while scheduler.has_work():
        plan = scheduler.schedule()  # grow the running (preempting), admit the waiting
        # with nothing running the whole memory is free, and check_fits said the head fits in it;
        # a real exception, not an assert: under python -O this loop would otherwise spin for ever
        if not scheduler.running:
            raise RuntimeError(f"request {scheduler.waiting[0].seq_id} was not admitted into an empty memory")
        steps += 1
        for seq, _ in plan.rows:  # every running request computes its tokens and produces one more
            scheduler.commit(seq, seq.num_tokens)
        if scheduler.waiting and isinstance(allocator, ContiguousAllocator):
            need = allocator.need(requests[scheduler.waiting[0].seq_id])
            free = allocator.free()
            if free >= need:  # enough memory in total, but no hole is large enough
                tot_external += free
        # account this step: a request's live tokens are the ones it holds after the step
        live = sum(seq.num_tokens for seq in scheduler.running)
        reserved = allocator.reserved()
        for seq in scheduler.running:
            future, never = allocator.slack(requests[seq.seq_id], seq.num_tokens)
            tot_future += future
            tot_never += never
            if bs is not None:
                frag_max = max(frag_max, never)
        tot_live += live
        tot_reserved += reserved
        tot_running += len(scheduler.running)
        n_seq_steps += len(scheduler.running)
        max_running = max(max_running, len(scheduler.running))
        if keep_trace:
            trace["live"].append(live)
            trace["reserved"].append(reserved)
            trace["running"].append(len(scheduler.running))
        for seq in [s for s in scheduler.running if s.num_tokens == requests[s.seq_id].total_len]:
            scheduler.finish(seq)  # done: its memory serves the next step
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
        preemptions=scheduler.num_preemptions,
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
