"""Fragmentation and capacity simulator, its targets from the vLLM paper, and the chapter-06 plots."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kvlib.paged.simulate import (  # noqa: E402
    PAPER_RANGES,
    WORKLOADS,
    ContiguousAllocator,
    PagedAllocator,
    Request,
    analytic_prefix_saving,
    beam_search_savings,
    chat_workload,
    compare_allocators,
    parallel_sampling_savings,
    shared_prefix_savings,
    simulate_stream,
)

pytestmark = pytest.mark.ch06


@pytest.fixture(scope="module")
def stream_results():
    reqs = chat_workload(300, seed=3)
    return compare_allocators(reqs, budget=32768, max_len=2048)


def test_workload_is_heavy_tailed_and_within_the_window():
    reqs = chat_workload(2000, seed=0)
    assert all(r.prompt_len >= 1 and r.output_len >= 1 and r.total_len <= 2048 for r in reqs)
    prompts = sorted(r.prompt_len for r in reqs)
    mean, median = sum(prompts) / len(prompts), prompts[len(prompts) // 2]
    assert mean > 1.3 * median, "a log-normal chat distribution has its mean well above its median"
    assert 150 < median < 260
    assert chat_workload(5, seed=1) == chat_workload(5, seed=1)


def test_vllm_targets_in_kind(stream_results):
    by = {r.name: r for r in stream_results}
    assert by["paged (block 16)"].token_share >= 0.96
    assert 0.20 <= by["contiguous (max reservation)"].token_share <= 0.40
    assert by["contiguous (oracle)"].token_share < by["paged (block 16)"].token_share
    assert by["paged (block 1)"].token_share == pytest.approx(1.0)
    # paging fits more sequences in the same budget
    assert by["paged (block 16)"].mean_running > 2 * by["contiguous (max reservation)"].mean_running


def test_shares_add_up_and_fragmentation_respects_its_bound(stream_results):
    for r in stream_results:
        assert r.token_share + r.reservation_share + r.internal_share == pytest.approx(1.0)
        if r.block_size is not None:
            assert r.reservation_share == 0
            assert r.internal_per_seq_max <= r.internal_bound
            # offsets within the last block are close to uniform: mean waste ~ (B - 1) / 2
            assert r.internal_per_seq == pytest.approx((r.block_size - 1) / 2, abs=0.15 * r.block_size + 0.5)
    paged = [r for r in stream_results if r.block_size]
    utils = [r.token_share for r in sorted(paged, key=lambda r: r.block_size)]
    assert utils == sorted(utils, reverse=True), "utilization must fall as blocks grow"


def test_contiguous_arena_merges_holes_and_shows_external_fragmentation():
    a = ContiguousAllocator(100, "oracle")
    assert a.admit(0, Request(20, 10)) and a.admit(1, Request(20, 10)) and a.admit(2, Request(20, 10))
    a.release(0)
    a.release(2)
    assert a.holes == [(0, 30), (60, 40)]
    assert not a.admit(3, Request(40, 10)), "70 slots are free in total, but no single hole holds 50"
    a.release(1)
    assert a.holes == [(0, 100)]
    # a stream where holes block admission registers external fragmentation
    reqs = [Request(30, 1), Request(30, 30), Request(30, 1), Request(55, 1)]
    res = simulate_stream(reqs, ContiguousAllocator(120, "oracle", 100))
    assert res.external_share > 0


def test_paged_preemption_and_impossible_requests():
    # three requests that cannot all grow in a 6-block pool: someone is preempted, all finish
    reqs = [Request(7, 9), Request(7, 9), Request(7, 9)]
    res = simulate_stream(reqs, PagedAllocator(6 * 4, 4))
    assert res.preemptions >= 1 and res.token_share > 0.8
    with pytest.raises(ValueError, match="can never fit"):
        simulate_stream([Request(100, 10)], PagedAllocator(64, 16))


@pytest.mark.parametrize("cache", ["hash", "radix"])
@pytest.mark.parametrize(
    "n_groups,k,length,q", [(3, 4, 100, 20), (2, 5, 64, 1), (4, 3, 15, 10), (2, 6, 33, 47), (1, 1, 50, 5)]
)
def test_shared_prefix_saving_matches_the_analytic_value(cache, n_groups, k, length, q):
    res = shared_prefix_savings(n_groups, k, length, q, block_size=16, cache=cache)
    d = res.detail
    assert abs(d["saved_tokens"] - d["analytic_saved_tokens"]) <= n_groups * 16
    assert res.analytic == pytest.approx(analytic_prefix_saving(k, length, q, 16))
    assert res.analytic == pytest.approx((k - 1) * (length // 16) * 16 / (k * (length + q)))
    assert d["measured_token_saving"] == pytest.approx(res.analytic, abs=16 / (k * (length + q)))


def test_parallel_sampling_and_beam_savings_are_in_the_papers_ballpark():
    reqs = chat_workload(12, seed=1, **WORKLOADS["sharegpt"])
    reqs = [Request(r.prompt_len, min(r.output_len, 200)) for r in reqs]
    par = [parallel_sampling_savings(reqs, n) for n in (2, 4)]
    assert 0 < par[0].saving < par[1].saving < 0.6
    assert par[0].copies > 0, "forking mid-block must copy the last prompt block on first write"
    beam = beam_search_savings(reqs[:4], 4)
    lo, _ = PAPER_RANGES["beam_sharegpt"]
    assert beam.saving > lo, "beams share most of their history"
    assert beam.saving > par[1].saving
    single = parallel_sampling_savings(reqs[:3], 1)
    assert single.saving == 0 and single.copies == 0


def test_plots_draw_with_the_agg_backend(stream_results, tmp_path):
    from kvlib.paged.plots import (
        plot_block_size_tradeoff,
        plot_length_distribution,
        plot_sharing_savings,
        plot_utilization,
    )

    fig = plot_utilization(stream_results)
    bars = fig.axes[0].patches
    assert len(bars) == 3 * len(stream_results)
    assert math.isclose(bars[0].get_height(), 100 * stream_results[0].token_share)
    fig.savefig(tmp_path / "util.png")
    fig = plot_block_size_tradeoff(stream_results)
    assert len(fig.axes[0].lines[0].get_xdata()) == 6
    plot_length_distribution(chat_workload(50))
    reqs = [Request(40, 20)] * 2
    plot_sharing_savings([parallel_sampling_savings(reqs, 2)], {"parallel sampling n=2": (0.1, 0.3)})
    with pytest.raises(ValueError):
        plot_utilization([])
