"""Iteration-level scheduling: which sequences run in the next step, and with how many tokens.

One :class:`Scheduler` serves both the serving engine (:mod:`kvlib.serve.engine`, a real model over a
:class:`~kvlib.paged.cache.PagedKVCache`) and the fragmentation simulator
(:func:`kvlib.paged.simulate.simulate_stream`, token counts only). The scheduler never touches memory
itself: it asks a *memory* object (:class:`KVMemory`) to admit, grow, release or swap a sequence, and
each caller supplies the one that fits it (blocks of a real cache, or slot counts of a modelled one).

Every call to :meth:`Scheduler.schedule` plans one step, in this order (vLLM's policy, simplified):

1. **Grow.** Each running sequence that produced a token in the last step needs room for it (the
   decode token of this step). When memory cannot grow it, the newest running sequence is preempted
   (possibly the one growing) and memory is asked again. Preemption by *recompute* frees the victim's
   memory and puts it back at the head of the waiting queue, keeping its generated tokens; readmitted,
   it prefills prompt and generated tokens again. Preemption by *swap* copies its KV to host memory
   and parks it in the swapped queue; it comes back with its KV, nothing recomputed.
2. **Budget.** A step computes at most ``token_budget`` tokens: decodes first (one token each), then
   the next prefill chunk of running sequences whose prompt is not fully computed yet (at most
   ``chunk_size`` tokens each, when chunked prefill is on).
3. **Admit.** Swapped sequences come back first, then waiting ones in arrival order (first come,
   first served: the head of the queue blocks the others), while memory admits them, the budget has
   tokens left and fewer than ``max_num_seqs`` run. Without chunked prefill a prompt runs whole,
   so it must fit the token budget left in this step.

After the step the caller reports what each row computed with :meth:`Scheduler.commit` (a sequence
whose every token has K/V produced the next token) and retires finished sequences with
:meth:`Scheduler.finish`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from kvlib.validate import describe, require_int

__all__ = [
    "SequenceState",
    "KVMemory",
    "StepPlan",
    "Scheduler",
    "schedule_step",
    "preempt",
    "PREEMPTION_MODES",
]

PREEMPTION_MODES = ("recompute", "swap")


def _limit(name: str, value: int | None) -> float:
    """An optional limit: None means none (infinity), else an int >= 1."""
    return math.inf if value is None else require_int(name, value, minimum=1)


def _has_methods(obj: object, names: tuple[str, ...]) -> bool:
    return all(callable(getattr(obj, name, None)) for name in names)


@dataclass(eq=False)
class SequenceState:
    """What the scheduler knows of one sequence.

    ``num_tokens`` counts prompt and generated tokens; ``num_computed`` the leading ones whose K/V
    exist (a prefill chunk, a prefix hit or a decode step advances it). ``needs_slot`` marks a
    sequence that produced a token the memory has no room for yet (:meth:`KVMemory.grow` makes it).
    """

    seq_id: int
    num_tokens: int
    num_computed: int = 0
    needs_slot: bool = False
    num_preemptions: int = 0

    def __post_init__(self) -> None:
        require_int("seq_id", self.seq_id)
        require_int("num_tokens", self.num_tokens, minimum=1)

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed


class KVMemory(Protocol):
    """Where the scheduler's decisions become memory. Each method that answers False changes nothing."""

    def admit(self, seq: SequenceState) -> bool:
        """Room for a waiting sequence's tokens; may set ``seq.num_computed`` (a prefix hit), but below
        ``seq.num_tokens``: the last token is always computed, or the sequence would produce nothing."""

    def grow(self, seq: SequenceState) -> bool:
        """Room for the token a running sequence produced in the last step."""

    def release(self, seq: SequenceState) -> None:
        """Give back everything the sequence holds (it finished, or is preempted by recompute)."""

    def swap_out(self, seq: SequenceState) -> None:
        """Move the sequence's KV to host memory and give its device memory back (swap mode only)."""

    def swap_in(self, seq: SequenceState) -> bool:
        """Bring a swapped sequence's KV back, with room for its pending token (swap mode only)."""


@dataclass
class StepPlan:
    """One step: ``rows`` are (sequence, tokens to compute) in batch order; what changed on the way."""

    rows: list[tuple[SequenceState, int]] = field(default_factory=list)
    admitted: list[SequenceState] = field(default_factory=list)
    preempted: list[SequenceState] = field(default_factory=list)
    swapped_in: list[SequenceState] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.rows)


