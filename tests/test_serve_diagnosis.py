"""kvlib.serve.diagnosis: the four server reports of chapter 09, their answer key and explanations.

Each report must show its problem in the numbers (against its healthy reference) without naming it, the
same seed must give the same reports, the letters must not follow the scenarios' own order, and the
explanations must quote the reports' numbers. The simulators behind the reports are checked where this
module drives them itself: the static batches against a hand count, the prefix replay against
kvlib.bench.prefix_eviction's, the preemption run for losing no token.
"""

from __future__ import annotations

import re

import pytest
from bad_input import Case, assert_clear_error, params

from kvlib.bench.prefix_eviction import replay, shared_prefix_trace
from kvlib.paged.workload import Request
from kvlib.serve import diagnosis
from kvlib.serve.diagnosis import BOTTLENECKS, FIXES, LETTERS, answer_key, explanations, scenario_reports

pytestmark = pytest.mark.ch09


@pytest.fixture(scope="module")
def reports() -> dict:
    return scenario_reports()


def _by_kind(reports: dict) -> dict:
    return {LETTERS[letter]: report for letter, report in reports.items()}


# --- letters, menus, key ----------------------------------------------------------------------------------


def test_letters_shuffle_every_scenario_away_from_its_place() -> None:
    assert list(LETTERS) == ["A", "B", "C", "D"]
    assert sorted(LETTERS.values()) == sorted(diagnosis.KINDS)
    assert all(LETTERS[letter] != kind for letter, kind in zip("ABCD", diagnosis.KINDS))


def test_answer_key_uses_the_menus_and_one_label_per_report() -> None:
    key = answer_key()
    assert sorted(key) == ["A", "B", "C", "D"]
    assert all(b in BOTTLENECKS and f in FIXES for b, f in key.values())
    assert len({b for b, _ in key.values()}) == 4 and len({f for _, f in key.values()}) == 4
    assert len(BOTTLENECKS) == len(set(BOTTLENECKS)) == 7 and len(FIXES) == len(set(FIXES)) == 7
    key["A"] = ("changed", "changed")
    assert answer_key()["A"] != ("changed", "changed")  # a new dict every call


# --- the reports ------------------------------------------------------------------------------------------


def test_same_seed_same_reports_and_fresh_copies(reports: dict) -> None:
    again = scenario_reports(0)
    assert {k: r.text() for k, r in again.items()} == {k: r.text() for k, r in reports.items()}
    again["A"].metrics.clear()
    assert scenario_reports(0)["A"].metrics  # the cached reports are not the caller's


def test_reports_never_name_their_answer(reports: dict) -> None:
    for letter, report in reports.items():
        text = report.text().casefold()
        for label in (*BOTTLENECKS, *FIXES):
            assert label.casefold() not in text, (letter, label)
        for word in ("fragment", "thrash", "8-bit", "back to back"):
            assert word not in text, (letter, word)
        assert text.startswith(f"server {letter.casefold()}")


def test_every_row_has_both_columns(reports: dict) -> None:
    for report in reports.values():
        assert report.rows and all(len(row) == 3 and all(row) for row in report.rows)
        assert "healthy reference" in report.text() and "log (excerpt):" in report.text()
        assert len(report.log) >= 4


def test_modelled_times_say_so(reports: dict) -> None:
    for report in reports.values():
        for label, _, _ in report.rows:
            if re.search(r"(, s\b|\bms\b|per second)", label):
                assert "(modelled)" in label, label
    preemption = _by_kind(reports)["preemption"]
    assert all("(modelled)" in line for line in preemption.log if " ms " in line)


def test_contiguous_server_wastes_what_it_reserves(reports: dict) -> None:
    report = _by_kind(reports)["contiguous"]
    m, h = report.metrics, report.healthy
    assert m["token_share"] < 0.6 and h["token_share"] > 0.95
    assert m["unusable_free_share"] > 0.05 and h["unusable_free_share"] == 0
    assert m["never_share"] > 0.2 and m["steps"] > 1.5 * h["steps"]
    assert m["token_share"] + m["future_share"] + m["never_share"] == pytest.approx(1.0)
    # a request reserves prompt + max_tokens (capped at the longest request), in one range
    first = next(line for line in report.log if line.startswith("admit request"))
    start, end, prompt = (int(x.replace(",", "")) for x in re.findall(r"[\d,]+(?=[),-])", first)[-3:])
    assert end - start == min(diagnosis.MAX_LEN, prompt + diagnosis.MAX_TOKENS)
    assert any("waits" in line for line in report.log)


def test_static_batches_pad_and_keep_finished_rows(reports: dict) -> None:
    m, h = _by_kind(reports)["static"].metrics, _by_kind(reports)["static"].healthy
    assert m["token_share"] < 0.6 and h["token_share"] > 0.95
    assert m["left_share"] > 0.2 and m["after_share"] > 0.05 and m["finished_rows_share"] > 0.3
    assert m["token_share"] + m["left_share"] + m["after_share"] == pytest.approx(1.0)
    assert m["steps"] > 2 * h["steps"]


