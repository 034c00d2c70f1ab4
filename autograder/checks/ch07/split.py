"""Exercise 4 (`merge_splits`, `paged_decode_partials`): split-K decoding's merge and its first pass.

Both are graded against float64 references computed here in torch (per split, from the gathered
K/V), not bit for bit against kvlib's kernels. In Triton's CPU interpreter every call is traced
(`kvlib.kernels.trace`): an answer that launches no kernel, launches the wrong number of programs,
or loads a slot it must not (past a sequence's end, the null block, another (sequence, head)'s
partials, past a tensor's end) fails with a message that says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, diagnose, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_unchanged, call_pure, snapshot
from ._cases import PagedCase, device, explain_dot_size, paged_case, traced
from .paged import (
    NEGATIVE_HINT,
    TABLE_SLICE_HINT,
    _program_sequence,
    q_head_major_view,
    table_column_slice,
    table_row_problem,
    v_padded_view,
    very_negative_scores,
)

LOG2E = 1.4426950408889634

MERGE_REFERENCES = (
    "kvlib.kernels.paged_attention.merge_splits",
    "kvlib.kernels.paged_attention._combine_splits_kernel",  # launched from the learner's launcher
)
PARTIALS_REFERENCES = (
    "kvlib.kernels.paged_attention.paged_attention_partials",
    "kvlib.kernels.paged_attention._launch_partials",
    "kvlib.kernels.reference.paged_attention_reference",  # a torch gather: no kernel written
    "kvlib.kernels.reference.gather_kv",
    "kvlib.kernels.paged_attention._paged_decode_kernel",  # launched from the learner's launcher
)

_POWER_OF_TWO_HINT = (
    "tl.arange needs a power-of-two size: launch with BLOCK_S = triton.next_power_of_2(num_splits) and "
    "BLOCK_D = triton.next_power_of_2(head_dim), and mask the lanes past num_splits and head_dim"
)


# --- tracing (interpreter only) ---------------------------------------------------------------------


def _kernel_launches(trace: Any, name: str, tensor: str, what: str) -> list[int]:
    """Indices of the launches that loaded `tensor`; fails when no kernel ran or none read it."""
    expect(
        bool(trace.launches),
        f"{what}: no Triton kernel was launched. {name} must compute with a Triton kernel (a @triton.jit "
        "function launched as kernel[grid](...)); torch operations do not count",
    )
    used = [i for i in range(len(trace.launches)) if trace.bytes_loaded(tensor, launch=i) > 0]
    expect(
        bool(used),
        f"{what}: your kernel never loaded {tensor}; pass the tensor itself to the kernel (not a copy) "
        "and read it with tl.load",
    )
    return used


def _with_hint(exc: CheckFailed) -> CheckFailed:
    if "power of 2" in str(exc):
        return CheckFailed(f"{exc}; {_POWER_OF_TWO_HINT}")
    return explain_dot_size(exc)


def _max_error(actual: Tensor, expected: Tensor) -> float:
    return (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0


# === merge_splits ===================================================================================


def _merge_reference(partials: Tensor, lse: Tensor) -> Tensor:
    """float64 sum_s w_s o_s / sum_s w_s with w_s = 2^(lse_s - max_s lse_s)."""
    p, lg = partials.double().cpu(), lse.double().cpu()
    w = torch.exp2(lg - lg.amax(dim=-1, keepdim=True))  # (B, H, S)
    return (w[..., None] * p).sum(dim=2) / w.sum(dim=-1, keepdim=True)


def _padded_lanes_variant(partials: Tensor, lse: Tensor, block_s: int) -> Tensor:
    """The merge when lanes past num_splits load lse 0 (other=0.0) and partials 0."""
    p, lg = partials.double().cpu(), lse.double().cpu()
    pad = block_s - lg.shape[-1]
    lg = torch.cat([lg, lg.new_zeros(*lg.shape[:-1], pad)], dim=-1)
    p = torch.cat([p, p.new_zeros(*p.shape[:2], pad, p.shape[-1])], dim=2)
    w = torch.exp2(lg - lg.amax(dim=-1, keepdim=True))
    return (w[..., None] * p).sum(dim=2) / w.sum(dim=-1, keepdim=True)


def _merge_variants(partials: Tensor, lse: Tensor) -> dict[str, Tensor]:
    p, lg = partials.double().cpu(), lse.double().cpu()
    w_e = torch.exp(lg - lg.amax(dim=-1, keepdim=True))
    w = torch.exp2(lg - lg.amax(dim=-1, keepdim=True))
    nonempty = torch.isfinite(lg).double()
    variants = {
        "lse is base 2: weigh split s by 2^(lse_s - max lse) with tl.exp2, "
        "not e^(lse_s - max lse) with tl.exp": ((w_e[..., None] * p).sum(2) / w_e.sum(-1, keepdim=True)),
        "you divided by sum_s w_s? out = sum_s w_s * partials_s / sum_s w_s (the weights do not sum to 1)": (
            (w[..., None] * p).sum(2)
        ),
        "you averaged the partials: each split must weigh by its share of the softmax mass, "
        "w_s = 2^(lse_s - max lse), not equally": p.mean(dim=2),
        "you averaged the non-empty splits: each split must weigh by its share of the softmax mass, "
        "w_s = 2^(lse_s - max lse), not equally": (nonempty[..., None] * p).sum(2)
        / nonempty.sum(-1, keepdim=True),
    }
    split_count = lg.shape[-1]
    for block_s in sorted({max(2, 1 << (split_count - 1).bit_length()), 1 << (split_count - 1).bit_length()}):
        if block_s > split_count:
            variants[
                "the lanes past num_splits took lse = 0 and counted in the sum of weights: load lse with "
                "mask=s < num_splits, other=float('-inf') so that padding lanes weigh 2^-inf = 0"
            ] = _padded_lanes_variant(partials, lse, block_s)
    return variants


def _merge_nan_hint(out: Tensor, lse: Tensor) -> str:
    """Why the merge produced NaN or inf, from which (sequence, head) rows did."""
    bad = ~torch.isfinite(out.double().cpu()).all(dim=-1)  # (B, H)
    lg = lse.double().cpu()
    row_max = lg.amax(dim=-1)
    if bool((bad <= torch.isneginf(lg[..., 0])).all()):
        return (
            "rows whose split 0 is empty (lse = -inf) came out NaN: subtract the maximum lse over the "
            "splits (tl.max(lse, axis=0)), not split 0's lse, which may be -inf"
        )
    if row_max.max() - row_max.min() > 1000 and bool(bad[row_max < row_max.max() - 1000].all()):
        if not bool(bad[row_max == row_max.max()].any()):
            return (
                "rows whose largest lse is far below the largest of the whole tensor came out NaN (0 / 0): "
                "subtract each (sequence, head)'s own maximum lse, inside the program, not one maximum "
                "over the whole tensor"
            )
    return (
        "2^lse overflows float32 for lse = 1e4 (and underflows to 0 for lse = -1e4, giving 0 / 0): "
        "subtract each (sequence, head)'s maximum lse first, w_s = 2^(lse_s - max_s lse_s)"
    )


def _check_merge_loads(trace: Any, launches: list[int], partials: Tensor, lse: Tensor, what: str) -> None:
    """One program per (sequence, head), each loading only its own row of partials and lse."""
    batch, num_heads, num_splits, head_dim = partials.shape
    for i in launches:
        programs = trace.programs(i)
        expect(
            len(programs) == batch * num_heads,
            f"{what}: your kernel ran {len(programs)} programs; launch one program per (sequence, head), "
            f"a grid of batch x num_heads = {batch * num_heads} programs",
        )
        for program in programs:
            for name, tensor, row in (
                ("partials", partials, num_splits * head_dim),
                ("lse", lse, num_splits),
            ):
                idx = trace.loaded(name, program=program, launch=i)
                if not idx.numel():
                    continue
                expect(
                    int(idx.min()) >= 0 and int(idx.max()) < tensor.numel(),
                    f"{what}: a program loaded {name} past the tensor's end (element {int(idx.max())} of "
                    f"{tensor.numel()}): mask the lanes past num_splits"
                    + (" and past head_dim" if name == "partials" else ""),
                )
                expect(
                    int(idx.min()) // row == int(idx.max()) // row,
                    f"{what}: one program loaded {name} of two different (sequence, head) pairs: the lanes "
                    "past num_splits (and past head_dim, which need not be a power of two) must be masked, "
                    "mask=(s < num_splits)[:, None] & (d < head_dim)[None, :]",
                )


def _merge_case(gen: torch.Generator, shape: tuple[int, int, int, int], empty: str = "some",
                spread: float = 6.0, offset: float = 0.0) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Random partials and base-2 lse in [offset - spread, offset + spread], empty splits -inf with zeros.

    empty: "none", "some" (a few splits, split 0 of one row among them), "all_but_last".
    """
    batch, num_heads, num_splits, head_dim = shape
    partials = randn(gen, *shape)
    lse = offset + spread * (2 * torch.rand(batch, num_heads, num_splits, generator=gen) - 1)
    if num_splits > 1 and empty == "some":
        drop = torch.rand(batch, num_heads, num_splits, generator=gen) < 0.3
        drop[0, 0, 0] = True  # split 0 empty in one row: the max is not split 0's lse
        drop[..., -1] = False  # at least one finite entry per row
        lse[drop] = float("-inf")
    elif num_splits > 1 and empty == "all_but_last":
        lse[..., :-1] = float("-inf")
    partials[torch.isneginf(lse)] = 0.0
    dev = device()
    return partials.to(dev), lse.to(dev)


