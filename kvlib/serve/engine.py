"""A small serving engine: continuous batching of many requests over one paged KV cache.

    engine = Engine(load_model(), num_blocks=256, block_size=16, prefix_cache="radix")
    rid = engine.submit(prompt_ids, SamplingParams(max_tokens=64))
    while engine.has_unfinished():
        for event in engine.step():                 # one scheduling iteration
            print(event.request_id, event.token)    # tokens stream out as they are produced
    engine.requests[rid].output

Each :meth:`Engine.step` asks the :class:`~kvlib.serve.scheduler.Scheduler` for a plan (which
sequences run, with how many tokens, who is admitted or preempted), runs the model on it through the
:class:`~kvlib.paged.cache.PagedKVCache`, samples one token for every sequence whose tokens are all
computed, and retires finished requests at once, so their blocks serve the waiting ones in the next
step: batches change at every iteration (Orca's iteration-level scheduling, Yu et al., OSDI 2022).

A plan runs as a few ragged forwards: decode rows (one token each) and prefill rows (a prompt or a
chunk of one) apart, each grouped by length so that padding stays under 25% of a forward's slots.
Our cache lays a step out as [rows, longest row], so one forward mixing a 200-token prompt with 30
decodes would run the model on 31 x 200 token slots; vLLM instead packs every row into one flat token
stream, which our [B, T] model does not take.

Preemption (when a growing sequence finds no free block) is by recompute or by swap, see
:mod:`kvlib.serve.scheduler`. Timestamps of every token come from ``clock`` (:class:`VirtualClock` in
load tests), and :mod:`kvlib.serve.metrics` turns them into TTFT, TPOT and inter-token latencies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kvlib.paged.blocks import OutOfBlocks
from kvlib.paged.cache import PagedKVCache, SwappedSequence
from kvlib.serve.metrics import RequestTimes
from kvlib.serve.scheduler import Scheduler, SequenceState
from kvlib.serve.workload import TimedRequest
from kvlib.validate import describe, require_int, require_number, require_token_ids

__all__ = ["SamplingParams", "EngineRequest", "TokenEvent", "Engine", "VirtualClock", "sample"]


@dataclass(frozen=True)
class SamplingParams:
    """How a request generates: ``max_tokens`` new tokens at most, stopping early at any of
    ``stop_tokens`` (kept in the output); greedy when ``temperature`` is 0, else sampled from the
    softmax at ``temperature`` restricted to the smallest set of tokens whose probability reaches
    ``top_p`` (nucleus sampling), with a generator seeded by ``seed`` (the same seed, the same output,
    whatever else is in the batch; None, the default, draws a fresh seed per request, as vLLM does)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        require_int("max_tokens", self.max_tokens, minimum=1)
        require_number("temperature", self.temperature)
        require_number("top_p", self.top_p, minimum=0.0, inclusive=False, maximum=1.0)
        if self.seed is not None:
            require_int("seed", self.seed, minimum=0)
        if not isinstance(self.stop_tokens, tuple):
            raise TypeError(f"stop_tokens must be a tuple of token ids, got {describe(self.stop_tokens)}")
        require_token_ids("stop_tokens", self.stop_tokens)


@dataclass
class EngineRequest:
    """A submitted request and everything that happened to it."""

    request_id: int
    prompt: list[int]
    params: SamplingParams
    arrival_s: float
    state: SequenceState
    output: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    finish_reason: str | None = None  # "length", "stop", "cancelled" or "error" (sampling raised)
    generator: torch.Generator | None = None
    swapped: SwappedSequence | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def tokens(self) -> list[int]:
        """Prompt and output: what a readmitted (recomputed) sequence prefills."""
        return self.prompt + self.output

    def times(self) -> RequestTimes:
        return RequestTimes(self.arrival_s, list(self.token_times))


@dataclass(frozen=True)
class TokenEvent:
    """One token streamed out of a step."""

    request_id: int
    token: int
    finished: bool


