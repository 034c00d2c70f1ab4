"""What chapter 08 added to kvlib: request_metrics, float percentiles, KV heads and bytes per GPU under
tensor parallelism, BlockCountMemory, Engine(scheduler_cls=) and the scheduler's policy as functions.

Each test holds one promise of a docstring: request_metrics' values, types and errors; percentile's
floats; kv_heads_per_gpu's split rules on real shapes and its errors; every contract break of
BlockCountMemory raising RuntimeError and changing nothing, and its block counts; an Engine planning
with a Scheduler subclass; Scheduler.schedule and Scheduler.preempt running schedule_step and preempt,
and an overridden preempt called from inside a schedule. The bad-input table at the end covers the
serving additions (the memory functions' rows are in tests/test_bad_input_cache.py).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from bad_input import Case, assert_clear_error, params
from serve_helpers import dense_greedy, shipped_model, text_slice

import kvlib.serve.scheduler as scheduler_module
from kvlib.memory import MODEL_CONFIGS, ModelShape, kv_bytes_per_gpu, kv_cache_bytes, kv_heads_per_gpu
from kvlib.serve.block_count import BlockCountMemory
from kvlib.serve.engine import Engine, SamplingParams
from kvlib.serve.metrics import percentile, request_metrics
from kvlib.serve.scheduler import Scheduler, SequenceState, StepPlan, preempt, schedule_step

pytestmark = pytest.mark.ch08


def _shape(num_heads: int, num_kv_heads: int) -> ModelShape:
    return ModelShape(
        f"{num_heads}q/{num_kv_heads}kv", 2, num_heads, num_kv_heads, 8, 8 * num_heads, 64, 0.1, "test"
    )


# --- request_metrics ---------------------------------------------------------------------------------


def test_request_metrics_values_and_exact_keys() -> None:
    got = request_metrics(0.5, [1.0, 1.25, 2.0, 2.0])
    assert set(got) == {"ttft", "tpot", "e2e", "itl"}
    assert got["ttft"] == 0.5 and got["e2e"] == 1.5
    assert got["tpot"] == pytest.approx(1.0 / 3)  # (e2e - ttft) / (n - 1)
    assert got["itl"] == [0.25, 0.75, 0.0]
    assert sum(got["itl"]) == pytest.approx(got["e2e"] - got["ttft"])


@pytest.mark.parametrize(
    "token_times",
    [[3, 4, 6], (3, 4, 6), np.array([3, 4, 6]), np.array([3, 4, 6], dtype=np.int32), (t for t in [3, 4, 6])],
    ids=["list", "tuple", "int64-array", "int32-array", "generator"],
)
def test_request_metrics_returns_python_floats_for_integer_inputs(token_times) -> None:
    got = request_metrics(np.int64(1) if isinstance(token_times, np.ndarray) else 1, token_times)
    assert got == {"ttft": 2.0, "tpot": 1.5, "e2e": 5.0, "itl": [1.0, 2.0]}
    for key in ("ttft", "tpot", "e2e"):
        assert type(got[key]) is float, (key, type(got[key]))
    assert type(got["itl"]) is list and all(type(g) is float for g in got["itl"])


def test_request_metrics_one_token_has_nan_tpot_and_no_gaps() -> None:
    got = request_metrics(2, [5])
    assert got["ttft"] == 3.0 and got["e2e"] == 3.0 and got["itl"] == []
    assert type(got["tpot"]) is float and math.isnan(got["tpot"])  # undefined, never 0


@pytest.mark.parametrize("empty", [[], (), np.array([])], ids=["list", "tuple", "array"])
def test_request_metrics_without_tokens_raises_value_error(empty) -> None:
    with pytest.raises(ValueError, match="no output token"):
        request_metrics(0.0, empty)


def test_request_metrics_leaves_its_input_alone_and_returns_fresh_lists() -> None:
    times = [1.0, 2.0, 4.0]
    array = np.array(times)
    first = request_metrics(0.0, times)
    request_metrics(0.0, array)
    assert times == [1.0, 2.0, 4.0] and array.tolist() == [1.0, 2.0, 4.0]
    first["itl"].append(99.0)  # a caller changing one result changes nothing else
    second = request_metrics(0.0, times)
    assert second["itl"] == [1.0, 2.0] and second["itl"] is not first["itl"] and times == [1.0, 2.0, 4.0]


def test_request_metrics_on_a_negative_clock_and_simultaneous_tokens() -> None:
    got = request_metrics(-3.0, [-3.0, -1.0, -1.0])
    assert got == {"ttft": 0.0, "tpot": 1.0, "e2e": 2.0, "itl": [2.0, 0.0]}


# --- percentile --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, q, want",
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3], 50, 2.0),
        ([7], 99, 7.0),
        ([3, 1, 2], 0, 1.0),
        ([3, 1, 2], 100, 3.0),
        (np.array([10, 20, 30]), 25, 15.0),
        (np.array([10, 20, 30], dtype=np.int32), 50, 20.0),
        ((4, 2), 50.0, 3.0),
    ],
)
def test_percentile_returns_python_floats_even_for_integers(values, q, want) -> None:
    got = percentile(values, q)
    assert type(got) is float and got == want
    if not isinstance(values[0], (bool, np.bool_)):
        assert got == pytest.approx(float(np.percentile(np.asarray(values, dtype=float), q)))


def test_percentile_leaves_values_alone_and_nan_out() -> None:
    values = [5, float("nan"), 1, 3]
    assert percentile(values, 50) == 3.0
    assert values[0] == 5 and values[2:] == [1, 3]  # not sorted in place
    assert math.isnan(percentile([float("nan")], 50)) and type(percentile([], 50)) is float


# --- kv_heads_per_gpu / kv_bytes_per_gpu -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, heads_by_tp",
    [
        ("Llama-2-70B", {1: 8, 2: 4, 4: 2, 8: 1, 16: 1, 32: 1, 64: 1}),
        ("Llama-3.1-405B", {8: 1, 16: 1, 128: 1}),
        ("Llama-2-7B", {1: 32, 4: 8, 32: 1}),
        ("GPT-2 XL 1.5B", {1: 25, 5: 5, 25: 1}),
        ("Qwen2-7B", {1: 4, 2: 2, 4: 1, 28: 1}),
        ("Gemma-7B", {2: 8, 16: 1}),
    ],
)
def test_kv_heads_per_gpu_on_real_models(name: str, heads_by_tp: dict[int, int]) -> None:
    shape = MODEL_CONFIGS[name]
    for tp, heads in heads_by_tp.items():
        assert kv_heads_per_gpu(shape, tp) == heads, tp
        want = kv_cache_bytes(shape.num_layers, heads, shape.head_dim, 4096, 3, "int4")
        got = kv_bytes_per_gpu(shape, tp, 4096, 3, "int4")
        assert type(got) is int and got == want


def test_the_cache_per_gpu_stops_shrinking_at_tp_equal_to_the_kv_heads() -> None:
    shape = MODEL_CONFIGS["Llama-2-70B"]
    one_head = 2 * 80 * 128 * 4096 * 2  # layers, head_dim, tokens, fp16 bytes; keys and values
    assert kv_bytes_per_gpu(shape, 8, 4096) == kv_bytes_per_gpu(shape, 16, 4096) == one_head
    assert kv_bytes_per_gpu(shape, 1, 4096) == 8 * one_head == shape.kv_bytes(4096)
    assert kv_bytes_per_gpu(shape, 2, 4096, batch=4, dtype=torch.bfloat16) == 4 * 4 * one_head
    assert kv_bytes_per_gpu(shape, 4, 4096, dtype="int8") == one_head  # 2 heads of 1 byte
    assert kv_bytes_per_gpu(_shape(12, 3), 6, 10, 1, "fp32") == 2 * 2 * 8 * 10 * 4  # a head copied to 2 GPUs


@pytest.mark.parametrize(
    "shape, tp, match",
    [
        (MODEL_CONFIGS["Llama-2-70B"], 3, "Llama-2-70B: tp=3 does not divide its 64 query heads"),
        (MODEL_CONFIGS["GPT-2 XL 1.5B"], 2, "tp=2 does not divide its 25 query heads"),
        (_shape(12, 4), 8, "tp=8 does not divide its 12 query heads"),  # a multiple of the KV heads
        (_shape(12, 6), 4, "tp=4 does not divide its 6 KV heads"),
        (MODEL_CONFIGS["Qwen2-7B"], 7, "tp=7 is not a multiple of its 4 KV heads, so they cannot be copied"),
        (_shape(12, 3), 4, "tp=4 is not a multiple of its 3 KV heads"),
        (MODEL_CONFIGS["Llama-2-70B"], 0, "tp must be an integer >= 1, got 0"),
        (MODEL_CONFIGS["Llama-2-70B"], -8, "tp must be an integer >= 1, got -8"),
    ],
)
def test_uneven_splits_raise_value_error(shape: ModelShape, tp: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kv_heads_per_gpu(shape, tp)
    with pytest.raises(ValueError, match=match):
        kv_bytes_per_gpu(shape, tp, 100)


@pytest.mark.parametrize("bad", ["Llama-2-70B", None, {"num_heads": 64}, MODEL_CONFIGS], ids=str)
def test_a_shape_that_is_not_a_model_shape_raises_type_error(bad) -> None:
    with pytest.raises(TypeError, match="shape must be a ModelShape"):
        kv_heads_per_gpu(bad, 8)
    with pytest.raises(TypeError, match="shape must be a ModelShape"):
        kv_bytes_per_gpu(bad, 8, 100)


def test_kv_heads_per_gpu_agrees_with_the_rule_on_every_split() -> None:
    for shape in [*MODEL_CONFIGS.values(), _shape(12, 3), _shape(24, 6), _shape(16, 1), _shape(30, 5)]:
        kv = shape.num_kv_heads
        for tp in range(1, 2 * shape.num_heads + 1):
            even = shape.num_heads % tp == 0 and (kv % tp == 0 if tp <= kv else tp % kv == 0)
            if even:
                assert kv_heads_per_gpu(shape, tp) == max(1, kv // tp)
            else:
                with pytest.raises(ValueError):
                    kv_heads_per_gpu(shape, tp)


# --- BlockCountMemory --------------------------------------------------------------------------------


def _state(memory: BlockCountMemory) -> tuple:
    return dict(memory.device), dict(memory.host), list(memory.calls), memory.free_blocks


def test_block_count_memory_admits_and_grows_in_blocks() -> None:
    memory = BlockCountMemory(4, block_size=4, prefix_hits={1: 3})
    a, b, big = SequenceState(0, 5), SequenceState(1, 4), SequenceState(2, 9)
    assert memory.admit(a) and memory.free_blocks == 2 and a.num_computed == 0  # 5 tokens: 2 blocks
    assert memory.admit(b) and memory.free_blocks == 1 and b.num_computed == 3  # its prefix hit
    before = _state(memory)
    assert memory.admit(big) is False  # 3 blocks, 1 free: refused, nothing taken
    assert _state(memory)[:2] == before[:2] and memory.free_blocks == 1 and big.num_computed == 0
    assert memory.calls[-1] == ("admit", 2, False)
    a.num_tokens, a.needs_slot = 6, True  # a produced a token: slot 6 is inside its second block
    assert memory.grow(a) and memory.device[0] == 6 and memory.free_blocks == 1
    b.num_tokens, b.needs_slot = 5, True  # b's fifth token needs a new block: the last one
    assert memory.grow(b) and memory.free_blocks == 0
    a.num_tokens = 7  # (BlockCountMemory leaves needs_slot to the scheduler: it is still True)
    assert memory.grow(a) and memory.device[0] == 7  # still inside the second block
    a.num_tokens = 8
    assert memory.grow(a) and memory.free_blocks == 0
    a.num_tokens = 9
    assert memory.grow(a) is False and memory.device[0] == 8  # needs a third block: none free
    assert memory.count("grow", 0) == 4 and memory.count("admit", 2) == 1
    memory.release(b)
    assert memory.free_blocks == 2 and 1 not in memory.device


def test_block_count_memory_swaps_out_and_in() -> None:
    memory = BlockCountMemory(3, block_size=4)
    a, b = SequenceState(0, 8), SequenceState(1, 4)
    assert memory.admit(a) and memory.admit(b) and memory.free_blocks == 0
    a.num_tokens, a.needs_slot = 9, True  # a's token has no slot yet
    memory.swap_out(a)
    assert memory.host == {0: 8} and 0 not in memory.device and memory.free_blocks == 2
    assert memory.swap_in(a) is False  # 8 held + 1 pending token = 3 blocks, 2 free
    assert memory.host == {0: 8} and memory.free_blocks == 2
    memory.release(b)
    assert memory.swap_in(a) and memory.device == {0: 9} and memory.host == {} and memory.free_blocks == 0
    memory.swap_out(a)
    memory.release(a)  # a swapped sequence is released from host memory
    assert memory.host == {} and memory.device == {} and memory.free_blocks == 3
    assert [c[0] for c in memory.calls] == [
        "admit", "admit", "swap_out", "swap_in", "release", "swap_in", "swap_out", "release",
    ]  # fmt: skip


def _contract_breaks() -> list:
    """(id, setup returning (memory, call), words of the RuntimeError)."""

    def admitted(tokens: int = 4):
        memory = BlockCountMemory(8, 4)
        seq = SequenceState(0, tokens)
        memory.admit(seq)
        return memory, seq

    def admit_twice():
        memory, seq = admitted()
        return memory, seq, lambda: memory.admit(seq)

    def admit_swapped():
        memory, seq = admitted()
        memory.swap_out(seq)
        return memory, seq, lambda: memory.admit(seq)

    def admit_computed():
        memory, seq = BlockCountMemory(8, 4), SequenceState(0, 4, num_computed=2)
        return memory, seq, lambda: memory.admit(seq)

    def admit_needs_slot():
        memory, seq = BlockCountMemory(8, 4), SequenceState(0, 4, needs_slot=True)
        return memory, seq, lambda: memory.admit(seq)

    def grow_unheld():
        memory, seq = BlockCountMemory(8, 4), SequenceState(0, 4, needs_slot=True)
        return memory, seq, lambda: memory.grow(seq)

    def grow_without_token():
        memory, seq = admitted()
        return memory, seq, lambda: memory.grow(seq)

    def grow_two_behind():
        memory, seq = admitted()
        seq.num_tokens, seq.needs_slot = 6, True  # two tokens past what it holds
        return memory, seq, lambda: memory.grow(seq)

    def release_twice():
        memory, seq = admitted()
        memory.release(seq)
        return memory, seq, lambda: memory.release(seq)

    def swap_out_unheld():
        memory, seq = admitted()
        memory.swap_out(seq)
        return memory, seq, lambda: memory.swap_out(seq)

    def swap_in_resident():
        memory, seq = admitted()
        return memory, seq, lambda: memory.swap_in(seq)

    def swap_in_wrong_size():
        memory, seq = admitted()
        memory.swap_out(seq)
        seq.num_tokens = 7  # neither what host holds nor one pending token more
        return memory, seq, lambda: memory.swap_in(seq)

    return [
        ("admit-twice", admit_twice, "admit of sequence 0, which already holds memory (admitted twice?)"),
        ("admit-swapped", admit_swapped, "already holds memory"),
        (
            "admit-computed",
            admit_computed,
            "num_computed=2, needs_slot=False: a waiting sequence has nothing",
        ),
        ("admit-needs-slot", admit_needs_slot, "needs_slot=True"),
        ("grow-unheld", grow_unheld, "holding None slots: grow only a running sequence"),
        ("grow-no-token", grow_without_token, "needs_slot=False) holding 4 slots"),
        ("grow-two-behind", grow_two_behind, "num_tokens=6, needs_slot=True) holding 4 slots"),
        ("release-twice", release_twice, "release of sequence 0, which holds nothing (released twice?)"),
        ("swap-out-unheld", swap_out_unheld, "swap_out of sequence 0, which holds no device memory"),
        ("swap-in-resident", swap_in_resident, "swap_in of sequence 0, which was not swapped out"),
        ("swap-in-wrong-size", swap_in_wrong_size, "(num_tokens=7, needs_slot=False): host holds 4 tokens"),
    ]


@pytest.mark.parametrize(("setup", "words"), [pytest.param(s, w, id=i) for i, s, w in _contract_breaks()])
def test_each_contract_break_raises_and_changes_nothing(setup, words: str) -> None:
    memory, seq, bad_call = setup()
    before, seq_before = _state(memory), copy.copy(vars(seq))
    with pytest.raises(RuntimeError) as info:
        bad_call()
    assert words in str(info.value) and "\n" not in str(info.value)
    assert _state(memory) == before and vars(seq) == seq_before


def test_block_count_memory_refuses_breaks_under_python_o_too() -> None:
    """The contract is checked with exceptions, not asserts (python -O strips asserts)."""
    import inspect

    import kvlib.serve.block_count as module

    assert "assert " not in inspect.getsource(module)


# --- schedule_step / preempt behind Scheduler.schedule / Scheduler.preempt -----------------------------


def _two_that_must_preempt(cls: type[Scheduler] = Scheduler, preemption: str = "recompute"):
    memory = BlockCountMemory(2, block_size=4)
    sched = cls(memory, preemption=preemption)
    a, b = SequenceState(0, 4), SequenceState(1, 4)
    sched.add(a)
    sched.add(b)
    plan = sched.schedule()  # both prefill whole: one block each, the pool is full
    for seq, n in plan.rows:
        sched.commit(seq, seq.num_computed + n)  # each produced a token that needs a second block
    return sched, memory, a, b


def test_scheduler_schedule_runs_schedule_step_and_preempt_runs_preempt(monkeypatch) -> None:
    seen = []
    real_step, real_preempt = scheduler_module.schedule_step, scheduler_module.preempt

    def spy_step(sched):
        seen.append(("schedule_step", sched))
        return real_step(sched)

    def spy_preempt(sched, seq, plan):
        seen.append(("preempt", seq.seq_id))
        return real_preempt(sched, seq, plan)

    monkeypatch.setattr(scheduler_module, "schedule_step", spy_step)
    monkeypatch.setattr(scheduler_module, "preempt", spy_preempt)
    sched, _, a, b = _two_that_must_preempt()
    plan = sched.schedule()
    assert seen[0] == ("schedule_step", sched) and seen[1:].count(("schedule_step", sched)) == 1
    assert ("preempt", 1) in seen and plan.preempted == [b]


def test_schedule_step_plans_what_schedule_plans() -> None:
    twins = [_two_that_must_preempt(preemption="swap") for _ in range(2)]
    for _ in range(6):
        plans = [twins[0][0].schedule(), schedule_step(twins[1][0])]
        summary = [
            (
                [(s.seq_id, n) for s, n in p.rows],
                [s.seq_id for s in p.preempted],
                [s.seq_id for s in p.swapped_in],
            )
            for p in plans
        ]
        assert summary[0] == summary[1]
        assert twins[0][1].calls == twins[1][1].calls
        for (sched, *_), plan in zip(twins, plans):
            for seq, n in plan.rows:
                if sched.commit(seq, seq.num_computed + n) and seq.num_tokens >= 6:
                    sched.finish(seq)


def test_an_overridden_preempt_is_called_during_a_schedule_that_preempts() -> None:
    calls = []

    class Recording(Scheduler):
        def preempt(self, seq: SequenceState, plan: StepPlan) -> None:
            calls.append((seq, plan, list(self.running)))
            super().preempt(seq, plan)

    sched, memory, a, b = _two_that_must_preempt(Recording)
    plan = sched.schedule()
    assert len(calls) == 1
    victim, seen_plan, running = calls[0]
    assert victim is b and seen_plan is plan and running == [a, b]  # the newest, while it still ran
    assert plan.preempted == [b] and list(sched.waiting) == [b] and sched.running == [a]
    assert memory.count("release", 1) == 1 and b.num_computed == 0 and b.num_preemptions == 1


def test_a_preempt_override_decides_what_preemption_does() -> None:
    class SwapAnyway(Scheduler):
        """Preempts by swap whatever the mode, through the module's preempt with the mode switched."""

        def preempt(self, seq: SequenceState, plan: StepPlan) -> None:
            mode, self.preemption = self.preemption, "swap"
            try:
                preempt(self, seq, plan)
            finally:
                self.preemption = mode

    sched, memory, a, b = _two_that_must_preempt(SwapAnyway)
    plan = sched.schedule()
    assert plan.preempted == [b] and list(sched.swapped) == [b] and not sched.waiting
    assert memory.host == {1: 4} and memory.count("release", 1) == 0


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preempt_function_by_mode(mode: str) -> None:
    sched, memory, a, b = _two_that_must_preempt(preemption=mode)
    waiting = SequenceState(5, 3)
    sched.add(waiting)
    plan = StepPlan()
    preempt(sched, b, plan)
    assert sched.running == [a] and plan.preempted == [b]
    assert b.num_preemptions == 1 and sched.num_preemptions == 1 and b.num_tokens == 5
    if mode == "recompute":
        assert list(sched.waiting) == [b, waiting] and b.num_computed == 0 and not b.needs_slot
        assert memory.count("release", 1) == 1 and memory.count("swap_out", 1) == 0
    else:
        assert list(sched.swapped) == [b] and list(sched.waiting) == [waiting]
        assert b.num_computed == 4 and b.needs_slot and memory.host == {1: 4}
        assert memory.count("swap_out", 1) == 1 and memory.count("release", 1) == 0


