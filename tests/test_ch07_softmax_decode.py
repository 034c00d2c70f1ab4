"""Chapter 07's softmax and decode checks, beyond what tests/test_checks.py runs per exercise: the torch
emulation that diagnoses decode mistakes reproduces the reference when no mistake is switched on, and every
mistake it names changes the visible case's output (else the diagnosis could name a correct answer, or a
mutant could pass the visible test); the mistakes named only for some cases (a running max started at 0,
v read with k's strides) are named there and change those cases; the diagnoses of an output written with
the input's strides (softmax's x, decode's q) and of a tl.dot refused for K < 16 never name a correct
answer; the softmax prefix diagnosis never fires on a correct output.
"""

from __future__ import annotations

import pytest
import torch

from autograder.checks.ch07._cases import contiguous_case
from autograder.checks.ch07.decode import (
    _emulate,
    _fused_kv_case,
    _heads_first_v_case,
    _run,
    _variants,
    _very_negative_case,
    _written_with_q_strides,
)
from autograder.checks.ch07.softmax import _all_very_negative_rows, _prefix_only, _written_with_x_stride
from autograder.checks.common import CheckFailed

pytestmark = [pytest.mark.ch07, pytest.mark.autograder]

_CASES = [
    (dict(lens=(5, 37), max_len=40, num_heads=6, num_kv_heads=2, head_dim=16), 16),
    (dict(lens=(1, 20), max_len=24, num_heads=6, num_kv_heads=2, head_dim=24), 16),
    (dict(lens=(130, 5), max_len=130, num_heads=2, num_kv_heads=2, head_dim=16), 64),
    (dict(lens=(40, 23), max_len=44, num_heads=2, num_kv_heads=1, head_dim=16, q_scale=100.0), 16),
]


@pytest.mark.parametrize(("kwargs", "block_n"), _CASES)
def test_the_emulated_tile_loop_is_the_reference(kwargs: dict, block_n: int) -> None:
    case = contiguous_case(**kwargs, seed=3)
    torch.testing.assert_close(_emulate(case, block_n).float(), case.reference(), atol=1e-5, rtol=1e-5)


def test_the_emulation_reads_views_through_their_strides() -> None:
    case = _fused_kv_case((29, 12), num_heads=4, num_kv_heads=2, head_dim=16, seed=11)
    assert not case.k.is_contiguous() and not case.q.is_contiguous()
    torch.testing.assert_close(_emulate(case, 16).float(), case.reference(), atol=1e-5, rtol=1e-5)


def test_every_named_mistake_changes_the_visible_output() -> None:
    case = contiguous_case((5, 37), max_len=40, num_heads=6, num_kv_heads=2, head_dim=16, seed=71)
    ref = case.reference().double()
    for message, variant in _variants(case, 16).items():
        out = variant()
        same = torch.isfinite(out).all() and (out - ref).abs().max().item() < 1e-3
        assert not same, f"the visible case cannot tell this mistake from a correct answer: {message}"


def test_the_scale_by_block_d_mistake_is_named_only_when_head_dim_is_padded() -> None:
    padded = contiguous_case((5,), num_heads=2, num_kv_heads=1, head_dim=24)
    exact = contiguous_case((5,), num_heads=2, num_kv_heads=1, head_dim=32)
    assert any("1 / sqrt(BLOCK_D)" in m for m in _variants(padded, 16))
    assert not any("1 / sqrt(BLOCK_D)" in m for m in _variants(exact, 16))


def test_the_prefix_diagnosis_never_names_a_correct_softmax() -> None:
    x = torch.randn(4, 1500, generator=torch.Generator().manual_seed(0))
    assert _prefix_only(torch.softmax(x, -1), x) is None
    truncated = torch.softmax(x, -1)
    truncated[:, :1024] = torch.softmax(x[:, :1024], -1)
    truncated[:, 1024:] = 0.0
    assert _prefix_only(truncated, x) == 1024


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: _very_negative_case(seed=14), "the running max m starts at 0"),
        (lambda: _heads_first_v_case((19, 30), max_len=32, seed=15), "v is read with k's strides"),
    ],
)
def test_a_mistake_named_only_for_some_cases_is_named_there_and_changes_them(build, words: str) -> None:
    case = build()
    ref = case.reference().double()
    torch.testing.assert_close(_emulate(case, 16).float(), case.reference(), atol=1e-5, rtol=1e-5)
    named = {m: v for m, v in _variants(case, 16).items() if words in m}
    assert len(named) == 1, f"{words!r} is not among the mistakes named for {case.describe()}"
    out = next(iter(named.values()))()
    assert not (torch.isfinite(out).all() and (out - ref).abs().max().item() < 1e-3)
    plain = contiguous_case((5, 37), max_len=40, num_heads=6, num_kv_heads=2, head_dim=16, seed=71)
    assert not any(words in m for m in _variants(plain, 16))


def test_the_output_written_with_q_strides_is_told_from_a_correct_one() -> None:
    case = _fused_kv_case((29, 12), num_heads=4, num_kv_heads=2, head_dim=16, seed=11)
    ref = case.reference()
    assert not _written_with_q_strides(ref.clone(), case, ref.double(), 1e-4)
    flat = torch.full((ref.numel(),), float("nan"))
    b, h, d = torch.meshgrid(*(torch.arange(n) for n in ref.shape), indexing="ij")
    offs = b * case.q.stride(0) + h * case.q.stride(1) + d
    inside = offs < flat.numel()
    flat[offs[inside]] = ref[inside]
    assert _written_with_q_strides(flat.view(ref.shape), case, ref.double(), 1e-4)


def test_the_softmax_written_with_x_stride_is_told_from_a_correct_one() -> None:
    x = torch.randn(3, 80, generator=torch.Generator().manual_seed(1))[:, 8:45]
    ref = torch.softmax(x, -1)
    assert _written_with_x_stride(ref.clone(), x) is None
    flat = torch.full((ref.numel(),), float("nan"))
    for r in range(3):
        keep = flat[r * 80 : r * 80 + 37].numel()
        flat[r * 80 : r * 80 + keep] = ref[r, :keep]
    assert _written_with_x_stride(flat.view(3, 37), x) == 37


def test_the_very_negative_row_diagnosis_needs_nan_and_scores_below_minus_100() -> None:
    x = torch.randn(3, 100, generator=torch.Generator().manual_seed(2))
    x[1] -= 200.0
    good = torch.softmax(x, -1)
    assert _all_very_negative_rows(good, x) is None
    bad = good.clone()
    bad[0] = float("nan")
    assert _all_very_negative_rows(bad, x) is None  # row 0 is not very negative: another cause
    bad[1] = float("nan")
    assert _all_very_negative_rows(bad, x) == 1


def test_a_tl_dot_refused_for_a_short_summed_dimension_names_the_cause() -> None:
    case = contiguous_case((5,), num_heads=2, num_kv_heads=1, head_dim=8)

    def launcher(q, k, v, seq_lens, block_n=16):
        raise RuntimeError("Input shapes should have M >= 1, N >= 1 and K >= 16")

    with pytest.raises(CheckFailed, match=r"BLOCK_D = max\(16, triton.next_power_of_2\(head_dim\)\)"):
        _run(launcher, case, 16)
