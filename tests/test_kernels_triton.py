"""The Triton paged decode kernel against the gather reference (CPU interpreter, or CUDA if present).

Interpreter limits respected here: fp32/fp16 (bf16 goes through the kernel's fp32 upcast), small
sizes (batch <= 4, seq <= 256), no autotune/do_bench. Physical blocks are shuffled and unused pool
slots hold large garbage values, so reading a wrong slot cannot go unnoticed; lengths include 1,
exactly one block and one block plus one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kvlib.kernels import MODE, build_paged_cache, paged_attention_decode, paged_attention_reference

pytestmark = pytest.mark.ch07

DEVICE = "cuda" if MODE == "cuda" else "cpu"
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _case(lens, q_heads, kv_heads, head_dim, block_size, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch, max_len = len(lens), max(lens)
    k = torch.randn(batch, max_len, kv_heads, head_dim, generator=g)
    v = torch.randn(batch, max_len, kv_heads, head_dim, generator=g)
    q = torch.randn(batch, q_heads, head_dim, generator=g)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    k_cache, v_cache, table = build_paged_cache(k, v, seq_lens, block_size, num_blocks=None, generator=g)
    args = [t.to(DEVICE) for t in (q.to(dtype), k_cache.to(dtype), v_cache.to(dtype), table, seq_lens)]
    return args


CASES = [
    # (lens, q_heads, kv_heads, head_dim, block_size): edge lengths for block 16 = 1, 16, 17
    ((1, 16, 17, 5), 8, 2, 32, 16),  # GQA group 4
    ((33, 1), 4, 4, 16, 16),  # MHA
    ((64, 200), 8, 1, 32, 16),  # MQA, several tiles
    ((7, 8, 9), 6, 2, 24, 8),  # group 3 (padded to 16 rows), head_dim not a power of two
    ((256, 100, 1, 31), 4, 2, 16, 5),  # block size not a power of two, longest allowed length
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
    assert out.float().abs().mean() > 0.02, "kernel output is (near) zero: did it write anything?"
    torch.testing.assert_close(out.float(), ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("num_splits", [2, 3, 8])
def test_split_k_matches_reference(num_splits):
    # 8 splits over max length 100 leaves later splits empty for the short sequences
    q, kc, vc, table, lens = _case((100, 1, 17, 64), 8, 2, 32, 16, torch.float32, seed=1)
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=num_splits, block_n=16)
    ref = paged_attention_reference(q, kc, vc, table, lens)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)


def test_bf16_through_the_interpreter_upcast():
    q, kc, vc, table, lens = _case((1, 16, 17), 8, 2, 32, 16, torch.bfloat16, seed=2)
    out = paged_attention_decode(q, kc, vc, table, lens)
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    assert out.dtype == torch.bfloat16 and out.float().abs().mean() > 0.02
    torch.testing.assert_close(out.float(), ref, rtol=TOL[torch.bfloat16], atol=TOL[torch.bfloat16])


def test_scale_and_block_n_options():
    q, kc, vc, table, lens = _case((40, 3), 4, 2, 16, 16, torch.float32, seed=3)
    out = paged_attention_decode(q, kc, vc, table, lens, scale=0.3, block_n=64)
    torch.testing.assert_close(out, paged_attention_reference(q, kc, vc, table, lens, scale=0.3))
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
