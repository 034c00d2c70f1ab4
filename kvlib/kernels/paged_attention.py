"""Triton paged-attention decode kernel (one query token per sequence), with a split-K variant.

Import this module through :mod:`kvlib.kernels`, which selects Triton's CPU interpreter when CUDA is
absent *before* the kernels below are decorated.

The kernel
----------
One program handles one (sequence ``b``, KV head ``h``) pair and all ``G = num_heads / num_kv_heads``
query heads that share that KV head (GQA), so each K/V byte is read from memory once per group,
not once per query head. It walks the sequence in tiles of ``BLOCK_N`` tokens; for token ``t`` the
physical address comes from the block table, ``block_table[b, t // B] * B + t % B``, so tiles may
span several pages and pages may sit anywhere in the pool. Scores are folded in with the online
softmax (Milakov & Gimelshein; FlashAttention): keeping a running max ``m``, normaliser ``l`` and
unnormalised output ``acc`` per query head, a tile with scores ``s`` updates

    m' = max(m, max_t s_t),  l' = l * 2^(m - m') + sum_t 2^(s_t - m'),
    acc' = acc * 2^(m - m') + sum_t 2^(s_t - m') v_t,

(scores are pre-multiplied by ``scale * log2(e)`` so ``exp2`` is used), and ``out = acc / l``.

Split-K (flash-decoding)
------------------------
With few sequences (small batch x num_kv_heads) there are too few programs to fill the GPU. The split
variant also divides each sequence into ``num_splits`` chunks, each program writing a normalised
partial output ``o_s`` and its log-sum-exp ``lse_s = m_s + log2 l_s``; a second kernel combines them:
``out = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M)`` with ``M = max_s lse_s``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kvlib.kernels.reference import (
    check_paged_shapes,
    check_paged_values,
    contiguous_as_paged,
    require_scale,
)
from kvlib.validate import require_device, require_int, require_tensor

__all__ = [
    "choose_num_splits",
    "contiguous_decode_attention",
    "interpreter_active",
    "merge_splits",
    "paged_attention_decode",
    "paged_attention_partials",
]

LOG2E = 1.4426950408889634


def interpreter_active() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@triton.jit
def _paged_decode_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    bt_ptr,
    lens_ptr,
    out_ptr,
    lse_ptr,
    scale_log2,
    chunk,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_kt,
    stride_kh,
    stride_vb,
    stride_vt,
    stride_vh,
    stride_btb,
    stride_ob,
    stride_oh,
    stride_os,
    stride_lb,
    stride_lh,
    GROUP: tl.constexpr,
    BLOCK_G: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
    SPLIT: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)

    seq_len = tl.load(lens_ptr + b)
    start = split * chunk
    end = tl.minimum(seq_len, start + chunk)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    heads = kvh * GROUP + offs_g  # the query heads served by this KV head

    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=g_mask[:, None] & d_mask[None, :],
        other=0.0,
    )  # (BLOCK_G, BLOCK_D)
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)

    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        # logical token -> (physical block, offset in block); masked lanes get block 0, which the
        # masked K/V loads below never read (tests fill it with NaN to prove it)
        phys = tl.load(bt_ptr + b * stride_btb + offs_n // PAGE, mask=n_mask, other=0).to(tl.int64)
        within = (offs_n % PAGE).to(tl.int64)
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(
            k_ptr
            + phys[:, None] * stride_kb
            + within[:, None] * stride_kt
            + kvh * stride_kh
            + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        v = tl.load(
            v_ptr
            + phys[:, None] * stride_vb
            + within[:, None] * stride_vt
            + kvh * stride_vh
            + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")  # (BLOCK_G, BLOCK_N)
        else:
            s = tl.dot(q, tl.trans(k))
        s = tl.where(n_mask[None, :], s * scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile (m_i = -inf)
        p = tl.exp2(s - m_new[:, None])  # (BLOCK_G, BLOCK_N)
        l_i = l_i * alpha + tl.sum(p, 1)
        if IEEE:
            pv = tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            pv = tl.dot(p.to(v.dtype), v)
        acc = acc * alpha[:, None] + pv  # (BLOCK_G, BLOCK_D)
        m_i = m_new

    nonempty = l_i > 0  # False only for a split that starts past the sequence's end
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    out_mask = g_mask[:, None] & d_mask[None, :]
    o_ptrs = out_ptr + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_d[None, :]
    if SPLIT:
        tl.store(o_ptrs, out, mask=out_mask)
        lse = tl.where(nonempty, m_i + tl.log2(tl.where(nonempty, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g_mask)
    else:
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _combine_splits_kernel(
    part_ptr,
    lse_ptr,
    out_ptr,
    num_splits,
    stride_pb,
    stride_ph,
    stride_ps,
    stride_lb,
    stride_lh,
    stride_ob,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < num_splits
    d_mask = offs_d < HEAD_DIM
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + offs_s, mask=s_mask, other=float("-inf"))
    m = tl.max(lse, 0)  # finite: split 0 always holds >= 1 token
    w = tl.exp2(lse - m)  # (BLOCK_S,), 0 for empty or padded splits
    part = tl.load(
        part_ptr + b * stride_pb + h * stride_ph + offs_s[:, None] * stride_ps + offs_d[None, :],
        mask=s_mask[:, None] & d_mask[None, :],
        other=0.0,
    )  # (BLOCK_S, BLOCK_D)
    out = tl.sum(part * w[:, None], 0) / tl.sum(w, 0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_mask)


def choose_num_splits(
    batch: int, num_kv_heads: int, max_seq_len: int, device: torch.device | str, num_sms: int | None = None
) -> int:
    """Heuristic split count: enough programs for ~2 waves on the GPU, chunks >= 512 tokens.

    ``num_sms`` (multiprocessors) defaults to the CUDA device's; give it to ask what a GPU of that size
    would get from anywhere (132 for an H100 SXM or H200). Without it, always 1 off CUDA (the
    interpreter has no parallel hardware to fill)."""
    batch = require_int("batch", batch, minimum=1)
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)
    max_seq_len = require_int("max_seq_len", max_seq_len, minimum=1)
    device = require_device("device", device)
    if num_sms is None:
        if device.type != "cuda":
            return 1
        num_sms = torch.cuda.get_device_properties(device).multi_processor_count
    num_sms = require_int("num_sms", num_sms, minimum=1)
    programs = batch * num_kv_heads
    if programs >= 2 * num_sms:
        return 1
    return max(1, min(-(-2 * num_sms // programs), -(-max_seq_len // 512), 64))


def _check_interpreter_language() -> None:
    """The interpreter runs a kernel's calls into ``triton.language`` helpers (``tl.zeros``, ``tl.max``)
    only if they were decorated with TRITON_INTERPRET=1 set. If something imported triton first
    (torch._dynamo does), they were not, and the launch fails deep in Triton: say why instead."""
    if type(tl.zeros).__name__ == "JITFunction":
        raise RuntimeError(
            "Triton's language library was imported before TRITON_INTERPRET=1 was set (something, e.g. "
            "torch._dynamo, imported triton before kvlib.kernels), so the CPU interpreter cannot run "
            "this kernel: import kvlib.kernels first in a fresh process, or start it with TRITON_INTERPRET=1"
        )


def _check_options(
    scale: object, num_splits: object, max_seq_len: object, block_n: object, num_warps: object,
    num_stages: object,
) -> tuple[float | None, int | str, int | None, int | None]:  # fmt: skip
    """The keyword options as ``(scale, num_splits, max_seq_len, block_n)``, or a one-line error."""
    scale = require_scale(scale)
    if num_splits != "auto":
        if isinstance(num_splits, str):
            raise ValueError(f"num_splits must be a positive int or 'auto', got {num_splits!r}")
        num_splits = require_int("num_splits (a positive int or 'auto')", num_splits, minimum=1)
    if max_seq_len is not None:
        max_seq_len = require_int("max_seq_len", max_seq_len, minimum=1)
    if block_n is not None:
        block_n = require_int("block_n", block_n, minimum=1)
        if block_n < 16 or block_n & (block_n - 1):
            raise ValueError(f"block_n must be a power of two >= 16, got {block_n}")
    for name, value in (("num_warps", num_warps), ("num_stages", num_stages)):
        if value is not None:
            require_int(name, value, minimum=1)
    return scale, num_splits, max_seq_len, block_n


@dataclass(frozen=True)
class _Prepared:
    """A validated call: contiguous tensors, sizes, and the kernel's compile-time options."""

    q: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    block_table: torch.Tensor
    seq_lens: torch.Tensor
    num_kv_heads: int
    scale_log2: float
    block_n: int
    constants: dict
    launch: dict

    def max_len(self, max_seq_len: int | None) -> int:
        """The longest sequence (``max_seq_len`` if given, else read from ``seq_lens``: one sync)."""
        return max_seq_len if max_seq_len is not None else int(self.seq_lens.max())


