"""Exercise `softmax_rows`: a row-wise softmax in Triton, one program per row.

Each case compares the learner's launcher with ``torch.softmax`` in float32 on the same rows: widths
that are not powers of two (a masked lane read as 0 adds ``exp(0 - max)`` to the sum), a width past
1024 (a block fixed at 1024 drops columns), scores of 1e4 (no max subtraction overflows), rows whose
scores are all below -100 (a masked lane read as 0 wins the max, every exp underflows), float16 in
and out, and ``x`` as a slice of a wider tensor whose other columns hold NaN (the row stride is not
the number of columns). In Triton's interpreter the checks also record what the kernel loads: no
kernel launched (a torch answer), a program count other than the number of rows, and any load
outside ``x``'s rows and columns fail with a message that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, expect
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, assert_unchanged, call_pure, snapshot
from ._cases import device, traced

REFERENCES = (
    "kvlib.kernels.softmax.softmax_rows",
    "kvlib.kernels.softmax._softmax_rows_kernel",  # launched from the learner's own launcher
)

_FP16_RTOL = 2e-3  # per element, relative: fp32 inside then one rounding to fp16 is ~5e-4


def _describe(x: Tensor, note: str) -> str:
    rows, cols = x.shape
    layout = "" if x.stride(0) == cols else f", a slice with x.stride(0) = {x.stride(0)}"
    dtype = str(x.dtype).removeprefix("torch.")
    return f"softmax_rows(x) for x of shape ({rows}, {cols}) {dtype}{layout}" + (f" ({note})" if note else "")


def _check_trace(trace: Any, x: Tensor, what: str) -> None:
    expect(
        len(trace.launches) > 0,
        f"{what}: no Triton kernel was launched; the softmax must be computed by your kernel "
        "(softmax_rows_kernel[(rows,)](...)), not with torch in the launcher",
    )
    rows, cols = x.shape
    for n, launch in enumerate(trace.launches):
        programs = len(trace.programs(launch=n))
        expect(
            programs == rows,
            f"{what}: your launch {launch.kernel}[{launch.grid}] ran {programs} programs for {rows} rows; "
            "launch one program per row: grid (x.shape[0],)",
        )
    loaded = trace.loaded("x")
    if loaded.numel() == 0:  # the launcher copied x (x.contiguous()): its own copy, nothing to check here
        return
    stride = x.stride(0)
    row, col = torch.div(loaded, stride, rounding_mode="floor"), loaded % stride
    bad = (loaded < 0) | (row >= rows) | (col >= cols)
    if bool(bad.any()):
        i, r, c = (int(t[bad][0]) for t in (loaded, row, col))
        if 0 <= r < rows:
            where = (
                f"column {c} of row {r} (x has {cols} columns; memory past them belongs to something else)"
            )
        else:
            where = f"element {i} from x's start, outside x's {rows} rows"
        raise CheckFailed(
            f"{what}: your kernel loaded {where}: lanes past n_cols must be masked (mask = cols < n_cols in "
            "tl.load and tl.store), and rows start at row * x.stride(0)"
        )


def _wrong_variants(x: Tensor) -> dict[str, Tensor]:
    """The classic mistakes, recomputed in float32 on the CPU (only on data free of NaN)."""
    xf = x.detach().float().cpu()
    rows, cols = xf.shape
    block = 1 << (cols - 1).bit_length()
    padded = torch.zeros(rows, block)
    padded[:, :cols] = xf
    variants = {
        "masked lanes load other=0.0, so each adds exp(0 - max) to the sum (and 0 can win the max of a "
        "negative row): load them as float('-inf'), which adds exp(-inf) = 0": torch.softmax(padded, -1)[
            :, :cols
        ],
        "each row is divided by the sum of the whole tensor, not of its own row": torch.exp(xf - xf.max())
        / torch.exp(xf - xf.max()).sum(),
        "the softmax runs down the columns (dim 0), not along each row": torch.softmax(xf, 0),
    }
    if x.stride(0) != cols and x.stride(1) == 1:
        flat = torch.as_strided(x.detach(), (rows, cols), (cols, 1)).float().cpu()
        variants[
            "rows are read at row * n_cols, but x is a slice of a wider tensor: step rows by x.stride(0) "
            "(and write the output at row * out.stride(0))"
        ] = torch.softmax(flat, -1)
    return variants


def _prefix_only(out: Tensor, x: Tensor) -> int | None:
    """The width P < cols if only the first P columns of each row were softmaxed (P a power of two, or
    the number of rows), while the columns after them are wrong."""
    xf, (rows, cols) = x.detach().float().cpu(), x.shape
    widths = sorted(
        {1 << i for i in range(cols.bit_length()) if 1 << i < cols} | ({rows} if rows < cols else set())
    )
    for p in widths:
        head_ok = torch.allclose(out[:, :p], torch.softmax(xf[:, :p], -1), atol=1e-5)
        if head_ok and not torch.allclose(out[:, p:], torch.softmax(xf, -1)[:, p:], atol=1e-5):
            return p
    return None


def _written_with_x_stride(out: Tensor, x: Tensor) -> int | None:
    """out.stride(0) when ``out`` holds row r of the softmax at r * x.stride(0) of its storage (the stores
    used x's row stride for an output with other strides) in every such place inside it, else None."""
    rows, cols = x.shape
    sx, so = x.stride(0), out.stride(0)
    if rows < 2 or sx == so or out.stride(1) != 1 or out.storage_offset() != 0:
        return None
    flat = torch.as_strided(out.detach(), (out.untyped_storage().nbytes() // out.element_size(),), (1,))
    flat = flat.float().cpu()
    ref = torch.softmax(x.detach().float().cpu(), dim=-1)
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    offs = r * sx + c
    inside = offs < flat.numel()
    if not bool((inside & (r > 0)).any()):
        return None
    close = (flat[offs[inside]] - ref[inside]).abs() <= 1e-3 * ref[inside].abs() + 1e-6
    return so if bool(close.all()) else None


def _all_very_negative_rows(got: Tensor, x: Tensor) -> int | None:
    """The first row holding NaN whose scores are all below -100 (exp of them underflows), else None."""
    xf = x.detach().float().cpu()
    bad = torch.isnan(got).any(-1) & (xf.amax(-1) < -100)
    return int(torch.nonzero(bad)[0]) if bool(bad.any()) else None


def _check_case(
    fn: Callable[..., Any], x: Tensor, note: str = "", diagnose_on: Tensor | None = None
) -> Tensor:
    """Run ``fn(x)`` (traced in the interpreter), check it, return its output.

    ``diagnose_on``: a NaN-free tensor laid out like ``x`` to recompute wrong variants on, when ``x``'s
    surroundings hold NaN.
    """
    what = _describe(x, note)
    with traced(x=x) as trace:
        try:
            out = call_pure(fn, x, what=what)
        except CheckFailed as exc:
            if "power of 2" in str(exc):
                raise CheckFailed(
                    f"{exc}: tl.arange(0, BLOCK) needs a power of two; use "
                    "BLOCK = triton.next_power_of_2(x.shape[1]) and mask the lanes past n_cols"
                ) from None
            raise
    if trace is not None:
        _check_trace(trace, x, what)
    assert_shape(out, tuple(x.shape), f"{what}: the result", "one output per input element")
    assert_dtype(out, x.dtype, f"{what}: the result", "store out.to(out_ptr.dtype.element_ty) into a tensor "
                 "created with dtype=x.dtype (compute in float32 inside the kernel only)")  # fmt: skip
    expect(
        str(out.device) == str(x.device),
        f"{what}: the result must be on x's device {x.device}, got {out.device}",
    )
    got = out.detach().float().cpu()
    ref = torch.softmax(x.detach().float().cpu(), dim=-1)
    out_stride = _written_with_x_stride(out, x)
    if out_stride is not None:
        raise CheckFailed(
            f"{what} is wrong: your kernel wrote row r of the result at r * x.stride(0) = r * {x.stride(0)}, "
            f"but the output you created has rows {out_stride} elements apart (out.stride(0) = "
            f"{out_stride}): x's row stride is not the output's; pass out.stride(0) for the stores (the rows "
            "written at x's stride land in the wrong place or past the end of out)"
        )
    prefix = _prefix_only(got, x)
    if prefix is not None:
        raise CheckFailed(
            f"{what} is wrong: only the first {prefix} columns of each row were computed and written; every "
            "column must be: n_cols = x.shape[1] and BLOCK = triton.next_power_of_2(x.shape[1]), not a fixed "
            "size"
        )
    if bool(torch.isnan(got).any()) or bool(torch.isinf(got).any()):
        negative = _all_very_negative_rows(got, x)
        if negative is not None:
            raise CheckFailed(
                f"{what}: row {negative} of the result holds NaN; every score of that row is below -100 "
                f"(up to {x[negative].detach().float().max().item():.0f}), so exp(x - m) underflows to 0 "
                "unless m is the maximum of the row's own n_cols values: with other=0.0 the masked lanes' 0 "
                "wins the max and the sum is 0 (0 / 0): load them as float('-inf'), and subtract the row's "
                "maximum before exp"
            )
        big = x.detach().float().abs().max().item()
        if big > 100:
            raise CheckFailed(
                f"{what}: the result holds inf or NaN for scores of magnitude up to {big:.0f}: exp overflows "
                "past ~88 in float32; subtract the row's maximum before exp (exp(x - max) <= 1)"
            )
        if x.stride(0) != x.shape[1]:
            raise CheckFailed(
                f"{what}: the result holds NaN; x is a slice of a wider tensor whose other columns hold NaN: "
                "step rows by x.stride(0) (not n_cols) and mask the lanes past n_cols"
            )
        raise CheckFailed(f"{what}: the result holds inf or NaN; masked lanes must load float('-inf'), and "
                          "every lane past n_cols must be masked")  # fmt: skip
    if x.dtype == torch.float16:
        err = (got - ref).abs()
        if bool((err > _FP16_RTOL * ref.abs() + 1e-6).any()):
            raise CheckFailed(
                f"{what}: the result is off by up to {err.max().item():.2g} (relative error "
                f"{(err / ref.abs().clamp_min(1e-6)).max().item():.2g}); a float16 result computed in "
                "float32 is off by at most 5e-4 relative: convert with .to(tl.float32) after tl.load and "
                "compute exp, max and sum in float32"
            )
        return out
    err = (got - ref).abs().max().item()
    if err <= 1e-6 + 1e-5 * ref.abs().max().item():
        return out
    probe = x if diagnose_on is None else diagnose_on
    for message, candidate in _wrong_variants(probe).items():
        if (got - candidate).abs().max().item() <= 1e-5:
            raise CheckFailed(f"{what} is wrong (max abs error {err:.3g}): {message}")
    sums = got.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed(
            f"{what} is wrong (max abs error {err:.3g}): rows sum to "
            f"{sums.min().item():.4g}..{sums.max().item():.4g}, not 1: "
            "divide exp(x - max) by the sum over the row's n_cols lanes only (masked lanes must add 0)"
        )
    raise CheckFailed(f"{what} is wrong (max abs error {err:.3g}); compare with torch.softmax(x, dim=-1)")


def _slice_of_wider(
    gen: torch.Generator,
    rows: int,
    cols: int,
    width: int,
    start: int,
    fill: float | None,
    dtype: torch.dtype = torch.float32,
    first_row: int = 0,
) -> tuple[Tensor, Tensor]:
    """x = base[first_row:first_row + rows, start:start + cols] of a (rows + 2, width) base whose other
    elements hold `fill` (NaN) or random values (fill None); also the same slice of a NaN-free copy."""
    base = randn(gen, first_row + rows + 1, width) * 2
    clean = base.clone()
    if fill is not None:
        base.fill_(fill)
        base[first_row : first_row + rows, start : start + cols] = clean[
            first_row : first_row + rows, start : start + cols
        ]
    base, clean = base.to(dtype).to(device()), clean.to(dtype).to(device())
    window = (slice(first_row, first_row + rows), slice(start, start + cols))
    return base[window], clean[window]


@graded("softmax_rows", *REFERENCES)
def softmax_rows_visible(fn: Callable[..., Any]) -> None:
    """4 rows of 50 columns, then 3 rows of 37 columns sliced out of a wider tensor holding NaN."""
    gen = generator(70)
    _check_case(fn, (randn(gen, 4, 50) * 3).to(device()), "50 columns: not a power of two")
    x, clean = _slice_of_wider(gen, 3, 37, 80, 8, float("nan"))
    _check_case(fn, x, "columns 8..44 of a (4, 80) tensor whose other columns hold NaN", diagnose_on=clean)
    print("softmax_rows: visible tests passed")


def _hidden_sizes(fn: Callable[..., Any], gen: torch.Generator) -> None:
    dev = device()
    _check_case(fn, torch.tensor([[0.5]], device=dev), "one row, one column: the answer is 1.0")
    _check_case(fn, torch.full((6, 1), -3.0, device=dev), "6 rows of one column")
    _check_case(fn, (randn(gen, 1, 7) * 2).to(dev), "one row")
    _check_case(fn, (-randn(gen, 5, 13).abs() * 4 - 2).to(dev), "every score negative, 13 columns")
    _check_case(fn, (randn(gen, 3, 1024) * 3).to(dev), "1024 columns, exactly a power of two")
    _check_case(fn, (randn(gen, 4, 1500) * 3).to(dev), "1500 columns: past 1024")
    _check_case(fn, (randn(gen, 37, 33) * 3).to(dev), "37 rows")
    peaked = randn(gen, 3, 200)
    peaked[torch.arange(3), torch.tensor([0, 77, 199])] = 40.0  # one column takes nearly all the weight
    _check_case(fn, peaked.to(dev), "each row peaked on one column")


def _hidden_magnitude(fn: Callable[..., Any], gen: torch.Generator) -> None:
    dev = device()
    _check_case(fn, (randn(gen, 4, 300) * 1e4).to(dev), "scores of magnitude 1e4")
    low = randn(gen, 3, 100) * 3
    low[1] -= 200.0
    low[2] = low[2] * 10 - 1000.0
    _check_case(fn, low.to(dev), "100 columns; rows 1 and 2 hold only scores below -100")
    big16 = (randn(gen, 3, 129) * 1e4).clamp(-6e4, 6e4).to(torch.float16).to(dev)
    _check_case(fn, big16, "float16 scores of magnitude 1e4")
    _check_case(fn, (randn(gen, 6, 777) * 4).to(torch.float16).to(dev), "float16 in, float16 out")
    _check_case(
        fn, (randn(gen, 2, 3000) * 0.01).to(torch.float16).to(dev), "float16, 3000 nearly equal scores"
    )


def _hidden_layouts(fn: Callable[..., Any], gen: torch.Generator) -> None:
    x, clean = _slice_of_wider(gen, 4, 50, 100, 0, None)
    _check_case(fn, x, "columns 0..49 of a (5, 100) tensor: x.stride(0) = 100")
    x, clean = _slice_of_wider(gen, 5, 21, 64, 30, float("nan"), first_row=2)
    _check_case(
        fn, x, "rows 2..6, columns 30..50 of a tensor whose other elements hold NaN", diagnose_on=clean
    )
    x, clean = _slice_of_wider(gen, 3, 100, 300, 150, float("nan"), torch.float16)
    _check_case(fn, x, "a float16 slice of a wider tensor holding NaN", diagnose_on=clean)


def _hidden_no_aliasing(fn: Callable[..., Any], gen: torch.Generator) -> None:
    dev = device()
    first = _check_case(fn, (randn(gen, 3, 40) * 2).to(dev), "first of two calls with the same shape")
    copy = snapshot(first)
    _check_case(fn, (randn(gen, 3, 40) * 2).to(dev), "second of two calls with the same shape")
    assert_unchanged(first, copy, "the tensor returned by softmax_rows",
                     "return a new tensor from every call (torch.empty inside the launcher), not a buffer "
                     "kept between calls")  # fmt: skip


@graded("softmax_rows", *REFERENCES)
def softmax_rows_hidden(fn: Callable[..., Any]) -> None:
    """Edge widths and heights, past 1024 columns, 1e4 scores, rows of scores all below -100, float16,
    strided slices, no aliasing."""
    gen = generator(707)
    _hidden_sizes(fn, gen)
    _hidden_magnitude(fn, gen)
    _hidden_layouts(fn, gen)
    _hidden_no_aliasing(fn, gen)
    print("softmax_rows: hidden tests passed")
