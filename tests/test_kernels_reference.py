"""The PyTorch paged-attention reference: gather order, GQA convention, SDPA agreement, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kvlib.kernels import build_paged_cache, contiguous_as_paged, gather_kv, paged_attention_reference
from kvlib.kernels.reference import check_paged_values

pytestmark = pytest.mark.ch07


def _case(
    batch=3, num_heads=8, num_kv_heads=2, head_dim=16, max_len=40, lens=(1, 16, 40), block_size=16, seed=0
):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(batch, max_len, num_kv_heads, head_dim, generator=g)
    v = torch.randn(batch, max_len, num_kv_heads, head_dim, generator=g)
    q = torch.randn(batch, num_heads, head_dim, generator=g)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    k_cache, v_cache, table = build_paged_cache(k, v, seq_lens, block_size, generator=g)
    return q, k, v, seq_lens, k_cache, v_cache, table


def _sdpa(q, k, v, seq_lens):
    """Per-sequence SDPA on the contiguous tensors, GQA by repeat_interleave."""
    group = q.shape[1] // k.shape[2]
    outs = []
    for b, n in enumerate(seq_lens.tolist()):
        kk = k[b, :n].repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        vv = v[b, :n].repeat_interleave(group, dim=1).transpose(0, 1)
        outs.append(F.scaled_dot_product_attention(q[b].unsqueeze(1), kk, vv).squeeze(1))  # (Hq, D)
    return torch.stack(outs)


def test_gather_restores_logical_order_from_shuffled_blocks():
    q, k, v, seq_lens, k_cache, v_cache, table = _case()
    assert not torch.equal(table[:, 0], torch.arange(3, dtype=torch.int32)), "blocks should be shuffled"
    for b, n in enumerate(seq_lens.tolist()):
        kk, vv = gather_kv(k_cache, v_cache, table, n, b)
        assert torch.equal(kk, k[b, :n]) and torch.equal(vv, v[b, :n])


def test_reference_matches_sdpa_with_gqa():
    q, k, v, seq_lens, k_cache, v_cache, table = _case()
    out = paged_attention_reference(q, k_cache, v_cache, table, seq_lens)
    torch.testing.assert_close(out, _sdpa(q, k, v, seq_lens), rtol=1e-5, atol=1e-5)
    assert out.abs().mean() > 0.05


def test_length_one_returns_the_value_row():
    q, k, v, seq_lens, k_cache, v_cache, table = _case()
    out = paged_attention_reference(q, k_cache, v_cache, table, seq_lens)
    expected = v[0, 0].repeat_interleave(4, dim=0)  # (Hq, D): query head h reads kv head h // 4
    torch.testing.assert_close(out[0], expected)


def test_contiguous_as_paged_is_a_view():
    q, k, v, seq_lens, *_ = _case()
    kc, vc, table = contiguous_as_paged(k, v, seq_lens)
    assert kc.data_ptr() == k.data_ptr() and table.tolist() == [[0], [1], [2]]
    torch.testing.assert_close(
        paged_attention_reference(q, kc, vc, table, seq_lens), _sdpa(q, k, v, seq_lens)
    )


def test_contiguous_as_paged_checks_seq_lens():
    q, k, v, seq_lens, *_ = _case()
    with pytest.raises(ValueError, match=r"seq_lens must lie in \[1, max_len = 40\].*max 41"):
        contiguous_as_paged(k, v, torch.tensor([41, 1, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"seq_lens must be \(batch=3,\)"):
        contiguous_as_paged(k, v, seq_lens[:2])


def test_paged_cache_has_a_nan_null_block_and_nan_tails():
    """Block 0 is never handed out and unused table entries point at it; everything that holds no
    token is NaN, so a kernel that reads an unmasked slot cannot produce a finite answer."""
    q, k, v, seq_lens, k_cache, v_cache, table = _case()  # lengths 1, 16, 40 in blocks of 16
    assert table.tolist()[0][1:] == [0, 0] and table.tolist()[1][1:] == [0, 0] and 0 not in table[2].tolist()
    assert k_cache.shape[0] == 1 + 1 + 1 + 3  # null block + the blocks the sequences need
    assert torch.isnan(k_cache[0]).all() and torch.isnan(v_cache[0]).all()
    for b, n in enumerate(seq_lens.tolist()):
        last = int(table[b, (n - 1) // 16])
        filled = (n - 1) % 16 + 1
        assert not torch.isnan(v_cache[last, :filled]).any() and torch.isnan(v_cache[last, filled:]).all()
    with pytest.raises(ValueError, match="plus 1 null block"):
        build_paged_cache(k, v, seq_lens, 16, num_blocks=5)


def test_bad_inputs_are_named():
    q, k, v, seq_lens, k_cache, v_cache, table = _case()
    with pytest.raises(ValueError, match="int32"):
        paged_attention_reference(q, k_cache, v_cache, table.long(), seq_lens)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        paged_attention_reference(q[:, :3], k_cache, v_cache, table, seq_lens)
    with pytest.raises(ValueError, match="seq_lens must lie"):
        paged_attention_reference(q, k_cache, v_cache, table, torch.tensor([0, 1, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(batch, num_heads, head_dim\)"):
        paged_attention_reference(q[0], k_cache, v_cache, table, seq_lens)
    bad = table.clone()
    bad[2, 0] = 10_000
    with pytest.raises(ValueError, match="block_table holds ids"):
        paged_attention_reference(q, k_cache, v_cache, bad, seq_lens)


def test_max_seq_len_equal_to_the_longest_sequence_is_a_valid_bound():
    """max_seq_len is an upper bound on seq_lens: the tightest one (the longest length itself) must pass,
    one below it must fail (guards against a `>=` that rejects the exact bound)."""
    q, k, v, seq_lens, k_cache, v_cache, table = _case()  # lengths 1, 16, 40 in blocks of 16
    longest = int(seq_lens.max())
    for bound in (longest, longest + 1, 10_000):
        check_paged_values(table, seq_lens, k_cache.shape[0], 16, max_seq_len=bound)
    with pytest.raises(ValueError, match=r"max_seq_len=39 is below the longest sequence \(40 tokens\)"):
        check_paged_values(table, seq_lens, k_cache.shape[0], 16, max_seq_len=longest - 1)