# --- Engine(scheduler_cls=) ----------------------------------------------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
def test_engine_plans_with_a_scheduler_subclass() -> None:
    class Counting(Scheduler):
        schedules = 0
        preempts = 0

        def schedule(self) -> StepPlan:
            type(self).schedules += 1
            return super().schedule()

        def preempt(self, seq: SequenceState, plan: StepPlan) -> None:
            type(self).preempts += 1
            super().preempt(seq, plan)

    # 24 token slots for three requests of 11 tokens: someone is preempted (by recompute)
    engine = Engine(shipped_model(), num_blocks=6, block_size=4, prefix_cache=None, scheduler_cls=Counting)
    assert type(engine.scheduler) is Counting
    prompts = [text_slice(100 * i + 7, 5) for i in range(3)]
    ids = [engine.submit(p, SamplingParams(max_tokens=6)) for p in prompts]
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
        assert steps < 100
    assert Counting.schedules == steps and Counting.preempts >= 1
    assert [engine.requests[i].output for i in ids] == [dense_greedy(p, 6) for p in prompts]


@pytest.mark.parametrize(
    "bad",
    [object, Scheduler(BlockCountMemory(4)), "Scheduler", lambda memory, **kw: Scheduler(memory, **kw), int],
)
def test_engine_refuses_what_is_not_a_scheduler_class(bad) -> None:
    with pytest.raises(TypeError, match="scheduler_cls must be Scheduler or a subclass, got"):
        Engine(shipped_model(), num_blocks=8, scheduler_cls=bad)