class Scheduler:
    """Waiting, running and swapped queues, and the per-step plan described in the module docstring.

    Args:
        memory: a :class:`KVMemory`.
        token_budget: the most tokens one step computes (None: no limit).
        max_num_seqs: the most sequences running at once (None: no limit).
        chunk_size: the most prompt tokens one sequence computes in a step (None: whole prompts,
            chunked prefill off).
        preemption: ``"recompute"`` or ``"swap"``.
    """

    def __init__(
        self,
        memory: KVMemory,
        *,
        token_budget: int | None = None,
        max_num_seqs: int | None = None,
        chunk_size: int | None = None,
        preemption: str = "recompute",
    ) -> None:
        if not _has_methods(memory, ("admit", "grow", "release")):
            raise TypeError(f"memory must be a KVMemory (admit, grow, release), got {describe(memory)}")
        self.memory = memory
        self.token_budget = _limit("token_budget", token_budget)
        self.max_num_seqs = _limit("max_num_seqs", max_num_seqs)
        self.chunk_size = _limit("chunk_size", chunk_size)
        if preemption not in PREEMPTION_MODES:
            raise ValueError(f"preemption must be one of {PREEMPTION_MODES}, got {describe(preemption)}")
        if preemption == "swap" and not _has_methods(memory, ("swap_out", "swap_in")):
            raise TypeError(
                f"preemption='swap' needs a memory with swap_out and swap_in, got {describe(memory)}"
            )
        self.preemption = preemption
        self.waiting: deque[SequenceState] = deque()
        self.running: list[SequenceState] = []  # in admission order: the last one is preempted first
        self.swapped: deque[SequenceState] = deque()
        self.num_preemptions = 0

    # --- queues -----------------------------------------------------------------------------------

    def add(self, seq: SequenceState) -> None:
        """Queue a new sequence (it waits behind the earlier ones)."""
        if not isinstance(seq, SequenceState):
            raise TypeError(f"seq must be a SequenceState, got {describe(seq)}")
        if self.chunk_size == math.inf and seq.num_uncomputed > self.token_budget:
            raise ValueError(
                f"sequence {seq.seq_id}: its {seq.num_uncomputed}-token prompt can never run within "
                f"token_budget={self.token_budget} without chunked prefill; raise the budget or set "
                "chunk_size"
            )
        if any(s.seq_id == seq.seq_id for s in self.all_sequences()):
            raise ValueError(f"sequence {seq.seq_id} is already scheduled")
        self.waiting.append(seq)

    def all_sequences(self) -> list[SequenceState]:
        return [*self.running, *self.swapped, *self.waiting]

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    def finish(self, seq: SequenceState) -> None:
        """Retire a running sequence (done, or cancelled) and give its memory back."""
        if seq not in self.running:
            raise ValueError(
                f"sequence {getattr(seq, 'seq_id', seq)} is not running: only a running one finishes"
            )
        self.running.remove(seq)
        self.memory.release(seq)

    def cancel(self, seq: SequenceState) -> None:
        """Drop a sequence wherever it is; memory it holds goes back."""
        if seq in self.running:
            self.finish(seq)
        elif seq in self.swapped:
            self.swapped.remove(seq)
            self.memory.release(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        else:
            raise ValueError(f"sequence {getattr(seq, 'seq_id', seq)} is not scheduled here")

    # --- one step ---------------------------------------------------------------------------------

    def schedule(self) -> StepPlan:
        """Plan the next step (see the module docstring); memory follows the plan as it is made."""
        return schedule_step(self)

    def preempt(self, seq: SequenceState, plan: StepPlan) -> None:
        """Take a running sequence off the device, by this scheduler's preemption mode."""
        preempt(self, seq, plan)

    def commit(self, seq: SequenceState, num_computed: int) -> bool:
        """Record that ``seq`` has K/V for its first ``num_computed`` tokens after the step; returns
        True when it has them all, i.e. the step produced its next token (which then needs a slot)."""
        num_computed = require_int("num_computed", num_computed, minimum=0, maximum=seq.num_tokens)
        seq.num_computed = num_computed
        if num_computed < seq.num_tokens:
            return False
        seq.num_tokens += 1
        seq.needs_slot = True
        return True


# The policy lives in functions of the scheduler's state, so that a different policy (chapter 08 asks
# learners to write one) plugs in by overriding Scheduler.schedule and Scheduler.preempt.


def schedule_step(sched: Scheduler) -> StepPlan:
    """Plan ``sched``'s next step (see the module docstring): grow, then decodes, prefill chunks,
    swapped-in and waiting sequences within the token budget. Changes the queues and the memory."""
    if not isinstance(sched, Scheduler):
        raise TypeError(f"sched must be a Scheduler, got {describe(sched)}")
    plan = StepPlan()
    _grow_running(sched, plan)
    budget = sched.token_budget
    decodes = [s for s in sched.running if s.num_uncomputed == 1]  # what users are waiting on: first
    prefills = [s for s in sched.running if s.num_uncomputed > 1]
    for seq in decodes + prefills:
        budget -= _add_row(sched, plan, seq, budget)
    budget = _admit_swapped(sched, plan, budget)
    _admit_waiting(sched, plan, budget)
    return plan


def preempt(sched: Scheduler, seq: SequenceState, plan: StepPlan) -> None:
    """Take running ``seq`` off the device: by recompute (memory released, back at the head of the
    waiting queue with nothing computed and its generated tokens kept) or by swap (KV to host memory,
    at the head of the swapped queue)."""
    if not isinstance(sched, Scheduler):
        raise TypeError(f"sched must be a Scheduler, got {describe(sched)}")
    if not isinstance(plan, StepPlan):
        raise TypeError(f"plan must be a StepPlan, got {describe(plan)}")
    if seq not in sched.running:
        raise ValueError(
            f"sequence {getattr(seq, 'seq_id', seq)} is not running: only a running one is preempted"
        )
    sched.running.remove(seq)
    seq.num_preemptions += 1
    sched.num_preemptions += 1
    plan.preempted.append(seq)
    if sched.preemption == "swap":
        sched.memory.swap_out(seq)
        sched.swapped.appendleft(seq)
    else:
        sched.memory.release(seq)
        seq.num_computed = 0
        seq.needs_slot = False  # readmission makes room for every token it holds, the last one too
        sched.waiting.appendleft(seq)  # the oldest of the preempted ends up first


def _grow_running(sched: Scheduler, plan: StepPlan) -> None:
    for seq in list(sched.running):
        if seq not in sched.running or not seq.needs_slot:
            continue  # preempted earlier in this loop, or still prefilling
        while not sched.memory.grow(seq):
            victim = sched.running[-1]  # the newest
            sched.preempt(victim, plan)
            if victim is seq:
                break
        else:
            seq.needs_slot = False


def _chunk(sched: Scheduler, seq: SequenceState, budget: float) -> int:
    """Tokens ``seq`` computes in this step with ``budget`` left: its next chunk, or 0 when a whole
    prompt (chunked prefill off) does not fit what is left."""
    chunk = min(seq.num_uncomputed, sched.chunk_size, budget)
    if chunk < seq.num_uncomputed and sched.chunk_size == math.inf:
        return 0
    return int(chunk)


def _add_row(sched: Scheduler, plan: StepPlan, seq: SequenceState, budget: float) -> int:
    chunk = _chunk(sched, seq, budget)
    if chunk:
        plan.rows.append((seq, chunk))
    return chunk


def _admit_swapped(sched: Scheduler, plan: StepPlan, budget: float) -> float:
    while sched.swapped and budget >= 1 and len(sched.running) < sched.max_num_seqs:
        seq = sched.swapped[0]
        if not sched.memory.swap_in(seq):  # room for its KV (and its pending token, if it has one)
            break
        sched.swapped.popleft()
        seq.needs_slot = False
        sched.running.append(seq)
        plan.swapped_in.append(seq)
        budget -= _add_row(sched, plan, seq, budget)
    return budget


def _admit_waiting(sched: Scheduler, plan: StepPlan, budget: float) -> None:
    if sched.swapped:
        return  # swapped sequences hold host memory and started earlier: they go first
    while sched.waiting and budget >= 1 and len(sched.running) < sched.max_num_seqs:
        seq = sched.waiting[0]
        if sched.chunk_size == math.inf and seq.num_uncomputed > sched.token_budget:
            raise RuntimeError(  # it would wait for ever, and everyone behind it too
                f"sequence {seq.seq_id} must prefill {seq.num_uncomputed} tokens in one step (readmitted "
                f"after a recompute preemption?) but token_budget is {sched.token_budget}: the budget "
                "must cover the longest sequence when chunked prefill is off"
            )
        if not _chunk(sched, seq, budget) or not sched.memory.admit(seq):
            break  # first come, first served: the head waits, and so does everyone behind it
        sched.waiting.popleft()
        sched.running.append(seq)
        plan.admitted.append(seq)
        budget -= _add_row(sched, plan, seq, budget)  # after admit: a prefix hit shortens the prompt
