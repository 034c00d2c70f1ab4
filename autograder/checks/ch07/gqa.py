"""Exercise `paged_decode_gqa`: paged decode attention with one program per (sequence, KV head).

Everything `paged_decode` promises is checked with the same helpers (`paged.check_paged`), plus what
this exercise is for, counted in Triton's interpreter: exactly batch * num_kv_heads programs, and
each key and value loaded once per decode step (K bytes = sum(seq_lens) * num_kv_heads * head_dim *
itemsize), not once per query head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..common import CheckFailed
from ..delegation import graded
from ._cases import PagedCase, interpreted, paged_case
from .paged import (
    DOT_SIZE_HINT,
    NEGATIVE_HINT,
    REFERENCES,
    TABLE_SLICE_HINT,
    PagedRun,
    check_paged,
    hidden_no_aliasing,
    kv_halves_view,
    padded_head_view,
    q_head_major_view,
    scale_heads,
    scramble_unused_entries,
    table_column_slice,
    v_padded_view,
    very_negative_scores,
)

_GROUP_HINT = (
    "one program per (sequence, KV head): grid (batch, num_kv_heads), the program for KV head j computing "
    "query heads j * group ... (j + 1) * group - 1 as the rows of one (BLOCK_G, BLOCK_D) tile"
)


def assert_reads_each_key_once(run: PagedRun, case: PagedCase, what: str) -> None:
    """batch * num_kv_heads programs in all, and K and V bytes loaded once per token and KV head."""
    trace = run.trace
    if trace is None:
        return
    batch, num_heads, head_dim = case.q.shape
    num_kv_heads = case.k_cache.shape[2]
    group = num_heads // num_kv_heads
    programs = sum(math.prod(launch.grid) for launch in trace.launches)
    grids = ", ".join(f"{launch.kernel}[{launch.grid}]" for launch in trace.launches)
    expected = batch * num_kv_heads
    if programs != expected:
        per_head = ", one per query head," if programs == batch * num_heads else ""
        raise CheckFailed(
            f"{what}: your kernel ran {programs} programs{per_head} ({grids}); launch exactly batch * "
            f"num_kv_heads = {batch} * {num_kv_heads} = {expected} programs: {_GROUP_HINT}"
        )
    tokens = int(case.seq_lens.sum())
    for name in ("k_cache", "v_cache"):
        itemsize = getattr(case, name).element_size()
        want = tokens * num_kv_heads * head_dim * itemsize
        got = trace.bytes_loaded(name)
        if got == want:
            continue
        times = f" ({got / want:g} times each)" if want and got % want == 0 else ""
        raise CheckFailed(
            f"{what}: your kernel loaded {got} bytes of {name}{times}; each of the {tokens} tokens' "
            f"{num_kv_heads} KV heads of {head_dim} numbers must be loaded once, {want} bytes: load a tile "
            f"of keys once and score it against all {group} queries of the group at once "
            "(tl.dot(q, tl.trans(k)) with q a (BLOCK_G, BLOCK_D) tile), never once per query head"
        )


def _check(fn: Callable[..., Any], case: PagedCase, block_n: int, hint: str = "") -> None:
    def counts(run: PagedRun, what: str) -> None:
        assert_reads_each_key_once(run, case, what)

    check_paged(fn, case, block_n, "paged_decode_gqa", hint, after_reads=counts)


_VISIBLE = (
    (dict(lens=(5, 23, 40), num_heads=6, num_kv_heads=2, block_size=8, seed=80), 16,
     "group 3: BLOCK_G = 16 rows, 13 of them padding"),
    (dict(lens=(50, 7), num_heads=8, num_kv_heads=2, block_size=32, seed=81), 16,
     "group 4, block_size 32 > block_n 16"),
)  # fmt: skip


@graded("paged_decode_gqa", *REFERENCES)
def paged_decode_gqa_visible(fn: Callable[..., Any]) -> None:
    """Groups of 3 and 4 over two KV heads: values, reads, and batch * num_kv_heads programs."""
    for kwargs, block_n, note in _VISIBLE:
        _check(fn, paged_case(note=note, **kwargs), block_n)
    print("paged_decode_gqa: visible tests passed")


def _hidden_cases() -> list[tuple[PagedCase, int, str]]:
    sharp = scale_heads(
        paged_case((40, 27), num_heads=4, num_kv_heads=1, head_dim=16, block_size=8, seed=86),
        [60.0, 0.05, 30.0, 1.0], "one group holds a sharp head (scores ~150) and a flat one (~0.1)",
    )  # fmt: skip
    cases = [
        (padded_head_view(paged_case((1, 17, 33), num_heads=2, num_kv_heads=2, head_dim=24, block_size=4,
                                     seed=82, note="group 1, head_dim 24, block_size 4"), 8), 16,
         "head_dim 24 is not a power of two (mask d >= head_dim), and the pool is a view with padded rows: "
         "use its strides"),
        (kv_halves_view(paged_case((100, 3), num_heads=8, num_kv_heads=1, head_dim=40, block_size=32,
                                   seed=83, note="group 8, head_dim 40")), 32,
         "k_cache and v_cache are views here: use their strides"),
        (scramble_unused_entries(paged_case((1, 9, 64, 17, 33), num_heads=10, num_kv_heads=2, block_size=8,
                                            seed=84, note="batch 5, group 5"), seed=3, extra_columns=2), 64,
         "entries past a sequence's last block are arbitrary: never follow them"),
        (sharp, 16,
         "each query head of the group needs its own running max and sum (m and l vectors of BLOCK_G, "
         "tl.max(s, axis=1)), not one max over the whole (BLOCK_G, block_n) tile: a flat head's exp(s - m) "
         "underflows to 0 under a sharp head's max; and subtract the max before exp"),
        (paged_case((20, 45), num_heads=8, num_kv_heads=2, head_dim=32, block_size=16, dtype=torch.float16,
                    seed=85, note="group 4"), 32,
         "float16 in, float16 out; compute in float32 inside (.to(tl.float32))"),
        (paged_case((16, 31), num_heads=16, num_kv_heads=1, head_dim=16, block_size=16, seed=87,
                    note="group 16: no padding rows"), 16, ""),
        (paged_case((10, 27), num_heads=4, num_kv_heads=2, head_dim=8, block_size=8, seed=89,
                    note="head_dim 8"), 16, "head_dim 8 < 16: " + DOT_SIZE_HINT),
        (q_head_major_view(v_padded_view(paged_case((9, 30), num_heads=6, num_kv_heads=2, block_size=8,
                                                    seed=93), 8)), 16,
         "q is a view here (head-major) and v_cache's strides differ from k_cache's: read q's rows with "
         "q.stride(), v with v_cache.stride() (never k_cache's), and store with out.stride()"),
        (table_column_slice(paged_case((13, 26), num_heads=4, num_kv_heads=2, block_size=8, seed=94), seed=6,
                            spare=2, hidden=3), 16, TABLE_SLICE_HINT),
        (very_negative_scores(paged_case((21, 40), num_heads=6, num_kv_heads=2, block_size=8, seed=95), 130),
         16, NEGATIVE_HINT.replace("running max", "running max of every query row")),
    ]  # fmt: skip
    if interpreted():
        cases.append(
            (scramble_unused_entries(paged_case((3, 40), num_heads=3, num_kv_heads=1, block_size=8, seed=88),
                                     seed=4, extra_columns=1, huge=True), 16,
             "unused block-table entries hold huge ids here: follow an entry only for tokens n < seq_len")
        )  # fmt: skip
    return cases


@graded("paged_decode_gqa", *REFERENCES)
def paged_decode_gqa_hidden(fn: Callable[..., Any]) -> None:
    """Groups 1, 5, 8, 16; head_dim 8, 24, 40; strided pools, q and v views, a sliced block table; sharp and
    flat heads in one group; every score near -130; fp16; harmful tables."""
    for case, block_n, hint in _hidden_cases():
        _check(fn, case, block_n, hint)
    hidden_no_aliasing(fn, "paged_decode_gqa")
    print("paged_decode_gqa: hidden tests passed")
