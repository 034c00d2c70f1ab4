"""Exercises 1 and 2: `request_metrics` (TTFT, E2E, TPOT, ITL of one request) and `percentile`.

Both are compared by value with kvlib's `kvlib.serve.metrics` on hand-picked and seeded random inputs. The
hand-picked ones separate the classic slips, and each message names the slip it saw. For request_metrics:
TPOT as e2e / n or divided by n instead of n - 1, 0 instead of NaN for one token, TTFT or E2E not measured
from the arrival, n gaps (the arrival's included), a NumPy array or a shared list for `itl`, ints for
integer times, the caller's times changed, no ValueError for an empty request. For percentile: a rank of
n * q / 100, the nearest rank without interpolation, unsorted or descending values, NaN kept, an error
instead of NaN for no values, q read as a fraction, no ValueError outside 0..100, an int for integer
values, the caller's values sorted in place.

The hidden inputs go past the visible ones: long timelines, tuples and NumPy arrays (integer and float32
ones too), negative and large clock readings (a clock may be relative, or time.time()), repeated times
(tokens of one step), a first token at the arrival.
"""

from __future__ import annotations

import copy
import math
import numbers
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from ..common import CheckFailed, call, expect, shown
from ..delegation import graded

METRICS_REFERENCES = (
    "kvlib.serve.metrics.request_metrics",
    "kvlib.serve.metrics.ttft",
    "kvlib.serve.metrics.tpot",
    "kvlib.serve.metrics.latency",
    "kvlib.serve.metrics.inter_token_latencies",
)
PERCENTILE_REFERENCES = ("kvlib.serve.metrics.percentile",)

KEYS = ("ttft", "e2e", "tpot", "itl")
TRUTH_HINT = (
    " (`if not {0}` fails on a NumPy array of several numbers, which has no single truth value: test "
    "len({0}) == 0 instead)"
)
REL_TOL = 1e-9


def _reference_metrics(arrival_s: Any, token_times: Any) -> dict:
    from kvlib.serve.metrics import request_metrics

    return request_metrics(arrival_s, token_times)


def _reference_percentile(values: Any, q: Any) -> float:
    from kvlib.serve.metrics import percentile

    return percentile(values, q)


# --- shared helpers --------------------------------------------------------------------------------------


def _frozen(obj: Any) -> Any:
    """An exact picture of an input (values, item types, dtype), to see whether the learner changed it."""
    if isinstance(obj, np.ndarray):
        return ("ndarray", obj.dtype.str, obj.shape, obj.tobytes())
    return (type(obj).__name__, tuple((type(v).__name__, repr(v)) for v in obj), _numbers(obj))


def _numbers(obj: Any) -> tuple[str, ...]:
    """The items as float reprs (3 and 3.0 alike), to tell a conversion in place from other changes."""
    out = []
    for v in obj:
        try:
            out.append(repr(float(v)))
        except (TypeError, ValueError):
            out.append(repr(v))
    return tuple(out)


def _changed_how(before: Any, after: Any) -> str:
    """The likely cause, from an input's picture before and after the learner's call."""
    if before[0] == "ndarray":
        return (
            "in-place arithmetic on the NumPy array (np.asarray(x, dtype=float) returns the caller's own "
            "float array, so `t = np.asarray(x, dtype=float); t -= a` or `t.sort()` writes into it): compute "
            "a new array, t = np.asarray(x, dtype=float) - a"
        )
    old, new = before[2], after[2]
    if len(old) != len(new):
        return "items were added or removed (list.pop, insert, append or remove on the caller's list)"
    if old == new:
        return "its items were converted in place (x[i] = float(x[i])): build a new list of floats"
    if sorted(old) == sorted(new):
        return "it was sorted in place (values.sort()): use sorted(values), which returns a new list"
    return "items were overwritten (x[i] = ...): build a new list"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _float_type(value: Any, what: str) -> None:
    """A number the spec promises as a Python float: an int (or a NumPy int or float32) fails."""
    if isinstance(value, float):
        return
    hint = (
        "integer inputs give ints: convert with float(...)"
        if isinstance(value, numbers.Integral)
        else "convert it with float(...)"
    )
    raise CheckFailed(f"{what} must be a Python float, got {type(value).__name__} {shown(value)}: {hint}")