def test_static_batches_counted_by_hand() -> None:
    # one batch: prompts 2 and 4 (P = 4), outputs 1 and 3 (3 steps of [2, 4 + t] slots: 10 + 12 + 14)
    metrics, log = diagnosis._static_batches([Request(2, 1), Request(4, 3)], 2)
    assert metrics["steps"] == 3
    assert metrics["token_share"] == pytest.approx(27 / 36)  # (3 + 5) + (3 + 6) + (3 + 7)
    assert metrics["left_share"] == pytest.approx(6 / 36)  # 2 padding slots in each of 3 steps
    assert metrics["after_share"] == pytest.approx(3 / 36)  # the first row's tokens after its end: 1 + 2
    assert metrics["prefill_pad_share"] == pytest.approx(2 / 8)
    assert metrics["finished_rows_share"] == pytest.approx(2 / 6)
    assert metrics["mean_wait_steps"] == 0 and "KV tensor [2, 7]" in log[0]


def test_preempting_server_waits_rather_than_copies(reports: dict) -> None:
    m, h = _by_kind(reports)["preemption"].metrics, _by_kind(reports)["preemption"].healthy
    assert m["preemptions"] > 50 and h["preemptions"] == 0 and m["max_host"] >= 5
    assert m["copy_share"] < 0.05  # the copies are not the bottleneck: the explanation says so
    assert m["copy_step_copy_ms"] < m["copy_step_compute_ms"]
    assert m["gap_max"] > 5.0 and h["gap_max"] < 0.5
    assert m["ttft_p99"] > 10 * h["ttft_p99"]
    assert m["step_p99_ms"] < 100  # no step is long: prefill is not the problem
    assert h["throughput"] > m["throughput"]
    x = _by_kind(reports)["preemption"].extra  # fewer sequences at once: a queue instead of freezes
    assert x["fewer_preemptions"] < m["preemptions"] / 4 and x["fewer_ttft_p50"] > 5 * m["ttft_p50"]


def test_preemption_run_loses_no_token() -> None:
    requests = [Request(30, 200) for _ in range(12)]
    arrivals = [0.1 * i for i in range(12)]
    metrics, _ = diagnosis._serve_with_preemption(requests, arrivals, 64, diagnosis.KV_BYTES_PER_TOKEN)
    assert metrics["preemptions"] > 0  # 12 x 230 tokens in 64 blocks of 16: they cannot all stay
    assert round(metrics["throughput"] * metrics["seconds"]) == 12 * 200


def test_prefix_server_evicts_what_it_needs_next(reports: dict) -> None:
    report = _by_kind(reports)["prefix"]
    m, h, x = report.metrics, report.healthy, report.extra
    assert m["hit_share"] < 0.5 * m["best_share"]
    assert h["hit_share"] == pytest.approx(h["best_share"]) and h["best_share"] == m["best_share"]
    assert m["recomputed_per_request"] > 100 and h["recomputed_per_request"] == 0
    assert m["median_distance"] > 10 and h["median_distance"] == 1
    assert x["twice_pool_hit_share"] < h["hit_share"] - 0.1  # more memory is not the fix
    assert abs(x["half_concurrency_hit_share"] - m["hit_share"]) < 0.05  # nor fewer running requests


def test_prefix_replay_matches_the_benchmarks() -> None:
    trace = shared_prefix_trace(64, 16, 128, 32, 16, seed=3)
    mine, _ = diagnosis._replay_prefix(trace, 120, 4)
    theirs = replay(trace, 120, diagnosis.BLOCK_SIZE, "radix", 4)
    assert mine["hit_tokens"] == theirs.hit_tokens and mine["evicted"] == theirs.evicted


# --- explanations -----------------------------------------------------------------------------------------


def test_explanations_name_the_answer_and_quote_the_reports(reports: dict) -> None:
    texts = explanations()
    key = answer_key()
    assert sorted(texts) == ["A", "B", "C", "D"]
    for letter, text in texts.items():
        bottleneck, fix = key[letter]
        assert text.startswith(f"Server {letter}: {bottleneck}; fix: {fix}.")
        quoted = [row[1] for row in reports[letter].rows if row[1] in text]
        assert len(quoted) >= 3, (letter, quoted)  # numbers formatted from the report, as printed


# --- bad input --------------------------------------------------------------------------------------------

BAD = [
    Case("reports-seed-str", lambda: scenario_reports("1"), TypeError, ("seed", "'1'")),
    Case("reports-seed-float", lambda: scenario_reports(1.5), TypeError, ("seed", "1.5")),
    Case("reports-seed-negative", lambda: scenario_reports(-1), ValueError, ("seed", ">= 0")),
    Case("explanations-seed-none", lambda: explanations(None), TypeError, ("seed", "None")),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_input(case: Case) -> None:
    assert_clear_error(case)
