"""Exercise `decode_attention`: attention over a contiguous cache, tile by tile with the online softmax.

Every case is a contiguous cache whose slots past each sequence's length hold NaN (`_cases`), and the
learner's launcher is compared with kvlib's float32 gather reference. When the output is wrong, a
torch emulation of the tiled loop recomputes the classic mistakes (alpha not applied to `acc` or to
`l`, masked scores 0 instead of -inf, the last partial tile dropped, `h % num_kv_heads`, a wrong
scale, one tile only, `seq_lens[0]` for every sequence; a running max started at 0, in the case whose
scores are all about -120; v read with k's strides, in the case whose v is laid out heads-first) and
names the one matched; an output stored with q's strides (q a view) is recognised in the output's memory.

In Triton's interpreter each call is also traced (`kvlib.kernels.trace`): no kernel launched, a
program count other than batch * num_heads, a load past a sequence's length, past head_dim or of
another sequence's keys, keys read more than once per query head (the online softmax reads each key
once) and tiles of another size than `block_n` fail with a message that says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, expect
from ..delegation import graded
from ..properties import assert_dtype, assert_unchanged, call_pure, snapshot
from ._cases import ContiguousCase, contiguous_case, explain_dot_size, traced

REFERENCES = (
    "kvlib.kernels.paged_attention.contiguous_decode_attention",
    "kvlib.kernels.paged_attention.paged_attention_decode",
    "kvlib.kernels.paged_attention.paged_attention_partials",
    "kvlib.kernels.reference.paged_attention_reference",
    "kvlib.kernels.reference.gather_kv",
    "kvlib.kernels.paged_attention._paged_decode_kernel",  # launched from the learner's own launcher
)

_MASK_HINT = (
    "mask the tokens n >= seq_lens[b] in both the K and the V loads (mask=n[:, None] < seq_len) and "
    "give their scores -inf; the slots past a sequence's length hold garbage (NaN here)"
)


# --- running the learner's launcher ----------------------------------------------------------------


def _run(fn: Callable[..., Any], case: ContiguousCase, block_n: int) -> tuple[Any, Any, str]:
    what = f"decode_attention(..., block_n={block_n}) for {case.describe()}"
    with traced(q=case.q, k=case.k, v=case.v) as trace:
        try:
            out = call_pure(fn, *case.args, block_n=block_n, what=what)
        except CheckFailed as exc:
            raise explain_dot_size(exc) from None
    return out, trace, what


# --- what the kernel loaded (interpreter only) -------------------------------------------------------


def _owner_map(t: Tensor, lens: list[int]) -> tuple[Tensor, Tensor]:
    """For a (batch, max_len, heads, head_dim) view: an array over its element offsets holding
    b * heads + h for an element a correct kernel may load (t < lens[b], d < head_dim), -1 elsewhere;
    and the token index of each offset (-1 elsewhere)."""
    b_n, t_n, h_n, d_n = t.shape
    sb, st, sh, sd = t.stride()
    span = (b_n - 1) * sb + (t_n - 1) * st + (h_n - 1) * sh + (d_n - 1) * sd + 1
    owner = torch.full((span,), -1, dtype=torch.int64)
    token = torch.full((span,), -1, dtype=torch.int64)
    for b, n in enumerate(lens):
        tt, hh, dd = torch.meshgrid(torch.arange(n), torch.arange(h_n), torch.arange(d_n), indexing="ij")
        offs = (b * sb + tt * st + hh * sh + dd * sd).reshape(-1)
        owner[offs] = (b * h_n + hh).reshape(-1)
        token[offs] = tt.reshape(-1)
    return owner, token


def _where(t: Tensor, index: int, name: str, lens: list[int]) -> str:
    """`name`[b, t, h, d] for an element offset from t's first element, in words."""
    b_n, t_n, h_n, d_n = t.shape
    sb, st, sh, _ = t.stride()
    if index < 0:
        return f"an element before {name}'s start (offset {index})"
    b, rest = divmod(index, sb)
    tok, rest = divmod(rest, st)
    head, d = divmod(rest, sh)
    if b >= b_n or tok >= t_n:
        return f"past the end of {name} (offset {index}, {name} is {tuple(t.shape)})"
    if head >= h_n:
        return (
            f"{name}[{b}, {tok}, head {head}, {d}] but {name} has {h_n} heads: query head h reads KV head "
            "h // group with group = num_heads // num_kv_heads"
        )
    if d >= d_n:
        return (
            f"lane {d} of {name}[{b}, {tok}, {head}] past head_dim = {d_n}: mask the lanes d >= HEAD_DIM "
            f"(BLOCK_D = next_power_of_2(head_dim) = {1 << (d_n - 1).bit_length()} has extra lanes)"
        )
    if name == "q":
        return f"q[{b}, {head}, {tok}]"
    return (
        f"{name}[{b}, {tok}, {head}, :] but sequence {b} has seq_lens[{b}] = {lens[b]}: "
        + _MASK_HINT
        + " (is the bound seq_lens[b], loaded with tl.load(lens_ptr + b), not max_len or seq_lens[0]?)"
    )