def _close(got: float, want: float, scale: float) -> bool:
    """Equal up to rounding: relative 1e-9, and a few hundred ulps of the largest input (`scale`), so that
    (e2e - ttft) / (n - 1), the mean of the gaps and NumPy's interpolation all agree on a large clock."""
    return math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12 + 1e-14 * scale)


def _precision_hint(scale: float) -> str:
    """On a clock as large as time.time(), a float32 detour (about 7 digits) loses the gaps."""
    if scale < 1e6:
        return ""
    return (
        f" (the clock reads about {scale:.3g} s: compute in Python floats or float64, float32 keeps only "
        "about 7 significant digits)"
    )


def _describe_times(arrival_s: Any, token_times: Any) -> str:
    """The call as a learner can reproduce it: in full when short, summarised when long."""
    kind = type(token_times).__name__
    if isinstance(token_times, np.ndarray):
        kind = f"a NumPy {token_times.dtype} array"
    if len(token_times) <= 6:
        shown_times = (
            f"np.array({token_times.tolist()!r}, dtype={token_times.dtype})"
            if isinstance(token_times, np.ndarray)
            else repr(token_times)
        )
        return f"request_metrics({arrival_s!r}, {shown_times})"
    return f"request_metrics({arrival_s!r}, <{kind} of {len(token_times)} times from {token_times[0]!r}>)"


# --- request_metrics -------------------------------------------------------------------------------------


def _metric_variants(arrival: float, times: list[float]) -> dict[str, dict[str, Any]]:
    """Classic wrong values of each metric, each with the message naming it."""
    n = len(times)
    ttft, e2e = times[0] - arrival, times[-1] - arrival
    gaps = [b - a for a, b in zip(times, times[1:])]
    out: dict[str, dict[str, Any]] = {
        "ttft": {
            "ttft is token_times[0] - arrival_s: you returned the first token's clock reading (subtract "
            "the arrival: the clock does not start at the request's arrival)": times[0],
            "ttft is the time to the FIRST token (token_times[0] - arrival_s), not to the last": e2e,
            "ttft is token_times[0] - arrival_s, not arrival_s - token_times[0] (the sign)": -ttft,
        },
        "e2e": {
            "e2e is token_times[-1] - arrival_s: you returned the last token's clock reading (subtract "
            "the arrival)": times[-1],
            "e2e is measured from the arrival (token_times[-1] - arrival_s), not from the first token "
            "(the queueing and prefill time, ttft, is part of the latency the user waits)": times[-1]
            - times[0],
            "e2e is the time to the LAST token (token_times[-1] - arrival_s), not to the first": ttft,
        },
        "tpot": {},
    }
    if n > 1:
        out["tpot"] = {
            "tpot divides by n - 1, not by n: the time after the first token covers the n - 1 tokens that "
            "follow it ((e2e - ttft) / (n - 1))": (e2e - ttft) / n,
            "tpot is e2e / n, the whole latency spread over every token (or the mean of n gaps counting "
            "the one from the arrival); it is the time per token AFTER the first: (e2e - ttft) / (n - 1)": e2e
            / n,
            "tpot is e2e / (n - 1): leave the time to the first token out, (e2e - ttft) / (n - 1)": e2e
            / (n - 1),
            "tpot is (e2e - ttft) / (n - 1), the time per token; you returned e2e - ttft, the whole time "
            "after the first token": e2e - ttft,
            "tpot is (e2e - ttft) / (n - 1), not ttft / n": ttft / n,
        }
    out["itl"] = {
        "itl holds the n - 1 gaps between consecutive tokens (token_times[i + 1] - token_times[i]); you "
        "returned each token's time since the arrival": [t - arrival for t in times],
        "itl holds the n - 1 gaps between consecutive tokens; you included the gap from the arrival to "
        "the first token (that one is ttft, not an inter-token latency)": [times[0] - arrival, *gaps],
        "itl holds the gaps between consecutive tokens; you returned each token's time since the first "
        "token": [t - times[0] for t in times[1:]],
        "itl holds the gaps token_times[i + 1] - token_times[i]; you subtracted the other way (negative "
        "gaps)": [-g for g in gaps],
    }
    return out


