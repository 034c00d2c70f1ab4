"""Per-request latency metrics of a serving run, as vLLM's serving benchmark defines them.

For a request that arrived at ``arrival_s`` and received its output tokens at times
``t_1 <= t_2 <= ... <= t_n`` (one timestamp per token, on the same clock):

- TTFT, time to first token: ``t_1 - arrival_s`` (queueing and prefill included);
- end-to-end latency: ``t_n - arrival_s``;
- TPOT, time per output token after the first: ``(latency - TTFT) / (n - 1)`` (undefined for n = 1);
- ITL, inter-token latencies: ``t_{i+1} - t_i``, pooled over all requests for the percentiles.

A run's throughput is output tokens (and requests) per second of the run's duration, from the first
arrival to the last token. Percentiles interpolate linearly between order statistics (numpy's default,
which vLLM's benchmark uses too). These functions take timestamps from any clock: the engine and the
Hugging Face baselines of :mod:`kvlib.serve.baselines` record them on the same one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

from kvlib.validate import describe, require_number

__all__ = [
    "RequestTimes",
    "ttft",
    "tpot",
    "latency",
    "inter_token_latencies",
    "request_metrics",
    "percentile",
    "ServeReport",
    "summarize",
]


def _numbers(values: object, name: str) -> list:
    """``values`` as a list: any iterable of items (a list, tuple, NumPy array, generator) but a str or dict,
    whose items would be characters or keys."""
    if isinstance(values, (str, bytes, dict, set)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list, tuple or NumPy array of numbers, got {describe(values)}")
    return list(values)


def _is_nan(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isnan(value)


@dataclass
class RequestTimes:
    """When one request arrived and when each of its output tokens was produced (seconds)."""

    arrival_s: float
    token_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # any clock: times may be negative (relative to a measurement window that starts later)
        self.arrival_s = require_number("arrival_s", self.arrival_s, minimum=None)  # a float
        times = [
            require_number(f"token_times[{i}]", t, minimum=None)
            for i, t in enumerate(_numbers(self.token_times, "token_times"))
        ]
        if times and times[0] < self.arrival_s:
            raise ValueError(f"token_times[0] = {times[0]} is before arrival_s = {self.arrival_s}")
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError(f"token_times must not decrease, got {times}")
        self.token_times = times

    @property
    def num_tokens(self) -> int:
        return len(self.token_times)


def _require_times(times: RequestTimes) -> RequestTimes:
    if not isinstance(times, RequestTimes):
        raise TypeError(f"expected a RequestTimes, got {describe(times)}")
    if not times.token_times:
        raise ValueError("the request has no output token yet: its latencies are undefined")
    return times


def ttft(times: RequestTimes) -> float:
    """Time to first token: first token time - arrival."""
    times = _require_times(times)
    return times.token_times[0] - times.arrival_s


def latency(times: RequestTimes) -> float:
    """End-to-end latency: last token time - arrival."""
    times = _require_times(times)
    return times.token_times[-1] - times.arrival_s


def tpot(times: RequestTimes) -> float:
    """Time per output token after the first: (latency - TTFT) / (tokens - 1); NaN for one token."""
    times = _require_times(times)
    if times.num_tokens == 1:
        return math.nan
    return (latency(times) - ttft(times)) / (times.num_tokens - 1)


def inter_token_latencies(times: RequestTimes) -> list[float]:
    """Gaps between consecutive output tokens (tokens - 1 of them)."""
    t = _require_times(times).token_times
    return [b - a for a, b in zip(t, t[1:])]


def request_metrics(arrival_s: float, token_times: Sequence[float]) -> dict[str, float | list[float]]:
    """All four metrics of one request: ``{"ttft", "tpot", "e2e"}`` in seconds and ``"itl"``, the list of
    gaps (see the module docstring; TPOT is NaN for a one-token output)."""
    times = RequestTimes(arrival_s, token_times)
    return {
        "ttft": ttft(times),
        "tpot": tpot(times),
        "e2e": latency(times),
        "itl": inter_token_latencies(times),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN values are left out, NaN if none remain."""
    q = require_number("q", q, minimum=0.0, maximum=100.0)
    checked = [
        require_number(f"values[{i}]", v, minimum=None) if not _is_nan(v) else math.nan
        for i, v in enumerate(_numbers(values, "values"))
    ]
    data = sorted(v for v in checked if not math.isnan(v))
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


@dataclass(frozen=True)
class ServeReport:
    """Throughput and latency percentiles of one run (seconds; TTFT, TPOT, ITL, E2E as above)."""

    num_requests: int
    output_tokens: int
    duration_s: float
    ttft: dict[str, float]  # {"mean", "p50", "p99"}
    tpot: dict[str, float]
    itl: dict[str, float]
    e2e: dict[str, float]

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s

    @property
    def requests_per_s(self) -> float:
        return self.num_requests / self.duration_s


def _stats(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if not math.isnan(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    return {"mean": mean, "p50": percentile(values, 50), "p99": percentile(values, 99)}


def summarize(requests: Sequence[RequestTimes]) -> ServeReport:
    """Throughput and percentiles over finished requests (each with at least one token)."""
    if isinstance(requests, RequestTimes) or not isinstance(requests, Sequence) or not requests:
        raise TypeError(f"requests must be a non-empty list of RequestTimes, got {describe(requests)}")
    done = [_require_times(r) for r in requests]
    start = min(r.arrival_s for r in done)
    end = max(r.token_times[-1] for r in done)
    if end <= start:
        raise ValueError(f"the run has no duration (first arrival {start}, last token {end})")
    return ServeReport(
        num_requests=len(done),
        output_tokens=sum(r.num_tokens for r in done),
        duration_s=end - start,
        ttft=_stats([ttft(r) for r in done]),
        tpot=_stats([tpot(r) for r in done]),
        itl=_stats([gap for r in done for gap in inter_token_latencies(r)]),
        e2e=_stats([latency(r) for r in done]),
    )