def _check_q_loads(trace: Any, case: ContiguousCase, what: str) -> None:
    loaded = trace.loaded("q")
    if loaded.numel() == 0:
        return
    b_n, h_n, d_n = case.q.shape
    sb, sh, _ = case.q.stride()
    b, rest = torch.div(loaded, sb, rounding_mode="floor"), loaded % sb
    h, d = torch.div(rest, sh, rounding_mode="floor"), rest % sh
    bad = (loaded < 0) | (b >= b_n) | (h >= h_n) | (d >= d_n)
    if bool(bad.any()):
        i = int(loaded[bad][0])
        detail = (
            f"lane {int(d[bad][0])} of q[{int(b[bad][0])}, {int(h[bad][0])}] past head_dim = {d_n}: mask the "
            "lanes d >= HEAD_DIM when loading q"
            if 0 <= i and int(b[bad][0]) < b_n and int(h[bad][0]) < h_n
            else f"an element outside q (offset {i}; q is {tuple(case.q.shape)}, strides {case.q.stride()}): "
            "mask the lanes d >= HEAD_DIM when loading q"
        )
        if not case.q.is_contiguous():
            detail = f"offset {i} from q's first element, which is not one of q's elements"
        raise CheckFailed(f"{what}: your kernel loaded {detail}{_view_hint(case.q, 'q')}")


def _view_hint(t: Tensor, name: str) -> str:
    if t.is_contiguous():
        return ""
    return (
        f" ({name} is a view with strides {t.stride()} here: pass {name}.stride(0), {name}.stride(1), ... to "
        "the kernel, never strides computed from the shapes)"
    )


def _check_kv_loads(trace: Any, case: ContiguousCase, name: str, what: str) -> None:
    """Every load of k or v inside a valid slot (nothing to check if the launcher passed a copy)."""
    t = getattr(case, name)
    loaded = trace.loaded(name)
    if loaded.numel() == 0:
        return
    lens = case.seq_lens.tolist()
    owner, _ = _owner_map(t, lens)
    inside = (loaded >= 0) & (loaded < owner.numel())
    bad = ~inside
    bad[inside] = owner[loaded[inside]] < 0
    if not bool(bad.any()):
        return
    where = _where(t, int(loaded[bad][0]), name, lens)
    if name == "v" and case.v.stride() != case.k.stride():
        from_k = trace.loaded("k")
        if from_k.numel() and torch.equal(torch.unique(loaded), torch.unique(from_k)):
            raise CheckFailed(
                f"{what}: your kernel loaded v at exactly the offsets it loaded k at, so v was addressed "
                f"with k's strides; v's strides {case.v.stride()} differ from k's {case.k.stride()} here "
                f"(it reached {where.split(' but ')[0]}, past seq_lens): address v with its own strides "
                "(stride_vb, stride_vt, stride_vh from v.stride()), never k's"
            )
    if not t.is_contiguous():
        raise CheckFailed(f"{what}: your kernel loaded {where}{_view_hint(t, name)}")
    for program in trace.programs():
        mine = trace.loaded(name, program=program)
        if mine.numel() and int(mine.min()) % t.stride(0) >= t.stride(1):
            # never token 0 of its sequence, yet a slot past seq_len: kvh * stride_kh ran into the next token
            raise CheckFailed(
                f"{what}: program {program} never loaded token 0 but loaded {where.split(' but ')[0]}, past "
                f"seq_lens: its KV head index is probably >= num_kv_heads = {t.shape[2]}, so kvh * stride_kh "
                "runs into the next token; query head h reads KV head h // group with group = num_heads // "
                "num_kv_heads"
            )
    raise CheckFailed(f"{what}: your kernel loaded {where}")


