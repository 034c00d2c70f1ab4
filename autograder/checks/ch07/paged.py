"""Exercise `paged_decode`: decode attention read through a block table, and the shared paged-case checks.

The public helpers here serve every paged exercise of the chapter (`paged_decode`, `paged_decode_gqa`,
`paged_decode_partials`):

- :func:`memory_guard`: while learner kernels run in Triton's CPU interpreter, drops (and records)
  every load or store lane whose address lies outside all the tensors the launch was given. An
  unmasked store past an output's end would otherwise corrupt the heap and kill the grader.
- :func:`run_paged`: calls a paged launcher on a case (inputs unchanged, ``block_n=`` by keyword),
  traced and guarded in the interpreter; returns a :class:`PagedRun`.
- :func:`assert_memory_safe`, :func:`assert_kernel_ran`, :func:`assert_reads_owned`: what the trace
  says (no stray address, a kernel launched and read the pool in place, no slot past a sequence's end,
  no block it does not own, no block-table entry outside its row).
- :func:`assert_paged_close`: the output against the float32 gather reference, naming the classic
  wrong variant matched (:func:`paged_variants`).
- :func:`padded_head_view`, :func:`kv_halves_view`, :func:`scramble_unused_entries`: strided pools
  and block tables whose unused entries point somewhere harmful.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, call, expect
from ..delegation import graded
from ..fixtures import generator
from ..properties import assert_dtype, assert_unchanged, call_pure, snapshot
from ._cases import DOT_SIZE_HINT, PagedCase, explain_dot_size, interpreted, paged_case, traced

REFERENCES = (
    "kvlib.kernels.paged_attention.paged_attention_decode",
    "kvlib.kernels.reference.paged_attention_reference",
    "kvlib.kernels.paged_attention.paged_attention_partials",
    "kvlib.kernels.paged_attention.merge_splits",
    "kvlib.kernels.paged_attention.contiguous_decode_attention",
    "kvlib.kernels.reference.gather_kv",
    "kvlib.kernels.paged_attention._paged_decode_kernel",  # launched from the learner's own launcher
    "kvlib.kernels.paged_attention._combine_splits_kernel",
)

MASK_HINT = "mask every load with n < seq_len (and d < head_dim)"


# --- a guard on the interpreter's memory accesses ---------------------------------------------------


@dataclass
class MemoryGuard:
    """Load/store lanes of interpreted kernels that fell outside every tensor their launch was given."""

    stray_loads: int = 0
    stray_stores: int = 0
    kernels: set[str] = field(default_factory=set)
    _ranges: list[tuple[int, int]] = field(default_factory=list)

    def _inside(self, addresses: np.ndarray, nbytes: int) -> np.ndarray:
        inside = np.zeros(addresses.shape, dtype=bool)
        for lo, hi in self._ranges:
            inside |= (addresses >= lo) & (addresses + nbytes <= hi)
        return inside


def _host_ranges(values: list[Any]) -> list[tuple[int, int]]:
    from triton.runtime.jit import TensorWrapper

    ranges = []
    for value in values:
        if isinstance(value, TensorWrapper):
            value = value.base
        if isinstance(value, (tuple, list)):
            ranges.extend(_host_ranges(list(value)))
        elif isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            ranges.append((storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
    return ranges


@contextlib.contextmanager
def memory_guard() -> Iterator[MemoryGuard | None]:
    """Drop and count interpreted load/store lanes outside all of a launch's tensor arguments.

    Yields None on CUDA (nothing runs through Python there). Enter it *outside* ``trace_loads`` so
    the trace still records a stray load (as an index past its tensor's end) before it is dropped.
    """
    if not interpreted():
        yield None
        return
    from triton.runtime import interpreter

    guard = MemoryGuard()
    executor, builder = interpreter.GridExecutor, interpreter.InterpreterBuilder
    saved = [(executor, "_init_args_hst"), (builder, "create_masked_load"), (builder, "create_masked_store")]
    originals = [obj.__dict__[name] for obj, name in saved]

    def init_args_hst(self, args_dev, kwargs):
        args_hst, kwargs_hst = originals[0](self, args_dev, kwargs)
        guard._ranges = _host_ranges([*args_hst, *kwargs_hst.values()])
        guard.kernels.add(getattr(self.fn, "__name__", "?"))
        return args_hst, kwargs_hst

    def safe_mask(ptrs, mask, kind):
        data = ptrs.data
        lanes = np.broadcast_to(mask.data, data.shape) if mask is not None else np.ones(data.shape, bool)
        nbytes = max(1, ptrs.get_element_ty().primitive_bitwidth // 8)
        stray = lanes & ~guard._inside(data.astype(np.uint64).astype(np.int64), nbytes)
        if not stray.any():
            return mask
        if kind == "load":
            guard.stray_loads += int(stray.sum())
        else:
            guard.stray_stores += int(stray.sum())
        return interpreter.TensorHandle(np.ascontiguousarray(lanes & ~stray), mask.dtype)

    @functools.wraps(originals[1])
    def masked_load(self, ptrs, mask, *args, **kwargs):
        return originals[1](self, ptrs, safe_mask(ptrs, mask, "load"), *args, **kwargs)

    @functools.wraps(originals[2])
    def masked_store(self, ptrs, value, mask, *args, **kwargs):
        return originals[2](self, ptrs, value, safe_mask(ptrs, mask, "store"), *args, **kwargs)

    for (obj, name), wrapper in zip(saved, (init_args_hst, masked_load, masked_store)):
        setattr(obj, name, wrapper)
    try:
        yield guard
    finally:
        for (obj, name), original in zip(saved, originals):
            setattr(obj, name, original)


# --- running a launcher on a case -------------------------------------------------------------------


@dataclass
class PagedRun:
    """One call of a learner's launcher: its result, and (interpreter only) the trace and the guard."""

    result: Any
    trace: Any = None
    guard: MemoryGuard | None = None
    watched: dict[str, Tensor] = field(default_factory=dict)


def run_paged(
    fn: Callable[..., Any], case: PagedCase, block_n: int, what: str, extra: tuple = ()
) -> PagedRun:
    """``fn(*case.args, *extra, block_n=block_n)``, inputs checked unchanged; traced in the interpreter."""
    watched = dict(
        q=case.q, k_cache=case.k_cache, v_cache=case.v_cache, block_table=case.block_table,
        seq_lens=case.seq_lens,
    )  # fmt: skip
    try:
        with memory_guard() as guard, traced(**watched) as trace:
            result = call_pure(fn, *case.args, *extra, block_n=block_n, what=what)
    except CheckFailed as exc:
        raise explain_dot_size(exc) from None
    if trace is None:
        return PagedRun(result)
    return PagedRun(result, trace, guard, watched)


def assert_memory_safe(run: PagedRun, what: str) -> None:
    """No store outside every tensor of the launch; no load past the end of the small inputs."""
    guard = run.guard
    if guard is None:
        return
    expect(
        guard.stray_stores == 0,
        f"{what}: your kernel stored {guard.stray_stores} values outside every tensor it was given (past "
        "the end of the output: on a GPU that corrupts memory or faults); mask every store, e.g. the "
        "lanes past head_dim or the padding rows of a tile",
    )
    for name, hint in (
        ("block_table", _TABLE_HINT),
        ("q", "mask the q load: lanes d < head_dim (and the padding rows of a group tile, g < group)"),
        ("seq_lens", "load seq_lens[b] once per program, with b the program's sequence"),
    ):
        idx, tensor = run.trace.loaded(name), run.watched[name]
        end = sum((n - 1) * st for n, st in zip(tensor.shape, tensor.stride())) + 1  # a view's last element
        if idx.numel() and (int(idx.max()) >= end or int(idx.min()) < 0):
            raise CheckFailed(f"{what}: your kernel loaded past the end of {name}; {hint}")


def assert_no_stray_loads(run: PagedRun, what: str) -> None:
    """No load lane outside every tensor the launch was given (checked after the named tensors' reads)."""
    if run.guard is None:
        return
    expect(
        run.guard.stray_loads == 0,
        f"{what}: your kernel loaded {run.guard.stray_loads} values outside every tensor it was given (an "
        "unmasked lane or a garbage block id: the interpreter reads whatever memory lies there, a GPU "
        f"faults); {MASK_HINT}, and follow block-table entries only for tokens n < seq_len",
    )


def assert_kernel_ran(run: PagedRun, what: str) -> None:
    """A Triton kernel launched and read keys and values from the pool itself (interpreter only)."""
    trace = run.trace
    if trace is None:
        return
    expect(
        bool(trace.launches),
        f"{what}: no Triton kernel was launched; the exercise is to compute attention inside a "
        "@triton.jit kernel (launched as kernel[grid](...)), not with torch operations",
    )
    for name in ("k_cache", "v_cache"):
        expect(
            trace.loaded(name).numel() > 0,
            f"{what}: your kernel never loaded from {name} itself: did you gather or copy the cache in "
            "torch (.contiguous(), indexing with the block table) before launching? Pass the pool as it "
            "is and read each key through the block table, with the pool's strides",
        )


def _unravel(idx: Tensor, shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Coordinates ``(len(idx), 4)`` of element offsets in a strided view, and which offsets are in it."""
    order = sorted(range(len(shape)), key=lambda i: -strides[i])
    coords = torch.zeros(idx.numel(), len(shape), dtype=torch.int64)
    rest = idx.clone()
    for i in order:
        coords[:, i] = torch.div(rest, strides[i], rounding_mode="floor") if strides[i] else 0
        rest = rest - coords[:, i] * strides[i]
    ok = (rest == 0) & (idx >= 0)
    for i, n in enumerate(shape):
        ok &= (coords[:, i] >= 0) & (coords[:, i] < n)
    return coords, ok


def _owners(case: PagedCase) -> tuple[Tensor, Tensor]:
    """For each physical block: the sequence using it (-1: none) and its logical index in that sequence."""
    num_blocks, block_size = case.k_cache.shape[:2]
    seq = torch.full((num_blocks,), -1, dtype=torch.int64)
    logical = torch.zeros(num_blocks, dtype=torch.int64)
    table, lens = case.block_table.cpu(), case.seq_lens.cpu()
    for b, n in enumerate(lens.tolist()):
        for j in range(-(-n // block_size)):
            seq[int(table[b, j])] = b
            logical[int(table[b, j])] = j
    return seq, logical


def _program_sequence(trace: Any, program: tuple[int, int, int], launch: int) -> int | None:
    """The sequence a program serves: the one entry of seq_lens it loaded (None if not exactly one)."""
    loaded = trace.loaded("seq_lens", program=program, launch=launch).unique()
    return int(loaded[0]) if loaded.numel() == 1 else None


_TABLE_HINT = (
    "the entry block_table[b, n // block_size] (n // block_size, not n % block_size) exists only for "
    "tokens n < seq_len: mask the block-table load with the token mask (mask=n < seq_len, other=0)"
)
_ADDRESS_HINT = (
    "for token n read physical block block_table[b, n // block_size] at row n % block_size, and load only "
    "for n < seq_len"
)


def _kv_violation(
    name: str, tensor: Tensor, idx: Tensor, case: PagedCase, b_prog: int | None, owners: tuple[Tensor, Tensor]
) -> str | None:
    """The most telling wrong load among ``idx`` (element offsets of ``name``), or None."""
    _, block_size, _, head_dim = tensor.shape
    coords, inside = _unravel(idx, tuple(tensor.shape), tuple(tensor.stride()))
    other_name = "v_cache" if name == "k_cache" else "k_cache"
    other = getattr(case, other_name).stride()
    if not bool(inside.all()) and other != tensor.stride():
        if bool(_unravel(idx, tuple(tensor.shape), tuple(other))[1].all()):
            return (
                f"addressed {name} with {other_name}'s strides {tuple(other)}: {name} has its own layout "
                f"here, strides {tuple(tensor.stride())}; pass {name}.stride(0), .stride(1), .stride(2) to "
                f"the kernel and use them for the {name} load"
            )
    if not bool(inside.all()):
        outside = coords[~inside]
        rows_ok = torch.ones(outside.shape[0], dtype=torch.bool)
        for a in range(3):
            rows_ok &= (outside[:, a] >= 0) & (outside[:, a] < tensor.shape[a])
        past_d = rows_ok & (outside[:, 3] >= head_dim)
        if bool(past_d.any()):
            return (
                f"loaded {name} lanes d >= head_dim = {head_dim} (past each head's numbers): mask the lanes "
                "past head_dim on every load (d < head_dim; BLOCK_D is the next power of two)"
            )
        span = sum((n - 1) * st for n, st in zip(tensor.shape, tensor.stride()))
        offs = idx[~inside]
        if bool(((offs < 0) | (offs > span)).any()):
            return (
                f"loaded past the end of {name} (an unmasked lane, a row n % block_size that runs past its "
                f"block, or a wrong block id): {_ADDRESS_HINT}"
            )
        return (
            f"loaded an element between the rows of the {name} view it was given: {name} may be a view with "
            f"any strides (here part of a larger tensor), so compute addresses with {name}.stride(0), "
            ".stride(1), .stride(2), never from its shape"
        )
    seq_of, logical = owners
    lens = torch.tensor(case.seq_lens.cpu().tolist() + [0], dtype=torch.int64)  # [-1] -> length 0
    block, slot = coords[:, 0], coords[:, 1]
    owner = seq_of[block]
    token = logical[block] * block_size + slot
    if b_prog is not None:
        other = (owner >= 0) & (owner != b_prog)
        if bool(other.any()):
            i = int(other.nonzero()[0])
            return (
                f"serves sequence {b_prog} but loaded {name} block {int(block[i])}, which belongs to "
                f"sequence {int(owner[i])}: read row b of the block table (b * block_table.stride(0)); "
                + _ADDRESS_HINT
            )
    unowned = owner < 0
    if bool(unowned.any()):
        blk = int(block[unowned][0])
        if blk == 0:
            return (
                f"loaded {name} block 0, the null block that unused block-table entries and masked "
                "block-table lanes (other=0) point at: the K/V loads of tokens n >= seq_len must be masked "
                "too; " + _ADDRESS_HINT
            )
        return f"loaded {name} block {blk}, which no sequence owns: {_ADDRESS_HINT}"
    past = token >= lens[owner]
    if bool(past.any()):
        i = int(past.nonzero()[0])
        b = int(owner[i])
        return (
            f"loaded token {int(token[i])} of sequence {b} from {name}, past seq_lens[{b}] = {int(lens[b])} "
            f"(those slots hold garbage): {MASK_HINT}"
        )
    return None


def table_row_problem(entries: Tensor, table: Tensor, b: int) -> str | None:
    """Why the block-table entries (element offsets) a program serving sequence ``b`` loaded are wrong."""
    stride, width = table.stride(0), table.shape[1]
    row = torch.div(entries, stride, rounding_mode="floor")
    if not bool(((row != b) | (entries - row * stride >= width)).any()):
        return None
    if stride != width:
        by_width = torch.div(entries, width, rounding_mode="floor")
        if bool((by_width == b).all()):
            return (
                f"serves sequence {b} but read its block-table row at b * {width} (the table's width): "
                f"block_table is a column slice of a wider table here, its row stride block_table.stride(0) "
                f"= {stride}; address entry (b, j) as b * block_table.stride(0) + j"
            )
    return (
        f"serves sequence {b} but loaded a block-table entry outside row {b} (past its {width} entries): "
        + _TABLE_HINT
    )


def assert_reads_owned(run: PagedRun, case: PagedCase, what: str, hint: str = "") -> None:
    """Every K/V element loaded is a real token of the sequence its program serves; every block-table
    entry loaded lies in that sequence's row (interpreter only)."""
    trace = run.trace
    if trace is None:
        return
    owners = _owners(case)
    extra = f"; {hint}" if hint else ""
    for launch in range(len(trace.launches)):
        for program in trace.programs(launch):
            where = f"{what}: program {program} of kernel {trace.launches[launch].kernel}"
            b_prog = _program_sequence(trace, program, launch)
            if b_prog is not None:
                entries = trace.loaded("block_table", program=program, launch=launch)
                problem = table_row_problem(entries, case.block_table, b_prog)
                if problem:
                    raise CheckFailed(f"{where} {problem}{extra}")
            for name in ("k_cache", "v_cache"):
                idx = trace.loaded(name, program=program, launch=launch)
                if idx.numel():
                    problem = _kv_violation(name, getattr(case, name), idx, case, b_prog, owners)
                    if problem:
                        raise CheckFailed(f"{where} {problem}{extra}")


# --- the output against the gather reference --------------------------------------------------------


def _gathered(case: PagedCase) -> list[tuple[Tensor, Tensor]]:
    """Each sequence's keys and values ``(n, num_kv_heads, head_dim)`` in float64, in logical order."""
    from kvlib.kernels.reference import gather_kv

    kc, vc, table = case.k_cache.cpu(), case.v_cache.cpu(), case.block_table.cpu()
    out = []
    for b, n in enumerate(case.seq_lens.cpu().tolist()):
        k, v = gather_kv(kc, vc, table, n, b)
        out.append((k.double(), v.double()))
    return out


def _online(s: Tensor, v: Tensor, block_n: int, bug: str) -> Tensor:
    """Scores ``(H, n)`` and values ``(H, n, D)`` folded tile by tile with one classic bug."""
    m = torch.full((s.shape[0],), -math.inf, dtype=s.dtype)
    l_i = torch.zeros(s.shape[0], dtype=s.dtype)
    acc = torch.zeros(s.shape[0], v.shape[-1], dtype=s.dtype)
    for n0 in range(0, s.shape[1], block_n):
        st, vt = s[:, n0 : n0 + block_n], v[:, n0 : n0 + block_n]
        m_new = torch.maximum(m, st.max(dim=1).values)
        alpha = torch.exp(m - m_new)
        p = torch.exp(st - m_new[:, None])
        l_i = (l_i if bug == "l" else l_i * alpha) + p.sum(1)
        acc = (acc if bug == "acc" else acc * alpha[:, None]) + torch.einsum("hn,hnd->hd", p, vt)
        m = m_new
        if bug == "first":
            break
    return acc / l_i[:, None]


def paged_variants(case: PagedCase, block_n: int) -> dict[str, Tensor]:
    """Message -> the float64 output of one classic wrong variant of paged decode attention."""
    batch, num_heads, head_dim = case.q.shape
    num_kv_heads = case.k_cache.shape[2]
    group = num_heads // num_kv_heads
    q = case.q.cpu().double()
    kv = _gathered(case)
    scale = 1 / math.sqrt(head_dim)
    block_d = 1 << (head_dim - 1).bit_length()

    def attend(head_of: Tensor, scale: float, pad_zero: bool = False, bug: str = "") -> Tensor:
        out = torch.empty(batch, num_heads, head_dim, dtype=torch.float64)
        for b, (k, v) in enumerate(kv):
            kh, vh = k[:, head_of].transpose(0, 1), v[:, head_of].transpose(0, 1)  # (H, n, D)
            s = torch.einsum("hd,hnd->hn", q[b], kh) * scale
            if bug:
                out[b] = _online(s, vh, block_n, bug)
                continue
            if pad_zero:  # masked lanes scored 0 with value 0: they dilute the softmax
                pad = -(-s.shape[1] // block_n) * block_n - s.shape[1]
                s = torch.cat([s, s.new_zeros(num_heads, pad)], 1)
                vh = torch.cat([vh, vh.new_zeros(num_heads, pad, head_dim)], 1)
            out[b] = torch.einsum("hn,hnd->hd", s.softmax(-1), vh)
        return out

    right = torch.arange(num_heads) // group
    variants = {}
    if num_kv_heads > 1 and group > 1:
        variants[
            "query head h must read KV head h // group (group = num_heads // num_kv_heads, consecutive query "
            "heads share a KV head); you used h % num_kv_heads"
        ] = attend(torch.arange(num_heads) % num_kv_heads, scale)
    variants["scores must be scaled by 1 / sqrt(head_dim); you did not scale them"] = attend(right, 1.0)
    variants["scores must be scaled by 1 / sqrt(head_dim), not 1 / head_dim"] = attend(right, 1 / head_dim)
    if block_d != head_dim:
        variants[
            f"scale by 1 / sqrt(head_dim) = 1 / sqrt({head_dim}), not by the padded BLOCK_D = {block_d}"
        ] = attend(right, 1 / math.sqrt(block_d))
    variants[
        "a masked score must be -inf, not 0 (a score of 0 is a real score: exp(0 - m) adds weight to the "
        "padding lanes of the last tile): s = tl.where(n < seq_len, s, float('-inf'))"
    ] = attend(right, scale, pad_zero=True)
    variants[
        "when a tile raises the running max, acc must be rescaled by alpha = exp(m - m_new) before the "
        "tile's terms are added: acc = acc * alpha + ..."
    ] = attend(right, scale, bug="acc")
    variants[
        "when a tile raises the running max, l must be rescaled by alpha = exp(m - m_new): "
        "l = l * alpha + sum(p)"
    ] = attend(right, scale, bug="l")
    variants[
        f"only the first tile of block_n = {block_n} tokens was used: loop n0 over range(0, seq_len, BLOCK_N)"
    ] = attend(right, scale, bug="first")
    variants.update(q_view_variants(case))
    return variants


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))


def q_view_variants(case: PagedCase) -> dict[str, Tensor]:
    """When q is a view: the outputs of reading q with strides from its shape, and of writing a contiguous
    output with q's strides (only where those addresses stay inside a tensor of q's shape)."""
    q = case.q
    flat = _contiguous_strides(tuple(q.shape))
    if tuple(q.stride()) == flat:
        return {}
    shown = tuple(q.stride())
    variants = {
        f"q is a view with strides {shown} here: pass q.stride(0), q.stride(1) to the kernel, never strides "
        f"computed from its shape {flat[:2]}": replace(
            case, q=torch.as_strided(q, tuple(q.shape), flat)
        ).reference().double(),
    }  # fmt: skip
    span = sum((n - 1) * st for n, st in zip(q.shape, q.stride())) + 1
    if span <= q.numel():
        placed = torch.zeros(q.numel(), dtype=torch.float64)
        placed.as_strided(tuple(q.shape), shown).copy_(case.reference().double())
        variants[
            f"the output was written with q's strides {shown}: the output you allocate "
            f"(torch.empty(q.shape)) is contiguous, strides {flat}, while q is a view here; pass "
            "out.stride(0), out.stride(1) for the store, never q's"
        ] = placed.view(tuple(q.shape))
    return variants


def tolerance(case: PagedCase, expected: Tensor) -> float:
    """fp32: 2e-5, fp16/bf16: 2e-3, relative to the output's magnitude (at least 1).

    Compiled on a GPU, fp32 gets the fp16 tolerance: a correct broadcast multiply-and-sum kernel came
    out between 2e-5 and 5e-4 off on an H200 (exact in the interpreter), most likely because Triton
    turns that pattern into a ``tl.dot``, which multiplies fp32 in TF32 unless asked for "ieee"."""
    top = max(1.0, float(expected.abs().max()))
    exact = case.q.dtype == torch.float32 and case.q.device.type == "cpu"
    return (2e-5 if exact else 2e-3) * top


def assert_paged_close(
    out: Any, case: PagedCase, block_n: int, what: str, hint: str = "", expected: Tensor | None = None
) -> None:
    """``out`` equals the gather reference within :func:`tolerance`; else the variant matched, or hints."""
    expected = case.reference() if expected is None else expected
    assert_shape(out, tuple(case.q.shape), what, "one output row per (sequence, query head): q's shape")
    assert_dtype(
        out, case.q.dtype, what, "return q's dtype: cast in the store, out.to(out_ptr.dtype.element_ty)"
    )
    got = out.detach().cpu().double()
    err = (got - expected.double()).abs()
    atol = tolerance(case, expected)
    if bool(torch.isfinite(got).all()) and float(err.max()) <= atol:
        return
    for message, candidate in paged_variants(case, block_n).items():
        if float((got - candidate).abs().max()) <= max(atol, 1e-4 * float(candidate.abs().max())):
            raise CheckFailed(f"{what} is wrong: {message}")
    b, h = (int(i) for i in torch.nonzero(~(err <= atol))[0][:2])
    if not bool(torch.isfinite(got).all()):
        problem = (
            f"it holds NaN or inf (first at sequence {b}, head {h}): a slot past seq_len or an unused "
            "block was read (they hold NaN in these tests), or exp overflowed (subtract the running max), "
            "or l stayed 0"
        )
    else:
        problem = f"max abs error {float(err.max()):.3g} (first at sequence {b}, head {h})"
    raise CheckFailed(f"{what} is wrong: {problem}" + (f"; {hint}" if hint else ""))


# --- strided pools and harmful block tables ---------------------------------------------------------


def kv_halves_view(case: PagedCase) -> PagedCase:
    """The same case with k_cache, v_cache the two halves of one (num_blocks, 2, block_size, H, D) tensor."""
    both = torch.stack([case.k_cache, case.v_cache], dim=1)
    return replace(
        case, k_cache=both[:, 0], v_cache=both[:, 1], note=_join(case.note, "k/v halves of one tensor")
    )


def padded_head_view(case: PagedCase, pad: int) -> PagedCase:
    """The same case with a pool whose heads are ``pad`` NaN numbers apart: (..., H, D + pad)[..., :D]."""
    d = case.k_cache.shape[-1]

    def widen(t: Tensor) -> Tensor:
        wide = torch.full((*t.shape[:-1], d + pad), float("nan"), dtype=t.dtype, device=t.device)
        wide[..., :d] = t
        return wide[..., :d]

    note = _join(case.note, f"pool rows padded: stride(2) = {d + pad}")
    return replace(case, k_cache=widen(case.k_cache), v_cache=widen(case.v_cache), note=note)


def scramble_unused_entries(
    case: PagedCase, seed: int, extra_columns: int = 0, huge: bool = False
) -> PagedCase:
    """Unused block-table entries (and ``extra_columns`` more) point at other sequences' blocks, or, with
    ``huge`` (interpreter only), far outside the pool."""
    table = case.block_table.cpu()
    block_size, num_blocks = case.k_cache.shape[1], case.k_cache.shape[0]
    gen = generator(seed)
    wide = torch.cat([table, torch.zeros(table.shape[0], extra_columns, dtype=table.dtype)], 1)
    for b, n in enumerate(case.seq_lens.cpu().tolist()):
        used = -(-n // block_size)
        free = wide.shape[1] - used
        if free <= 0:
            continue
        if huge:
            wide[b, used:] = 1 << 28
        else:
            wide[b, used:] = torch.randint(1, num_blocks, (free,), generator=gen, dtype=table.dtype)
    note = _join(case.note, "unused block-table entries point " + ("far outside the pool" if huge else "at "
                 "other sequences' blocks"))  # fmt: skip
    return replace(case, block_table=wide.to(case.block_table.device), note=note)


def q_head_major_view(case: PagedCase) -> PagedCase:
    """q as a (batch, num_heads, head_dim) view of a head-major (num_heads + 1, batch, head_dim) tensor
    (last head row NaN): strides (head_dim, batch * head_dim, 1). Reading q with its shape's strides, or
    writing a contiguous output with q's strides, stays inside both tensors: wrong numbers, no stray
    access."""
    b, h, d = case.q.shape
    wide = torch.full((h + 1, b, d), float("nan"), dtype=case.q.dtype, device=case.q.device)
    wide[:h] = case.q.transpose(0, 1)
    return replace(case, q=wide[:h].transpose(0, 1), note=_join(case.note, f"q is a head-major view, strides "
                   f"{tuple(wide[:h].transpose(0, 1).stride())}"))  # fmt: skip


def v_padded_view(case: PagedCase, pad: int) -> PagedCase:
    """v_cache alone a view of a pool with ``pad`` NaN numbers after each head (k_cache stays contiguous)."""
    v = case.v_cache
    wide = torch.full((*v.shape[:-1], v.shape[-1] + pad), float("nan"), dtype=v.dtype, device=v.device)
    wide[..., : v.shape[-1]] = v
    view = wide[..., : v.shape[-1]]
    note = f"v_cache strides {tuple(view.stride())}, k_cache strides {tuple(case.k_cache.stride())}"
    return replace(case, v_cache=view, note=_join(case.note, note))


def table_column_slice(case: PagedCase, seed: int, spare: int, hidden: int) -> PagedCase:
    """The block table as columns ``[:width + spare]`` of a table ``hidden`` columns wider still; the spare
    and hidden columns hold other sequences' blocks (valid ids a kernel must not follow)."""
    table = case.block_table.cpu()
    batch, width = table.shape
    num_blocks = case.k_cache.shape[0]
    gen = generator(seed)
    extra = torch.randint(1, num_blocks, (batch, spare + hidden), generator=gen, dtype=table.dtype)
    wide = torch.cat([table, extra], 1).to(case.block_table.device)
    view = wide[:, : width + spare]
    note = (
        f"block_table is columns [:{width + spare}] of a ({batch}, {width + spare + hidden}) table: "
        f"stride(0) = {view.stride(0)}"
    )
    return replace(case, block_table=view, note=_join(case.note, note))


def very_negative_scores(case: PagedCase, level: float) -> PagedCase:
    """Every score near ``-level`` (q . k / sqrt(head_dim) exact in float32: values on a 1/8 grid, dim 0 of
    every key 1 and of every query -level * sqrt(head_dim)). A running max started at 0 instead of -inf
    makes every exp(s - m) underflow to 0."""
    d = case.q.shape[-1]
    root = math.isqrt(d)
    if root * root != d:
        raise ValueError(f"exact scores need a square head_dim, got {d}")

    def grid(t: Tensor) -> Tensor:
        return torch.round(t.float() * 8) / 8

    q = grid(case.q)
    q[..., 0] = -level * root
    k = grid(case.k_cache)
    k[..., 0] = torch.where(torch.isnan(k[..., 0]), k[..., 0], torch.ones_like(k[..., 0]))
    dtype = case.q.dtype
    note = _join(case.note, f"every score near -{level:g}")
    return replace(case, q=q.to(dtype), k_cache=k.to(dtype), v_cache=grid(case.v_cache).to(dtype), note=note)


def _join(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def scale_heads(case: PagedCase, scales: list[float], note: str) -> PagedCase:
    """Query head h multiplied by ``scales[h]`` (sharp heads next to flat ones in one group)."""
    factor = torch.tensor(scales, dtype=torch.float32)[None, :, None].to(case.q.device)
    return replace(case, q=(case.q.float() * factor).to(case.q.dtype), note=_join(case.note, note))


# --- the exercise's checks --------------------------------------------------------------------------


def check_paged(
    fn: Callable[..., Any],
    case: PagedCase,
    block_n: int,
    name: str,
    hint: str = "",
    after_reads: Callable[[PagedRun, str], None] | None = None,
) -> tuple[Tensor, PagedRun]:
    """One call of a paged launcher: memory safety, a kernel, its reads, ``after_reads``, then the values."""
    what = f"{name}(..., block_n={block_n}) for {case.describe()}"
    run = run_paged(fn, case, block_n, what)
    assert_memory_safe(run, what)
    assert_kernel_ran(run, what)
    assert_reads_owned(run, case, what, hint)
    assert_no_stray_loads(run, what)
    if after_reads is not None:
        after_reads(run, what)
    assert_paged_close(run.result, case, block_n, what, hint)
    return run.result, run


_VISIBLE = (
    (dict(lens=(5, 23, 40), num_heads=6, num_kv_heads=2, block_size=8, seed=70), 16,
     "block_size 8 < block_n 16: a tile spans two blocks"),
    (dict(lens=(50, 7), num_heads=4, num_kv_heads=1, block_size=32, seed=71), 16,
     "block_size 32 > block_n 16: two tiles share one block"),
)  # fmt: skip


@graded("paged_decode", *REFERENCES)
def paged_decode_visible(fn: Callable[..., Any]) -> None:
    """Three and two sequences, group 3 and 4, blocks smaller and larger than a tile, NaN in unused slots."""
    for kwargs, block_n, note in _VISIBLE:
        check_paged(fn, paged_case(note=note, **kwargs), block_n, "paged_decode")
    print("paged_decode: visible tests passed")


_VIEWS_HINT = (
    "q is a view here (head-major) and v_cache's strides differ from k_cache's: read q with q.stride(), v "
    "with v_cache.stride() (never k_cache's), and store with the strides of the output you allocate, "
    "out.stride()"
)
TABLE_SLICE_HINT = (
    "block_table is a column slice of a wider table here: address row b with b * block_table.stride(0), not "
    "b * block_table.shape[1]"
)
NEGATIVE_HINT = (
    "every score is near -130 here: start the running max at -inf (m = float('-inf')), not 0: with m = 0 "
    "every exp(s - m) underflows to 0 and l stays 0"
)


def hidden_cases() -> list[tuple[PagedCase, int, str]]:
    """(case, block_n, hint): the sizes, dtypes, layouts and tables a learner never saw."""
    interp = interpreted()
    big = paged_case((30, 70), num_heads=4, num_kv_heads=2, head_dim=16, block_size=16, q_scale=60.0,
                     seed=75, note="scores of magnitude ~150")  # fmt: skip
    return [
        (padded_head_view(paged_case((1, 17, 33), num_heads=4, num_kv_heads=1, head_dim=24, block_size=4,
                                     seed=72, note="head_dim 24, block_size 4"), 8), 16,
         "head_dim 24 is not a power of two (BLOCK_D = 32 lanes: mask d >= head_dim), and the pool is a view "
         "with padded rows: use its strides"),
        (kv_halves_view(paged_case((100, 3), num_heads=3, num_kv_heads=1, head_dim=40, block_size=32, seed=73,
                                   note="head_dim 40, group 3")), 32,
         "k_cache and v_cache are views here: use their strides"),
        (scramble_unused_entries(paged_case((1, 9, 64, 17, 33), num_heads=2, num_kv_heads=1, block_size=8,
                                            seed=74, note="batch 5"), seed=1, extra_columns=2), 64,
         "entries past a sequence's last block are arbitrary: never follow them"),
        (big, 32, "scores reach ~150 here: subtract the running max before exp (exp(150) overflows float32)"),
        (paged_case((20, 45), num_heads=4, num_kv_heads=4, head_dim=32, block_size=16, dtype=torch.float16,
                    seed=76, note="group 1"), 32,
         "float16 in, float16 out; compute in float32 inside (.to(tl.float32))"),
        (paged_case((11, 26), num_heads=4, num_kv_heads=2, head_dim=8, block_size=8, seed=89,
                    note="head_dim 8"), 16,
         "head_dim 8 (BLOCK_D = 8 lanes; with tl.dot: " + DOT_SIZE_HINT + ")"),
        (q_head_major_view(v_padded_view(paged_case((9, 30), num_heads=4, num_kv_heads=2, block_size=8,
                                                    seed=90), 8)), 16, _VIEWS_HINT),
        (table_column_slice(paged_case((13, 26), num_heads=2, num_kv_heads=1, block_size=8, seed=91), seed=5,
                            spare=2, hidden=3), 16, TABLE_SLICE_HINT),
        (very_negative_scores(paged_case((21, 40), num_heads=4, num_kv_heads=2, block_size=8, seed=92), 130),
         16, NEGATIVE_HINT),
        *([(scramble_unused_entries(paged_case((3, 40), num_heads=2, num_kv_heads=1, block_size=8, seed=77),
                                    seed=2, extra_columns=1, huge=True), 16,
            "unused block-table entries hold huge ids here: follow an entry only for tokens n < seq_len")]
          if interp else []),
    ]  # fmt: skip


def hidden_no_aliasing(fn: Callable[..., Any], name: str) -> None:
    """Two calls: the first result must not change when the launcher runs again."""
    first_case = paged_case((12, 29), num_heads=4, num_kv_heads=2, block_size=8, seed=78)
    first = call(fn, *first_case.args, block_n=16, what=f"{name} (first of two calls)")
    copy = snapshot(first)
    second_case = paged_case((12, 29), num_heads=4, num_kv_heads=2, block_size=8, seed=79)
    call(fn, *second_case.args, block_n=16, what=f"{name} (second of two calls)")
    assert_unchanged(
        first, copy, f"the output of {name}",
        "return a new tensor from every call (torch.empty(q.shape, ...)), not a reused buffer",
    )  # fmt: skip


@graded("paged_decode", *REFERENCES)
def paged_decode_hidden(fn: Callable[..., Any]) -> None:
    """Non-power-of-two heads, head_dim 8, strided pools, q and v views, a sliced block table, batch 5,
    harmful tables, scores ~150 and ~-130, fp16, no aliasing."""
    for case, block_n, hint in hidden_cases():
        check_paged(fn, case, block_n, "paged_decode", hint)
    hidden_no_aliasing(fn, "paged_decode")
    print("paged_decode: hidden tests passed")
