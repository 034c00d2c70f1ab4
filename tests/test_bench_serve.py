"""``python -m kvlib.bench serve`` and the Hugging Face baselines of :mod:`kvlib.serve.baselines`: the
baselines generate what greedy generation alone does, with token times that never go back, and a tiny
bench run prints every system's row, the ratios and the match count."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from bad_input import CliCase, assert_cli_error, params, run_cli  # noqa: E402

from kvlib.bench.__main__ import main  # noqa: E402
from kvlib.bench.serve import Run, mismatches, rate_arg, static_waste  # noqa: E402
from kvlib.cache.dense import NaiveKVCache  # noqa: E402
from kvlib.generate import generate  # noqa: E402
from kvlib.model import load_model  # noqa: E402
from kvlib.serve.baselines import (  # noqa: E402
    arrival_batches,
    continuous_batching,
    load_hf_model,
    static_batching,
)
from kvlib.serve.engine import VirtualClock  # noqa: E402
from kvlib.serve.metrics import summarize  # noqa: E402
from kvlib.serve.workload import TimedRequest, serving_workload  # noqa: E402

pytestmark = [pytest.mark.ch08, pytest.mark.usefixtures("one_torch_thread")]

SMALL = ["serve", "--requests", "4", "--max-len", "96", "--seed", "1"]  # short requests: seconds per system


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def hf_model():
    return load_hf_model()


@pytest.fixture(scope="module")
def workload() -> list[TimedRequest]:
    """Four requests of different lengths arriving over ~0.1 s: two static batches of two."""
    return serving_workload(4, 40.0, context=96, seed=3)


def _alone(model, request: TimedRequest) -> list[int]:
    ids = torch.tensor([list(request.prompt)])
    out = generate(model, ids, request.max_tokens, NaiveKVCache(model.config.num_layers))
    return out[0, len(request.prompt) :].tolist()


def _check_times(served, workload):
    for request, item in zip(served, workload):
        times = request.times()  # RequestTimes refuses decreasing times and a token before arrival
        assert len(times.token_times) == item.max_tokens == len(request.output)
        assert all(a <= b for a, b in zip(times.token_times, times.token_times[1:]))
        assert times.token_times[0] >= times.arrival_s


def test_static_batching_equals_greedy_alone(model, hf_model, workload):
    assert {len(r.prompt) for r in workload} != {len(workload[0].prompt)}, "left padding must be exercised"
    served = static_batching(hf_model, workload, 2, clock=VirtualClock())
    assert [r.output for r in served] == [_alone(model, r) for r in workload]
    _check_times(served, workload)
    # a request's first token waits for its batch: the second batch starts after the first ends
    first, second = arrival_batches(workload, 2)
    assert min(served[i].token_times[0] for i in second) >= max(served[i].token_times[-1] for i in first)


def test_continuous_batching_equals_greedy_alone(model, hf_model, workload):
    served = continuous_batching(hf_model, workload, block_size=16, num_blocks=64)
    assert [r.output for r in served] == [_alone(model, r) for r in workload]
    _check_times(served, workload)
    assert summarize([r.times() for r in served]).output_tokens == sum(r.max_tokens for r in workload)


def test_arrival_batches_and_static_waste():
    reqs = [TimedRequest((1, 2), n, t) for n, t in ((5, 0.3), (2, 0.1), (3, 0.2))]
    assert arrival_batches(reqs, 2) == [[1, 2], [0]]
    assert static_waste(reqs, 2) == (2 * 3 + 5, 10)  # batch [2, 3] runs 3 steps per row


def test_mismatch_reports_first_difference_and_logit_gap(model, workload):
    outputs = [_alone(model, r) for r in workload[:2]]
    ours = Run("ours", outputs, None, 0.0)
    flipped = [outputs[0], outputs[1][:2] + [(outputs[1][2] + 1) % 1024] + outputs[1][3:]]
    (miss,) = mismatches(model, workload, ours, Run("theirs", flipped, None, 0.0))
    assert (miss.request, miss.position, miss.ours, miss.theirs) == (1, 2, outputs[1][2], flipped[1][2])
    assert miss.logit_gap >= 0


def test_tiny_run_prints_every_row_and_the_match_count(tmp_path):
    png = tmp_path / "curve.png"
    code, out, err = run_cli(main, [*SMALL, "--rates", "20,80", "--plot", str(png)])
    assert code == 0, out + err
    for system in ("ours ", "HF static (batches of 16) ", "HF continuous (transformers) "):
        line = next((line for line in out.splitlines() if line.startswith(system)), None)
        assert line is not None, f"no row for {system!r}:\n{out}"
        if "did not run" not in line:
            assert len(line.split()) >= 9, line
    assert "ours / HF static (batches of 16):" in out and "x output tokens/s (target >= 2x" in out
    assert "4/4" in out and "produced ours for all 4 requests" in out
    assert "HF static computed" in out and "preemptions" in out
    curve = [line for line in out.splitlines() if line.split()[:1] in (["20"], ["80"])]
    assert len(curve) == 4, out  # ours and HF static at each rate
    assert png.exists() and png.stat().st_size > 10_000
    assert "ours" in err  # the progress bar


def test_rate_inf_is_offline():
    assert rate_arg("inf") == math.inf and rate_arg("2.5") == 2.5


S = ["serve"]
CASES = [
    CliCase("rate-0", [*S, "--rate", "0"], ("--rate", "> 0 or 'inf'", "'0'")),
    CliCase("rate-negative", [*S, "--rate", "-2"], ("--rate", "'-2'")),
    CliCase("rate-word", [*S, "--rate", "fast"], ("--rate", "'fast'")),
    CliCase("rate-nan", [*S, "--rate", "nan"], ("--rate", "'nan'")),
    CliCase("rates-inf", [*S, "--rates", "1,inf"], ("--rates", "finite", "'1,inf'")),
    CliCase("rates-empty-item", [*S, "--rates", "1,,2"], ("--rates", "'1,,2'")),
    CliCase("rates-zero", [*S, "--rates", "0,1"], ("--rates", "> 0")),
    CliCase("max-len-past-context", [*S, "--max-len", "600"], ("--max-len", "600", "context of 512")),
    CliCase("max-len-1", [*S, "--max-len", "1"], ("--max-len", "at least 2")),
    CliCase(
        "shared-prefix-too-short",
        [*S, "--mix", "shared-prefix", "--max-len", "100"],
        ("--max-len", "shared-prefix", "at least 130"),
    ),
    CliCase("num-blocks-too-few", [*S, "--num-blocks", "3"], ("--num-blocks", "3 blocks", "at least 32")),
    CliCase("num-blocks-word", [*S, "--num-blocks", "many"], ("--num-blocks", "'auto'", "'many'")),
    CliCase("plot-without-rates", [*S, "--plot", "x.png"], ("--plot", "--rates")),
    CliCase("requests-0", [*S, "--requests", "0"], ("--requests", "integer >= 1")),
    CliCase("batch-size-0", [*S, "--batch-size", "0"], ("--batch-size", "integer >= 1")),
    CliCase("mix-unknown", [*S, "--mix", "code"], ("--mix", "'code'")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_usage_errors_exit_2(case: CliCase):
    err = assert_cli_error(main, case)
    assert err.startswith("usage: python -m kvlib.bench serve"), err