def _check_merge(fn: Callable[..., Any], partials: Tensor, lse: Tensor, note: str) -> Tensor:
    batch, num_heads, num_splits, head_dim = partials.shape
    what = (
        f"merge_splits(partials, lse) for partials of shape {tuple(partials.shape)}, lse of shape "
        f"{tuple(lse.shape)} ({note})"
    )
    with traced(partials=partials, lse=lse) as trace:
        try:
            out = call_pure(fn, partials, lse, what=what)
        except CheckFailed as exc:
            raise _with_hint(exc) from None
    if trace is not None:
        launches = _kernel_launches(trace, "merge_splits", "partials", what)
        _check_merge_loads(trace, launches, partials, lse, what)
    assert_shape(out, (batch, num_heads, head_dim), what, "one output row per (sequence, head)")
    expect(
        out.dtype == torch.float32,
        f"{what} must return float32 (the docstring's dtype), got {out.dtype}",
    )
    expected = _merge_reference(partials, lse)
    got = out.detach().cpu().double()
    if not bool(torch.isfinite(got).all()):
        raise CheckFailed(f"{what} holds NaN or inf: {_merge_nan_hint(got, lse)}")
    if _max_error(got, expected) > 2e-5 * max(1.0, expected.abs().max().item()):
        hint = diagnose(got, _merge_variants(partials, lse), atol=1e-4)
        raise CheckFailed(
            f"{what} is wrong (max abs error {_max_error(got, expected):.3g}); "
            + (
                hint
                or "expected sum_s w_s * partials[..., s, :] / sum_s w_s with w_s = 2^(lse_s - max_s lse_s)"
            )
        )
    return out