def _check_metric(
    got: Any, want: float, key: str, call_text: str, variants: dict[str, Any], scale: float
) -> None:
    what = f'{call_text}["{key}"]'
    if math.isnan(want):  # tpot of one token
        if _is_real(got) and math.isnan(float(got)):
            _float_type(got, what)
            return
        if _is_real(got) and float(got) == 0:
            raise CheckFailed(
                f"{what}: you returned {shown(got)} for a request of one token; one token has no time per "
                'token: return float("nan"), never 0 (a 0 would pull every TPOT percentile down)'
            )
        raise CheckFailed(
            f'{what}: expected float("nan") for a request of one token (it has no time per token), got '
            f"{shown(got)}"
        )
    expect(
        _is_real(got),
        f"{what} must be a number (a Python float), got {type(got).__name__} {shown(got)}"
        + ("; NaN is only for one token: tpot = (e2e - ttft) / (n - 1)" if got is None else ""),
    )
    value = float(got)
    if not _close(value, want, scale):
        if math.isnan(value) and key == "tpot":
            raise CheckFailed(
                f"{what}: you returned NaN, expected {want!r}: NaN is only for a request of one token"
            )
        for message, candidate in variants.items():
            if _close(value, candidate, scale) and not _close(candidate, want, scale):
                raise CheckFailed(f"{what}: you returned {value!r}, expected {want!r}: {message}")
        raise CheckFailed(f"{what}: you returned {value!r}, expected {want!r}" + _precision_hint(scale))
    _float_type(got, what)


def _check_itl(got: Any, want: list[float], call_text: str, variants: dict[str, Any], scale: float) -> None:
    what = f'{call_text}["itl"]'
    if isinstance(got, np.ndarray):
        raise CheckFailed(
            f"{what} must be a list, got a NumPy array: convert it (np.diff(t).tolist() gives a list of "
            "Python floats)"
        )
    expect(
        isinstance(got, list),
        f"{what} must be a new list of the n - 1 gaps, got {type(got).__name__} {shown(got)}",
    )
    items_ok = all(_is_real(g) for g in got)
    if items_ok:
        values = [float(g) for g in got]
        if len(values) == len(want) and all(_close(g, w, scale) for g, w in zip(values, want)):
            for i, g in enumerate(got):
                _float_type(g, f"{what}[{i}]")
            return
        for message, candidate in variants.items():
            if len(values) == len(candidate) and all(_close(g, c, scale) for g, c in zip(values, candidate)):
                raise CheckFailed(f"{what}: {message}")
    if len(got) != len(want):
        raise CheckFailed(
            f"{what} must hold n - 1 = {len(want)} gaps for n = {len(want) + 1} tokens"
            + (" ([] for one token)" if not want else "")
            + f", got {len(got)} items"
        )
    expect(items_ok, f"{what} must hold numbers (Python floats), got {shown(got)}")
    bad = next(i for i, (g, w) in enumerate(zip(values, want)) if not _close(g, w, scale))
    raise CheckFailed(
        f"{what}[{bad}] is {values[bad]!r}, expected {want[bad]!r}: the gap between token {bad} and token "
        f"{bad + 1}, token_times[{bad + 1}] - token_times[{bad}]" + _precision_hint(scale)
    )


def _metrics(fn: Callable[..., Any], arrival_s: Any, token_times: Any) -> dict:
    """Call the learner's request_metrics on one request and check every value against kvlib's."""
    call_text = _describe_times(arrival_s, token_times)
    before = _frozen(token_times)
    try:
        out = call(fn, arrival_s, token_times, what=call_text)
    except CheckFailed as exc:
        if "truth value of an array" in str(exc):
            raise CheckFailed(f"{exc}{TRUTH_HINT.format('token_times')}") from None
        if len(token_times) == 1 and "not implemented" not in str(exc):
            raise CheckFailed(
                f'{exc} (one token: tpot is float("nan") and itl is [], with no division by n - 1 = 0)'
            ) from None
        raise
    after = _frozen(token_times)
    if after != before:
        raise CheckFailed(
            f"{call_text} changed the token_times it was given; the caller still needs them unchanged: "
            + _changed_how(before, after)
        )
    expect(isinstance(out, dict), f"{call_text} must return a dict, got {type(out).__name__} {shown(out)}")
    keys = set(out)
    if keys != set(KEYS):
        missing = [k for k in KEYS if k not in keys]
        extra = sorted(map(repr, keys - set(KEYS)))
        raise CheckFailed(
            f'{call_text} must return a dict with exactly the keys "ttft", "e2e", "tpot", "itl"'
            + (f"; missing {', '.join(map(repr, missing))}" if missing else "")
            + (f"; extra {', '.join(extra)}" if extra else "")
        )
    want = _reference_metrics(arrival_s, token_times)
    times = [float(t) for t in token_times]
    variants = _metric_variants(float(arrival_s), times)
    scale = max(abs(float(arrival_s)), abs(times[-1]))  # rounding of clock readings this large
    for key in ("ttft", "e2e", "tpot"):
        _check_metric(out[key], want[key], key, call_text, variants[key], scale)
    _check_itl(out["itl"], want["itl"], call_text, variants["itl"], scale)
    expect(
        out["itl"] is not token_times,
        f'{call_text}["itl"] is the token_times list it was given: return a new list of gaps',
    )
    return out


