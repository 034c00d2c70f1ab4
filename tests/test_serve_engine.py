"""kvlib.serve.engine: continuous batching gives every request what generating it alone gives.

Greedy outputs equal the dense cache's in every mode (prefix cache hash, radix or off; preemption by
recompute or swap on a pool that forces it; chunked prefill under a small token budget); sampling is
reproducible per request; stop tokens, max_tokens, rejection at submission, cancel, streaming,
``run`` with timed arrivals and the step log each do what the engine's docstrings promise. The block
bookkeeping is audited after every step.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from serve_helpers import check_block_ownership, dense_greedy, shipped_model, text_slice

from kvlib.serve.engine import Engine, SamplingParams, VirtualClock, sample
from kvlib.serve.metrics import ttft
from kvlib.serve.workload import TimedRequest

pytestmark = [pytest.mark.ch08, pytest.mark.usefixtures("one_torch_thread")]

# (prompt length, max_tokens): a one-token prompt, prompts shorter and longer than a 16-token block,
# outputs that cross block boundaries
MIX = ((5, 8), (40, 12), (17, 5), (1, 10), (64, 6), (23, 14), (9, 9), (33, 7), (50, 11), (12, 4))
SYSTEM_LEN = 48  # the shared-prefix mix: three blocks of 16 shared by every prompt
QUESTIONS = ((3, 16), (20, 20), (9, 12), (1, 18), (14, 24), (30, 10))


def _mix() -> list[tuple[list[int], int]]:
    return [(text_slice(3000 * i + 7, n), m) for i, (n, m) in enumerate(MIX)]


def _shared_prefix_mix() -> list[tuple[list[int], int]]:
    system = text_slice(60_000, SYSTEM_LEN)
    return [(system + text_slice(5000 * i + 11, n), m) for i, (n, m) in enumerate(QUESTIONS)]


def _engine(**args) -> Engine:
    return Engine(shipped_model(), **{"num_blocks": 256, **args})


def _drain(engine: Engine, max_steps: int = 2000) -> list[list]:
    """Step until every request finished, auditing the blocks after each step; returns each step's events."""
    steps = []
    while engine.has_unfinished():
        steps.append(engine.step())
        engine.cache.manager.check_invariants()
        check_block_ownership(engine)
        assert len(steps) < max_steps, "the engine stopped making progress"
    return steps


def _serve(engine: Engine, requests) -> list[list[int]]:
    ids = [engine.submit(p, SamplingParams(max_tokens=m)) for p, m in requests]
    _drain(engine)
    assert all(engine.requests[i].finish_reason == "length" for i in ids)
    return [engine.requests[i].output for i in ids]


def _state(engine: Engine) -> tuple:
    """Everything a rejected call must leave as it was."""
    s = engine.scheduler
    queues = tuple(tuple(q.seq_id for q in queue) for queue in (s.waiting, s.running, s.swapped))
    return tuple(engine.requests), queues, engine.cache.manager.snapshot(), len(engine.step_log)


# --- greedy outputs in every mode ------------------------------------------------------------------