class VirtualClock:
    """Wall time, except that an idle engine can jump to the next arrival instead of sleeping: load
    tests then take only the time the engine computes, and every latency is still measured."""

    def __init__(self) -> None:
        self._skipped = 0.0

    def __call__(self) -> float:
        return time.perf_counter() + self._skipped

    def skip_to(self, t: float) -> None:
        self._skipped += max(0.0, t - self())


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token from next-token ``logits`` [V] (see :class:`SamplingParams`)."""
    if params.temperature == 0:
        return int(logits.argmax())
    # shift first: the largest logit becomes 0 and the others <= 0, so even a tiny temperature gives
    # finite (or -inf) values, never inf - inf = NaN
    scaled = (logits.double() - logits.max()) / params.temperature
    probs = torch.softmax(scaled, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(0) - sorted_probs  # mass of the tokens ranked above each one
        sorted_probs[before >= params.top_p] = 0  # keep the smallest prefix that reaches top_p
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


MAX_PADDING = 0.25  # share of a forward's token slots (prefill) or key slots (decode) that may be padding


def _low_padding_groups(
    rows: list[tuple[SequenceState, int]], length: Callable[[tuple[SequenceState, int]], int]
) -> list[list[tuple[SequenceState, int]]]:
    """Rows split into forwards whose padding stays within MAX_PADDING of their slots, ``length(row)``
    being what a row pads to: sorted by length, a new group starts where the next (longer) row would
    pad the group past it. Each forward costs a little fixed time, padding costs in proportion:
    measured on this CPU on the default ``python -m kvlib.bench serve`` workload, grouping the prefills
    made the engine about 25% faster, grouping the decodes too about 10% more (5 interleaved runs)."""
    groups: list[list[tuple[SequenceState, int]]] = []
    used = 0  # real slots of the last group
    for row in sorted(rows, key=length):
        n = length(row)
        if groups and used + n >= (1 - MAX_PADDING) * (len(groups[-1]) + 1) * n:
            groups[-1].append(row)
            used += n
        else:
            groups.append([row])
            used = n
    return groups


def _generator(params: SamplingParams) -> torch.Generator | None:
    """The request's own random stream (sampling only): seeded, or from a fresh seed."""
    if params.temperature == 0:
        return None
    generator = torch.Generator()
    if params.seed is None:
        generator.seed()  # a nondeterministic seed
    else:
        generator.manual_seed(params.seed)
    return generator


class _CacheMemory:
    """The scheduler's :class:`~kvlib.serve.scheduler.KVMemory` over a PagedKVCache."""

    def __init__(self, cache: PagedKVCache, requests: dict[int, EngineRequest]) -> None:
        self.cache = cache
        self.requests = requests

    def admit(self, seq: SequenceState) -> bool:
        tokens = self.requests[seq.seq_id].tokens
        if not self.cache.manager.can_allocate(tokens):
            return False
        seq.num_computed = self.cache.add_sequence(seq.seq_id, tokens)  # a prefix hit skips tokens
        return True

    def grow(self, seq: SequenceState) -> bool:
        try:
            self.cache.append_token(seq.seq_id, self.requests[seq.seq_id].output[-1])
        except OutOfBlocks:
            return False  # nothing changed
        return True

    def release(self, seq: SequenceState) -> None:
        self.requests[seq.seq_id].swapped = None
        if seq.seq_id in self.cache.manager.seqs:
            self.cache.free(seq.seq_id)

    def swap_out(self, seq: SequenceState) -> None:
        self.requests[seq.seq_id].swapped = self.cache.swap_out(seq.seq_id)

    def swap_in(self, seq: SequenceState) -> bool:
        request = self.requests[seq.seq_id]
        pending = request.output[-1] if seq.needs_slot else None
        try:
            self.cache.swap_in(seq.seq_id, request.swapped, pending)
        except OutOfBlocks:
            return False
        request.swapped = None
        seq.num_computed = self.cache.num_computed(seq.seq_id)  # a prefix hit may have covered more
        return True


