"""The Triton paged decode kernel against the gather reference (CPU interpreter, or CUDA if present).

Interpreter limits respected here: fp32/fp16 (bf16 goes through the kernel's fp32 upcast), small
sizes (batch <= 4, seq <= 256), no autotune/do_bench. Physical blocks are shuffled; the null block 0
(where masked lanes point), unused blocks and every slot past a sequence's end hold NaN, so a read
the kernel should have masked turns its output into NaN even where the softmax weight is 0 (a test
below re-creates the kernel with a mask removed and checks that this harness catches it); lengths
include 1, exactly one block and one block plus one.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import re
import subprocess
import sys

import pytest
import torch

import kvlib.kernels.paged_attention as paged_attention_module
from kvlib.kernels import (
    MODE,
    build_paged_cache,
    choose_num_splits,
    contiguous_as_paged,
    contiguous_decode_attention,
    gather_kv,
    merge_splits,
    paged_attention_decode,
    paged_attention_partials,
    paged_attention_reference,
    softmax_rows,
)

pytestmark = pytest.mark.ch07

DEVICE = "cuda" if MODE == "cuda" else "cpu"
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _case(lens, num_heads, num_kv_heads, head_dim, block_size, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch, max_len = len(lens), max(lens)
    k = torch.randn(batch, max_len, num_kv_heads, head_dim, generator=g)
    v = torch.randn(batch, max_len, num_kv_heads, head_dim, generator=g)
    q = torch.randn(batch, num_heads, head_dim, generator=g)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    k_cache, v_cache, table = build_paged_cache(k, v, seq_lens, block_size, num_blocks=None, generator=g)
    args = [t.to(DEVICE) for t in (q.to(dtype), k_cache.to(dtype), v_cache.to(dtype), table, seq_lens)]
    return args


def _assert_matches(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert torch.isfinite(out).all(), (
        "NaN/inf in the kernel output: it read a slot it should have masked (unused slots hold NaN)"
    )
    assert out.float().abs().mean() > 0.02, "kernel output is (near) zero: did it write anything?"
    torch.testing.assert_close(out.float(), ref, rtol=TOL[dtype], atol=TOL[dtype])


CASES = [
    # (lens, num_heads, num_kv_heads, head_dim, block_size): edge lengths for block 16 = 1, 16, 17
    ((1, 16, 17, 5), 8, 2, 32, 16),  # GQA group 4
    ((33, 1), 4, 4, 16, 16),  # MHA
    ((64, 200), 8, 1, 32, 16),  # MQA, several tiles
    ((7, 8, 9), 6, 2, 24, 8),  # group 3 (padded to 16 rows), head_dim not a power of two
    ((256, 100, 1, 31), 4, 2, 16, 5),  # block size not a power of two, longest allowed length
    ((1, 64, 65, 100), 4, 2, 16, 64),  # pages larger than a tile (BLOCK_N 32 in the interpreter)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"lens{'-'.join(map(str, c[0]))}_h{c[1]}/{c[2]}_d{c[3]}_b{c[4]}"
)
def test_kernel_matches_reference(case, dtype):
    q, kc, vc, table, lens = _case(*case, dtype=dtype)
    out = paged_attention_decode(q, kc, vc, table, lens)
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    assert out.dtype == dtype and out.shape == q.shape
    _assert_matches(out, ref, dtype)


@pytest.mark.parametrize("num_splits", [2, 3, 8])
def test_split_k_matches_reference(num_splits):
    # 8 splits over max length 100 leaves later splits empty for the short sequences
    q, kc, vc, table, lens = _case((100, 1, 17, 64), 8, 2, 32, 16, torch.float32, seed=1)
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=num_splits, block_n=16)
    ref = paged_attention_reference(q, kc, vc, table, lens)
    _assert_matches(out, ref, torch.float32)


def test_split_k_rejects_a_max_seq_len_below_the_longest_sequence():
    q, kc, vc, table, lens = _case((100, 1, 17), 4, 2, 16, 16, torch.float32, seed=4)
    with pytest.raises(ValueError, match=r"max_seq_len=64 is below the longest sequence \(100 tokens\)"):
        paged_attention_decode(q, kc, vc, table, lens, num_splits=2, max_seq_len=64, block_n=16)
    # an upper bound larger than needed is fine: the extra chunks are empty
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=2, max_seq_len=200, block_n=16)
    _assert_matches(out, paged_attention_reference(q, kc, vc, table, lens), torch.float32)


@pytest.mark.parametrize("num_splits", [1, 2, "auto"])
def test_max_seq_len_equal_to_the_longest_sequence_is_accepted(num_splits):
    """The tightest bound, max_seq_len == max(seq_lens), is valid and gives the reference output (guards
    against the check rejecting it with `>=`)."""
    q, kc, vc, table, lens = _case((100, 1, 17), 4, 2, 16, 16, torch.float32, seed=4)
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=num_splits, max_seq_len=100, block_n=16)
    _assert_matches(out, paged_attention_reference(q, kc, vc, table, lens), torch.float32)


def test_non_contiguous_seq_lens_are_read_correctly():
    """The kernel reads ``lens_ptr + b``: a strided lengths tensor must be made contiguous first."""
    q, kc, vc, table, lens = _case((5, 40, 17), 4, 2, 16, 16, torch.float32, seed=5)
    # (batch,) with stride 2; read as if contiguous it gives lengths (5, 1, 40): wrong but in bounds
    strided = torch.stack([lens, torch.ones_like(lens)], dim=1)[:, 0]
    assert strided.stride() == (2,) and torch.equal(strided, lens)
    out = paged_attention_decode(q, kc, vc, table, strided)
    _assert_matches(out, paged_attention_reference(q, kc, vc, table, lens), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_contiguous_cache_with_pages_larger_than_a_tile(dtype):
    """One page per sequence (``contiguous_as_paged``): a 40-token page walked in 16-token tiles,
    the tail of each row NaN past its length."""
    g = torch.Generator().manual_seed(6)
    lens = torch.tensor([40, 1, 23], dtype=torch.int32)
    k = torch.randn(3, 40, 2, 16, generator=g)
    v = torch.randn(3, 40, 2, 16, generator=g)
    for b, n in enumerate(lens.tolist()):
        k[b, n:], v[b, n:] = float("nan"), float("nan")
    q = torch.randn(3, 4, 16, generator=g)
    kc, vc, table = contiguous_as_paged(k.to(dtype), v.to(dtype), lens)
    args = [t.to(DEVICE) for t in (q.to(dtype), kc, vc, table, lens)]
    out = paged_attention_decode(*args, block_n=16).cpu()
    ref = paged_attention_reference(q, k, v, table, lens)
    _assert_matches(out, ref, dtype)


# --- a test of the harness: a kernel with a mask removed must fail it --------------------------
_V_LOAD_MASK = re.compile(r"(v = tl\.load\([^)]*?)mask=kv_mask,\s*other=0\.0,")
_K_LOAD_MASK = re.compile(r"(k = tl\.load\([^)]*?)mask=kv_mask,\s*other=0\.0,")
MUTANTS = {
    "v_load_unmasked": [_V_LOAD_MASK],
    "k_and_v_loads_unmasked": [_K_LOAD_MASK, _V_LOAD_MASK],
}


def _mutant_kernel(tmp_path, patterns):
    """The decode kernel re-created from its source with the given masks deleted."""
    source = inspect.getsource(paged_attention_module._paged_decode_kernel.fn)
    mutated = source
    for pattern in patterns:
        mutated, n = pattern.subn(r"\1", mutated, count=1)
        assert n == 1, f"the kernel source no longer matches {pattern.pattern!r}: update this test"
    path = tmp_path / "mutant_kernel.py"
    path.write_text("import triton\nimport triton.language as tl\n\n\n" + mutated)
    spec = importlib.util.spec_from_file_location("mutant_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # decorated now: TRITON_INTERPRET was set by kvlib.kernels
    return module._paged_decode_kernel


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_harness_catches_a_kernel_that_reads_unmasked_slots(mutant, tmp_path, monkeypatch):
    """Without the K/V load masks, lanes past a sequence's end read the NaN tail of its last block
    and the NaN null block; their softmax weight is 0, but 0 * NaN = NaN, so the output is NaN.
    (With finite garbage, or real data in block 0, the same bug gave the right answer.)"""
    mutant_kernel = _mutant_kernel(tmp_path, MUTANTS[mutant])
    monkeypatch.setattr(paged_attention_module, "_paged_decode_kernel", mutant_kernel)
    q, kc, vc, table, lens = _case((1, 16, 17, 5), 8, 2, 32, 16, torch.float32)
    out = paged_attention_decode(q, kc, vc, table, lens)
    ref = paged_attention_reference(q, kc, vc, table, lens)
    assert torch.isnan(out).any()
    with pytest.raises(AssertionError, match="NaN/inf in the kernel output"):
        _assert_matches(out, ref, torch.float32)


def test_bf16_through_the_interpreter_upcast():
    q, kc, vc, table, lens = _case((1, 16, 17), 8, 2, 32, 16, torch.bfloat16, seed=2)
    out = paged_attention_decode(q, kc, vc, table, lens)
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    assert out.dtype == torch.bfloat16
    _assert_matches(out, ref, torch.bfloat16)


def test_scale_and_block_n_options():
    q, kc, vc, table, lens = _case((40, 3), 4, 2, 16, 16, torch.float32, seed=3)
    out = paged_attention_decode(q, kc, vc, table, lens, scale=0.3, block_n=64)
    _assert_matches(out, paged_attention_reference(q, kc, vc, table, lens, scale=0.3), torch.float32)
    with pytest.raises(ValueError, match="power of two"):
        paged_attention_decode(q, kc, vc, table, lens, block_n=24)
    with pytest.raises(ValueError, match="num_splits"):
        paged_attention_decode(q, kc, vc, table, lens, num_splits=0)


_PROBE = (
    "import os, torch; import kvlib.kernels as k; print(os.environ.get('TRITON_INTERPRET'), k.MODE); "
    "q = torch.zeros(1, 1, 16); c = torch.zeros(1, 16, 1, 16); t = torch.zeros(1, 1, dtype=torch.int32); "
    "n = torch.ones(1, dtype=torch.int32)\n"
    "try:\n    k.paged_attention_decode(q, c, c, t, n); print('ran')\n"
    "except RuntimeError as e:\n    print('refused:', e)\n"
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only environment choice")
@pytest.mark.parametrize("preset", [None, "0"])
def test_interpreter_chosen_automatically_and_explicit_choice_respected(preset):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if preset is not None:
        env["TRITON_INTERPRET"] = preset
    res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    if preset is None:
        assert res.stdout.splitlines()[:2] == ["1 interpreter", "ran"]
    else:
        first, second = res.stdout.splitlines()[:2]
        assert first == "0 cuda" and second.startswith("refused:") and "TRITON_INTERPRET" in second


# --- split-K's two passes, the row softmax and the contiguous wrapper (chapter 07's references) ---


def _split_lse_base2(q, kc, vc, table, lens, num_splits, block_n):
    """Each split's base-2 log-sum-exp and normalised output, computed in torch from the gathered K/V."""
    batch, num_heads, head_dim = q.shape
    group = num_heads // kc.shape[2]
    chunk = math.ceil(math.ceil(int(lens.max()) / num_splits) / block_n) * block_n
    lse = torch.full((batch, num_heads, num_splits), float("-inf"))
    part = torch.zeros(batch, num_heads, num_splits, head_dim)
    for b, n in enumerate(lens.tolist()):
        k, v = gather_kv(kc.float().cpu(), vc.float().cpu(), table.cpu(), n, b)  # (n, Hkv, D)
        for h in range(num_heads):
            s = k[:, h // group] @ q[b, h].float().cpu() / math.sqrt(head_dim)  # (n,)
            for split in range(num_splits):
                lo, hi = split * chunk, min(n, (split + 1) * chunk)
                if lo < hi:
                    lse[b, h, split] = torch.logsumexp(s[lo:hi], 0) / math.log(2)
                    part[b, h, split] = torch.softmax(s[lo:hi], 0) @ v[lo:hi, h // group]
    return part, lse


@pytest.mark.parametrize("num_splits", [1, 3, 5])
def test_partials_are_each_splits_normalised_output_and_base2_lse(num_splits):
    q, kc, vc, table, lens = _case((40, 3, 17), 4, 2, 16, 8, torch.float32, seed=5)
    part, lse = paged_attention_partials(q, kc, vc, table, lens, num_splits, block_n=16)
    want_part, want_lse = _split_lse_base2(q, kc, vc, table, lens, num_splits, 16)
    assert part.dtype == lse.dtype == torch.float32
    assert part.shape == (3, 4, num_splits, 16) and lse.shape == (3, 4, num_splits)
    empty = torch.isinf(want_lse)
    if num_splits > 1:
        assert empty.any(), "the case should leave some splits of the short sequences empty"
    assert torch.equal(torch.isinf(lse.cpu()), empty) and (lse.cpu()[empty] < 0).all()
    assert torch.equal(part.cpu()[empty], torch.zeros_like(part.cpu()[empty]))
    torch.testing.assert_close(lse.cpu()[~empty], want_lse[~empty], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part.cpu(), want_part, atol=2e-5, rtol=1e-5)
    merged = merge_splits(part, lse)
    _assert_matches(merged, paged_attention_reference(q, kc, vc, table, lens), torch.float32)


def test_merge_splits_weighs_by_lse_without_overflow_and_ignores_empty_splits():
    part = torch.randn(2, 3, 4, 24, device=DEVICE)
    lse = 1e4 + torch.randn(2, 3, 4, device=DEVICE)  # 2**1e4 overflows without the max subtraction
    lse[0, 0, 1:] = float("-inf")  # only split 0 holds tokens for (0, 0)
    out = merge_splits(part, lse, dtype=torch.float16)
    w = torch.softmax(lse * math.log(2), dim=-1)  # 2^lse normalised
    want = (w[..., None] * part).sum(2)
    assert out.dtype == torch.float16 and out.shape == (2, 3, 24)
    torch.testing.assert_close(out.float(), want, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(out[0, 0].float(), part[0, 0, 0], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_softmax_rows_matches_torch_on_slices_large_scores_and_odd_widths(dtype):
    wide = 1e4 * torch.randn(5, 130, device=DEVICE)
    x = wide[:, :100].to(dtype)  # a slice: row stride 130, not 100; scores that overflow a naive exp
    before = x.clone()
    out = softmax_rows(x)
    assert out.dtype == dtype and out.shape == (5, 100)
    torch.testing.assert_close(out.float(), torch.softmax(x.float(), -1), atol=TOL[dtype], rtol=0)
    assert torch.equal(x, before)


def test_contiguous_decode_attention_is_the_paged_kernel_over_one_block_per_sequence():
    g = torch.Generator().manual_seed(6)
    k, v = torch.randn(2, 2, 30, 2, 16, generator=g)
    k[0, 7:] = v[0, 7:] = float("nan")  # past sequence 0's length: must not be read
    q = torch.randn(2, 6, 16, generator=g)
    lens = torch.tensor([7, 30], dtype=torch.int32)
    q, k, v, lens = (t.to(DEVICE) for t in (q, k, v, lens))
    out = contiguous_decode_attention(q, k, v, lens, block_n=16)
    kc, vc, table = contiguous_as_paged(k, v, lens)
    _assert_matches(out, paged_attention_reference(q, kc, vc, table, lens), torch.float32)


def test_choose_num_splits_for_a_named_gpu_size_from_any_device():
    assert choose_num_splits(1, 8, 100_000, "cpu") == 1  # the interpreter: nothing to fill
    # 8 programs on 132 multiprocessors: 33 splits for two waves, if the sequence has 33 chunks of 512
    assert choose_num_splits(1, 8, 100_000, "cpu", num_sms=132) == 33
    assert choose_num_splits(1, 8, 2048, "cpu", num_sms=132) == 4  # chunks stay >= 512 tokens
    assert choose_num_splits(64, 8, 4096, "cpu", num_sms=132) == 1  # 512 programs: 3.9 waves already


@pytest.mark.skipif(MODE == "cuda", reason="the GPU compiler applies its own bound")
def test_interpreter_refuses_a_dot_that_a_gpu_cannot_compile():
    import triton
    import triton.language as tl

    @triton.jit
    def dot_kernel(a_ptr, b_ptr, out_ptr, K: tl.constexpr):
        rows, cols = tl.arange(0, 16), tl.arange(0, K)
        a = tl.load(a_ptr + rows[:, None] * K + cols[None, :])  # (16, K)
        b = tl.load(b_ptr + cols[:, None] * 16 + rows[None, :])  # (K, 16)
        tl.store(out_ptr + rows[:, None] * 16 + rows[None, :], tl.dot(a, b, input_precision="ieee"))

    for k, ok in ((8, False), (16, True)):
        a, b, out = torch.randn(16, k), torch.randn(k, 16), torch.empty(16, 16)
        if ok:
            dot_kernel[(1,)](a, b, out, K=k)
            torch.testing.assert_close(out, a @ b)
        else:
            with pytest.raises(Exception, match="K >= 16"):
                dot_kernel[(1,)](a, b, out, K=k)