SMALL_POOL = {"num_blocks": 24, "block_size": 4}  # 96 token slots for 10 requests of up to 70 tokens
MODES = {
    "radix": {},
    "hash": {"prefix_cache": "hash"},
    "no-prefix-cache": {"prefix_cache": None},
    "recompute": {**SMALL_POOL, "preemption": "recompute"},
    "swap": {**SMALL_POOL, "preemption": "swap"},
    "recompute-no-prefix-cache": {**SMALL_POOL, "preemption": "recompute", "prefix_cache": None},
    "swap-hash": {**SMALL_POOL, "preemption": "swap", "prefix_cache": "hash"},
    "chunked": {"chunk_size": 8, "token_budget": 16},
    "chunked-recompute": {**SMALL_POOL, "chunk_size": 8, "token_budget": 24, "preemption": "recompute"},
    "chunked-swap": {**SMALL_POOL, "chunk_size": 8, "token_budget": 24, "preemption": "swap"},
    "one-at-a-time": {"max_num_seqs": 1},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mix", [_mix, _shared_prefix_mix], ids=["chat", "shared-prefix"])
def test_greedy_outputs_equal_generating_each_alone(mode, mix) -> None:
    requests, args = mix(), MODES[mode]
    if "num_blocks" in args and mix is _shared_prefix_mix:
        # without a prefix cache, 24 blocks hold one 60-token prompt at a time: none grows into another
        args = {**args, "num_blocks": 28}
    engine = _engine(**args)
    outputs = _serve(engine, requests)
    for (prompt, max_tokens), output in zip(requests, outputs):
        assert output == dense_greedy(prompt, max_tokens), f"{mode}: prompt of {len(prompt)} tokens"
    preempted = engine.scheduler.num_preemptions
    assert (preempted > 0) == ("num_blocks" in args)  # the small pool did force preemption
    assert (engine.cache.bytes_swapped > 0) == ("swap" in mode)
    assert engine.cache.manager.num_used_blocks == 0
    assert all(entry["tokens"] <= engine.scheduler.token_budget for entry in engine.step_log)
    assert all(entry["running"] <= engine.scheduler.max_num_seqs for entry in engine.step_log)
    fed = sum(len(p) + m - 1 for p, m in requests)  # every prompt token and every output token but the last
    recomputed = preempted and engine.scheduler.preemption == "recompute"
    computed = engine.cache.tokens_computed
    if engine.cache.manager.cache is None:
        assert computed > fed if recomputed else computed == fed
    elif not recomputed:  # (recomputation adds tokens, prefix hits save some: no exact count)
        assert computed < fed if mix is _shared_prefix_mix else computed == fed  # hits skip the system prompt


def test_offline_generate_returns_each_prompts_output() -> None:
    prompts = [p for p, _ in _mix()[:5]]
    outputs = _engine().generate(prompts, SamplingParams(max_tokens=6))
    assert outputs == [dense_greedy(p, 6) for p in prompts]


# --- what one step does ---------------------------------------------------------------------------


def test_a_chunked_prompt_yields_its_first_token_once_every_chunk_ran() -> None:
    engine = _engine(chunk_size=8, token_budget=64)
    prompt = text_slice(900, 30)
    engine.submit(prompt, SamplingParams(max_tokens=3))
    steps = _drain(engine)
    assert [[e.token for e in events] for events in steps] == [[], [], []] + [
        [t] for t in dense_greedy(prompt, 3)
    ]
    assert [entry["tokens"] for entry in engine.step_log] == [8, 8, 8, 6, 1, 1]


def test_finished_requests_free_their_blocks_for_the_next_step() -> None:
    """A pool of five 4-token blocks holds one 12-token prompt growing to 16 tokens, not two: the
    second request is admitted in the step right after the first one finishes."""
    engine = _engine(num_blocks=5, block_size=4)
    first = engine.submit(text_slice(100, 12), SamplingParams(max_tokens=5))
    second = engine.submit(text_slice(200, 12), SamplingParams(max_tokens=2))
    steps = _drain(engine)
    finishing = next(i for i, events in enumerate(steps) if any(e.finished for e in events))
    assert [e.request_id for e in steps[finishing]] == [first]
    assert engine.step_log[finishing]["blocks_used"] == 0  # freed within the step that finished it
    assert [e.request_id for e in steps[finishing + 1]] == [second]  # its prompt ran in the next step
    assert engine.scheduler.num_preemptions == 0


def test_decodes_and_prefills_run_as_separate_forwards() -> None:
    """One forward mixing a 100-token prompt with a decode would run 2 x 100 token slots; two
    forwards run 100 + 1."""
    engine = _engine()
    short = text_slice(300, 5)
    engine.submit(short, SamplingParams(max_tokens=4))
    engine.step()  # the short prompt's prefill: it decodes from now on
    engine.submit(text_slice(700, 100), SamplingParams(max_tokens=2))
    slots, computed = engine.cache.token_slots, engine.cache.tokens_computed
    events = engine.step()
    assert len(events) == 2
    assert engine.cache.token_slots - slots == 101 and engine.cache.tokens_computed - computed == 101


def test_token_times_and_arrivals_come_from_the_clock() -> None:
    now = [5.0]
    engine = _engine(clock=lambda: now[0])
    rid = engine.submit(text_slice(400, 6), SamplingParams(max_tokens=3))
    for t in (7.0, 8.5, 9.0):
        now[0] = t
        engine.step()
    request = engine.requests[rid]
    assert request.arrival_s == 5.0 and request.token_times == [7.0, 8.5, 9.0]
    assert request.times().arrival_s == 5.0 and request.times().token_times == [7.0, 8.5, 9.0]
    assert [entry["time"] for entry in engine.step_log] == [7.0, 8.5, 9.0]


def test_step_log_agrees_with_the_steps() -> None:
    engine = _engine(**SMALL_POOL, chunk_size=8, token_budget=24, max_num_seqs=4, preemption="swap")
    requests = _mix()
    for prompt, max_tokens in requests:
        engine.submit(prompt, SamplingParams(max_tokens=max_tokens))
    produced, unfinished, used = [], [], []
    while engine.has_unfinished():
        produced.append(len(engine.step()))
        unfinished.append(sum(not r.finished for r in engine.requests.values()))
        used.append(engine.cache.manager.num_used_blocks)
        assert len(produced) < 1000
    log = engine.step_log
    assert [e["tokens_out"] for e in log] == produced
    assert [e["waiting"] + e["running"] + e["swapped"] for e in log] == unfinished
    assert [e["blocks_used"] for e in log] == used
    assert all(e["running"] <= 4 and e["tokens"] <= 24 for e in log)
    assert sum(e["preempted"] for e in log) == engine.scheduler.num_preemptions > 0
    assert max(e["swapped"] for e in log) > 0
    assert all(a["time"] <= b["time"] for a, b in zip(log, log[1:]))
    assert sum(e["tokens_out"] for e in log) == sum(m for _, m in requests)
    calls = []  # model calls, counted by a hook (the model is shared: the hook goes at the end)
    hook = engine.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        engine.submit(requests[0][0], SamplingParams(max_tokens=3))
        engine.submit(requests[1][0][:5], SamplingParams(max_tokens=3))
        while engine.has_unfinished():
            before = len(calls)
            engine.step()
            assert engine.step_log[-1]["forwards"] == len(calls) - before >= 1
    finally:
        hook.remove()


# --- sampling -------------------------------------------------------------------------------------

SAMPLED = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, seed=7)


