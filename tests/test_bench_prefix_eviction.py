"""``python -m kvlib.bench prefix-eviction``: the shared-prefix trace with and without eviction, on tiny
sizes (no timing is checked, only what the table counts), and its bad command lines."""

from __future__ import annotations

import re

import pytest
from bad_input import CliCase, assert_cli_error, params, run_cli

from kvlib.bench.__main__ import main
from kvlib.bench.prefix_eviction import shared_prefix_trace

pytestmark = pytest.mark.ch06

PE = ["prefix-eviction"]
TINY = [*PE, "--requests", "24", "--groups", "3", "--prefix-len", "8", "--question-len", "6"]
TINY += ["--output-len", "5", "--block-size", "2", "--concurrency", "3", "--repeats", "1"]
ROW = re.compile(r"^(hash|radix)\s+(large|small)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)


def test_the_small_pool_evicts_and_the_large_one_does_not():
    code, out, err = run_cli(main, TINY)
    assert code == 0, out + err
    rows = {
        (cache, pool): (int(blocks), int(evicted), int(hits))
        for cache, pool, blocks, _, evicted, hits in ROW.findall(out)
    }
    assert set(rows) == {(c, p) for c in ("hash", "radix") for p in ("large", "small")}, out
    per_request = -(-(8 + 6 + 5) // 2)
    assert rows["hash", "large"][0] == 24 * per_request + 1 and rows["hash", "small"][0] == 3 * per_request
    for cache in ("hash", "radix"):
        assert rows[cache, "large"][1] == 0, f"{cache}: the large pool holds every block, nothing to evict"
        assert rows[cache, "small"][1] > 0, f"{cache}: the small pool must force evictions"
        # prompts hit their group's prefix; on the small pool an evicted prefix can cost some hits
        assert 0 < rows[cache, "small"][2] <= rows[cache, "large"][2]
    # the two designs evict the same blocks, so the same number
    assert rows["hash", "small"][1:] == rows["radix", "small"][1:]
    assert re.search(r"/ without \(large pool\): hash [\d.]+x, radix [\d.]+x$", out, re.M), out


def test_the_trace_shares_prefixes_within_groups_only():
    trace = shared_prefix_trace(requests=10, groups=2, prefix_len=4, question_len=3, output_len=2, seed=1)
    assert len(trace) == 10 and all(len(p) == 7 and len(o) == 2 for p, o in trace)
    prefixes = {tuple(p[:4]) for p, _ in trace}
    assert len(prefixes) == 2, "each request starts with one of the 2 group prefixes"
    assert len({tuple(p[4:]) for p, _ in trace}) == 10, "questions are each request's own"


CASES = [
    CliCase(
        "groups-more-than-requests", [*PE, "--requests", "4", "--groups", "5"], ("--groups", "(4)", "got 5")
    ),
    CliCase(
        "small-pool-too-small",
        [*PE, "--prefix-len", "10", "--question-len", "6", "--output-len", "4", "--block-size", "4"]
        + ["--concurrency", "2", "--small-pool", "9"],
        ("--small-pool", "--concurrency (2)", "5 blocks each", ">= 10", "got 9"),
    ),
    CliCase("repeats-0", [*PE, "--repeats", "0"], ("--repeats", "integer >= 1", "got 0")),
    CliCase("block-size-0", [*PE, "--block-size", "0"], ("--block-size", "integer >= 1", "got 0")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_command_line_exits_2_naming_the_option(case: CliCase):
    err = assert_cli_error(main, case)
    assert err.startswith("usage: python -m kvlib.bench prefix-eviction"), err
