"""Chapter 07's softmax and decode checks, beyond what tests/test_checks.py runs per exercise: the torch
emulation that diagnoses decode mistakes reproduces the reference when no mistake is switched on, and every
mistake it names changes the visible case's output (else the diagnosis could name a correct answer, or a
mutant could pass the visible test); the softmax prefix diagnosis never fires on a correct output.
"""

from __future__ import annotations

import pytest
import torch

from autograder.checks.ch07._cases import contiguous_case
from autograder.checks.ch07.decode import _emulate, _fused_kv_case, _variants
from autograder.checks.ch07.softmax import _prefix_only

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