def _prepare(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_table: torch.Tensor,
    seq_lens: torch.Tensor, scale: object, num_splits: object, max_seq_len: object, block_n: object,
    num_warps: object, num_stages: object, check: bool,
) -> tuple[_Prepared, int | str, int | None]:  # fmt: skip
    """Validate a call of either launcher: what the launch needs, ``num_splits``, ``max_seq_len``."""
    interp = interpreter_active()
    batch, num_heads, num_kv_heads, head_dim, page = check_paged_shapes(
        q, k_cache, v_cache, block_table, seq_lens
    )
    scale, num_splits, max_seq_len, block_n = _check_options(
        scale, num_splits, max_seq_len, block_n, num_warps, num_stages
    )
    if q.device.type != "cuda" and not interp:
        raise RuntimeError(
            "the Triton paged-attention kernel needs CUDA tensors, or Triton's CPU interpreter "
            "(TRITON_INTERPRET=1, which kvlib.kernels sets by itself when CUDA is absent unless you "
            "set TRITON_INTERPRET=0 explicitly)"
        )
    if interp:
        _check_interpreter_language()
    if check:
        check_paged_values(block_table, seq_lens, k_cache.shape[0], page, max_seq_len)
    q, k_cache, v_cache = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k_cache, v_cache))
    group = num_heads // num_kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    if block_n is None:
        block_n = 32 if interp else 64
    # tl.dot on bf16 is wrong in the interpreter: compute in fp32 there
    upcast = interp and q.dtype == torch.bfloat16
    constants = dict(
        # 16 query rows at least: the row count of a tensor-core tile (tl.dot itself needs only the
        # summed dimension, BLOCK_D and BLOCK_N here, to be >= 16 on NVIDIA GPUs)
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), PAGE=page,
        BLOCK_N=block_n, UPCAST=upcast, IEEE=q.dtype == torch.float32 or upcast,
    )  # fmt: skip
    # 4 warps, 2 stages, 64-token tiles: the fastest of 42 configurations swept on an H200 (bf16,
    # batch 64, 4,096 tokens, 8 KV heads, head dim 128, page 16), 88% of spec bandwidth
    launch = {} if interp else {"num_warps": num_warps or 4, "num_stages": num_stages or 2}
    prepared = _Prepared(
        q, k_cache, v_cache,
        # the kernel indexes these with implicit unit strides (lens_ptr + b, bt_ptr + row * stride + i)
        block_table.contiguous(), seq_lens.contiguous(),
        num_kv_heads, scale * LOG2E, block_n, constants, launch,
    )  # fmt: skip
    return prepared, num_splits, max_seq_len


