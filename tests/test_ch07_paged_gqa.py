"""Chapter 07's paged and GQA checks, beyond what tests/test_checks.py runs per exercise: kvlib's own kernel
(another grid, exp2, copies made by its launcher) passes every trace and value check on every case; the
memory guard drops and counts stray stores and restores the interpreter; an answer that gathers the cache
in torch before launching its own kernel fails for it; the diagnosed variants differ from the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autograder.checks.ch07 import gqa, paged
from autograder.checks.ch07._cases import interpreted, paged_case
from autograder.harness import run_exercise

pytestmark = [pytest.mark.ch07, pytest.mark.autograder]

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "07_triton.ipynb"


def _kvlib(q, k_cache, v_cache, block_table, seq_lens, block_n=16):
    from kvlib.kernels import paged_attention_decode

    return paged_attention_decode(q, k_cache, v_cache, block_table, seq_lens, block_n=block_n)


def _all_cases() -> list:
    visible = [(paged_case(note=n, **kw), bn, "") for kw, bn, n in paged._VISIBLE + gqa._VISIBLE]
    return visible + paged.hidden_cases() + gqa._hidden_cases()


@pytest.mark.parametrize("index", range(len(_all_cases())))
def test_kvlibs_kernel_passes_every_paged_and_gqa_check(index: int) -> None:
    case, block_n, hint = _all_cases()[index]

    def counts(run: paged.PagedRun, what: str) -> None:
        gqa.assert_reads_each_key_once(run, case, what)

    paged.check_paged(_kvlib, case, block_n, "kvlib", hint, after_reads=counts)


@pytest.mark.skipif(not interpreted(), reason="the guard watches Triton's CPU interpreter")
def test_memory_guard_drops_and_counts_stray_stores_and_restores_the_interpreter() -> None:
    import triton
    import triton.language as tl
    from triton.runtime import interpreter

    @triton.jit
    def spill(out_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tl.store(out_ptr + offs, offs.to(tl.float32))  # BLOCK lanes into a smaller tensor

    before = interpreter.InterpreterBuilder.__dict__["create_masked_store"]
    backing = torch.full((64,), -1.0)
    out = backing[:8].clone()  # its own 8-number storage
    with paged.memory_guard() as guard:
        spill[(1,)](out, BLOCK=32)
    assert guard.stray_stores == 24 and guard.stray_loads == 0
    assert torch.equal(out, torch.arange(8.0))
    assert interpreter.InterpreterBuilder.__dict__["create_masked_store"] is before


def test_a_torch_gather_before_the_learners_own_decode_kernel_fails() -> None:
    source = (
        "def paged_decode(q, k_cache, v_cache, block_table, seq_lens, block_n=16):\n"
        "    k = k_cache[block_table.long()].flatten(1, 2)  # (batch, n_blocks * page, H, D)\n"
        "    v = v_cache[block_table.long()].flatten(1, 2)\n"
        "    return decode_attention(q, k, v, seq_lens, block_n=block_n)\n"
    )
    with pytest.raises(AssertionError, match="never loaded from k_cache itself"):  # a fresh CheckFailed class
        run_exercise(NOTEBOOK, "paged_decode", source)


@pytest.mark.parametrize("index", range(2))
def test_every_diagnosed_variant_changes_the_visible_output(index: int) -> None:
    kwargs, block_n, note = paged._VISIBLE[index]
    case = paged_case(note=note, **kwargs)
    expected = case.reference().double()
    for message, variant in paged.paged_variants(case, block_n).items():
        assert float((variant - expected).abs().max()) > 1e-3, message


def test_the_very_negative_case_puts_every_score_where_a_max_started_at_zero_underflows() -> None:
    case = paged.very_negative_scores(paged_case((21, 40), num_heads=4, num_kv_heads=2, seed=92), 130)
    for b, n in enumerate(case.seq_lens.tolist()):
        from kvlib.kernels.reference import gather_kv

        k, _ = gather_kv(case.k_cache.cpu(), case.v_cache.cpu(), case.block_table.cpu(), n, b)
        scores = torch.einsum("hd,nhd->hn", case.q[b].cpu().double(), k.double()[:, torch.arange(4) // 2]) / 4
        assert float(scores.max()) < -110 and float(scores.min()) > -150  # exp(-104) is 0 in float32
    assert bool(torch.isfinite(case.reference()).all())


def test_q_view_variants_differ_from_the_reference_and_stay_in_bounds() -> None:
    case = paged.q_head_major_view(paged_case((9, 30), num_heads=4, num_kv_heads=2, seed=90))
    assert not case.q.is_contiguous()
    expected = case.reference().double()
    variants = paged.q_view_variants(case)
    assert len(variants) == 2  # q read with its shape's strides, the output written with q's
    for message, variant in variants.items():
        assert bool(torch.isfinite(variant).all()), message
        assert float((variant - expected).abs().max()) > 1e-3, message


def test_a_row_addressed_by_the_tables_width_is_named_as_a_stride_mistake() -> None:
    case = paged.table_column_slice(paged_case((13, 26), num_heads=2, num_kv_heads=1, seed=91), 5, 2, 3)
    table = case.block_table
    width = table.shape[1]
    assert table.stride(0) == width + 3
    by_width = torch.arange(width) + 1 * width
    assert "block_table.stride(0)" in paged.table_row_problem(by_width, table, 1)
    assert paged.table_row_problem(torch.arange(width) + table.stride(0), table, 1) is None


def test_a_small_dot_refusal_names_its_cause() -> None:
    from autograder.checks.common import CheckFailed

    refusal = CheckFailed(
        "f raised InterpreterError: AssertionError('Input shapes should have M >= 1, N >= 1 and K >= 16')"
    )
    assert "max(16, triton.next_power_of_2(head_dim))" in str(paged.explain_dot_size(refusal))