def _readable_merge() -> tuple[Tensor, Tensor]:
    """Two splits with lse 0 and 1 (base 2): split 1 weighs twice split 0, out = (p0 + 2 p1) / 3."""
    partials = torch.tensor([[[[3.0, 0.0, -3.0, 1.0], [0.0, 3.0, 3.0, 1.0]]]])
    lse = torch.tensor([[[0.0, 1.0]]])
    return partials.to(device()), lse.to(device())


@graded("merge_splits", *MERGE_REFERENCES)
def merge_splits_visible(fn: Callable[..., Any]) -> None:
    """A readable two-split case, then a batch of 2 x 3 heads with 3 splits, head_dim 24, empty splits."""
    _check_merge(fn, *_readable_merge(), "lse [0, 1]: split 1 weighs twice split 0, out [1, 2, 1, 1]")
    _check_merge(
        fn, *_merge_case(generator(70), (2, 3, 3, 24)), "some splits empty (lse -inf), split 0 of row 0"
    )
    print("merge_splits: visible tests passed")


def _large_lse(gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Row (0, h) near lse 1e4, row (1, h) near -1e4, row (2, h) spanning both; some splits empty."""
    partials, lse = _merge_case(gen, (3, 2, 5, 16), empty="none", spread=4.0)
    lse = lse.cpu().clone()
    lse[0] += 1e4
    lse[1] -= 1e4
    lse[2, :, 0] = 1e4
    lse[2, :, 1] = -1e4  # weighs 2^-2e4 = 0 next to split 0
    lse[2, :, 3] = float("-inf")
    partials = partials.cpu().clone()
    partials[torch.isneginf(lse)] = 0.0
    return partials.to(device()), lse.to(device())


@graded("merge_splits", *MERGE_REFERENCES)
def merge_splits_hidden(fn: Callable[..., Any]) -> None:
    """num_splits 1..13 and head_dim 1..100, empty splits, lse +-1e4, inputs unchanged, no aliasing."""
    gen = generator(707)
    for shape, empty, note in [
        ((3, 2, 1, 40), "none", "one split: the output is that split's partial"),
        ((2, 3, 5, 1), "some", "head_dim 1, five splits"),
        ((5, 2, 7, 16), "some", "batch 5, seven splits, some empty"),
        ((1, 4, 13, 64), "all_but_last", "13 splits, all empty but the last"),
        ((2, 2, 8, 100), "some", "8 splits, head_dim 100"),
        ((2, 1, 2, 24), "all_but_last", "2 splits, split 0 empty"),
    ]:
        _check_merge(fn, *_merge_case(gen, shape, empty), note)
    _check_merge(fn, *_large_lse(gen), "lse near +1e4 in one row and -1e4 in another: 2^lse over/underflows")
    _check_merge(fn, *_merge_case(gen, (2, 2, 3, 8), spread=60.0), "lse spread over [-60, 60]")
    first = _check_merge(fn, *_merge_case(gen, (2, 3, 4, 16)), "first of two calls with the same shapes")
    copy = snapshot(first)
    _check_merge(fn, *_merge_case(gen, (2, 3, 4, 16)), "second of two calls with the same shapes")
    assert_unchanged(
        first, copy, "the tensor merge_splits returned",
        "it shares memory with a buffer your function reuses; allocate the output on every call",
    )  # fmt: skip
    print("merge_splits: hidden tests passed")


# === paged_decode_partials ==========================================================================


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _chunk(max_len: int, num_splits: int, tile: int) -> int:
    """The docstring's split size: ceil(ceil(max_len / num_splits) / tile) * tile."""
    return _cdiv(_cdiv(max_len, num_splits), tile) * tile


def _split_reference(
    case: PagedCase,
    num_splits: int,
    block_n: int,
    chunk: Callable[[int], int] | None = None,
    score_mult: float | None = None,
    modulo_heads: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (partials, lse, peak): per split, softmax in base 2 of score * log2(e) / sqrt(d).

    `peak` is each split's largest base-2 score (a kernel's final m). The options build the classic
    wrong variants: `chunk(seq_len)` another split size, `score_mult` another scale, `modulo_heads`
    query head h reading KV head h % num_kv_heads.
    """
    from kvlib.kernels import gather_kv

    q = case.q.detach().double().cpu()
    k_cache, v_cache = case.k_cache.detach().cpu(), case.v_cache.detach().cpu()
    table, lens = case.block_table.cpu(), case.seq_lens.cpu().tolist()
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    group = num_heads // num_kv_heads
    heads = [h % num_kv_heads if modulo_heads else h // group for h in range(num_heads)]
    mult = LOG2E / math.sqrt(head_dim) if score_mult is None else score_mult
    if chunk is None:
        size = _chunk(max(lens), num_splits, block_n)
        chunk = lambda n: size  # noqa: E731
    partials = torch.zeros(batch, num_heads, num_splits, head_dim, dtype=torch.float64)
    lse = torch.full((batch, num_heads, num_splits), float("-inf"), dtype=torch.float64)
    peak = torch.full((batch, num_heads, num_splits), float("-inf"), dtype=torch.float64)
    for b, n in enumerate(lens):
        k, v = gather_kv(k_cache, v_cache, table, n, b)  # (n, Hkv, D)
        k = k.double()[:, heads].transpose(0, 1)  # (H, n, D)
        v = v.double()[:, heads].transpose(0, 1)
        scores = torch.einsum("hd,hnd->hn", q[b], k) * mult  # (H, n), base 2
        size = chunk(n)
        for s in range(num_splits):
            lo, hi = s * size, min((s + 1) * size, n)
            if hi <= lo:
                continue
            x = scores[:, lo:hi]
            m = x.amax(dim=-1)
            w = torch.exp2(x - m[:, None])
            total = w.sum(dim=-1)
            partials[b, :, s] = torch.einsum("hn,hnd->hd", w, v[:, lo:hi]) / total[:, None]
            lse[b, :, s] = m + torch.log2(total)
            peak[b, :, s] = m
    return partials, lse, peak


def _partial_variants(case: PagedCase, num_splits: int, block_n: int) -> dict[str, Tensor]:
    max_len = int(case.seq_lens.max())
    block_size = case.k_cache.shape[1]
    head_dim = case.q.shape[-1]
    ref, lse, peak = _split_reference(case, num_splits, block_n)
    variants = {
        "the chunk must be a whole number of tiles: chunk = ceil(ceil(max_len / num_splits) / block_n) * "
        "block_n, not ceil(max_len / num_splits)": _split_reference(
            case, num_splits, block_n, chunk=lambda n: _cdiv(max_len, num_splits)
        )[0],
        "every sequence uses the same chunk, computed from max(seq_lens), not from its own length "
        "(splits must begin at the same tokens in every implementation)": _split_reference(
            case, num_splits, block_n, chunk=lambda n: _chunk(n, num_splits, block_n)
        )[0],
        "round the chunk to whole tiles of block_n tokens, not to blocks of block_size tokens": (
            _split_reference(
                case, num_splits, block_n, chunk=lambda n: _chunk(max_len, num_splits, block_size)
            )[0]
        ),
        "each partial must be normalised over its split's tokens: store acc / l, not acc": ref
        * torch.exp2(lse - peak).nan_to_num(0.0)[..., None],
        "with tl.exp2 the scores must be multiplied by log2(e) / sqrt(head_dim): you used 1 / sqrt(head_dim) "
        "alone": _split_reference(case, num_splits, block_n, score_mult=1 / math.sqrt(head_dim))[0],
        "scale the scores by 1 / sqrt(head_dim) (times log2(e) for tl.exp2)": _split_reference(
            case, num_splits, block_n, score_mult=LOG2E
        )[0],
        "query head h reads KV head h // group (group = num_heads // num_kv_heads), not h % num_kv_heads": (
            _split_reference(case, num_splits, block_n, modulo_heads=True)[0]
        ),
    }
    capacity = case.block_table.shape[1] * block_size
    if _chunk(capacity, num_splits, block_n) != _chunk(max_len, num_splits, block_n):
        variants[
            f"the chunk comes from max_len = max(seq_lens) = {max_len}, not from the block table's capacity "
            f"block_table.shape[1] * block_size = {capacity} (a table may have spare columns)"
        ] = _split_reference(
            case, num_splits, block_n, chunk=lambda n: _chunk(capacity, num_splits, block_n)
        )[0]
    q = case.q
    flat = (q.shape[1] * q.shape[2], q.shape[2], 1)
    if tuple(q.stride()) != flat:
        wrong_q = replace(case, q=torch.as_strided(q, tuple(q.shape), flat))
        variants[
            f"q is a view with strides {tuple(q.stride())} here: pass q.stride(0), q.stride(1) to the "
            f"kernel, never strides computed from its shape {flat[:2]}"
        ] = _split_reference(wrong_q, num_splits, block_n)[0]
    return variants


def _lse_variants(lse: Tensor, peak: Tensor) -> dict[str, Tensor]:
    finite = torch.isfinite(lse)
    return {
        "lse must be in base 2 (log2 of sum 2^(score * log2 e)): you returned the natural log-sum-exp; "
        "use lse = m + tl.log2(l) with base-2 scores": torch.where(finite, lse / LOG2E, lse),
        "lse = m + log2(l): you left out the running maximum m": torch.where(finite, lse - peak, lse),
        "lse = m + log2(l), with log2, not the natural log": torch.where(
            finite, peak + (lse - peak) / LOG2E, lse
        ),
    }


def _describe_slot(case: PagedCase, name: str, index: int) -> str:
    """Where element `index` (from the view's first element) of k_cache/v_cache lies, in words."""
    cache = case.k_cache if name == "k_cache" else case.v_cache
    num_blocks, block_size = cache.shape[:2]
    s0, s1 = cache.stride(0), cache.stride(1)
    if index < 0 or index >= s0 * num_blocks:
        return f"element {index}, outside {name}"
    block, row = index // s0, (index % s0) // s1
    if row >= block_size:
        return f"element {index}, between {name}'s blocks (not one of its slots)"
    table, lens = case.block_table.cpu(), case.seq_lens.cpu().tolist()
    if block == 0:
        return f"block 0, row {row}: the null block, which unused block-table entries point at"
    for b, n in enumerate(lens):
        used = table[b, : -(-n // block_size)].tolist()
        if block in used:
            t = used.index(block) * block_size + row
            return f"block {block}, row {row}: token {t} of sequence {b}, whose seq_len is {n}"
    return f"block {block}, row {row}: a block no sequence owns"


def _view_hint(case: PagedCase) -> str:
    if case.k_cache.is_contiguous():
        return ""
    return (
        "; k_cache and v_cache are views here (the two halves of one (num_blocks, 2, block_size, H, D) "
        "tensor): pass every stride from k_cache.stride() and v_cache.stride(), never computed from the shape"
    )


def _tile_hint(case: PagedCase, block_n: int) -> str:
    if case.k_cache.shape[1] >= block_n:
        return ""
    return (
        f" (here block_size {case.k_cache.shape[1]} < block_n {block_n}: a tile may span several blocks, "
        "so load one block id per token, block_table[b, n // block_size], not one per tile)"
    )


def _allowed_slots(case: PagedCase, cache: Tensor, strides: tuple[int, ...] | None = None) -> Tensor:
    """Sorted element indices of the slots holding tokens (every KV head, every d), for `cache`'s strides
    or the given ones."""
    block_size, num_kv_heads, head_dim = cache.shape[1:]
    st = tuple(cache.stride()) if strides is None else strides
    table, lens = case.block_table.cpu().long(), case.seq_lens.cpu().tolist()
    parts = []
    for b, n in enumerate(lens):
        t = torch.arange(n)
        base = table[b, t // block_size] * st[0] + (t % block_size) * st[1]
        inner = (
            torch.arange(num_kv_heads)[:, None] * st[2] + torch.arange(head_dim)[None, :] * st[3]
        ).reshape(-1)
        parts.append((base[:, None] + inner[None, :]).reshape(-1))
    return torch.cat(parts).unique()


def _check_partial_loads(trace: Any, case: PagedCase, num_splits: int, what: str) -> None:
    launches = _kernel_launches(trace, "paged_decode_partials", "k_cache", what)
    batch, num_heads, _ = case.q.shape
    num_kv_heads = case.k_cache.shape[2]
    allowed = {batch * num_heads * num_splits, batch * num_kv_heads * num_splits}
    for i in launches:
        count = len(trace.programs(i))
        expect(
            count in allowed,
            f"{what}: your kernel ran {count} programs; launch one per (sequence, head, split), a grid of "
            f"(batch, num_heads, num_splits) = {batch * num_heads * num_splits} programs"
            + (
                f", or one per (sequence, KV head, split), {batch * num_kv_heads * num_splits}"
                if num_kv_heads != num_heads
                else ""
            ),
        )
    for name in ("k_cache", "v_cache"):
        cache = case.k_cache if name == "k_cache" else case.v_cache
        loaded = trace.loaded(name).unique()
        ok = torch.isin(loaded, _allowed_slots(case, cache))
        if not bool(ok.all()):
            other_name, other = ("v_cache", case.v_cache) if name == "k_cache" else ("k_cache", case.k_cache)
            if other.stride() != cache.stride() and bool(
                torch.isin(loaded, _allowed_slots(case, cache, tuple(other.stride()))).all()
            ):
                raise CheckFailed(
                    f"{what}: your kernel addressed {name} with {other_name}'s strides "
                    f"{tuple(other.stride())}: {name} has its own layout here, strides "
                    f"{tuple(cache.stride())}; pass {name}.stride(0), .stride(1), .stride(2) to the kernel "
                    f"and use them for the {name} load"
                )
            slot = _describe_slot(case, name, int(loaded[~ok][0]))
            raise CheckFailed(
                f"{what}: your kernel loaded {name} slots that hold no token ({slot}). Slots past "
                "seq_lens[b] must never be loaded: mask the K/V loads with token < end, where "
                "end = min((s + 1) * chunk, seq_lens[b]) (their values are garbage, and NaN here)"
                + _view_hint(case)
            )
    table = case.block_table
    idx = trace.loaded("block_table")
    end = (table.shape[0] - 1) * table.stride(0) + table.shape[1]  # a column slice's last element + 1
    if idx.numel():
        expect(
            int(idx.min()) >= 0 and int(idx.max()) < end,
            f"{what}: your kernel loaded block_table past its end (element {int(idx.max())} of "
            f"{end}): "
            "mask the block-table load with the token mask (mask=n < end, other=0), as a tile may run past "
            "the last block a sequence owns",
        )
    for i in launches:
        for program in trace.programs(i):
            b = _program_sequence(trace, program, i)
            entries = trace.loaded("block_table", program=program, launch=i)
            problem = table_row_problem(entries, table, b) if b is not None and entries.numel() else None
            if problem:
                raise CheckFailed(f"{what}: program {program} {problem}")


def _compare_partials(
    case: PagedCase, num_splits: int, block_n: int, parts: Tensor, lse: Tensor, what: str
) -> None:
    ref, ref_lse, peak = _split_reference(case, num_splits, block_n)
    got, got_lse = parts.detach().cpu().double(), lse.detach().cpu().double()
    empty = torch.isneginf(ref_lse)
    fp16 = case.q.dtype == torch.float16
    nan_at = ~torch.isfinite(got).all(dim=-1)
    if bool(nan_at.any()):
        b, h, s = (int(i) for i in nan_at.nonzero()[0])
        if bool(nan_at[~empty].any()):
            b, h, s = (int(i) for i in (nan_at & ~empty).nonzero()[0])
            raise CheckFailed(
                f"{what}: partials[{b}, {h}, {s}] holds NaN or inf: a load read a slot that should never be "
                "read (tokens past min((s + 1) * chunk, seq_lens[b]), block-table entries past a sequence's "
                "last block, lanes past head_dim), or the scores were not masked to -inf before the max"
            )
        raise CheckFailed(
            f"{what}: partials[{b}, {h}, {s}] holds NaN for an empty split (its range [s * chunk, "
            "seq_lens[b]) has no token): an empty split must write a zero partial and lse = -inf, "
            "not acc / l = 0 / 0 (divide by tl.where(l > 0, l, 1.0))"
        )
    scale = max(1.0, ref.abs().max().item())
    tol = (2e-3 if fp16 else 2e-5) * scale
    if _max_error(got, ref) > tol:
        hint = diagnose(got, _partial_variants(case, num_splits, block_n), atol=tol * 5)
        as_empty = ~empty & (got == 0).all(dim=-1) & torch.isneginf(got_lse)
        if hint is None and bool(as_empty.any()):
            b, h, s = (int(i) for i in as_empty.nonzero()[0])
            raise CheckFailed(
                f"{what}: partials[{b}, {h}, {s}] came out as an empty split's (zeros, lse -inf), though "
                f"split {s} holds tokens of sequence {b}: l stayed 0, so every weight exp(s - m) was 0 (a "
                "running max started at 0 instead of -inf makes very negative scores underflow) or every "
                "token was masked out"
            )
        if hint is None and _max_error(got[~empty], ref[~empty]) <= tol:
            hint = (
                "an empty split (no token in [s * chunk, min((s + 1) * chunk, seq_lens[b]))) must write a "
                "partial of zeros"
            )
        raise CheckFailed(
            f"{what}: partials are wrong (max abs error {_max_error(got, ref):.3g}); "
            + (
                hint
                or "partials[b, h, s] must be the attention output over split s's tokens alone, "
                "[s * chunk, min((s + 1) * chunk, seq_lens[b])), normalised within the split"
                + _view_hint(case)
                + _tile_hint(case, block_n)
            )
        )
    expect(
        bool((got[empty] == 0).all()),
        f"{what}: an empty split (no token in [s * chunk, min((s + 1) * chunk, seq_lens[b]))) must write a "
        "partial of exactly zero",
    )
    if bool(empty.any()):
        bad = got_lse[empty]
        if not bool(torch.isneginf(bad).all()):
            raise CheckFailed(
                f"{what}: lse of an empty split must be -inf (weight 2^-inf = 0 in the merge), got "
                f"{bad[~torch.isneginf(bad)][0].item()!r}"
            )
    finite = ~empty
    expect(
        bool(torch.isfinite(got_lse[finite]).all()),
        f"{what}: lse holds -inf, inf or NaN for a split that has tokens",
    )
    lse_tol = (2e-3 if fp16 else 2e-5) * max(1.0, ref_lse[finite].abs().max().item())
    if _max_error(got_lse[finite], ref_lse[finite]) > lse_tol:
        hint = diagnose(got_lse.nan_to_num(neginf=-1e30), {
            k: v.nan_to_num(neginf=-1e30) for k, v in _lse_variants(ref_lse, peak).items()
        }, atol=lse_tol * 5)  # fmt: skip
        raise CheckFailed(
            f"{what}: lse is wrong (max abs error {_max_error(got_lse[finite], ref_lse[finite]):.3g}); "
            + (
                hint
                or "lse[b, h, s] = log2 of sum over split s's tokens of 2^(score * log2 e), score = q.k / "
                "sqrt(head_dim); in the kernel m + tl.log2(l) with base-2 scores"
            )
        )


def _check_partials(
    fn: Callable[..., Any], case: PagedCase, num_splits: int, block_n: int, hint: str = ""
) -> tuple[Tensor, Tensor]:
    what = f"paged_decode_partials(..., num_splits={num_splits}, block_n={block_n}) for {case.describe()}"
    watched = dict(
        k_cache=case.k_cache, v_cache=case.v_cache, block_table=case.block_table, seq_lens=case.seq_lens
    )
    with traced(**watched) as trace:
        try:
            result = call_pure(fn, *case.args, num_splits, block_n=block_n, what=what)
        except CheckFailed as exc:
            raise _with_hint(exc) from None
    try:
        return _check_partial_result(case, num_splits, block_n, trace, result, what)
    except CheckFailed as exc:
        if hint:
            raise CheckFailed(f"{exc}; {hint}") from None
        raise


def _check_partial_result(
    case: PagedCase, num_splits: int, block_n: int, trace: Any, result: Any, what: str
) -> tuple[Tensor, Tensor]:
    if trace is not None:
        _check_partial_loads(trace, case, num_splits, what)
    expect(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"{what} must return a pair (partials, lse), got {type(result).__name__}"
        + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""),
    )
    parts, lse = result
    batch, num_heads, head_dim = case.q.shape
    assert_shape(parts, (batch, num_heads, num_splits, head_dim), f"partials from {what}")
    assert_shape(lse, (batch, num_heads, num_splits), f"lse from {what}")
    for name, t in (("partials", parts), ("lse", lse)):
        expect(
            t.dtype == torch.float32,
            f"{name} from {what} must be float32 whatever q's dtype (split-K keeps partial results in fp32), "
            f"got {t.dtype}",
        )
    _compare_partials(case, num_splits, block_n, parts, lse, what)
    return parts, lse


def _halves(case: PagedCase) -> PagedCase:
    """k_cache and v_cache as the two halves of one (num_blocks, 2, block_size, H, D) tensor."""
    kv = torch.stack([case.k_cache, case.v_cache], dim=1)
    return PagedCase(case.q, kv[:, 0], kv[:, 1], case.block_table, case.seq_lens, case.note)


@graded("paged_decode_partials", *PARTIALS_REFERENCES)
def paged_decode_partials_visible(fn: Callable[..., Any]) -> None:
    """Batch 2 (seq_lens 5 and 37), 6 query / 2 KV heads, block_size 8, 3 splits of 32 tokens."""
    case = paged_case(
        (5, 37), num_heads=6, num_kv_heads=2, seed=71, note="splits 1 and 2 of sequence 0 empty"
    )
    _check_partials(fn, case, 3, 16)
    print("paged_decode_partials: visible tests passed")


# (seq_lens, paged_case options, num_splits, block_n): every case small (the interpreter runs each program)
_HIDDEN_PARTIALS: list[tuple[tuple[int, ...], dict[str, Any], int, int]] = [
    ((50, 20), dict(num_heads=3, num_kv_heads=1, head_dim=40, note="chunk 32: not 17, 24 or 16"), 3, 16),
    ((1, 100), dict(num_heads=4, num_kv_heads=1, head_dim=24, block_size=4, note="block_size 4"), 3, 16),
    ((130, 3), dict(num_heads=2, num_kv_heads=2, block_size=32, note="block_size 32, 4 splits"), 4, 16),
    ((70, 9), dict(num_heads=8, num_kv_heads=1, block_size=16, note="block_n 64, group 8"), 2, 64),
    ((33, 12), dict(head_dim=24, dtype=torch.float16, q_scale=30.0, note="sharp float16 scores"), 2, 16),
    ((40, 19), dict(num_heads=2, num_kv_heads=1, q_scale=60.0, note="scores near 1e2: exp overflows"), 2, 16),
]  # fmt: skip


def _layout_cases() -> list[tuple[PagedCase, int, str]]:
    """(case, num_splits, hint) for block_n 16: q and v views, a sliced block table with spare columns,
    every score near -130."""
    views = q_head_major_view(v_padded_view(paged_case((9, 30), num_heads=4, num_kv_heads=2, seed=96), 8))
    table = table_column_slice(paged_case((40, 19), num_heads=2, num_kv_heads=1, seed=97), seed=7, spare=4,
                               hidden=3)  # fmt: skip
    negative = very_negative_scores(paged_case((21, 40), num_heads=4, num_kv_heads=2, seed=98), 130)
    return [
        (views, 2, "q is a view here (head-major) and v_cache's strides differ from k_cache's: read q with "
         "q.stride(), v with v_cache.stride() (never k_cache's)"),
        (table, 2, TABLE_SLICE_HINT + "; the chunk comes from max(seq_lens), whatever the table's width"),
        (negative, 2, NEGATIVE_HINT),
    ]  # fmt: skip


@graded("paged_decode_partials", *PARTIALS_REFERENCES)
def paged_decode_partials_hidden(fn: Callable[..., Any]) -> None:
    """Chunk rounding, empty splits, block_size vs block_n, GQA 1..8, head_dim 24/40, fp16, 1e2 scores,
    K/V as halves of one tensor, q and v views, a sliced block table with spare columns, scores near -130,
    inputs unchanged, no aliasing."""
    for seed, (lens, options, num_splits, block_n) in enumerate(_HIDDEN_PARTIALS, start=72):
        _check_partials(fn, paged_case(lens, seed=seed, **options), num_splits, block_n)
    halves = _halves(
        paged_case((29, 45), 3, 1, block_size=16, seed=80, note="k_cache, v_cache halves of one tensor")
    )
    _check_partials(fn, halves, 3, 32)
    for case, num_splits, hint in _layout_cases():
        _check_partials(fn, case, num_splits, 16, hint)
    first = _check_partials(fn, paged_case((23, 7), seed=81, note="one split: the whole sequence"), 1, 16)
    copy = snapshot(first)
    _check_partials(
        fn, paged_case((23, 7), seed=82, note="one split, a second call with the same shapes"), 1, 16
    )
    assert_unchanged(
        first, copy, "the (partials, lse) paged_decode_partials returned",
        "they share memory with a buffer your function reuses; allocate them on every call",
    )  # fmt: skip
    print("paged_decode_partials: hidden tests passed")


__all__ = [
    "merge_splits_hidden",
    "merge_splits_visible",
    "paged_decode_partials_hidden",
    "paged_decode_partials_visible",
]