def _metrics_empty(fn: Callable[..., Any], empty: Any) -> None:
    shown_empty = "np.array([])" if isinstance(empty, np.ndarray) else repr(empty)
    what = f"request_metrics(1.0, {shown_empty})"
    try:
        got = fn(1.0, empty)
    except NotImplementedError:
        raise CheckFailed("request_metrics is not implemented yet (it raised NotImplementedError)") from None
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - the learner's error becomes feedback
        raise CheckFailed(
            f"{what} raised {type(exc).__name__} ({exc}); with no token there is no latency: check for an "
            "empty token_times first and raise ValueError"
        ) from None
    raise CheckFailed(
        f"{what} returned {shown(got)}; with no token there is no latency: raise ValueError (no NaN or 0 "
        "standing for a request that produced nothing)"
    )


def _timeline(rng: random.Random, n: int, arrival: float, *, integer: bool = False) -> list:
    """n token times after `arrival`: a queueing delay, then gaps, some 0 (tokens of the same step)."""
    if integer:
        t = int(arrival) + rng.randint(0, 40)
        times = [t]
        for _ in range(n - 1):
            t += rng.choice((0, 1, 2, 3, 7, 15))
            times.append(t)
        return times
    t = arrival + rng.choice((0.0, rng.uniform(0.0, 0.05), rng.uniform(0.05, 3.0)))
    times = [t]
    for _ in range(n - 1):
        t += 0.0 if rng.random() < 0.1 else rng.uniform(0.005, 0.2)
        times.append(t)
    return times


@graded("request_metrics", *METRICS_REFERENCES)
def request_metrics_visible(fn: Callable[..., Any]) -> None:
    _metrics(fn, 1.0, [2.0, 2.25, 2.75, 3.5])  # ttft 1.0, e2e 2.5, tpot 0.5, itl [0.25, 0.5, 0.75]
    _metrics(fn, 0.5, [0.75])  # one token: tpot NaN, itl []
    _metrics(fn, 12.0, [12.5, 12.625, 12.625, 13.0, 13.125])  # two tokens of one step: a gap of 0
    _metrics_empty(fn, [])
    print("visible tests passed")


