"""Chapter 08's request_metrics and percentile checks, beyond what tests/test_checks.py runs.

The hidden inputs must reach what the docstrings name (one token, long timelines, tuples and NumPy
arrays, integer times, negative and large clock readings, repeated times, NaN values, every q spelling);
the grader's diagnosis must agree with kvlib on seeded random inputs; and the messages for mistakes that
no mutant in autograder/mutants/ makes must name them.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from exercise_edits import edited_solution, failure_message

from autograder.checks.ch08 import metrics as checks
from autograder.harness import run_exercise, solution_sources
from kvlib.serve.metrics import percentile, request_metrics

pytestmark = [pytest.mark.ch08, pytest.mark.autograder]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "08_serving.ipynb"


def _edited(grade_id: str, *edits: tuple[str, str]) -> str:
    return edited_solution(NOTEBOOK, grade_id, *edits)


def _message(grade_id: str, source: str) -> str:
    return failure_message(NOTEBOOK, grade_id, source)


def _spy(grade_id: str) -> tuple[list[tuple], object]:
    """The instructor's solution (its own code, not kvlib's), recording the arguments of every call."""
    namespace: dict = {"math": math}
    exec(compile(_edited(grade_id), f"<{grade_id}>", "exec"), namespace)  # noqa: S102 - the solution cell
    solution, calls = namespace[grade_id], []

    def spy(*args):
        calls.append(args)
        return solution(*args)

    return calls, spy


def test_request_metrics_hidden_inputs_reach_the_docstring() -> None:
    calls, spy = _spy("request_metrics")
    checks.request_metrics_hidden(spy)
    timed = [(a, t) for a, t in calls if len(t)]
    kinds = {type(t).__name__ for _, t in timed}
    assert kinds == {"list", "tuple", "ndarray"}, kinds
    assert {str(t.dtype) for _, t in timed if isinstance(t, np.ndarray)} >= {"float64", "int64", "float32"}
    assert sum(len(t) == 1 for _, t in timed) >= 3 and sum(len(t) == 2 for _, t in timed) >= 2
    assert max(len(t) for _, t in timed) > 1000
    assert any(a < 0 for a, _ in timed) and any(a > 1e9 for a, _ in timed)  # relative clock, time.time()
    assert any(isinstance(a, int) and all(isinstance(x, int) for x in t) for a, t in timed)  # integer inputs
    assert any(float(t[0]) == float(a) for a, t in timed)  # the first token at the arrival
    assert any(any(x == y for x, y in zip(t, t[1:])) for _, t in timed)  # one step's tokens: a gap of 0
    assert sum(len(t) == 0 for _, t in calls) == 3  # list, tuple and array, each must raise ValueError


def test_percentile_hidden_inputs_reach_the_docstring() -> None:
    calls, spy = _spy("percentile")
    checks.percentile_hidden(spy)
    valid = [(v, q) for v, q in calls if 0 <= q <= 100]
    assert {type(v).__name__ for v, _ in valid} == {"list", "tuple", "ndarray"}
    assert {type(q).__name__ for _, q in valid} >= {"int", "float", "float64", "int64"}
    assert {0, 100} <= {q for _, q in valid} and any(0 < q < 1 for _, q in valid)  # 0.5th: not a fraction
    assert max(len(v) for v, _ in valid) > 5000 and any(len(v) == 1 for v, _ in valid)
    assert any(not any(not math.isnan(x) for x in v) and len(v) for v, _ in valid)  # only NaN
    assert any(len(v) == 0 for v, _ in valid)
    assert any(all(isinstance(x, int) for x in v) and len(v) for v, _ in valid)
    assert sum(not 0 <= q <= 100 for _, q in calls) >= 6


def test_grader_agrees_with_kvlib_on_random_timelines() -> None:
    """The values the grader expects are kvlib's; its own variants never match the right answer by accident
    (so a correct learner is never told a mistake), on random requests of every shape."""
    rng = random.Random(2024)
    for _ in range(300):
        n = rng.randint(1, 40)
        arrival = rng.uniform(-20.0, 20.0)
        times = checks._timeline(rng, n, arrival)
        want = request_metrics(arrival, times)
        variants = checks._metric_variants(arrival, times)
        scale = max(abs(arrival), abs(times[-1]))
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert want["itl"] == gaps and want["ttft"] == times[0] - arrival
        if n > 1:
            assert math.isclose(want["tpot"], sum(gaps) / (n - 1), rel_tol=1e-9, abs_tol=1e-12)
            for candidate in variants["tpot"].values():  # a real mistake differs unless the timeline hides it
                if checks._close(candidate, want["tpot"], scale):
                    assert times[0] == arrival or want["tpot"] == 0 or n == 2, (arrival, times)
        values = [rng.lognormvariate(0, 1) for _ in range(rng.randint(1, 30))]
        q = rng.uniform(0, 100)
        assert math.isclose(percentile(values, q), float(np.percentile(values, q)), rel_tol=1e-12)


def test_numpy_floats_are_accepted_as_python_floats() -> None:
    """np.float64 is a subclass of float: a NumPy answer in float64 is a Python float."""
    source = _edited(
        "request_metrics",
        ('return {"ttft": ttft,', 'import numpy as np\n    return {"ttft": np.float64(ttft),'),
    )
    run_exercise(NOTEBOOK, "request_metrics", source)


def test_tpot_over_n_minus_one_without_the_ttft() -> None:
    source = _edited("request_metrics", ("tpot = (e2e - ttft) / (n - 1)", "tpot = e2e / (n - 1)"))
    assert "leave the time to the first token out" in _message("request_metrics", source)


def test_none_for_one_token() -> None:
    source = _edited("request_metrics", ('if n > 1 else float("nan")', "if n > 1 else None"))
    assert 'expected float("nan") for a request of one token' in _message("request_metrics", source)


def test_itl_as_a_tuple() -> None:
    source = _edited(
        "request_metrics",
        (
            "itl = [b - a for a, b in zip(times, times[1:])]",
            "itl = tuple(b - a for a, b in zip(times, times[1:]))",
        ),
    )
    assert "must be a new list of the n - 1 gaps, got tuple" in _message("request_metrics", source)


def test_float32_detour_loses_a_large_clock() -> None:
    source = _edited(
        "request_metrics",
        (
            "times = [float(t) for t in token_times]",
            "import numpy as np\n    times = [float(np.float32(t)) for t in token_times]",
        ),
    )
    message = _message(
        "request_metrics", source
    )  # exact times on the small clocks, 128 s steps on time.time()
    assert message.startswith("request_metrics(1700000000.0, [1700000000.5,") and "expected 0.5" in message


def test_truth_value_of_an_array_is_explained() -> None:
    source = _edited("request_metrics", ("if not times:", "if not token_times:"))
    message = _message("request_metrics", source)
    assert "test len(token_times) == 0" in message, message


def test_percentile_none_for_no_values() -> None:
    source = _edited("percentile", ('return float("nan")', "return None"))
    assert "return float('nan')" in _message("percentile", source)


def test_percentile_nearest_rank_and_mean() -> None:
    nearest = _edited(
        "percentile",
        (
            "return data[lo] + (data[hi] - data[lo]) * (rank - lo)",
            "return data[max(0, math.ceil(len(data) * q / 100) - 1)]",
        ),
    )
    assert "nearest-rank percentile" in _message("percentile", nearest) or "not interpolated" in _message(
        "percentile", nearest
    )
    mean = _edited(
        "percentile",
        ("return data[lo] + (data[hi] - data[lo]) * (rank - lo)", "return sum(data) / len(data)"),
    )
    assert "the mean of the values" in _message("percentile", mean)


def test_delegating_through_kvlibs_helpers_scores_zero() -> None:
    source = (
        "from kvlib.serve.metrics import RequestTimes, inter_token_latencies, latency, tpot, ttft\n\n"
        "def request_metrics(arrival_s, token_times):\n"
        "    if len(token_times) == 0:\n        raise ValueError('empty')\n"
        "    r = RequestTimes(arrival_s, list(token_times))\n"
        "    return {'ttft': ttft(r), 'e2e': latency(r), 'tpot': tpot(r), 'itl': inter_token_latencies(r)}\n"
    )
    assert "delegates to kvlib" in _message("request_metrics", source)


def test_messages_are_the_same_every_time() -> None:
    source = _edited("percentile", ("data = sorted(", "data = list("))
    assert _message("percentile", source) == _message("percentile", source)
    assert solution_sources(NOTEBOOK)["percentile"]  # the notebook still holds the exercise