def _load_events(trace: Any, name: str) -> list[tuple[tuple[int, int, int], Tensor]] | None:
    """(program, element offsets) of each separate load of `name`, when the trace exposes them."""
    events = getattr(trace, "_events", None)
    if not isinstance(events, list):
        return None
    try:
        return [
            (e.program, torch.from_numpy(e.indices)) for e in events if e.kind == "load" and e.name == name
        ]
    except AttributeError:
        return None


def _check_launch(trace: Any, case: ContiguousCase, what: str) -> None:
    """A kernel ran, one program per (sequence, query head), and every load stayed inside valid slots."""
    batch, num_heads, _ = case.q.shape
    expect(
        len(trace.launches) > 0,
        f"{what}: no Triton kernel was launched; the attention must be computed by your kernel "
        "(decode_kernel[(batch, num_heads)](...)), not with torch in the launcher",
    )
    programs = sum(len(trace.programs(launch=n)) for n in range(len(trace.launches)))
    grids = ", ".join(f"{x.kernel}{list(x.grid)}" for x in trace.launches)
    expect(
        programs == batch * num_heads,
        f"{what}: your launch ran {programs} programs ({grids}); launch one program per (sequence, query "
        f"head): grid (batch, num_heads) = ({batch}, {num_heads})",
    )
    _check_q_loads(trace, case, what)
    for name in ("k", "v"):
        _check_kv_loads(trace, case, name, what)


def _check_reads(trace: Any, case: ContiguousCase, block_n: int, what: str) -> None:
    """Each key and value read once per query head, by a program that owns it, in tiles of block_n."""
    num_heads, num_kv_heads = case.q.shape[1], case.k.shape[2]
    group = num_heads // num_kv_heads
    lens = case.seq_lens.tolist()
    for name in ("k", "v"):
        loaded = trace.loaded(name)
        if loaded.numel() == 0:  # a copy was passed: nothing of this tensor to count
            continue
        owner, token = _owner_map(getattr(case, name), lens)
        counts = torch.bincount(loaded, minlength=owner.numel())[: owner.numel()]
        valid = owner >= 0
        if bool((counts[valid] > group).any()):
            raise CheckFailed(
                f"{what}: your kernel loaded some elements of {name} {int(counts[valid].max())} times, "
                f"{group} expected (once per query head of a group of {group}): the online softmax reads "
                "each key and value once, folding every tile into the running max, sum and weighted sum; do "
                "not loop over the sequence twice (a first pass for the max, a second for the sums)"
            )
        if bool((counts[valid] < group).any()):
            first = int(torch.nonzero(valid & (counts < group))[0])
            b = int(owner[first]) // num_kv_heads
            raise CheckFailed(
                f"{what}: your kernel never loaded token {int(token[first])} of sequence {b} "
                f"(seq_lens[{b}] = {lens[b]}) from {name} for some query heads: walk every tile, for n0 in "
                "range(0, seq_len, BLOCK_N), including the last partial one, and every lane d < head_dim"
            )
        events = _load_events(trace, name)
        if events is None:
            continue
        longest = 0
        for program, offsets in events:
            expect(
                owner[offsets].unique().numel() == 1,
                f"{what}: program {program} loaded {name} of several sequences or KV heads in one load; "
                "each program serves one (sequence b, query head h) and reads only KV head h // group of b",
            )
            longest = max(longest, int(token[offsets].unique().numel()))
        if longest > block_n or (max(lens) >= block_n and longest < block_n):
            raise CheckFailed(
                f"{what}: your kernel loaded {longest} tokens of {name} in one tl.load, but the tiles must "
                f"be block_n = {block_n} tokens: BLOCK_N = block_n, offsets n0 + tl.arange(0, BLOCK_N), so "
                "nothing of size seq_len is held at once"
            )


