"""The Triton paged decode kernel at realistic sizes on CUDA (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.ch07,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _case(batch, max_len, q_heads, kv_heads, head_dim, block_size, dtype, seed=0):
    from kvlib.kernels import build_paged_cache

    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, max_len + 1, (batch,), generator=g, dtype=torch.int32)
    lens[0], lens[-1] = 1, max_len
    k = torch.randn(batch, max_len, kv_heads, head_dim, generator=g, dtype=torch.float32)
    v = torch.randn(batch, max_len, kv_heads, head_dim, generator=g, dtype=torch.float32)
    q = torch.randn(batch, q_heads, head_dim, generator=g, dtype=torch.float32)
    kc, vc, table = build_paged_cache(k, v, lens, block_size, generator=g)
    return [t.cuda() for t in (q.to(dtype), kc.to(dtype), vc.to(dtype), table, lens)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("num_splits", [1, "auto", 4])
def test_kernel_matches_reference_at_realistic_sizes(dtype, num_splits):
    from kvlib.kernels import paged_attention_decode, paged_attention_reference

    q, kc, vc, table, lens = _case(16, 4096, 32, 8, 128, 16, dtype)
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=num_splits)
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert out.float().abs().mean() > 1e-3
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


def test_contiguous_cache_through_the_same_kernel():
    from kvlib.kernels import contiguous_as_paged, paged_attention_decode, paged_attention_reference

    g = torch.Generator().manual_seed(1)
    k = torch.randn(8, 1024, 8, 128, generator=g).to("cuda", torch.bfloat16)
    v = torch.randn(8, 1024, 8, 128, generator=g).to("cuda", torch.bfloat16)
    q = torch.randn(8, 32, 128, generator=g).to("cuda", torch.bfloat16)
    lens = torch.full((8,), 1024, dtype=torch.int32, device="cuda")
    kc, vc, table = contiguous_as_paged(k, v, lens)
    out = paged_attention_decode(q, kc, vc, table, lens)
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    torch.testing.assert_close(out.float(), ref, rtol=1.6e-2, atol=1.6e-2)


def test_paged_decode_benchmark_runs_small():
    from kvlib.bench.paged_decode import run_cuda_benchmark

    rows = run_cuda_benchmark(
        batch=4, seq_len=512, q_heads=8, kv_heads=2, head_dim=128, block_size=16, iters=5
    )
    assert {r["variant"] for r in rows} >= {"paged", "contiguous", "sdpa"}
    assert all(r["ms"] > 0 and r["gb_per_s"] > 0 for r in rows)