def _output(engine: Engine, prompt, params: SamplingParams, others=()) -> list[int]:
    half = len(others) // 2
    for p, q in others[:half]:
        engine.submit(p, q)
    rid = engine.submit(prompt, params)
    for p, q in others[half:]:
        engine.submit(p, q)
    _drain(engine)
    return engine.requests[rid].output


def test_same_seed_same_output_whatever_else_is_in_the_batch() -> None:
    prompt = text_slice(1234, 20)
    alone = _output(_engine(), prompt, SAMPLED)
    others = [(p, SamplingParams(max_tokens=m, temperature=1.2, seed=i)) for i, (p, m) in enumerate(_mix())]
    others[::2] = [(p, SamplingParams(max_tokens=m)) for p, m in _mix()[::2]]
    assert _output(_engine(), prompt, SAMPLED, others) == alone
    swapping = _engine(**SMALL_POOL, preemption="swap")
    assert _output(swapping, prompt, SAMPLED, others) == alone
    recomputing = _engine(**SMALL_POOL, preemption="recompute")
    assert _output(recomputing, prompt, SAMPLED, others) == alone
    assert swapping.scheduler.num_preemptions > 0 and recomputing.scheduler.num_preemptions > 0


def test_different_seeds_give_different_outputs() -> None:
    prompt = text_slice(1234, 20)
    outputs = [
        _output(_engine(), prompt, SamplingParams(max_tokens=16, temperature=1.0, seed=s)) for s in range(3)
    ]
    assert len({tuple(o) for o in outputs}) == 3
    assert all(o != dense_greedy(prompt, 16) for o in outputs)


def test_a_tiny_top_p_keeps_only_the_most_likely_token() -> None:
    prompt = text_slice(1234, 20)
    params = SamplingParams(max_tokens=16, temperature=1.5, top_p=1e-6, seed=3)
    assert _output(_engine(), prompt, params) == dense_greedy(prompt, 16)


def test_a_tiny_temperature_is_greedy_or_refused() -> None:
    prompt = text_slice(1234, 20)
    try:
        params = SamplingParams(max_tokens=4, temperature=1e-38)
    except ValueError:
        return
    assert _output(_engine(), prompt, params) == dense_greedy(prompt, 4)


def _frequencies(logits: torch.Tensor, params: SamplingParams, n: int = 4000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([sample(logits, params, generator) for _ in range(n)]), minlength=4)
    return counts / n


