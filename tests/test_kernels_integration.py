"""End to end: the block manager decides where KV goes, the kernel reads it back.

A small batch is prefilled with prefix caching, forked (parallel sampling), decoded token by token
with copy-on-write, and partly freed; at each step the Triton kernel over the paged cache must
equal attention over each sequence's own contiguous history.
"""

from __future__ import annotations

import pytest
import torch

from kvlib.kernels import MODE, copy_blocks, paged_attention_decode, paged_attention_reference, write_kv
from kvlib.paged import BlockManager

pytestmark = [pytest.mark.ch06, pytest.mark.ch07]

DEVICE = "cuda" if MODE == "cuda" else "cpu"
KV_HEADS, Q_HEADS, HEAD_DIM, BLOCK = 2, 4, 16, 4


def _kv_of(token: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic K/V for a (token, position) pair: equal prefixes give equal KV, as in a model."""
    g = torch.Generator().manual_seed(token * 1000 + position)
    return torch.randn(KV_HEADS, HEAD_DIM, generator=g), torch.randn(KV_HEADS, HEAD_DIM, generator=g)


@pytest.mark.parametrize("cache", [None, "hash", "radix"])
def test_block_manager_and_kernel_agree_with_contiguous_attention(cache):
    mgr = BlockManager(64, BLOCK, cache)
    k_cache = torch.zeros(64, BLOCK, KV_HEADS, HEAD_DIM, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    history: dict[int, list[int]] = {}

    def compute(seq_id: int, positions: range) -> None:
        toks = mgr.seqs[seq_id].tokens
        if not positions:
            return
        kv = [_kv_of(toks[p], p) for p in positions]
        slots = torch.tensor([mgr.slot(seq_id, p) for p in positions])
        write_kv(k_cache, v_cache, slots, torch.stack([a for a, _ in kv]), torch.stack([b for _, b in kv]))

    system = [5, 6, 7, 8, 9, 10, 11]
    # expected prefix hits: none; the system prompt's full block; that block and (9, 10, 11, 1) of seq 0
    for sid, (question, hit) in enumerate((([1, 2], 0), ([3], 4), ([1, 2, 3, 4], 8))):
        seq = mgr.allocate(sid, system + question)
        assert seq.num_cached_tokens == (hit if cache else 0), "full prompt blocks should be shared"
        compute(sid, range(seq.num_cached_tokens, len(seq.tokens)))
        history[sid] = list(seq.tokens)
    mgr.fork(2, 3)
    history[3] = list(history[2])

    g = torch.Generator().manual_seed(0)
    n_copies = 0
    for step in range(6):
        if step == 3:
            mgr.free(1)
            del history[1]
        for sid in list(history):
            token = 20 + 7 * sid + step
            copies = mgr.append(sid, token)
            n_copies += len(copies)
            copy_blocks(k_cache, v_cache, copies)
            compute(sid, range(len(mgr.seqs[sid].tokens) - 1, len(mgr.seqs[sid].tokens)))
            history[sid].append(token)
        mgr.check_invariants()
        ids = sorted(history)
        lens = torch.tensor([len(history[s]) for s in ids], dtype=torch.int32)
        width = max(len(mgr.block_table(s)) for s in ids)
        table = torch.zeros(len(ids), width, dtype=torch.int32)
        for row, s in enumerate(ids):
            table[row, : len(mgr.block_table(s))] = torch.tensor(mgr.block_table(s))
        q = torch.randn(len(ids), Q_HEADS, HEAD_DIM, generator=g)
        # expected: each sequence's own history laid out contiguously
        k_ctg = torch.zeros(len(ids), int(lens.max()), KV_HEADS, HEAD_DIM)
        v_ctg = torch.zeros_like(k_ctg)
        for row, s in enumerate(ids):
            for p, tok in enumerate(history[s]):
                k_ctg[row, p], v_ctg[row, p] = _kv_of(tok, p)
        expected = paged_attention_reference(
            q, k_ctg, v_ctg, torch.arange(len(ids), dtype=torch.int32)[:, None], lens
        )
        args = [t.to(DEVICE) for t in (q, k_cache, v_cache, table, lens)]
        out = paged_attention_decode(*args).cpu()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(paged_attention_reference(*args).cpu(), expected, rtol=1e-5, atol=1e-5)
    assert n_copies == 1, "the fork shares a partial block: exactly one copy-on-write copy"


def test_write_kv_rejects_bad_shapes():
    k_cache = torch.zeros(4, BLOCK, KV_HEADS, HEAD_DIM)
    with pytest.raises(ValueError, match="slots must lie"):
        write_kv(k_cache, k_cache.clone(), torch.tensor([99]), torch.zeros(1, 2, 16), torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match=r"\(T, 2, 16\)"):
        write_kv(k_cache, k_cache.clone(), torch.tensor([1]), torch.zeros(1, 3, 16), torch.zeros(1, 3, 16))
