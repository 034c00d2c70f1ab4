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