def test_sample_draws_from_the_tempered_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert sample(logits[[2, 0, 1, 3]], SamplingParams(), None) == 1  # greedy: the argmax
    cases = {  # (temperature, top_p): the distribution sampled
        (1.0, 1.0): probs,
        (1.0, 0.5): torch.tensor([1.0, 0, 0, 0]),  # {0} already reaches 0.5
        (1.0, 0.6): torch.tensor([0.625, 0.375, 0, 0]),  # the smallest set reaching 0.6: {0, 1}
        (1.0, 0.81): torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95,
        (2.0, 1.0): probs.sqrt() / probs.sqrt().sum(),
        (0.5, 1.0): probs**2 / (probs**2).sum(),
    }
    for (temperature, top_p), expected in cases.items():
        observed = _frequencies(logits, SamplingParams(temperature=temperature, top_p=top_p))
        assert (observed - expected).abs().max() < 0.03, (temperature, top_p, observed)
        assert torch.all(observed[expected == 0] == 0), (temperature, top_p, observed)


@pytest.mark.parametrize(
    "args",
    [
        {"max_tokens": 0},
        {"max_tokens": 2.5},
        {"temperature": -0.5},
        {"temperature": math.nan},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"seed": -1},
        {"stop_tokens": [3]},
        {"stop_tokens": ("a",)},
        {"stop_tokens": (-1,)},
    ],
)
def test_bad_sampling_params_are_refused(args) -> None:
    name = next(iter(args))
    with pytest.raises((TypeError, ValueError), match=name):
        SamplingParams(**args)


# --- stopping ------------------------------------------------------------------------------------


def test_a_stop_token_ends_the_request_and_is_kept() -> None:
    prompt = text_slice(2500, 15)
    reference = dense_greedy(prompt, 12)
    k = next(i for i in range(2, 12) if reference[i] not in reference[:i])  # its first occurrence
    assert 1023 not in reference  # a stop token that never comes
    engine = _engine()
    stopped = engine.submit(prompt, SamplingParams(max_tokens=12, stop_tokens=(1023, reference[k])))
    absent = engine.submit(prompt, SamplingParams(max_tokens=12, stop_tokens=(1023,)))
    first = engine.submit(prompt, SamplingParams(max_tokens=12, stop_tokens=(reference[0],)))
    _drain(engine)
    assert engine.requests[stopped].output == reference[: k + 1]
    assert engine.requests[stopped].finish_reason == "stop"
    assert engine.requests[absent].output == reference
    assert engine.requests[absent].finish_reason == "length"
    assert engine.requests[first].output == reference[:1]
    assert engine.requests[first].finish_reason == "stop"


@pytest.mark.parametrize("max_tokens", [1, 2, 17])
def test_max_tokens_is_the_output_length(max_tokens) -> None:
    prompt = text_slice(2600, 16)  # one full block: the second token needs a new one
    engine = _engine()
    rid = engine.submit(prompt, SamplingParams(max_tokens=max_tokens))
    steps = _drain(engine)
    assert len(steps) == max_tokens
    assert engine.requests[rid].output == dense_greedy(prompt, max_tokens)
    assert engine.requests[rid].finish_reason == "length"
    assert [e.finished for events in steps for e in events] == [False] * (max_tokens - 1) + [True]


# --- submission ----------------------------------------------------------------------------------


def _busy_engine(**args) -> Engine:
    """An engine in the middle of serving: one request running, one waiting."""
    engine = _engine(max_num_seqs=1, **args)
    engine.submit(text_slice(10, 6), SamplingParams(max_tokens=4))
    engine.submit(text_slice(20, 6), SamplingParams(max_tokens=4))
    engine.step()
    return engine


@pytest.mark.parametrize(
    ("engine_args", "prompt_len", "max_tokens", "match"),
    [
        ({}, 500, 13, "context of 512"),  # 513 tokens
        ({}, 512, 1, "context of 512"),
        ({"num_blocks": 4, "block_size": 4}, 10, 7, "KV pool of 16"),  # 17 tokens for 16 slots
        ({"token_budget": 32}, 33, 1, "token_budget=32"),  # a whole prompt over the budget, no chunking
    ],
)
def test_a_request_that_can_never_run_is_refused_and_changes_nothing(
    engine_args, prompt_len, max_tokens, match
) -> None:
    engine = _busy_engine(**engine_args)
    before = _state(engine)
    with pytest.raises(ValueError, match=match):
        engine.submit(text_slice(5000, prompt_len), SamplingParams(max_tokens=max_tokens))
    assert _state(engine) == before
    steps = _drain(engine)  # the engine still serves what it had
    assert sum(len(events) for events in steps) == 3 + 4  # the running request made 1 of its 4 tokens