def _kv_strides(p: _Prepared) -> tuple[int, ...]:
    return (*p.k_cache.stride()[:3], *p.v_cache.stride()[:3])


def _launch_partials(p: _Prepared, num_splits: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, num_heads, head_dim = p.q.shape
    chunk = triton.cdiv(triton.cdiv(max_len, num_splits), p.block_n) * p.block_n
    part = torch.empty((batch, num_heads, num_splits, head_dim), dtype=torch.float32, device=p.q.device)
    lse = torch.empty((batch, num_heads, num_splits), dtype=torch.float32, device=p.q.device)
    if batch == 0:
        return part, lse
    _paged_decode_kernel[(batch, p.num_kv_heads, num_splits)](
        p.q, p.k_cache, p.v_cache, p.block_table, p.seq_lens, part, lse,
        p.scale_log2, chunk,
        p.q.stride(0), p.q.stride(1), *_kv_strides(p), p.block_table.stride(0),
        part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1),
        SPLIT=True, **p.constants, **p.launch,
    )  # fmt: skip
    return part, lse


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float | None = None,
    num_splits: int | str = 1,
    max_seq_len: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Decode attention over a paged KV cache with the Triton kernel.

    Args:
        q: ``(batch, num_heads, head_dim)``.
        k_cache, v_cache: ``(num_blocks, block_size, num_kv_heads, head_dim)``, same dtype as ``q``
            (fp32/fp16 everywhere; bf16 on CUDA, and in the interpreter via an fp32 upcast).
        block_table: int32 ``(batch, max_blocks)``; seq_lens: int32 ``(batch,)``, each >= 1.
        scale: softmax scale (default ``1/sqrt(head_dim)``).
        num_splits: split-K chunks per sequence (flash-decoding); ``"auto"`` picks by occupancy.
            With more than one, this is :func:`paged_attention_partials` then :func:`merge_splits`.
        max_seq_len: upper bound on ``seq_lens`` (avoids a device sync when splitting). The split
            chunks cover ``max_seq_len`` tokens, so a smaller value than ``seq_lens.max()`` would
            drop tokens: ``check=True`` verifies it (ValueError), ``check=False`` trusts it.
        block_n: tokens per tile (power of two >= 16; default 64 on CUDA, 32 in the interpreter).
        check: also validate what the tensors hold: every length in ``[1, max_blocks * block_size]``
            (and ``<= max_seq_len``), every block id a sequence uses in ``[0, num_blocks)``. The
            kernel does not bound-check its loads (out of range it reads garbage on CUDA, and
            silently in the interpreter), so this is on by default; it costs one device->host
            transfer of two flags per call, which a decode loop or a benchmark that has checked
            its tables once may skip with ``check=False``.

    Types, shapes, dtypes, devices and the options are checked on every call, ``check`` or not:
    that reads only tensor metadata (microseconds, no sync).

    Returns:
        ``(batch, num_heads, head_dim)`` in ``q.dtype``.
    """
    p, num_splits, max_seq_len = _prepare(
        q, k_cache, v_cache, block_table, seq_lens, scale, num_splits, max_seq_len, block_n,
        num_warps, num_stages, check,
    )  # fmt: skip
    batch = q.shape[0]
    if batch == 0:
        return torch.empty_like(q)  # no sequence, nothing to attend to: no launch
    if num_splits == "auto":
        num_splits = choose_num_splits(batch, p.num_kv_heads, p.max_len(max_seq_len), q.device)
    if num_splits > 1:
        part, lse = _launch_partials(p, num_splits, p.max_len(max_seq_len))
        return merge_splits(part, lse, dtype=q.dtype)
    out = torch.empty_like(p.q)
    _paged_decode_kernel[(batch, p.num_kv_heads, 1)](
        p.q, p.k_cache, p.v_cache, p.block_table, p.seq_lens, out, out,  # lse_ptr unused
        p.scale_log2, 1 << 30,
        p.q.stride(0), p.q.stride(1), *_kv_strides(p), p.block_table.stride(0),
        out.stride(0), out.stride(1), 0, 0, 0,
        SPLIT=False, **p.constants, **p.launch,
    )  # fmt: skip
    return out


def contiguous_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: torch.Tensor,
    block_n: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Decode attention over a contiguous cache: ``k``, ``v`` ``(batch, max_len, num_kv_heads, head_dim)``,
    row ``b`` valid for its first ``seq_lens[b]`` tokens. The paged kernel with one block per sequence
    (:func:`contiguous_as_paged`), so paging's cost can be measured against the same code.

    Returns ``(batch, num_heads, head_dim)`` in ``q.dtype``."""
    k, v, table = contiguous_as_paged(k, v, seq_lens)
    return paged_attention_decode(q, k, v, table, seq_lens, scale=scale, block_n=block_n)