class Engine:
    """Continuous batching over a :class:`~kvlib.paged.cache.PagedKVCache` (see the module docstring).

    Args:
        model: a kvlib TinyDecoder.
        num_blocks, block_size, prefix_cache, backend: the paged cache (see PagedKVCache).
        token_budget: tokens computed per step at most; max_num_seqs: sequences running at once;
        chunk_size: prompt tokens per sequence and step (None: whole prompts); preemption:
            ``"recompute"`` or ``"swap"`` (see :class:`~kvlib.serve.scheduler.Scheduler`).
        clock: returns the time in seconds (token timestamps, arrivals); ``time.perf_counter`` by default.
        scheduler_cls: the :class:`~kvlib.serve.scheduler.Scheduler` (sub)class to plan steps with; a
            subclass overriding ``schedule`` or ``preempt`` runs another policy on the same engine.
    """

    def __init__(
        self,
        model: Any,
        *,
        num_blocks: int,
        block_size: int = 16,
        prefix_cache: str | None = "radix",
        backend: str = "gather",
        token_budget: int | None = 2048,
        max_num_seqs: int | None = 64,
        chunk_size: int | None = None,
        preemption: str = "recompute",
        clock: Callable[[], float] = time.perf_counter,
        scheduler_cls: type[Scheduler] = Scheduler,
    ) -> None:
        if not (isinstance(scheduler_cls, type) and issubclass(scheduler_cls, Scheduler)):
            raise TypeError(f"scheduler_cls must be Scheduler or a subclass, got {describe(scheduler_cls)}")
        self.model = model
        self.cache = PagedKVCache.for_model(
            model, num_blocks, block_size, prefix_cache=prefix_cache, backend=backend
        )
        self.requests: dict[int, EngineRequest] = {}
        self.scheduler = scheduler_cls(
            _CacheMemory(self.cache, self.requests),
            token_budget=token_budget,
            max_num_seqs=max_num_seqs,
            chunk_size=chunk_size,
            preemption=preemption,
        )
        self.clock = clock
        self.step_log: list[dict[str, float]] = []  # per step: queues, tokens, blocks in use, forwards
        self._next_id = 0
        self._undelivered: list[TokenEvent] = []  # produced, not yet returned by step()
        self._errors: list[Exception] = []  # sampling errors of this step, raised at its end

    # --- requests -----------------------------------------------------------------------------------

    def submit(
        self, prompt: Sequence[int], params: SamplingParams | None = None, arrival_s: float | None = None
    ) -> int:
        """Queue a request that arrived at ``arrival_s`` on the engine's clock (default: now); returns
        its id. Raises ValueError if it could never run: a prompt plus ``max_tokens`` longer than the
        model's context, than the whole block pool or (without chunked prefill, preempting by recompute)
        than the token budget."""
        params = SamplingParams() if params is None else params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {describe(params)}")
        prompt = require_token_ids("prompt", prompt, vocab_size=self.model.config.vocab_size)
        if not prompt:
            raise ValueError("prompt must hold at least one token id, got an empty one")
        self._check_fits(len(prompt) + params.max_tokens)
        self._check_budget(len(prompt) + params.max_tokens)
        now = self.clock()
        arrival_s = now if arrival_s is None else require_number("arrival_s", arrival_s, minimum=None)
        if arrival_s > now:
            raise ValueError(
                f"arrival_s = {arrival_s} is in the future (the clock says {now}): submit on arrival"
            )
        state = SequenceState(self._next_id, len(prompt))
        self.scheduler.add(state)  # may refuse (a whole prompt over the token budget)
        request = EngineRequest(state.seq_id, prompt, params, arrival_s, state, generator=_generator(params))
        self.requests[request.request_id] = request
        self._next_id += 1
        return request.request_id

    def _check_fits(self, total: int) -> None:
        context = self.model.config.max_seq_len
        if total > context:
            raise ValueError(f"prompt + max_tokens = {total} tokens exceeds the model's context of {context}")
        capacity = self.cache.manager.num_blocks * self.cache.block_size
        if total > capacity:
            raise ValueError(
                f"prompt + max_tokens = {total} tokens can never fit the KV pool of {capacity} token slots "
                f"({self.cache.manager.num_blocks} blocks of {self.cache.block_size})"
            )

    def _check_budget(self, total: int) -> None:
        """Without chunked prefill a sequence preempted by recompute prefills prompt and output in one
        step, so the longest one must fit the token budget (vLLM asks the same of its batch size)."""
        scheduler = self.scheduler
        if (
            scheduler.chunk_size == math.inf
            and scheduler.preemption == "recompute"
            and total - 1 > scheduler.token_budget  # preempted, it holds at most prompt + max_tokens - 1
        ):
            raise ValueError(
                f"prompt + max_tokens - 1 = {total - 1} tokens exceeds token_budget={scheduler.token_budget}"
                ": recomputed after a preemption it could never run; raise token_budget, set chunk_size "
                "or preempt by swap"
            )

    def cancel(self, request_id: int) -> None:
        """Stop a request now; its blocks go back to the pool (a finished request is left as it is)."""
        request = self.requests.get(request_id)
        if request is None:
            raise KeyError(f"no request {request_id}")
        if not request.finished:
            self.scheduler.cancel(request.state)
            request.finish_reason = "cancelled"

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    # --- one iteration --------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self) -> list[TokenEvent]:
        """Schedule, run and sample once; returns the tokens produced, in the order of the forwards
        (prefill groups, then decode groups). Every token of a step is stamped when the step ends, when
        a streaming client would see it. If a forward raises, tokens that earlier forwards of the step
        produced are returned by the next call."""
        plan = self.scheduler.schedule()
        decodes = [(s, n) for s, n in plan.rows if s.num_uncomputed == 1]
        prefills = [(s, n) for s, n in plan.rows if s.num_uncomputed > 1]
        # rows that start from scratch run before rows with a prefix hit: a hit may point at blocks that
        # a prompt admitted in this step registered and has not computed yet (a row in the same forward
        # fills them in time, a later forward too late, and the hit row would recompute them)
        fresh = [r for r in prefills if r[0].num_computed == 0]
        hits = [r for r in prefills if r[0].num_computed > 0]
        # padding is what a [B, T] forward wastes: prefills pad to the longest chunk, decodes attend
        # over keys padded to the longest sequence, so each is grouped by that length
        groups = _low_padding_groups(fresh, lambda row: row[1]) + _low_padding_groups(
            hits, lambda row: row[1]
        )
        groups += _low_padding_groups(decodes, lambda row: row[0].num_tokens)
        produced: list[EngineRequest] = []
        for rows in groups:
            logits = self.cache.step(self.model, [s.seq_id for s, _ in rows], [n for _, n in rows])
            produced += self._sample(rows, logits)
        now = self.clock()
        for request in produced:
            request.token_times.append(now)
        events, self._undelivered = self._undelivered, []
        self._log(plan, len(events), len(groups))
        if self._errors:
            error, self._errors = self._errors[0], []
            self._undelivered = events  # the caller gets the exception: the tokens come with the next step
            raise error
        return events

    def _sample(self, rows: list[tuple[SequenceState, int]], logits: torch.Tensor) -> list[EngineRequest]:
        """Sample the next token of every row whose tokens now all have K/V; returns their requests.
        A row whose sampling raises ends its request (``finish_reason="error"``, blocks freed) and the
        others carry on; the error is raised once the step's bookkeeping is done."""
        produced = []
        for (seq, _), row_logits in zip(rows, logits):
            request = self.requests[seq.seq_id]
            if not self.scheduler.commit(seq, self.cache.num_computed(seq.seq_id)):
                continue  # a prefill chunk short of the prompt's end: no token yet
            try:
                token = sample(row_logits, request.params, request.generator)
            except Exception as error:  # its K/V is written: without a token it could never go on
                request.finish_reason = "error"
                self.scheduler.finish(seq)
                self._errors.append(error)
                continue
            request.output.append(token)
            if token in request.params.stop_tokens:
                request.finish_reason = "stop"
            elif len(request.output) == request.params.max_tokens:
                request.finish_reason = "length"
            if request.finished:
                self.scheduler.finish(seq)  # its blocks serve the next step's admissions
            self._undelivered.append(TokenEvent(request.request_id, token, request.finished))
            produced.append(request)
        return produced

    def _log(self, plan: Any, tokens_out: int, forwards: int) -> None:
        manager = self.cache.manager
        self.step_log.append(
            {
                "time": self.clock(),
                "waiting": len(self.scheduler.waiting),
                "running": len(self.scheduler.running),
                "swapped": len(self.scheduler.swapped),
                "tokens": plan.num_tokens,
                "preempted": len(plan.preempted),
                "blocks_used": manager.num_used_blocks,
                "tokens_out": tokens_out,
                "forwards": forwards,  # model calls: each fixed-cost, so fewer is cheaper at equal tokens
            }
        )

    # --- driving it ---------------------------------------------------------------------------------

    def run(
        self, workload: Sequence[TimedRequest], progress: Callable[[int], None] | None = None
    ) -> list[EngineRequest]:
        """Serve ``workload`` with each request submitted at its ``arrival_s`` (seconds from now);
        returns the requests in workload order. With a :class:`VirtualClock` an idle engine skips to
        the next arrival. ``progress`` is called with the number of requests finished after each step."""
        order = sorted(range(len(workload)), key=lambda i: workload[i].arrival_s)
        start = self.clock()
        ids: dict[int, int] = {}
        pending = iter(order)
        nxt = next(pending, None)
        finished = 0
        while nxt is not None or self.has_unfinished():
            while nxt is not None and start + workload[nxt].arrival_s <= self.clock():
                item = workload[nxt]
                ids[nxt] = self.submit(
                    item.prompt, SamplingParams(max_tokens=item.max_tokens), start + item.arrival_s
                )
                nxt = next(pending, None)
            if not self.has_unfinished():  # idle until the next arrival
                if isinstance(self.clock, VirtualClock):
                    self.clock.skip_to(start + workload[nxt].arrival_s)
                else:
                    time.sleep(max(0.0, start + workload[nxt].arrival_s - self.clock()))
                continue
            finished += sum(e.finished for e in self.step())
            if progress is not None:
                progress(finished)
        return [self.requests[ids[i]] for i in range(len(workload))]

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams | None = None
    ) -> list[list[int]]:
        """Every prompt at once (offline batch); returns each one's output tokens."""
        ids = [self.submit(p, params) for p in prompts]
        while self.has_unfinished():
            self.step()
        return [self.requests[i].output for i in ids]

    def stream(self, prompt: Sequence[int], params: SamplingParams | None = None) -> Iterator[int]:
        """Submit one request and yield its tokens as the engine produces them (other requests in
        the engine advance too)."""
        request_id = self.submit(prompt, params)
        while not self.requests[request_id].finished:
            for event in self.step():
                if event.request_id == request_id:
                    yield event.token