@pytest.mark.parametrize(
    ("engine_args", "prompt_len", "max_tokens"),
    [
        ({}, 500, 12),
        ({"num_blocks": 4, "block_size": 4}, 10, 6),
        ({"token_budget": 32, "chunk_size": 8}, 33, 1),
    ],
)
def test_a_request_at_the_limit_is_accepted_and_runs(engine_args, prompt_len, max_tokens) -> None:
    engine = _engine(**engine_args)
    prompt = text_slice(5000, prompt_len)
    rid = engine.submit(prompt, SamplingParams(max_tokens=max_tokens))
    _drain(engine)
    assert engine.requests[rid].output == dense_greedy(prompt, max_tokens)


@pytest.mark.parametrize(
    ("prompt", "params", "error"),
    [
        ([], None, ValueError),
        ([5, 1024, 7], None, ValueError),  # the vocabulary is 0..1023
        ([5, -1], None, ValueError),
        ([5, 2.0], None, TypeError),
        ("hello", None, TypeError),
        ([5, 6], {"max_tokens": 3}, TypeError),
    ],
)
def test_a_malformed_request_is_refused_and_changes_nothing(prompt, params, error) -> None:
    engine = _busy_engine()
    before = _state(engine)
    with pytest.raises(error):
        engine.submit(prompt, params)
    assert _state(engine) == before


def test_a_request_recompute_could_strand_over_the_token_budget_is_refused() -> None:
    """Prompts of 14 tokens fit a 20-token budget, but once preempted after 7 output tokens prompt and
    output (21 tokens) would have to prefill in one step: without chunked prefill that request is
    refused at submission, and with chunked prefill or swap it runs."""
    prompt = text_slice(100, 14)
    engine = _engine(num_blocks=12, block_size=4, token_budget=20, preemption="recompute")
    with pytest.raises(ValueError, match="token_budget=20"):
        engine.submit(prompt, SamplingParams(max_tokens=16))
    assert not engine.has_unfinished() and not engine.requests
    for options in ({"chunk_size": 8}, {"preemption": "swap"}):
        engine = _engine(
            num_blocks=12, block_size=4, token_budget=20, **({"preemption": "recompute"} | options)
        )
        ids = [engine.submit(text_slice(100 * i, 14), SamplingParams(max_tokens=16)) for i in range(3)]
        for _ in range(300):
            if not engine.has_unfinished():
                break
            engine.step()
        assert not engine.has_unfinished() and engine.scheduler.num_preemptions > 0, options
        for i, rid in enumerate(ids):
            assert engine.requests[rid].output == dense_greedy(text_slice(100 * i, 14), 16), options


def test_engine_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="preemption"):
        _engine(preemption="evict")
    with pytest.raises(ValueError, match="token_budget"):
        _engine(token_budget=0)
    with pytest.raises(ValueError, match="max_num_seqs"):
        _engine(max_num_seqs=0)


# --- cancel --------------------------------------------------------------------------------------


def _finish_and_check_the_rest(engine: Engine, requests: dict[int, tuple[list[int], int]]) -> None:
    _drain(engine)
    for rid, (prompt, max_tokens) in requests.items():
        if engine.requests[rid].finish_reason != "cancelled":
            assert engine.requests[rid].output == dense_greedy(prompt, max_tokens), rid
    assert engine.cache.manager.num_used_blocks == 0


def _submit(engine: Engine, requests) -> dict[int, tuple[list[int], int]]:
    return {engine.submit(p, SamplingParams(max_tokens=m)): (p, m) for p, m in requests}


def test_cancel_a_waiting_request() -> None:
    engine = _engine(max_num_seqs=2)
    requests = _submit(engine, _mix()[:4])
    engine.step()
    waiting = engine.scheduler.waiting[-1].seq_id
    used = engine.cache.manager.num_used_blocks
    engine.cancel(waiting)
    assert engine.requests[waiting].finish_reason == "cancelled"
    assert waiting not in [s.seq_id for s in engine.scheduler.all_sequences()]
    assert engine.cache.manager.num_used_blocks == used
    _finish_and_check_the_rest(engine, requests)
    assert engine.requests[waiting].output == []


