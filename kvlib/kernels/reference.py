"""PyTorch reference for paged decode attention, and helpers to build paged caches.

Layout (the vLLM / FlashInfer "NHD" page layout):

- ``k_cache``, ``v_cache``: ``(num_blocks, block_size, num_kv_heads, head_dim)``: physical blocks;
- ``block_table``: int32 ``(batch, max_blocks_per_seq)``: row ``b`` lists the physical blocks of
  sequence ``b`` in logical order (entries past the sequence's end are ignored);
- ``seq_lens``: int32 ``(batch,)``: tokens held by each sequence (>= 1);
- ``q``: ``(batch, num_heads, head_dim)``: one query token per sequence (decode).

With ``G = num_heads / num_kv_heads`` (GQA group size), query head ``h`` attends to KV head ``h // G``
(the ``repeat_interleave`` convention of Llama's ``repeat_kv``). For sequence ``b`` of length
``n`` and query head ``h``:

    out[b, h] = sum_{t < n} softmax_t(scale * q[b, h] . K_b[t, h // G]) V_b[t, h // G]

where ``K_b[t] = k_cache[block_table[b, t // B], t % B]``: the gather that the paged kernel does
on the fly and that this reference does explicitly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from kvlib.validate import describe, require_bool, require_int, require_number, require_tensor

__all__ = [
    "check_paged_shapes",
    "check_paged_values",
    "validate_paged_inputs",
    "gather_kv",
    "paged_attention_reference",
    "build_paged_cache",
    "contiguous_as_paged",
    "write_kv",
    "copy_blocks",
]


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def require_scale(scale: object) -> float | None:
    """``None`` or a finite real number as float: a NaN or inf scale turns every output into NaN."""
    return None if scale is None else require_number("scale (None or a number)", scale, minimum=None)


def check_paged_shapes(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
) -> tuple[int, int, int, int, int]:
    """Types, shapes, dtypes and devices; returns ``(batch, num_heads, num_kv_heads, head_dim, block_size)``.

    Reads tensor metadata only, never the data (no device sync), so the kernel wrapper runs it on
    every call; :func:`check_paged_values` checks what the tensors hold."""
    for name, value in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache),
                        ("block_table", block_table), ("seq_lens", seq_lens)):  # fmt: skip
        require_tensor(name, value)
    if q.dim() != 3:
        raise ValueError(f"q must be (batch, num_heads, head_dim), got shape {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(
            "k_cache and v_cache must both be (num_blocks, block_size, num_kv_heads, head_dim); "
            f"got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}"
        )
    batch, num_heads, head_dim = q.shape
    num_blocks, block_size, num_kv_heads, kv_dim = k_cache.shape
    sizes = {"num_heads": num_heads, "head_dim": head_dim, "num_blocks": num_blocks, "block_size": block_size,
             "num_kv_heads": num_kv_heads}  # fmt: skip
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(
                f"{name} must be >= 1, got {size} (q {tuple(q.shape)}, k_cache {tuple(k_cache.shape)})"
            )
    if kv_dim != head_dim:
        raise ValueError(f"head_dim mismatch: q has {head_dim}, the cache has {kv_dim}")
    if num_heads % num_kv_heads != 0:
        raise ValueError(
            f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads}) for GQA"
        )
    if q.dtype not in FLOAT_DTYPES:
        raise ValueError(f"q, k_cache, v_cache must be float32, float16 or bfloat16, got q of {q.dtype}")
    if q.dtype != k_cache.dtype or k_cache.dtype != v_cache.dtype:
        raise ValueError(
            f"q, k_cache, v_cache must share a dtype; got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}"
        )
    if block_table.dtype != torch.int32 or block_table.dim() != 2 or block_table.shape[0] != batch:
        raise ValueError(
            f"block_table must be int32 (batch={batch}, max_blocks); "
            f"got {block_table.dtype} {tuple(block_table.shape)}"
        )
    if seq_lens.dtype != torch.int32 or seq_lens.shape != (batch,):
        raise ValueError(
            f"seq_lens must be int32 (batch={batch},); got {seq_lens.dtype} {tuple(seq_lens.shape)}"
        )
    devices = {t.device for t in (q, k_cache, v_cache, block_table, seq_lens)}
    if len(devices) != 1:
        raise ValueError(
            "q, k_cache, v_cache, block_table, seq_lens must be on one device, got "
            f"{[str(t.device) for t in (q, k_cache, v_cache, block_table, seq_lens)]}"
        )
    return batch, num_heads, num_kv_heads, head_dim, block_size


def check_paged_values(
    block_table: torch.Tensor, seq_lens: torch.Tensor, num_blocks: int, block_size: int,
    max_seq_len: int | None = None,
) -> None:  # fmt: skip
    """Lengths in ``[1, max_blocks * block_size]`` (and ``<= max_seq_len`` if given), and every block id a
    sequence uses in ``[0, num_blocks)``. A kernel does not bound-check its loads (the Triton
    interpreter reads out of bounds silently), so a bad table would read garbage.

    Vectorized: a handful of small ops and one device->host transfer of four numbers (the min and
    max of the lengths and of the used ids); where a failure is, is computed only then. Shapes
    must have passed :func:`check_paged_shapes`."""
    batch, max_blocks = block_table.shape
    if batch == 0:
        return
    cover = max_blocks * block_size
    # entry j of row b is used when j < ceil(seq_lens[b] / block_size); unused entries count as 0
    used = (
        torch.arange(max_blocks, device=seq_lens.device)[None, :]
        < ((seq_lens + (block_size - 1)) // block_size)[:, None]
    )  # (batch, max_blocks)
    ids = torch.where(used, block_table, 0) if max_blocks else block_table.new_zeros(1)
    lo, hi, id_lo, id_hi = torch.cat(
        [torch.stack(torch.aminmax(seq_lens)), torch.stack(torch.aminmax(ids))]
    ).tolist()
    if lo < 1 or hi > cover:
        raise ValueError(
            f"seq_lens must lie in [1, max_blocks * block_size = {cover}] (the tokens block_table "
            f"covers), got min {lo}, max {hi}"
        )
    if max_seq_len is not None and hi > max_seq_len:
        raise ValueError(
            f"max_seq_len={max_seq_len} is below the longest sequence ({hi} tokens): it must be an "
            "upper bound on seq_lens, or split-K would silently skip the tokens past it"
        )
    if id_lo < 0 or id_hi >= num_blocks:
        row, col = (int(i) for i in (used & ((block_table < 0) | (block_table >= num_blocks))).nonzero()[0])
        raise ValueError(
            f"block_table holds ids outside [0, {num_blocks}) within the sequences' lengths: "
            f"block_table[{row}, {col}] = {int(block_table[row, col])} "
            f"(seq_lens[{row}] = {int(seq_lens[row])})"
        )


def validate_paged_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
) -> tuple[int, int, int, int, int]:
    """Check shapes, dtypes, devices and values.

    Returns ``(batch, num_heads, num_kv_heads, head_dim, block_size)``.

    Raises TypeError for a non-tensor, ValueError for anything else, naming the argument."""
    dims = check_paged_shapes(q, k_cache, v_cache, block_table, seq_lens)
    check_paged_values(block_table, seq_lens, k_cache.shape[0], dims[4])
    return dims


def gather_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, block_table: torch.Tensor, seq_len: int, row: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of sequence ``row`` in logical order: two ``(seq_len, num_kv_heads, head_dim)``.

    ``seq_len`` must lie in ``[1, max_blocks * block_size]`` and the blocks it uses in
    ``[0, num_blocks)``: a negative id would silently index from the end of the pool."""
    for name, value in (("k_cache", k_cache), ("v_cache", v_cache), ("block_table", block_table)):
        require_tensor(name, value)
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape or block_table.dim() != 2:
        raise ValueError(
            "k_cache, v_cache must both be (num_blocks, block_size, num_kv_heads, head_dim) and block_table "
            f"(batch, max_blocks); got {tuple(k_cache.shape)}, {tuple(v_cache.shape)}, "
            f"{tuple(block_table.shape)}"
        )
    num_blocks, block_size = k_cache.shape[:2]
    row = require_int("row", row, minimum=0, maximum=block_table.shape[0] - 1)
    seq_len = require_int("seq_len", seq_len, minimum=1, maximum=block_table.shape[1] * block_size)
    n_blocks = -(-seq_len // block_size)
    ids = block_table[row, :n_blocks].long()
    if int(ids.min()) < 0 or int(ids.max()) >= num_blocks:
        raise ValueError(
            f"block_table[{row}] holds ids outside [0, {num_blocks}) within seq_len={seq_len}: {ids.tolist()}"
        )
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

    Returns ``(batch, num_heads, head_dim)`` in ``q.dtype``. ``scale`` defaults to ``1/sqrt(head_dim)``.
    """
    batch, num_heads, num_kv_heads, head_dim, _ = validate_paged_inputs(
        q, k_cache, v_cache, block_table, seq_lens
    )
    scale = require_scale(scale)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    group = num_heads // num_kv_heads
    out = torch.empty_like(q)
    for b in range(batch):
        k, v = gather_kv(k_cache, v_cache, block_table, int(seq_lens[b]), b)  # (n, Hkv, D)
        k = k.float().repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        v = v.float().repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        scores = torch.einsum("hd,hnd->hn", q[b].float(), k) * scale  # (Hq, n)
        out[b] = torch.einsum("hn,hnd->hd", scores.softmax(dim=-1), v).to(q.dtype)
    return out


PAGED_LAYOUT = "(num_blocks, block_size, num_kv_heads, head_dim)"
CONTIGUOUS_LAYOUT = "(batch, max_len, num_kv_heads, head_dim)"


def _check_kv_pair(names: tuple[str, str], k: torch.Tensor, v: torch.Tensor, layout: str) -> None:
    """Two tensors of one 4-d ``layout``, e.g. a contiguous (k, v) or a paged (k_cache, v_cache)."""
    require_tensor(names[0], k)
    require_tensor(names[1], v)
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must both be {layout}, got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if k.dtype != v.dtype or k.device != v.device:  # the kernel reads both with one dtype, on one device
        raise ValueError(
            f"{names[0]} and {names[1]} must share a dtype and a device, got {k.dtype} on {k.device} "
            f"and {v.dtype} on {v.device}"
        )


def _check_lens(seq_lens: torch.Tensor | list[int], batch: int, max_len: int) -> list[int]:
    """``seq_lens`` (a tensor, array or sequence) as a list of ``batch`` ints in ``[1, max_len]``: a row
    holds at most max_len tokens. Items are checked, not ``int()``-ed: 3.7 must not become 3."""
    array_like = hasattr(seq_lens, "shape")  # a tensor or a NumPy array
    if isinstance(seq_lens, (str, bytes)) or not (array_like or isinstance(seq_lens, Sequence)):
        raise TypeError(f"seq_lens must be a (batch={batch},) tensor or int list, got {describe(seq_lens)}")
    shape = tuple(seq_lens.shape) if array_like else (len(seq_lens),)
    if shape != (batch,):
        raise ValueError(f"seq_lens must be (batch={batch},), got shape {shape}")
    if isinstance(seq_lens, torch.Tensor) and seq_lens.dtype.is_floating_point:
        raise ValueError(f"seq_lens must hold integers, got {seq_lens.dtype}")
    items = seq_lens.tolist() if array_like else seq_lens  # one transfer, not one per item
    lens = [require_int(f"seq_lens[{i}]", x) for i, x in enumerate(items)]
    if lens and (min(lens) < 1 or max(lens) > max_len):
        raise ValueError(
            f"seq_lens must lie in [1, max_len = {max_len}] (the tokens a row of k holds), "
            f"got min {min(lens)}, max {max(lens)}"
        )
    return lens


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
        k, v: ``(batch, max_len, num_kv_heads, head_dim)``; row ``b`` holds ``seq_lens[b]`` valid tokens.
        seq_lens: int ``(batch,)``.
        block_size: tokens per block.
        num_blocks: pool size, the null block included (default: the blocks needed + 1).
        shuffle: place blocks at random physical positions (as after real allocation churn).
        generator: a CPU ``torch.Generator`` for the shuffle (None: torch's global one).
        fill: value of every slot that holds no token (a real number, NaN and inf included; NaN
            unless you need finite values).

    Returns:
        ``(k_cache, v_cache, block_table)``: caches ``(num_blocks, block_size, num_kv_heads, head_dim)``,
        int32 block table ``(batch, max_blocks)`` (unused entries = 0, the null block).
    """
    _check_kv_pair(("k", "v"), k, v, CONTIGUOUS_LAYOUT)
    if not k.dtype.is_floating_point:  # the empty slots hold ``fill``, NaN by default
        raise ValueError(f"k and v must be floating point (float32, float16, bfloat16), got {k.dtype}")
    batch, max_len, num_kv_heads, head_dim = k.shape
    block_size = require_int("block_size", block_size, minimum=1)
    lens = _check_lens(seq_lens, batch, max_len)
    shuffle = require_bool("shuffle", shuffle)
    # NaN is the point of the default (a read of a masked slot shows up), so no require_number here
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
        raise TypeError(f"fill must be a real number (NaN by default), got {describe(fill)}")
    cpu_generator = isinstance(generator, torch.Generator) and generator.device.type == "cpu"
    if generator is not None and not cpu_generator:  # randperm draws the block order on the CPU
        raise TypeError(f"generator must be None or a CPU torch.Generator, got {describe(generator)}")
    per_seq = [-(-n // block_size) for n in lens]
    needed = sum(per_seq)
    num_blocks = needed + 1 if num_blocks is None else require_int("num_blocks", num_blocks, minimum=1)
    if num_blocks < needed + 1:
        raise ValueError(
            f"num_blocks={num_blocks} is too small: the sequences need {needed} blocks, plus 1 null block"
        )
    # physical ids handed out in this order; 0 stays the null block
    ids = torch.randperm(num_blocks - 1, generator=generator) if shuffle else torch.arange(num_blocks - 1)
    order = 1 + ids
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
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
    """View a contiguous cache ``(batch, max_len, num_kv_heads, head_dim)`` as a paged one with one block
    per sequence (``block_size = max_len``, block table ``[[0], [1], ...]``), without copying.

    Lets the paged kernel run on a contiguous cache, to measure what paging itself costs.
    ``seq_lens`` (``(batch,)``, each in ``[1, max_len]``) is checked against the cache here, so a
    length that overruns its row fails now rather than reading the next sequence's keys."""
    _check_kv_pair(("k", "v"), k, v, CONTIGUOUS_LAYOUT)
    batch, max_len = k.shape[:2]
    require_tensor("seq_lens", seq_lens)
    _check_lens(seq_lens, batch, max_len)
    table = torch.arange(batch, dtype=torch.int32, device=k.device).unsqueeze(1)  # (batch, 1)
    return k, v, table


def write_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    """Store new tokens' keys/values at flat slots (``block_id * block_size + offset``), in place.

    ``slots``: int ``(T,)`` as given by ``BlockManager.slot``; ``k``, ``v``: ``(T, num_kv_heads, head_dim)``.
    This is the write half of paged attention (vLLM calls it ``reshape_and_cache``). Everything is
    checked before the first write, so a rejected call leaves both caches as they were."""
    _check_kv_pair(("k_cache", "v_cache"), k_cache, v_cache, PAGED_LAYOUT)
    for name, value in (("slots", slots), ("k", k), ("v", v)):
        require_tensor(name, value)
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    if k.shape != v.shape or k.dim() != 3 or k.shape[1:] != (num_kv_heads, head_dim):
        raise ValueError(
            f"k, v must be (T, {num_kv_heads}, {head_dim}); got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (k.dtype.is_floating_point and v.dtype.is_floating_point):
        raise ValueError(
            f"k, v must be floating point like the cache ({k_cache.dtype}), got {k.dtype}, {v.dtype}"
        )
    if k.device != k_cache.device or v.device != k_cache.device:
        raise ValueError(f"k, v must be on the cache's device {k_cache.device}, got {k.device}, {v.device}")
    if slots.shape != (k.shape[0],):
        raise ValueError(f"slots must be (T={k.shape[0]},), got {tuple(slots.shape)}")
    if slots.dtype.is_floating_point or slots.dtype.is_complex or slots.dtype == torch.bool:
        raise ValueError(f"slots must be an integer tensor, got {slots.dtype}")  # .long() would truncate 1.7
    if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= num_blocks * block_size):
        raise ValueError(f"slots must lie in [0, {num_blocks * block_size}), got {slots.tolist()[:8]}")
    if slots.unique().numel() != slots.numel():  # two tokens in one slot: which one lands is undefined
        raise ValueError(f"slots must be distinct, got {slots.tolist()[:8]}")
    flat = []  # both flat slot views before the first write: v_cache's could fail after k_cache's write
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        try:
            flat.append(cache.view(num_blocks * block_size, num_kv_heads, head_dim))
        except RuntimeError:
            raise ValueError(
                f"{name} must be contiguous (it is written through a flat slot view), got strides "
                f"{cache.stride()}; pass .contiguous() and keep that tensor as the cache"
            ) from None
    idx = slots.long().to(k_cache.device)
    flat[0][idx] = k.to(k_cache.dtype)
    flat[1][idx] = v.to(v_cache.dtype)


def copy_blocks(k_cache: torch.Tensor, v_cache: torch.Tensor, copies: list[tuple[int, int]]) -> None:
    """Perform copy-on-write copies ``(src_block, dst_block)`` reported by ``BlockManager.append``.

    Every id is checked (an int in ``[0, num_blocks)``) before the first copy: a negative id would
    silently copy the pool's last block."""
    _check_kv_pair(("k_cache", "v_cache"), k_cache, v_cache, PAGED_LAYOUT)
    if not copies:
        return
    num_blocks = k_cache.shape[0]
    pairs = []
    for i, pair in enumerate(copies):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"copies[{i}] must be a (src_block, dst_block) pair, got {describe(pair)}")
        src, dst = (
            require_int(f"copies[{i}][{j}]", x, minimum=0, maximum=num_blocks - 1) for j, x in enumerate(pair)
        )
        pairs.append((src, dst))
    src = torch.tensor([s for s, _ in pairs], dtype=torch.long, device=k_cache.device)
    dst = torch.tensor([d for _, d in pairs], dtype=torch.long, device=k_cache.device)
    k_cache[dst] = k_cache[src]
    v_cache[dst] = v_cache[src]