# --- what the output should be -------------------------------------------------------------------------


def _emulate(
    case: ContiguousCase,
    block_n: int,
    *,
    scale: float | None = None,
    fill: float = float("-inf"),
    alpha_acc: bool = True,
    alpha_l: bool = True,
    last_tile: bool = True,
    modulo_heads: bool = False,
    max_tiles: int | None = None,
    lens: list[int] | None = None,
    m_start: float = float("-inf"),
    v_as_k: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The tiled online-softmax loop in torch (float64 unless `dtype` says float32: an underflow that
    happens in float32 only), with one classic mistake switched on."""
    q, k, v = (t.detach().to(dtype).cpu() for t in (case.q, case.k, case.v))
    if v_as_k:  # v's memory read through k's strides
        v = torch.as_strided(case.v.detach(), case.k.shape, case.k.stride(), case.v.storage_offset())
        v = v.to(dtype).cpu()
    batch, num_heads, head_dim = q.shape
    max_len, num_kv_heads = k.shape[1], k.shape[2]
    group = num_heads // num_kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    lens = case.seq_lens.tolist() if lens is None else lens
    out = torch.empty(batch, num_heads, head_dim, dtype=dtype)
    for b in range(batch):
        n = lens[b]
        tiles = -(-n // block_n) if last_tile else n // block_n
        tiles = tiles if max_tiles is None else min(tiles, max_tiles)
        for h in range(num_heads):
            kvh = h % num_kv_heads if modulo_heads else h // group
            m = torch.tensor(m_start, dtype=dtype)
            l_sum = torch.tensor(0.0, dtype=dtype)
            acc = torch.zeros(head_dim, dtype=dtype)
            for i in range(tiles):
                idx = torch.arange(i * block_n, (i + 1) * block_n)
                valid = idx < n
                rows = idx.clamp(max=max_len - 1)
                kt = torch.where(valid[:, None], k[b, rows, kvh], 0.0)
                vt = torch.where(valid[:, None], v[b, rows, kvh], 0.0)
                s = torch.where(valid, kt @ q[b, h] * scale, fill)
                m_new = torch.maximum(m, s.max())
                alpha = torch.exp(m - m_new)
                p = torch.exp(s - m_new)
                l_sum = (l_sum * alpha if alpha_l else l_sum) + p.sum()
                acc = (acc * alpha if alpha_acc else acc) + p @ vt
                m = m_new
            out[b, h] = acc / l_sum
    return out


def _variants(case: ContiguousCase, block_n: int) -> dict[str, Callable[[], Tensor]]:
    head_dim = case.q.shape[-1]
    block_d = 1 << (head_dim - 1).bit_length()
    scale_hint = "scale the scores by 1 / sqrt(head_dim) (head_dim = q.shape[-1], not BLOCK_D)"
    variants = {
        "alpha is not applied to acc: when a tile raises the max, multiply the weighted sum by "
        "alpha = exp(m - m_new) before adding the tile's terms": lambda: _emulate(
            case, block_n, alpha_acc=False
        ),
        "alpha is not applied to l: when a tile raises the max, multiply the running sum by "
        "alpha = exp(m - m_new) before adding the tile's terms": lambda: _emulate(
            case, block_n, alpha_l=False
        ),
        "masked scores are 0 instead of -inf: a score of 0 is a real score and adds exp(0 - m) to l; "
        "use tl.where(n < seq_len, s, float('-inf'))": lambda: _emulate(case, block_n, fill=0.0),
        "the last partial tile is dropped: loop for n0 in range(0, seq_len, BLOCK_N) (ceil(seq_len / "
        "BLOCK_N) tiles), masking its lanes past seq_len": lambda: _emulate(case, block_n, last_tile=False),
        "only the first tile is used: loop over every tile of the sequence": lambda: _emulate(
            case, block_n, max_tiles=1
        ),
        "query head h reads KV head h % num_kv_heads; it must read h // group (group = num_heads // "
        "num_kv_heads: the heads of a group are adjacent)": lambda: _emulate(
            case, block_n, modulo_heads=True
        ),
        "every sequence uses seq_lens[0]: load its own length with tl.load(lens_ptr + b)": lambda: _emulate(
            case, block_n, lens=[case.seq_lens.tolist()[0]] * case.q.shape[0]
        ),
        f"the scores are not scaled: {scale_hint}": lambda: _emulate(case, block_n, scale=1.0),
        f"the scores are scaled by 1 / sqrt(BLOCK_D) = 1 / sqrt({block_d}): {scale_hint}": lambda: _emulate(
            case, block_n, scale=1.0 / math.sqrt(block_d)
        ),
        f"the scores are divided by head_dim, not sqrt(head_dim): {scale_hint}": lambda: _emulate(
            case, block_n, scale=1.0 / head_dim
        ),
        f"the scores are multiplied by sqrt(head_dim): {scale_hint}": lambda: _emulate(
            case, block_n, scale=math.sqrt(head_dim)
        ),
    }
    if block_d == head_dim:
        del variants[f"the scores are scaled by 1 / sqrt(BLOCK_D) = 1 / sqrt({block_d}): {scale_hint}"]
    lowest = _lowest_max_score(case)
    if lowest < -110:  # exp underflows to 0 in float32 below about -104
        variants[
            "the running max m starts at 0, not -inf: when every score of a head is far below 0 (here about "
            f"{lowest:.0f}), m stays 0, every exp(s - m) underflows to 0 and l = 0 (0 / 0 = NaN): start with "
            "m = float('-inf') so the first tile sets it"
        ] = lambda: _emulate(case, block_n, m_start=0.0, dtype=torch.float32).double()
    if _v_as_k_fits(case):
        variants[
            f"v is read with k's strides: v's strides {case.v.stride()} differ from k's {case.k.stride()} "
            "here; address v with its own strides (stride_vb, stride_vt, stride_vh from v.stride())"
        ] = lambda: _emulate(case, block_n, v_as_k=True)
    return variants


def _lowest_max_score(case: ContiguousCase) -> float:
    """The lowest, over (sequence, query head), of the largest scaled score q . k / sqrt(head_dim)."""
    q, k = case.q.detach().double().cpu(), case.k.detach().double().cpu()
    group = q.shape[1] // k.shape[2]
    lowest = float("inf")
    for b, n in enumerate(case.seq_lens.tolist()):
        keys = k[b, :n].repeat_interleave(group, dim=1)  # (n, num_heads, head_dim)
        scores = torch.einsum("thd,hd->ht", keys, q[b]) / math.sqrt(q.shape[-1])
        lowest = min(lowest, scores.amax(-1).min().item())
    return lowest


def _v_as_k_fits(case: ContiguousCase) -> bool:
    """v's strides differ from k's and v's memory read through k's strides stays inside v's storage."""
    k, v = case.k, case.v
    if v.stride() == k.stride():
        return False
    last = v.storage_offset() + sum((n - 1) * st for n, st in zip(k.shape, k.stride()))
    return last < v.untyped_storage().nbytes() // v.element_size()


def _same(actual: Tensor, candidate: Tensor, atol: float) -> bool:
    """Equal within atol, NaN where the candidate is NaN (a mistake that makes 0 / 0 makes it too)."""
    nan_a, nan_c = torch.isnan(actual), torch.isnan(candidate)
    if not torch.equal(nan_a, nan_c):
        return False
    ok = ~nan_c
    return bool(((actual[ok] - candidate[ok]).abs() <= atol).all())


def _written_with_q_strides(out: Tensor, case: ContiguousCase, ref: Tensor, atol: float) -> bool:
    """``out`` (its own strides differ from q's) holds ref[b, h] at b * q.stride(0) + h * q.stride(1) of its
    storage wherever that lies inside it: the stores used q's strides."""
    q = case.q
    if out.stride() == q.stride() or out.stride(-1) != 1 or out.storage_offset() != 0:
        return False
    size = out.untyped_storage().nbytes() // out.element_size()
    flat = torch.as_strided(out.detach(), (size,), (1,)).double().cpu()
    b, h, d = torch.meshgrid(*(torch.arange(n) for n in q.shape), indexing="ij")
    offs = b * q.stride(0) + h * q.stride(1) + d
    inside = offs < size
    if not bool((inside & (offs != b * out.stride(0) + h * out.stride(1) + d)).any()):
        return False
    return bool(((flat[offs[inside]] - ref[inside]).abs() <= atol).all())


def _check_values(out: Tensor, case: ContiguousCase, block_n: int, what: str, traced: bool = False) -> None:
    got = out.detach().double().cpu()
    ref = case.reference().double()
    size = ref.abs().max().item()
    fp16 = case.q.dtype == torch.float16
    atol = (2e-3 if fp16 else 2e-5) * max(size, 1.0)
    nan = torch.isnan(got) | torch.isinf(got)
    err = (got - ref).abs()
    if not bool(nan.any()) and bool((err <= atol).all()):
        return
    if _written_with_q_strides(out, case, ref, max(atol, 1e-4 * max(size, 1.0))):
        raise CheckFailed(
            f"{what} is wrong: your kernel stored the result at q's strides {case.q.stride()} (q is a view "
            f"here), but the output you created has strides {out.stride()}: pass out.stride(0), "
            "out.stride(1) for the stores (written with q's strides, the values land in the wrong places or "
            "past the end of the output)"
        )
    for message, variant in _variants(case, block_n).items():
        if _same(got, variant(), max(atol, 1e-4 * max(size, 1.0))):
            raise CheckFailed(f"{what} is wrong: {message}")
    if bool(nan.any()):
        b, h = (int(i) for i in torch.nonzero(nan.any(-1))[0])
        n = case.seq_lens.tolist()[b]
        rescale = (
            "the rescale overflowed: alpha = exp(m - m_new) is <= 1, while exp(m_new - m) is exp(+inf) = inf "
            "on the first tile (m = -inf) and inf * 0 = NaN"
        )
        causes = [rescale, "l stayed 0 because no tile was processed"]
        if not traced:  # in the interpreter the trace already showed every load inside seq_lens
            causes.insert(0, f"a slot past seq_lens[{b}] = {n} was loaded ({_MASK_HINT})")
        if case.q.abs().max().item() > 10:
            causes.append(
                "exp overflowed: these scores reach the hundreds, so keep the running max m and use "
                "exp(s - m)"
            )
        raise CheckFailed(
            f"{what}: the output of sequence {b}, head {h} is NaN or inf: " + "; or ".join(causes)
        )
    worst = torch.nonzero(err == err.max())[0]
    b, h = int(worst[0]), int(worst[1])
    head_dim = case.q.shape[-1]
    hint = (
        f"; head_dim = {head_dim} is not a power of two: mask the lanes d >= HEAD_DIM in every load and store"
        if head_dim & (head_dim - 1)
        else ""
    )
    views = "".join(_view_hint(getattr(case, n), n) for n in ("q", "k", "v"))
    if not case.q.is_contiguous() and out.stride() != case.q.stride():
        views += (
            f" (your output has strides {out.stride()}: store it with out.stride(0), out.stride(1), not q's "
            "strides)"
        )
    raise CheckFailed(
        f"{what} is wrong (max abs error {err.max().item():.3g}, at sequence {b}, head {h}){hint}{views}; "
        "compare with softmax(q . k / sqrt(head_dim)) @ v over the first seq_lens[b] tokens of KV head "
        "h // group"
    )


def _check_case(fn: Callable[..., Any], case: ContiguousCase, block_n: int) -> Tensor:
    out, trace, what = _run(fn, case, block_n)
    if trace is not None:
        _check_launch(trace, case, what)
    assert_shape(out, tuple(case.q.shape), f"{what}: the result", "(batch, num_heads, head_dim), like q")
    assert_dtype(
        out,
        case.q.dtype,
        f"{what}: the result",
        "create the output with dtype=q.dtype and store "
        "out.to(out_ptr.dtype.element_ty); compute in float32 inside the kernel only",
    )
    loads_checked = trace is not None and all(trace.loaded(n).numel() for n in ("k", "v"))
    _check_values(out, case, block_n, what, traced=loads_checked)
    if trace is not None:
        _check_reads(trace, case, block_n, what)
    return out


# --- cases -----------------------------------------------------------------------------------------------


def _fused_kv_case(
    lens: tuple[int, ...], num_heads: int, num_kv_heads: int, head_dim: int, seed: int
) -> ContiguousCase:
    """k and v as the halves of one (batch, max_len, 2, num_kv_heads, head_dim) tensor, q a slice of a wider
    (batch, num_heads + 3, head_dim + 8) tensor: no stride equals what the shapes alone would give."""
    case = contiguous_case(
        lens,
        max_len=max(lens) + 3,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        seed=seed,
        note="k and v are views into one (batch, max_len, 2, "
        "KV heads, head_dim) tensor; q is a slice of a wider tensor",
    )
    b, t, h, d = case.k.shape
    kv = torch.full((b, t, 2, h, d), float("nan"), dtype=case.k.dtype, device=case.k.device)
    kv[:, :, 0], kv[:, :, 1] = case.k, case.v
    wide = torch.full(
        (b, num_heads + 3, head_dim + 8), float("nan"), dtype=case.q.dtype, device=case.q.device
    )
    wide[:, 1 : num_heads + 1, 4 : head_dim + 4] = case.q
    return ContiguousCase(
        wide[:, 1 : num_heads + 1, 4 : head_dim + 4], kv[:, :, 0], kv[:, :, 1], case.seq_lens, case.note
    )


def _heads_first_v_case(lens: tuple[int, ...], max_len: int, seed: int) -> ContiguousCase:
    """k contiguous (batch, max_len, KV heads, head_dim); v the same shape but a transposed view of a
    heads-first (batch, KV heads, max_len, head_dim) tensor: v's strides are not k's."""
    case = contiguous_case(
        lens, max_len=max_len, num_heads=4, num_kv_heads=2, head_dim=16, seed=seed,
        note="k contiguous; v a transposed view of a heads-first (batch, KV heads, max_len, head_dim) tensor",
    )  # fmt: skip
    v = case.v.transpose(1, 2).contiguous().transpose(1, 2)
    return ContiguousCase(case.q, case.k, v, case.seq_lens, case.note)


def _very_negative_case(seed: int) -> ContiguousCase:
    """Every key is 8 u plus a little noise; query head 0 of each sequence is -60 u, so its scores are all
    about -120 (exp(s) underflows in float32 unless s - max is taken), query head 1 is random."""
    case = contiguous_case(
        (23, 40), max_len=44, num_heads=2, num_kv_heads=1, head_dim=16, seed=seed,
        note="query head 0: every score about -120",
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(16, generator=gen)
    u = u / u.norm()
    k = case.k.detach().cpu().clone()
    for b, n in enumerate(case.seq_lens.tolist()):
        k[b, :n, 0] = 8 * u + 0.05 * torch.randn(n, 16, generator=gen)
    q = case.q.detach().cpu().clone()
    q[:, 0] = -60 * u
    return ContiguousCase(q.to(case.q.device), k.to(case.k.device), case.v, case.seq_lens, case.note)


@graded("decode_attention", *REFERENCES)
def decode_attention_visible(fn: Callable[..., Any]) -> None:
    """Two sequences (5 and 37 tokens, NaN up to max_len 40), 6 query heads over 2 KV heads (group 3)."""
    case = contiguous_case(
        (5, 37), max_len=40, num_heads=6, num_kv_heads=2, head_dim=16, seed=71, note="group 3"
    )
    _check_case(fn, case, block_n=16)
    print("decode_attention: visible tests passed")


def _hidden_sizes(fn: Callable[..., Any]) -> None:
    for lens, max_len, heads, kv_heads, head_dim, block_n, note in [
        ((1, 20), 24, 6, 2, 24, 16, "head_dim 24: not a power of two; a sequence of one token"),
        ((70, 7), 72, 4, 1, 40, 32, "head_dim 40, group 4, block_n 32"),
        ((130, 5), 130, 2, 2, 16, 64, "group 1, block_n 64, a sequence of 130 tokens filling max_len"),
        ((2, 45, 9, 16, 1), 48, 2, 1, 32, 16, "batch 5"),
        ((9,), 12, 16, 2, 16, 16, "group 8"),
        ((3, 20), 24, 2, 1, 8, 32, "block_n 32 longer than every sequence, head_dim 8"),
    ]:
        case = contiguous_case(
            lens,
            max_len=max_len,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            seed=sum(lens),
            note=note,
        )
        _check_case(fn, case, block_n)


def _hidden_numerics(fn: Callable[..., Any]) -> None:
    sharp = contiguous_case(
        (40, 23),
        max_len=44,
        num_heads=2,
        num_kv_heads=1,
        q_scale=100.0,
        seed=9,
        note="q scaled by 100: scores in the hundreds",
    )
    _check_case(fn, sharp, block_n=16)
    half = contiguous_case(
        (37, 20),
        max_len=40,
        num_heads=2,
        num_kv_heads=1,
        head_dim=24,
        dtype=torch.float16,
        seed=10,
        note="float16 in, float16 out",
    )
    _check_case(fn, half, block_n=16)
    _check_case(fn, _very_negative_case(seed=14), block_n=16)


def _hidden_layouts_and_aliasing(fn: Callable[..., Any]) -> None:
    _check_case(fn, _fused_kv_case((29, 12), num_heads=4, num_kv_heads=2, head_dim=16, seed=11), block_n=16)
    _check_case(fn, _heads_first_v_case((19, 30), max_len=32, seed=15), block_n=16)
    first_case = contiguous_case((9, 21), max_len=24, num_heads=2, num_kv_heads=1, seed=12, note="first call")
    first = _check_case(fn, first_case, block_n=16)
    copy = snapshot(first)
    second = contiguous_case(
        (9, 21), max_len=24, num_heads=2, num_kv_heads=1, seed=13, note="second call, same shapes"
    )
    _check_case(fn, second, block_n=16)
    assert_unchanged(
        first,
        copy,
        "the tensor returned by decode_attention",
        "return a new tensor from every call (torch.empty inside the launcher), not a buffer kept "
        "between calls",
    )


@graded("decode_attention", *REFERENCES)
def decode_attention_hidden(fn: Callable[..., Any]) -> None:
    """head_dim 8/24/40, groups 1/2/3/4/8, block_n 16/32/64, lengths 1..130, batch 5, scores in the hundreds,
    a head whose scores are all about -120, float16, strided views of q, k and v (v's strides unlike k's),
    no aliasing between calls."""
    _hidden_sizes(fn)
    _hidden_numerics(fn)
    _hidden_layouts_and_aliasing(fn)
    print("decode_attention: hidden tests passed")