def test_cancel_a_running_request_frees_its_blocks() -> None:
    engine = _engine(prefix_cache=None)
    requests = _submit(engine, _mix()[:4])
    engine.step()
    engine.step()
    victim = engine.scheduler.running[1].seq_id
    held = len(engine.cache.manager.block_table(victim))
    used = engine.cache.manager.num_used_blocks
    engine.cancel(victim)
    assert engine.cache.manager.num_used_blocks == used - held
    assert victim not in engine.cache.manager.seqs
    engine.cache.manager.check_invariants()
    check_block_ownership(engine)
    prompt, max_tokens = requests[victim]
    assert engine.requests[victim].output == dense_greedy(prompt, max_tokens)[:2]  # what it had so far
    _finish_and_check_the_rest(engine, requests)
    assert engine.requests[victim].output == dense_greedy(prompt, max_tokens)[:2]


def test_cancel_a_swapped_request_drops_its_host_copy() -> None:
    engine = _engine(**SMALL_POOL, preemption="swap")
    requests = _submit(engine, _mix())
    while not engine.scheduler.swapped:
        assert engine.has_unfinished(), "no request was ever swapped out"
        engine.step()
    victim = engine.scheduler.swapped[0].seq_id
    used = engine.cache.manager.num_used_blocks
    engine.cancel(victim)
    assert engine.requests[victim].finish_reason == "cancelled" and engine.requests[victim].swapped is None
    assert victim not in [s.seq_id for s in engine.scheduler.all_sequences()]
    assert engine.cache.manager.num_used_blocks == used
    check_block_ownership(engine)
    _finish_and_check_the_rest(engine, requests)


def test_cancel_twice_a_finished_request_or_an_unknown_id() -> None:
    engine = _engine()
    requests = _submit(engine, _mix()[:3])
    first = next(iter(requests))
    engine.step()
    engine.cancel(first)
    before = _state(engine)
    engine.cancel(first)  # harmless
    assert _state(engine) == before and engine.requests[first].finish_reason == "cancelled"
    with pytest.raises(KeyError, match="99"):
        engine.cancel(99)
    assert _state(engine) == before
    _finish_and_check_the_rest(engine, requests)
    done = list(requests)[1]
    output = list(engine.requests[done].output)
    engine.cancel(done)  # a finished request is left as it is
    assert engine.requests[done].finish_reason == "length" and engine.requests[done].output == output


# --- streaming and timed runs --------------------------------------------------------------------


def test_stream_yields_exactly_the_requests_output_as_it_is_produced() -> None:
    engine = _engine()
    others = _submit(engine, _mix()[:3])
    engine.step()
    prompt = text_slice(4321, 25)
    stream = engine.stream(prompt, SamplingParams(max_tokens=9))
    first = next(stream)
    rid = max(engine.requests)
    assert engine.requests[rid].output == [first] and not engine.requests[rid].finished
    tokens = [first, *stream]
    assert tokens == engine.requests[rid].output == dense_greedy(prompt, 9)
    _finish_and_check_the_rest(engine, others)


def test_run_serves_timed_arrivals_on_a_virtual_clock() -> None:
    arrivals = (3.0, 0.0, 100.0, 0.5, 0.5, 40.0)  # out of order: run returns them in workload order
    workload = [
        TimedRequest(tuple(p), m, t) for (p, m), t in zip(_mix()[: len(arrivals)], arrivals, strict=True)
    ]
    engine = _engine(clock=VirtualClock(), max_num_seqs=3)
    progress = []
    start = time.perf_counter()
    served = engine.run(workload, progress=progress.append)
    assert time.perf_counter() - start < 60  # idle time was skipped, not slept
    origin = served[1].arrival_s  # the request that arrived at t = 0
    for item, request in zip(workload, served, strict=True):
        assert list(request.prompt) == list(item.prompt)
        assert request.output == dense_greedy(item.prompt, item.max_tokens)
        assert request.arrival_s == pytest.approx(origin + item.arrival_s)
        times = request.token_times
        assert len(times) == item.max_tokens and all(a <= b for a, b in zip(times, times[1:]))
        assert times[0] >= request.arrival_s and ttft(request.times()) >= 0
    assert served[2].token_times[0] > max(t for r in served[:2] + served[3:] for t in r.token_times)
    assert progress == sorted(progress) and progress[-1] == len(workload)
    assert engine.cache.manager.num_used_blocks == 0


# --- found by review: each once a bug ------------------------------------------------------------------