def paged_attention_partials(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    num_splits: int,
    scale: float | None = None,
    max_seq_len: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first pass of split-K decoding: each sequence's keys cut into ``num_splits`` chunks.

    Chunk ``s`` covers tokens ``[s * chunk, (s + 1) * chunk)`` with
    ``chunk = ceil(ceil(max_len / num_splits) / block_n) * block_n`` (whole tiles), ``max_len`` being
    ``max_seq_len`` or ``seq_lens.max()``. The arguments are :func:`paged_attention_decode`'s.

    Returns:
        ``partials`` float32 ``(batch, num_heads, num_splits, head_dim)``: each chunk's attention output,
        normalised over that chunk alone (0 for a chunk past the sequence's end); and
        ``lse`` float32 ``(batch, num_heads, num_splits)``: each chunk's log-sum-exp of the scaled
        scores **in base 2** (``log2 sum_t 2^(s_t * log2 e)``, as the kernel computes with ``exp2``),
        ``-inf`` for an empty chunk. :func:`merge_splits` combines them.
    """
    if isinstance(num_splits, str):
        raise ValueError(
            f"num_splits must be a positive int here (it sets the output's shape), got {num_splits!r}"
        )
    p, num_splits, max_seq_len = _prepare(
        q, k_cache, v_cache, block_table, seq_lens, scale, num_splits, max_seq_len, block_n,
        num_warps, num_stages, check,
    )  # fmt: skip
    if q.shape[0] == 0:
        return _launch_partials(p, num_splits, 1)
    return _launch_partials(p, num_splits, p.max_len(max_seq_len))


def merge_splits(
    partials: torch.Tensor, lse: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Combine split-K partials: ``out = sum_s w_s o_s / sum_s w_s``, ``w_s = 2^(lse_s - max_s lse_s)``.

    Args:
        partials: float32 ``(batch, num_heads, num_splits, head_dim)``, as :func:`paged_attention_partials`.
        lse: float32 ``(batch, num_heads, num_splits)``, base 2, ``-inf`` for an empty split; every
            ``(batch, head)`` row needs at least one finite entry (split 0 always holds a token).
        dtype: the output's dtype.

    Returns:
        ``(batch, num_heads, head_dim)`` in ``dtype``.
    """
    require_tensor("partials", partials, dims=4, layout="(batch, num_heads, num_splits, head_dim)")
    require_tensor("lse", lse, dims=3, layout="(batch, num_heads, num_splits)")
    if lse.shape != partials.shape[:3]:
        raise ValueError(
            f"lse must be (batch, num_heads, num_splits) = {tuple(partials.shape[:3])} to match partials "
            f"{tuple(partials.shape)}, got {tuple(lse.shape)}"
        )
    for name, t in (("partials", partials), ("lse", lse)):
        if t.dtype != torch.float32:
            raise ValueError(f"{name} must be float32 (split-K keeps partial results in fp32), got {t.dtype}")
    if lse.device != partials.device:
        raise ValueError(f"partials and lse must be on one device, got {partials.device} and {lse.device}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    batch, num_heads, num_splits, head_dim = partials.shape
    if min(num_splits, head_dim) < 1:
        raise ValueError(
            f"partials needs num_splits >= 1 and head_dim >= 1, got shape {tuple(partials.shape)}"
        )
    out = torch.empty((batch, num_heads, head_dim), dtype=dtype, device=partials.device)
    if batch * num_heads == 0:
        return out
    partials, lse = partials.contiguous(), lse.contiguous()
    interp = interpreter_active()
    _combine_splits_kernel[(batch, num_heads)](
        partials, lse, out, num_splits,
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_S=max(2, triton.next_power_of_2(num_splits)),
        **({"num_warps": 4} if not interp else {}),
    )  # fmt: skip
    return out