# --- bad input (the table format of tests/bad_input.py) ------------------------------------------------

CASES = [
    Case("request-metrics-empty", lambda: request_metrics(0.0, []), ValueError, ("no output token",)),
    Case("request-metrics-not-a-list", lambda: request_metrics(0.0, 5), TypeError, ("token_times", "list")),
    Case("request-metrics-str", lambda: request_metrics(0.0, "12"), TypeError, ("token_times", "'12'")),
    Case("percentile-not-a-list", lambda: percentile(5, 50), TypeError, ("values", "list")),
    Case("percentile-str-item", lambda: percentile(["a"], 50), TypeError, ("values[0]", "'a'")),
    Case("percentile-bool-item", lambda: percentile([True, False], 50), TypeError, ("values[0]", "bool")),
    Case("schedule-step-not-a-scheduler", lambda: schedule_step("x"), TypeError, ("sched", "Scheduler")),
    Case(
        "block-count-negative-hit",
        lambda: BlockCountMemory(4, prefix_hits={0: -3}),
        ValueError,
        ("prefix_hits[0]", "-3"),
    ),
    Case(
        "block-count-hits-not-dict",
        lambda: BlockCountMemory(4, prefix_hits="ab"),
        TypeError,
        ("prefix_hits",),
    ),
    Case(
        "request-metrics-arrival-none", lambda: request_metrics(None, [1.0]), TypeError, ("arrival_s", "None")
    ),
    Case("request-metrics-arrival-nan", lambda: request_metrics(math.nan, [1.0]), ValueError, ("arrival_s",)),
    Case(
        "request-metrics-str-time",
        lambda: request_metrics(0.0, ["1.5"]),
        TypeError,
        ("token_times[0]", "'1.5' (str)"),
    ),
    Case(
        "request-metrics-nan-time",
        lambda: request_metrics(0.0, [1.0, math.nan]),
        ValueError,
        ("token_times[1]",),
    ),
    Case(
        "request-metrics-decreasing",
        lambda: request_metrics(0.0, [2.0, 1.0]),
        ValueError,
        ("token_times must not decrease", "[2.0, 1.0]"),
    ),
    Case(
        "request-metrics-before-arrival",
        lambda: request_metrics(3.0, [1.0, 4.0]),
        ValueError,
        ("token_times[0] = 1.0", "before arrival_s = 3.0"),
    ),
    Case("percentile-q-fraction-of-100", lambda: percentile([1.0], 101), ValueError, ("q", "<= 100", "101")),
    Case("percentile-q-str", lambda: percentile([1.0], "99"), TypeError, ("q", "'99' (str)")),
    Case("block-count-no-blocks", lambda: BlockCountMemory(0), ValueError, ("num_blocks", ">= 1", "0")),
    Case("block-count-block-size", lambda: BlockCountMemory(4, 0), ValueError, ("block_size", ">= 1", "0")),
    Case("block-count-str", lambda: BlockCountMemory("4"), TypeError, ("num_blocks", "'4' (str)")),
    Case("block-count-float", lambda: BlockCountMemory(4, 2.0), TypeError, ("block_size", "2.0 (float)")),
    Case(
        "engine-scheduler-instance",
        lambda: Engine(shipped_model(), num_blocks=8, scheduler_cls=Scheduler(BlockCountMemory(4))),
        TypeError,
        ("scheduler_cls", "Scheduler or a subclass"),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_clear_error(case: Case) -> None:
    assert_clear_error(case)