def test_prefix_hits_on_blocks_a_prompt_of_the_same_step_fills_are_not_recomputed() -> None:
    """A long prompt and three short ones sharing its 128-token opening, admitted in one step: the
    short ones (a different length group) must run after the long one fills the shared blocks, so
    the shared tokens are computed once and every first token comes in the first step."""
    system = text_slice(40_000, 128)
    prompts = [system + text_slice(1000, 200)] + [system + text_slice(9000 * j, 40) for j in range(1, 4)]
    computed = {}
    for prefix_cache in ("radix", None):
        engine = _engine(prefix_cache=prefix_cache)
        for prompt in prompts:
            engine.submit(prompt, SamplingParams(max_tokens=1))
        first = engine.step()
        assert len(first) == 4 and not engine.has_unfinished()
        computed[prefix_cache] = engine.cache.tokens_computed
    assert computed[None] == sum(map(len, prompts))
    assert computed["radix"] == computed[None] - 3 * 128  # the three hits skip the shared opening


def test_a_sampling_error_ends_that_request_only(monkeypatch) -> None:
    """If sampling raises for one request, that request ends with finish_reason "error" and frees its
    blocks; the others of the step keep their tokens (delivered by the next step) and finish as if
    nothing happened; the step raises the error."""
    import kvlib.serve.engine as engine_module

    prompts = [text_slice(2222, 20), text_slice(3333, 20)]
    engine = _engine()
    ids = [engine.submit(p, SamplingParams(max_tokens=6)) for p in prompts]
    engine.step()
    real_sample, calls = engine_module.sample, []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("sampling failed")
        return real_sample(*args)

    monkeypatch.setattr(engine_module, "sample", fails_once)
    with pytest.raises(RuntimeError, match="sampling failed"):
        engine.step()
    failed, other = engine.requests[ids[0]], engine.requests[ids[1]]
    assert failed.finish_reason == "error" and len(failed.output) == 1
    assert [e.request_id for e in engine.step()].count(other.request_id) == 2  # delivered late, then next
    _drain(engine)
    assert other.output == dense_greedy(prompts[1], 6)
    assert engine.cache.manager.num_used_blocks == 0


def test_tokens_of_a_step_that_later_raised_are_delivered_by_the_next_step(monkeypatch) -> None:
    engine = _engine()
    long_id = engine.submit(text_slice(500, 60), SamplingParams(max_tokens=3))
    short_id = engine.submit(text_slice(900, 4), SamplingParams(max_tokens=3))
    real_step, calls = engine.cache.step, []

    def second_forward_fails(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("forward failed")
        return real_step(*args)

    monkeypatch.setattr(engine.cache, "step", second_forward_fails)
    with pytest.raises(RuntimeError, match="forward failed"):
        engine.step()  # the first forward (one length group) produced a token, the second raised
    produced = [rid for rid in (long_id, short_id) if engine.requests[rid].output]
    assert len(produced) == 1
    streamed = [event.request_id for event in engine.step()]
    assert streamed.count(produced[0]) == 2  # the undelivered token, then the next one
    _drain(engine)
    for rid, (start, n) in ((long_id, (500, 60)), (short_id, (900, 4))):
        assert engine.requests[rid].output == dense_greedy(text_slice(start, n), 3)


def test_tokens_of_one_step_share_one_timestamp() -> None:
    engine = _engine(clock=VirtualClock())
    for start, n in ((100, 70), (300, 5), (700, 20)):
        engine.submit(text_slice(start, n), SamplingParams(max_tokens=2))
    engine.step()
    assert len({r.token_times[0] for r in engine.requests.values()}) == 1


def test_submit_checks_arrival_s() -> None:
    engine = _engine()
    for bad in ("soon", math.nan, math.inf):
        with pytest.raises((TypeError, ValueError), match="arrival_s"):
            engine.submit([1, 2, 3], arrival_s=bad)
    with pytest.raises(ValueError, match="in the future"):
        engine.submit([1, 2, 3], arrival_s=engine.clock() + 60)
    assert not engine.requests and not engine.has_unfinished()
    assert engine.submit([1, 2, 3]) == 0  # a refused request uses up no id


def test_unseeded_sampling_draws_a_fresh_seed_per_request() -> None:
    engine = _engine()
    prompt = text_slice(4321, 10)
    ids = [engine.submit(prompt, SamplingParams(max_tokens=12, temperature=1.0)) for _ in range(3)]
    _drain(engine)
    outputs = {tuple(engine.requests[i].output) for i in ids}
    assert len(outputs) > 1
