"""kvlib.serve.workload: Poisson arrivals, log-normal lengths scaled to the context, real prompt text,
and the shared-prefix mix. Statistical checks use large samples and tolerances of about 5 standard
errors, on fixed seeds (so they are deterministic too)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from kvlib.data import token_ids
from kvlib.serve.workload import MIXES, TimedRequest, poisson_arrivals, serving_workload

pytestmark = pytest.mark.ch08


@pytest.fixture(scope="module")
def val_text() -> bytes:
    """The validation split as int64 bytes, to find where a prompt was cut from."""
    return np.asarray(token_ids("val").tolist(), dtype=np.int64).tobytes()


def offset_in(text: bytes, tokens: tuple[int, ...]) -> int:
    """Where ``tokens`` occur consecutively in ``text`` (a token index), or -1."""
    needle = np.asarray(tokens, dtype=np.int64).tobytes()
    at = text.find(needle)
    while at != -1 and at % 8:  # a match must start on a token boundary
        at = text.find(needle, at + 1)
    return -1 if at == -1 else at // 8


def common_prefix_len(prompts: list[tuple[int, ...]]) -> int:
    n = 0
    while all(len(p) > n for p in prompts) and len({p[n] for p in prompts}) == 1:
        n += 1
    return n


# --- arrivals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, seed", [(0.5, 0), (4.0, 1), (100.0, 2)])
def test_poisson_gaps_are_exponential_with_mean_one_over_rate(rate, seed):
    n = 20_000
    times = poisson_arrivals(n, rate, seed)
    assert len(times) == n and times[0] == 0.0
    gaps = np.diff(times)
    assert (gaps >= 0).all()
    mean = 1 / rate  # each estimate below has a standard error of about 1% or less at this n
    assert gaps.mean() == pytest.approx(mean, rel=0.04)
    assert gaps.std() == pytest.approx(mean, rel=0.05)  # exponential: the spread equals the mean
    assert (gaps > mean).mean() == pytest.approx(math.exp(-1), abs=0.02)  # P(gap > mean) = 1/e


def test_an_infinite_rate_puts_every_request_at_zero():
    assert poisson_arrivals(5, math.inf) == [0.0] * 5
    assert all(r.arrival_s == 0.0 for r in serving_workload(20))  # rate defaults to inf: an offline batch


def test_arrivals_of_zero_or_one_request():
    assert poisson_arrivals(0, 1.0) == []
    assert poisson_arrivals(1, 1.0) == [0.0]


def test_arrivals_depend_on_the_seed_only():
    assert poisson_arrivals(50, 2.0, seed=3) == poisson_arrivals(50, 2.0, seed=3)
    assert poisson_arrivals(50, 2.0, seed=3) != poisson_arrivals(50, 2.0, seed=4)


@pytest.mark.parametrize(
    "n, rate, error, match",
    [
        (-1, 1.0, ValueError, "n must be an integer >= 0"),
        (2.0, 1.0, TypeError, "n must be"),
        (5, 0.0, ValueError, "rate"),
        (5, -1.0, ValueError, "rate"),
        (5, math.nan, ValueError, "rate"),
        (5, -math.inf, ValueError, "rate"),
        (5, "fast", TypeError, "rate"),
    ],
)
def test_bad_arrival_arguments_raise(n, rate, error, match):
    with pytest.raises(error, match=match):
        poisson_arrivals(n, rate)


# --- requests ----------------------------------------------------------------------------------------------


def test_the_workload_arrives_as_poisson_arrivals_of_the_same_seed():
    workload = serving_workload(100, 3.0, seed=7)
    assert [r.arrival_s for r in workload] == poisson_arrivals(100, 3.0, seed=7)


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("context", [16, 64, 512])
def test_every_request_fits_the_context(mix, context):
    system_len = context // 4
    for r in serving_workload(300, mix=mix, context=context, system_len=system_len, seed=context):
        assert isinstance(r, TimedRequest) and len(r.prompt) >= 1 and r.max_tokens >= 1
        assert len(r.prompt) + r.max_tokens <= context
        if mix == "shared-prefix":
            assert len(r.prompt) > system_len  # the system prompt and at least one token of question


def test_the_smallest_contexts_still_give_a_token_each():
    assert {(len(r.prompt), r.max_tokens) for r in serving_workload(20, context=2)} == {(1, 1)}
    shared = serving_workload(20, mix="shared-prefix", context=3, system_len=1)
    assert {(len(r.prompt), r.max_tokens) for r in shared} == {(2, 1)}


@pytest.mark.parametrize("context, prompt_median, output_median", [(512, 50, 62.5), (2048, 200, 250)])
def test_chat_lengths_have_the_scaled_medians(context, prompt_median, output_median):
    # log-normal with sigma <= 1: the sample median's standard error is about 2% at n = 4000
    workload = serving_workload(4000, context=context, seed=11)
    assert statistics.median(len(r.prompt) for r in workload) == pytest.approx(prompt_median, rel=0.1)
    assert statistics.median(r.max_tokens for r in workload) == pytest.approx(output_median, rel=0.1)


def test_chat_prompts_are_independent_runs_of_real_text(val_text):
    workload = serving_workload(50, seed=5)
    assert all(offset_in(val_text, r.prompt) >= 0 for r in workload)
    assert common_prefix_len([r.prompt for r in workload]) == 0
    assert len({offset_in(val_text, r.prompt) for r in workload}) == 50  # each from its own offset


@pytest.mark.parametrize("system_len", [1, 16, 128])
def test_shared_prefix_prompts_share_exactly_the_system_prompt(system_len, val_text):
    workload = serving_workload(50, mix="shared-prefix", system_len=system_len, seed=system_len)
    prompts = [r.prompt for r in workload]
    assert common_prefix_len(prompts) == system_len  # the same system prompt, then different questions
    for p in prompts:
        assert offset_in(val_text, p[:system_len]) >= 0 and offset_in(val_text, p[system_len:]) >= 0
    assert all(len(p) + r.max_tokens <= 512 for p, r in zip(prompts, workload))


def test_the_same_seed_gives_the_same_workload():
    for mix in MIXES:
        assert serving_workload(40, 2.0, mix=mix, seed=9) == serving_workload(40, 2.0, mix=mix, seed=9)
        first, other = serving_workload(40, 2.0, mix=mix, seed=9), serving_workload(40, 2.0, mix=mix, seed=10)
        assert [r.prompt for r in first] != [r.prompt for r in other]
        assert [r.max_tokens for r in first] != [r.max_tokens for r in other]
        assert [r.arrival_s for r in first] != [r.arrival_s for r in other]


def test_zero_requests():
    assert serving_workload(0) == [] and serving_workload(0, mix="shared-prefix") == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mix": "chatt"}, ValueError, r"mix must be one of \('chat', 'shared-prefix'\), got 'chatt'"),
        ({"mix": None}, ValueError, "mix must be one of"),
        ({"context": 1}, ValueError, "context must be an integer >= 2"),
        ({"context": 512.0}, TypeError, "context"),
        ({"mix": "shared-prefix", "system_len": 0}, ValueError, "system_len"),
        (
            {"mix": "shared-prefix", "system_len": 511},
            ValueError,
            r"system_len must be an integer in \[1, 510\]",
        ),
        ({"mix": "shared-prefix", "context": 2, "system_len": 1}, ValueError, "system_len"),
        ({"n": -1}, ValueError, "n must be"),
        ({"rate": 0.0}, ValueError, "rate"),
    ],
)
def test_bad_workload_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        serving_workload(**{"n": 4, **kwargs})


@pytest.mark.parametrize(
    "prompt, max_tokens, arrival, error",
    [
        ([1, 2], 4, 0.0, TypeError),  # a list: TimedRequest is frozen and hashable, so a tuple
        ((), 4, 0.0, TypeError),
        ((1, 2), 0, 0.0, ValueError),
        ((1, 2), 2.0, 0.0, TypeError),
        ((1, 2), 4, -1.0, ValueError),
        ((1, 2), 4, math.inf, ValueError),
    ],
)
def test_bad_timed_requests_raise(prompt, max_tokens, arrival, error):
    with pytest.raises(error, match="prompt|max_tokens|arrival_s"):
        TimedRequest(prompt, max_tokens, arrival)