@graded("request_metrics", *METRICS_REFERENCES)
def request_metrics_hidden(fn: Callable[..., Any]) -> None:
    _metrics(fn, 1.0, [2.0, 2.25, 2.75, 3.5])
    _metrics(fn, 0.5, [0.75])
    _metrics(fn, -3.0, [-2.5, -2.5, -1.0, 0.5, 0.5])  # a relative clock: negative readings are fine
    _metrics(fn, 4.0, [4.0, 4.5, 6.0])  # the first token at the arrival: ttft 0.0
    _metrics(fn, 2.0, [3.0, 5.0])  # two tokens: one gap
    _metrics(fn, 7.0, [7.25, 7.25, 7.25])  # one step's tokens: tpot 0.0, gaps 0.0
    _metrics(fn, 1_700_000_000.0, [1_700_000_000.5, 1_700_000_000.625, 1_700_000_001.0])  # time.time()

    # integer inputs: every number is still a Python float
    _metrics(fn, 1, [3, 4, 6, 9])
    _metrics(fn, 0, [5])
    _metrics(fn, 2, np.array([3, 3, 8, 10], dtype=np.int64))

    # the containers the docstring allows, each unchanged afterwards
    _metrics(fn, 1.0, (2.0, 2.25, 2.75, 3.5))
    _metrics(fn, 1.0, np.array([2.0, 2.25, 2.75, 3.5]))
    _metrics(fn, -3.0, np.array([-2.5, -1.0, 0.5]))
    _metrics(fn, 0.5, np.array([0.75]))
    _metrics(fn, 1.0, np.array([2.0, 2.5, 4.0], dtype=np.float32))

    # no token: ValueError, whatever the container
    for empty in ([], (), np.array([], dtype=np.float64)):
        _metrics_empty(fn, empty)

    # a new result per call: nothing returned earlier changes, no list shared between calls
    first = _metrics(fn, 1.0, [2.0, 2.25, 2.75, 3.5])
    kept = copy.deepcopy(first)
    second = _metrics(fn, 10.0, [10.5, 11.0])
    expect(
        first == kept and first is not second and first["itl"] is not second["itl"],
        "request_metrics: a result changed after a later call, or two calls returned the same dict or itl "
        "list: build a new dict and a new itl list in every call (no module-level list or dict reused)",
    )
    one, other = _metrics(fn, 0.0, [1.0]), _metrics(fn, 5.0, [6.0])
    expect(
        one["itl"] is not other["itl"],
        'request_metrics returned the same empty itl list object for two one-token requests: "a new '
        'list" in every call (return [], not a module-level constant a caller could append to)',
    )

    # long timelines on every clock and container, compared with kvlib's
    rng = random.Random(8)
    for i in range(24):
        n = rng.choice((1, 2, 3, rng.randint(4, 64), rng.randint(65, 3000)))
        arrival = rng.choice((0.0, rng.uniform(-100.0, 0.0), rng.uniform(0.0, 1e4), 86_400.0 + rng.random()))
        times: Any = _timeline(rng, n, arrival, integer=i % 6 == 5)
        if i % 6 == 5:
            arrival = int(arrival) if i % 12 == 5 else float(int(arrival))
        container = i % 3
        times = tuple(times) if container == 1 else np.array(times) if container == 2 else times
        _metrics(fn, arrival, times)
    print("hidden tests passed")


# --- percentile ------------------------------------------------------------------------------------------


