"""PyTorch reference for paged decode attention, and helpers to build paged caches.

Layout (the vLLM / FlashInfer "NHD" page layout):

- ``k_cache``, ``v_cache``: ``(num_blocks, block_size, kv_heads, head_dim)``: physical blocks;
- ``block_table``: int32 ``(batch, max_blocks_per_seq)``: row ``b`` lists the physical blocks of
  sequence ``b`` in logical order (entries past the sequence's end are ignored);
- ``seq_lens``: int32 ``(batch,)``: tokens held by each sequence (>= 1);
- ``q``: ``(batch, q_heads, head_dim)``: one query token per sequence (decode).

With ``G = q_heads / kv_heads`` (GQA group size), query head ``h`` attends to KV head ``h // G``
(the ``repeat_interleave`` convention of Llama's ``repeat_kv``). For sequence ``b`` of length
``n`` and query head ``h``:

    out[b, h] = sum_{t < n} softmax_t(scale * q[b, h] . K_b[t, h // G]) V_b[t, h // G]

where ``K_b[t] = k_cache[block_table[b, t // B], t % B]``: the gather that the paged kernel does
on the fly and that this reference does explicitly.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "validate_paged_inputs",
    "gather_kv",
    "paged_attention_reference",
    "build_paged_cache",
    "contiguous_as_paged",
    "write_kv",
    "copy_blocks",
]


def validate_paged_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
) -> tuple[int, int, int, int, int]:
    """Check shapes/dtypes and return ``(batch, q_heads, kv_heads, head_dim, block_size)``."""
    if q.dim() != 3:
        raise ValueError(f"q must be (batch, q_heads, head_dim), got shape {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(
            "k_cache and v_cache must both be (num_blocks, block_size, kv_heads, head_dim); "
            f"got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}"
        )
    batch, q_heads, head_dim = q.shape
    num_blocks, block_size, kv_heads, kv_dim = k_cache.shape
    if kv_dim != head_dim:
        raise ValueError(f"head_dim mismatch: q has {head_dim}, the cache has {kv_dim}")
    if q_heads % kv_heads != 0:
        raise ValueError(f"q_heads ({q_heads}) must be a multiple of kv_heads ({kv_heads}) for GQA")
    if block_table.dtype != torch.int32 or block_table.dim() != 2 or block_table.shape[0] != batch:
        raise ValueError(
            f"block_table must be int32 (batch={batch}, max_blocks); "
            f"got {block_table.dtype} {tuple(block_table.shape)}"
        )
    if seq_lens.dtype != torch.int32 or seq_lens.shape != (batch,):
        raise ValueError(
            f"seq_lens must be int32 (batch={batch},); got {seq_lens.dtype} {tuple(seq_lens.shape)}"
        )
    if q.dtype != k_cache.dtype or k_cache.dtype != v_cache.dtype:
        raise ValueError(
            f"q, k_cache, v_cache must share a dtype; got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}"
        )
    devices = {t.device for t in (q, k_cache, v_cache, block_table, seq_lens)}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    lens = seq_lens.cpu()
    if batch and (int(lens.min()) < 1 or int(lens.max()) > block_table.shape[1] * block_size):
        raise ValueError(
            f"seq_lens must lie in [1, max_blocks * block_size = {block_table.shape[1] * block_size}], "
            f"got min {int(lens.min())}, max {int(lens.max())}"
        )
    used = [block_table[b, : -(-int(lens[b]) // block_size)] for b in range(batch)]
    if used:
        ids = torch.cat(used)
        if int(ids.min()) < 0 or int(ids.max()) >= num_blocks:
            raise ValueError(f"block_table holds ids outside [0, {num_blocks}) within the sequences' lengths")
    return batch, q_heads, kv_heads, head_dim, block_size


def gather_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, block_table: torch.Tensor, seq_len: int, row: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of sequence ``row`` in logical order: two ``(seq_len, kv_heads, head_dim)``."""
    block_size = k_cache.shape[1]
    n_blocks = -(-seq_len // block_size)
    ids = block_table[row, :n_blocks].long()
    k = k_cache[ids].flatten(0, 1)[
        :seq_len
    ]  # (n_blocks, B, Hkv, D) -> (n_blocks*B, Hkv, D) -> (seq_len, Hkv, D)
    v = v_cache[ids].flatten(0, 1)[:seq_len]
    return k, v


def paged_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Decode attention over a paged cache by explicit gather, computed in float32.

    Returns ``(batch, q_heads, head_dim)`` in ``q.dtype``. ``scale`` defaults to ``1/sqrt(head_dim)``.
    """
    batch, q_heads, kv_heads, head_dim, _ = validate_paged_inputs(q, k_cache, v_cache, block_table, seq_lens)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    group = q_heads // kv_heads
    out = torch.empty_like(q)
    for b in range(batch):
        k, v = gather_kv(k_cache, v_cache, block_table, int(seq_lens[b]), b)  # (n, Hkv, D)
        k = k.float().repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        v = v.float().repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        scores = torch.einsum("hd,hnd->hn", q[b].float(), k) * scale  # (Hq, n)
        out[b] = torch.einsum("hn,hnd->hd", scores.softmax(dim=-1), v).to(q.dtype)
    return out


def build_paged_cache(
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    block_size: int,
    num_blocks: int | None = None,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    fill: float = float("nan"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scatter contiguous per-sequence K/V into a paged cache laid out to expose masking bugs.

    Physical block 0 is a *null block* (as in vLLM v1): it is never handed to a sequence, and every
    unused entry of the block table points at it. It, every block no sequence uses and every slot
    past a sequence's end hold ``fill`` (NaN by default). A kernel that reads a slot it should
    have masked then gets NaN in its output, even where the softmax weight of that slot is 0
    (``0 * NaN = NaN``), whereas finite garbage, or real data in block 0 where masked lanes point,
    would vanish and hide the bug.

    Args:
        k, v: ``(batch, max_len, kv_heads, head_dim)``; row ``b`` holds ``seq_lens[b]`` valid tokens.
        seq_lens: int ``(batch,)``.
        block_size: tokens per block.
        num_blocks: pool size, the null block included (default: the blocks needed + 1).
        shuffle: place blocks at random physical positions (as after real allocation churn).
        fill: value of every slot that holds no token (a float; NaN unless you need finite values).

    Returns:
        ``(k_cache, v_cache, block_table)``: caches ``(num_blocks, block_size, kv_heads, head_dim)``,
        int32 block table ``(batch, max_blocks)`` (unused entries = 0, the null block).
    """
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"k and v must both be (batch, max_len, kv_heads, head_dim), got {tuple(k.shape)}")
    batch, max_len, kv_heads, head_dim = k.shape
    lens = [int(x) for x in seq_lens]
    per_seq = [-(-n // block_size) for n in lens]
    needed = sum(per_seq)
    num_blocks = needed + 1 if num_blocks is None else num_blocks
    if num_blocks < needed + 1:
        raise ValueError(
            f"num_blocks={num_blocks} is too small: the sequences need {needed} blocks, plus 1 null block"
        )
    # physical ids handed out in this order; 0 stays the null block
    ids = torch.randperm(num_blocks - 1, generator=generator) if shuffle else torch.arange(num_blocks - 1)
    order = 1 + ids
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache = torch.full(shape, fill, dtype=k.dtype, device=k.device)
    v_cache = torch.full(shape, fill, dtype=v.dtype, device=v.device)
    block_table = torch.zeros((batch, max(per_seq, default=1)), dtype=torch.int32)
    nxt = 0
    for b in range(batch):
        for i in range(per_seq[b]):
            phys = int(order[nxt])
            nxt += 1
            block_table[b, i] = phys
            lo, hi = i * block_size, min((i + 1) * block_size, lens[b])
            k_cache[phys, : hi - lo] = k[b, lo:hi]  # slots hi-lo.. of the last block keep ``fill``
            v_cache[phys, : hi - lo] = v[b, lo:hi]
    return k_cache, v_cache, block_table.to(k.device)


def contiguous_as_paged(
    k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """View a contiguous cache ``(batch, max_len, kv_heads, head_dim)`` as a paged one with one block
    per sequence (``block_size = max_len``, block table ``[[0], [1], ...]``), without copying.

    Lets the paged kernel run on a contiguous cache, to measure what paging itself costs.
    ``seq_lens`` (``(batch,)``, each in ``[1, max_len]``) is checked against the cache here, so a
    length that overruns its row fails now rather than reading the next sequence's keys."""
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(
            "k and v must both be (batch, max_len, kv_heads, head_dim), "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    batch, max_len = k.shape[:2]
    if seq_lens.shape != (batch,):
        raise ValueError(f"seq_lens must be (batch={batch},), got shape {tuple(seq_lens.shape)}")
    if batch and (int(seq_lens.min()) < 1 or int(seq_lens.max()) > max_len):
        raise ValueError(
            f"seq_lens must lie in [1, max_len = {max_len}] (one block per sequence), "
            f"got min {int(seq_lens.min())}, max {int(seq_lens.max())}"
        )
    table = torch.arange(batch, dtype=torch.int32, device=k.device).unsqueeze(1)  # (batch, 1)
    return k, v, table


def write_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    """Store new tokens' keys/values at flat slots (``block_id * block_size + offset``), in place.

    ``slots``: int ``(T,)`` as given by ``BlockManager.slot``; ``k``, ``v``: ``(T, kv_heads, head_dim)``.
    This is the write half of paged attention (vLLM calls it ``reshape_and_cache``)."""
    num_blocks, block_size, kv_heads, head_dim = k_cache.shape
    if k.shape != v.shape or k.dim() != 3 or k.shape[1:] != (kv_heads, head_dim):
        raise ValueError(f"k, v must be (T, {kv_heads}, {head_dim}); got {tuple(k.shape)}, {tuple(v.shape)}")
    if slots.shape != (k.shape[0],):
        raise ValueError(f"slots must be (T={k.shape[0]},), got {tuple(slots.shape)}")
    if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= num_blocks * block_size):
        raise ValueError(f"slots must lie in [0, {num_blocks * block_size})")
    idx = slots.long().to(k_cache.device)
    k_cache.view(num_blocks * block_size, kv_heads, head_dim)[idx] = k.to(k_cache.dtype)  # flat slot view
    v_cache.view(num_blocks * block_size, kv_heads, head_dim)[idx] = v.to(v_cache.dtype)


def copy_blocks(k_cache: torch.Tensor, v_cache: torch.Tensor, copies: list[tuple[int, int]]) -> None:
    """Perform copy-on-write copies ``(src_block, dst_block)`` reported by ``BlockManager.append``."""
    if not copies:
        return
    src = torch.tensor([s for s, _ in copies], dtype=torch.long, device=k_cache.device)
    dst = torch.tensor([d for _, d in copies], dtype=torch.long, device=k_cache.device)
    k_cache[dst] = k_cache[src]
    v_cache[dst] = v_cache[src]
