"""kvlib.serve.metrics: vLLM's serving-benchmark definitions of TTFT, TPOT, ITL, E2E latency,
throughput and percentiles, checked on hand-computed examples and against numpy."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from kvlib.serve.metrics import (
    RequestTimes,
    inter_token_latencies,
    latency,
    percentile,
    summarize,
    tpot,
    ttft,
)

pytestmark = pytest.mark.ch08

# arrived at 1.0, tokens at 1.5, 1.7, 2.0, 2.6
EXAMPLE = RequestTimes(1.0, [1.5, 1.7, 2.0, 2.6])


def test_per_request_latencies_follow_the_definitions():
    assert ttft(EXAMPLE) == pytest.approx(0.5)  # first token - arrival: queueing and prefill included
    assert latency(EXAMPLE) == pytest.approx(1.6)  # last token - arrival
    assert tpot(EXAMPLE) == pytest.approx((1.6 - 0.5) / 3)  # (latency - TTFT) / (n - 1)
    assert inter_token_latencies(EXAMPLE) == pytest.approx([0.2, 0.3, 0.6])
    assert EXAMPLE.num_tokens == 4


def test_tpot_is_the_mean_inter_token_latency_of_a_request():
    gaps = inter_token_latencies(EXAMPLE)
    assert tpot(EXAMPLE) == pytest.approx(sum(gaps) / len(gaps))


def test_one_token_has_a_ttft_and_latency_but_no_tpot_or_gaps():
    one = RequestTimes(2.0, [3.0])
    assert ttft(one) == latency(one) == 1.0
    assert math.isnan(tpot(one))
    assert inter_token_latencies(one) == []


def test_tokens_at_the_same_time_are_allowed():
    burst = RequestTimes(0.0, [1.0, 1.0, 1.0])
    assert tpot(burst) == 0.0 and inter_token_latencies(burst) == [0.0, 0.0]


def test_metrics_depend_only_on_differences_of_one_clock():
    offset = 1e6  # e.g. time.perf_counter() on a machine that has been up for 12 days
    shifted = RequestTimes(EXAMPLE.arrival_s + offset, [t + offset for t in EXAMPLE.token_times])
    for metric in (ttft, latency, tpot):
        assert metric(shifted) == pytest.approx(metric(EXAMPLE), abs=1e-9)
    assert inter_token_latencies(shifted) == pytest.approx(inter_token_latencies(EXAMPLE), abs=1e-9)


@pytest.mark.parametrize(
    "arrival, times, error, match",
    [
        (1.0, [0.5, 2.0], ValueError, r"token_times\[0\] = 0.5 is before arrival_s = 1.0"),
        (0.0, [1.0, 3.0, 2.0], ValueError, "token_times must not decrease"),
        (math.nan, [1.0], ValueError, "arrival_s"),
        (0.0, [1.0, math.inf], ValueError, r"token_times\[1\]"),
        ("0", [1.0], TypeError, "arrival_s"),
        (0.0, [1.0, "2"], TypeError, r"token_times\[1\]"),
        (0.0, [True], TypeError, r"token_times\[0\]"),
    ],
)
def test_impossible_timestamps_raise(arrival, times, error, match):
    with pytest.raises(error, match=match):
        RequestTimes(arrival, times)


@pytest.mark.parametrize("metric", [ttft, latency, tpot, inter_token_latencies])
def test_a_request_without_tokens_has_no_latencies(metric):
    with pytest.raises(ValueError, match="no output token"):
        metric(RequestTimes(0.0))
    with pytest.raises(TypeError, match="expected a RequestTimes"):
        metric((0.0, [1.0]))


def test_request_times_keep_their_own_copy_of_the_token_times():
    times = [1.0, 2.0]
    request = RequestTimes(0.0, times)
    times.append(0.5)  # a caller reusing its list must not make the request's times decrease
    assert request.token_times == [1.0, 2.0]


# --- percentiles ---------------------------------------------------------------------------------------


def test_percentile_equals_numpys_linear_interpolation_on_random_data():
    rng = random.Random(0)
    for _ in range(300):
        values = [rng.expovariate(1.0) * rng.choice([1, 100]) for _ in range(rng.randint(1, 40))]
        if rng.random() < 0.3:
            values = [round(v) for v in values]  # ties
        for q in (0, 1, 25, 50, 90, 99, 99.9, 100, rng.uniform(0, 100)):
            assert percentile(values, q) == pytest.approx(
                float(np.percentile(values, q)), rel=1e-12, abs=1e-12
            )


def test_percentile_on_hand_computed_examples():
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5  # between the middle two
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0 and percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_percentile_leaves_nan_out():
    assert percentile([math.nan, 1.0, math.nan, 3.0], 50) == 2.0
    assert math.isnan(percentile([math.nan, math.nan], 50))
    assert math.isnan(percentile([], 99))


@pytest.mark.parametrize(
    "q, error", [(-1, ValueError), (100.5, ValueError), (math.nan, ValueError), ("50", TypeError)]
)
def test_percentile_refuses_a_q_outside_0_to_100(q, error):
    with pytest.raises(error, match="q must be"):
        percentile([1.0, 2.0], q)


# --- a run's summary -------------------------------------------------------------------------------------


def test_summarize_a_hand_computed_run():
    run = [RequestTimes(0.0, [1.0, 2.0, 4.0]), RequestTimes(1.0, [3.0])]
    report = summarize(run)
    assert (report.num_requests, report.output_tokens) == (2, 4)
    assert report.duration_s == 4.0  # first arrival (0) to last token (4)
    assert report.output_tokens_per_s == 1.0 and report.requests_per_s == 0.5
    assert report.ttft == pytest.approx({"mean": 1.5, "p50": 1.5, "p99": 1.99})  # TTFTs 1 and 2
    assert report.tpot == pytest.approx({"mean": 1.5, "p50": 1.5, "p99": 1.5})  # 1.5, and NaN left out
    assert report.itl == pytest.approx({"mean": 1.5, "p50": 1.5, "p99": 1.99})  # gaps 1 and 2
    assert report.e2e == pytest.approx({"mean": 3.0, "p50": 3.0, "p99": 3.98})  # latencies 4 and 2


def test_summarize_pools_inter_token_latencies_over_requests():
    # ten gaps of 1 s and one of 10 s: pooled, the mean gap is 20/11 s (a mean of per-request
    # means would say 5.5 s, and weigh the one slow gap like the ten fast ones)
    run = [RequestTimes(0.0, [float(t) for t in range(11)]), RequestTimes(0.0, [0.0, 10.0])]
    report = summarize(run)
    assert report.itl["mean"] == pytest.approx(20 / 11)
    assert report.itl["p50"] == 1.0
    assert report.itl["p99"] == pytest.approx(float(np.percentile([1.0] * 10 + [10.0], 99)))
    assert report.tpot["mean"] == pytest.approx(5.5)  # TPOT is per request: (1 + 10) / 2


def test_summarize_a_run_whose_every_request_has_one_token():
    report = summarize([RequestTimes(0.0, [1.0]), RequestTimes(0.5, [2.0])])
    assert all(math.isnan(v) for v in report.tpot.values())
    assert all(math.isnan(v) for v in report.itl.values())
    assert report.ttft["mean"] == 1.25 and report.duration_s == 2.0


def test_summarize_accepts_any_sequence_of_requests():
    as_tuple = summarize((EXAMPLE,))
    assert as_tuple == summarize([EXAMPLE])
    assert as_tuple.duration_s == pytest.approx(1.6)


@pytest.mark.parametrize(
    "requests, error, match",
    [
        ([], TypeError, "non-empty list of RequestTimes"),
        (EXAMPLE, TypeError, "non-empty list of RequestTimes"),  # one request, not a list of them
        (None, TypeError, "non-empty list of RequestTimes"),
        ([EXAMPLE, RequestTimes(0.0)], ValueError, "no output token"),
        ([EXAMPLE, (0.0, [1.0])], TypeError, "expected a RequestTimes"),
        ([RequestTimes(1.0, [1.0]), RequestTimes(1.0, [1.0])], ValueError, "no duration"),
    ],
)
def test_summarize_refuses_what_it_cannot_summarize(requests, error, match):
    with pytest.raises(error, match=match):
        summarize(requests)


def test_timestamps_before_the_clocks_zero_are_accepted():
    early = RequestTimes(-2.0, [-1.5, -1.3, -1.0, -0.4])  # EXAMPLE shifted by -3 s
    assert ttft(early) == pytest.approx(ttft(EXAMPLE)) and tpot(early) == pytest.approx(tpot(EXAMPLE))