def _linear(data: list[float], rank: float) -> float:
    rank = min(max(rank, 0.0), len(data) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def _percentile_variants(values: Any, q: float) -> dict[str, float]:
    """Classic wrong percentiles, each with the message naming it."""
    kept = [float(v) for v in values if not math.isnan(v)]
    data = sorted(kept)
    n = len(data)
    r = (n - 1) * q / 100
    out = {
        "that is the nearest value, not interpolated: between two ranks interpolate linearly, v[lo] + "
        "(v[lo + 1] - v[lo]) * (r - lo)": data[min(round(r), n - 1)],
        "that is v[floor(r)] alone: interpolate between v[lo] and v[lo + 1] by the fraction r - lo": data[
            math.floor(r)
        ],
        "that is v[ceil(r)] alone: interpolate between v[lo] and v[lo + 1] by the fraction r - lo": data[
            math.ceil(r)
        ],
        "that is the nearest-rank percentile (v[ceil(n * q / 100) - 1]); this one interpolates at rank r = "
        "(n - 1) * q / 100": data[max(0, math.ceil(n * q / 100) - 1)],
        "the rank is r = (n - 1) * q / 100 (rank 0 the smallest value, rank n - 1 the largest), not "
        "n * q / 100": _linear(data, n * q / 100),
        "the rank is r = (n - 1) * q / 100, not (n + 1) * q / 100 - 1": _linear(data, (n + 1) * q / 100 - 1),
        "sort the values first (in increasing order): you interpolated in the order they came": _linear(
            kept, r
        ),
        "sort in increasing order (rank 0 is the smallest value): you sorted in decreasing order": _linear(
            data[::-1], r
        ),
        "q is a percentage, 0 to 100: you read it as a fraction": _linear(data, (n - 1) * min(q, 1.0)),
        "that is the mean of the values, not their percentile": sum(data) / n,
    }
    return out


def _raised_hint(exc: Exception, want: float, q: Any, has_nan: bool) -> str:
    """Why a valid call may have raised, from what the call had that the classic slips trip on."""
    if math.isnan(want):
        return (
            "; with no value left (none given, or only NaN) there is no percentile: return float('nan'), "
            "do not raise"
        )
    if isinstance(exc, ValueError) and "truth value of an array" not in str(exc):
        return (
            f"; q = {q!r} is valid: q is a percentage from 0 to 100 (the 99th percentile is q = 99, not 0.99)"
        )
    if isinstance(exc, IndexError) and float(q) in (0.0, 100.0):
        return "; for q = 0 or 100 the rank r is a whole number: return v[lo], there is no v[lo + 1] to read"
    if isinstance(exc, IndexError) and float(q) > 1:
        return "; q is a percentage from 0 to 100, not a fraction: the rank is r = (n - 1) * q / 100"
    if "truth value of an array" in str(exc):
        return TRUTH_HINT.format("values")
    if has_nan:
        return "; leave the NaN values out (math.isnan) before sorting"
    return ""


def _describe_values(values: Any, q: Any) -> str:
    if isinstance(values, np.ndarray):
        body = (
            f"np.array({values.tolist()!r}, dtype={values.dtype})"
            if len(values) <= 8
            else (f"<a NumPy {values.dtype} array of {len(values)} values>")
        )
    else:
        body = repr(values) if len(values) <= 8 else f"<a {type(values).__name__} of {len(values)} values>"
    return f"percentile({body}, {q!r})"


def _pct(fn: Callable[..., Any], values: Any, q: Any) -> None:
    """Call the learner's percentile and check the value and its type against kvlib's."""
    what = _describe_values(values, q)
    want = _reference_percentile(values, q)
    has_nan = any(math.isnan(v) for v in values)
    before = _frozen(values)
    try:
        got = fn(values, q)
    except NotImplementedError:
        raise CheckFailed("percentile is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - the learner's error becomes feedback
        raise CheckFailed(
            f"{what} raised {type(exc).__name__}: {exc}" + _raised_hint(exc, want, q, has_nan)
        ) from None
    after = _frozen(values)
    if after != before:
        raise CheckFailed(
            f"{what} changed the values it was given; the caller still needs them: "
            + _changed_how(before, after)
        )
    if math.isnan(want):
        if _is_real(got) and math.isnan(float(got)):
            _float_type(got, what)
            return
        raise CheckFailed(
            f"{what} returned {shown(got)}; with no value left (none given, or only NaN, which are left "
            "out) return float('nan')"
        )
    expect(
        _is_real(got), f"{what} must return a number (a Python float), got {type(got).__name__} {shown(got)}"
    )
    value = float(got)
    if math.isnan(value):
        raise CheckFailed(
            f"{what} returned NaN, expected {want!r}"
            + (": NaN values are left out (math.isnan) before sorting" if has_nan else "")
        )
    data = [float(v) for v in values if not math.isnan(v)]
    scale = max(abs(v) for v in data)
    if not _close(value, want, scale):
        for message, candidate in _percentile_variants(values, float(q)).items():
            if _close(value, candidate, scale) and not _close(candidate, want, scale):
                raise CheckFailed(f"{what} returned {value!r}, expected {want!r}: {message}")
        raise CheckFailed(
            f"{what} returned {value!r}, expected {want!r}"
            + ("; leave the NaN values out (sorted() does not order NaN)" if has_nan else "")
        )
    _float_type(got, what)


def _pct_out_of_range(fn: Callable[..., Any], values: Any, q: Any) -> None:
    what = _describe_values(values, q)
    try:
        got = fn(values, q)
    except NotImplementedError:
        raise CheckFailed("percentile is not implemented yet (it raised NotImplementedError)") from None
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - the learner's error becomes feedback
        raise CheckFailed(
            f"{what} raised {type(exc).__name__} ({exc}); q outside 0 <= q <= 100 must raise ValueError "
            "(check q before anything else)"
        ) from None
    empty = not any(not math.isnan(v) for v in values)
    raise CheckFailed(
        f"{what} returned {shown(got)}; q must satisfy 0 <= q <= 100 (a percentage: the 99th percentile is "
        "q = 99), outside that range raise ValueError"
        + (", also when no value is left: check q first" if empty else " (no clamping)")
    )


@graded("percentile", *PERCENTILE_REFERENCES)
def percentile_visible(fn: Callable[..., Any]) -> None:
    values = [40.0, 15.0, 50.0, 35.0, 20.0]  # unsorted
    for q in (30, 40, 50, 0, 100, 90, 0.5):  # 0.5 is the 0.5th percentile, not the median
        _pct(fn, values, q)
    _pct(fn, [3.0, float("nan"), 1.0, 2.0], 50)  # NaN left out
    _pct(fn, [], 50)  # nothing: NaN
    _pct_out_of_range(fn, [1.0, 2.0], 101)
    print("visible tests passed")


@graded("percentile", *PERCENTILE_REFERENCES)
def percentile_hidden(fn: Callable[..., Any]) -> None:
    values = [40.0, 15.0, 50.0, 35.0, 20.0]
    for q in (30, 40, 50, 0, 100, 90, 99, 12.5, 0.5, 1, 99.9):
        _pct(fn, values, q)
    _pct(fn, [7.0], 0)  # one value: every percentile is that value
    _pct(fn, [7.0], 99)
    _pct(fn, [-2.0, 6.0], 25)  # two values
    _pct(fn, [0.25, 0.25, 0.25, 1.0], 80)  # repeated values
    _pct(fn, [-5.0, -1.0, -3.0], 75)  # negative values

    # NaN left out; nothing left (or nothing given): NaN
    _pct(fn, [float("nan"), 4.0, 1.0, float("nan"), 2.0, 8.0], 50)
    _pct(fn, [float("nan"), 4.0, 1.0, float("nan"), 2.0, 8.0], 100)
    _pct(fn, [float("nan"), float("nan")], 50)
    _pct(fn, [float("nan")], 0)
    _pct(fn, (), 99)
    _pct(fn, np.array([], dtype=np.float64), 50)
    _pct(fn, np.array([np.nan, 3.0, np.nan, 1.0]), 25)

    # integer values and the containers the docstring allows: a Python float, the input unchanged
    _pct(fn, [3, 1, 2], 50)  # a whole rank: 2.0, not 2
    _pct(fn, [3, 1, 2], 0)
    _pct(fn, [3, 1, 2, 10], 100)
    _pct(fn, [3, 1, 2, 10], 50)
    _pct(fn, (40.0, 15.0, 50.0, 35.0, 20.0), 40)
    _pct(fn, np.array([40.0, 15.0, 50.0, 35.0, 20.0]), 40)
    _pct(fn, np.array([9, 1, 5, 3], dtype=np.int64), 50)
    _pct(fn, np.array([9, 1, 5, 3], dtype=np.int64), 100)
    _pct(fn, np.array([8.0, 1.0, 4.0, 2.0, 0.5], dtype=np.float32), 62.5)  # exact in float32 too
    _pct(fn, np.array([8.0, 1.0, 4.0, 2.0, 0.5], dtype=np.float32), 0)

    # every spelling of q: int, float, NumPy numbers
    _pct(fn, values, np.float64(95.0))
    _pct(fn, values, np.int64(30))
    _pct(fn, values, 100.0)

    # q outside 0..100: ValueError (also when no value is left)
    for q in (-1, -0.001, 100.001, 101, 150, 1000):
        _pct_out_of_range(fn, [1.0, 2.0, 3.0], q)
    _pct_out_of_range(fn, [], 150)
    _pct_out_of_range(fn, np.array([4.0, 5.0]), -5)

    # many values, seeded, against kvlib's
    rng = random.Random(8)
    for i in range(30):
        n = rng.choice((1, 2, 3, rng.randint(4, 50), rng.randint(51, 10_001)))
        if i % 5 == 4:
            data: Any = [rng.randint(-1000, 1000) for _ in range(n)]
        else:
            data = [rng.lognormvariate(-3.0, 1.0) for _ in range(n)]
            if i % 3 == 0:
                for _ in range(rng.randint(1, 5)):
                    data.insert(rng.randrange(len(data) + 1), float("nan"))
        q = rng.choice((0, 50, 90, 99, 100, rng.uniform(0, 100), rng.randint(0, 100)))
        container = i % 3
        data = tuple(data) if container == 1 else np.array(data) if container == 2 else data
        _pct(fn, data, q)
    print("hidden tests passed")
