"""Exercises `pack_int4` and `unpack_int4`: two 4-bit codes per byte, element 2j in the low nibble.

A packer and an unpacker that both swap the nibbles still round-trip, so every check compares
bytes: hand-written layouts first (the docstring's own example, every byte value), then seeded
random codes against kvlib's reference, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_shape, call, diagnose, expect
from ..delegation import graded
from ..fixtures import generator
from ..properties import assert_dtype, assert_unchanged, call_pure, snapshot

PACK_REFERENCES = ("kvlib.quant.pack_int4", "kvlib.quant.pack_codes")
UNPACK_REFERENCES = ("kvlib.quant.unpack_int4", "kvlib.quant.unpack_codes")

_ORDER = (
    "element 2j goes in the low nibble (bits 0-3) of byte j, element 2j + 1 in the high nibble (bits 4-7)"
)

# Hand-written layouts: (codes, packed bytes), written out by hand, never computed.
_LAYOUTS = [
    ([3, 10], [0xA3]),  # the docstring's example: 163
    ([10, 3], [0x3A]),
    ([0, 15, 15, 0, 1, 2], [0xF0, 0x0F, 0x21]),
    ([15, 15, 0, 0, 7, 8, 8, 7], [0xFF, 0x00, 0x87, 0x78]),
]
# Two rows of a [2, 2, 4] batch, each pair distinct: a packer that mixes rows gives other bytes.
_BATCH_CODES = [[[1, 2, 3, 4], [5, 6, 7, 8]], [[9, 10, 11, 12], [13, 14, 15, 0]]]
_BATCH_BYTES = [[[0x21, 0x43], [0x65, 0x87]], [[0xA9, 0xCB], [0xED, 0x0F]]]


def _u8(values: Any) -> Tensor:
    return torch.tensor(values, dtype=torch.uint8)


def _random_codes(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 16, shape, generator=g).to(torch.uint8)


def _call(fn: Callable[..., Any], x: Tensor, name: str, what: str) -> Any:
    """`call_pure`, plus the input that broke a `.view` (a transposed tensor cannot be viewed flat)."""
    try:
        return call_pure(fn, x, what=name)
    except CheckFailed as exc:
        if "view" in str(exc) and "in place" not in str(exc):
            raise CheckFailed(
                f"{exc} (for {what}): .view needs a contiguous tensor; use .reshape (it copies when it must)"
            ) from None
        raise


def _pack_reference(codes: Tensor) -> Tensor:
    from kvlib.quant import pack_int4

    return pack_int4(codes)


def _unpack_reference(packed: Tensor) -> Tensor:
    from kvlib.quant import unpack_int4

    return unpack_int4(packed)


# --- pack_int4 -------------------------------------------------------------------------------------


def _pack_variants(codes: Tensor) -> dict[str, Tensor]:
    even, odd = codes[..., 0::2], codes[..., 1::2]
    half = codes.shape[-1] // 2
    return {
        f"the nibbles are swapped: {_ORDER}": odd | (even << 4),
        "the high nibble is missing: shift codes[..., 2j + 1] left by 4 before combining "
        "(even | (odd << 4))": even | odd,
        "you paired the first half of the row with the second half; pair the neighbours codes[..., 2j] "
        "and codes[..., 2j + 1] (codes[..., 0::2] and codes[..., 1::2])": codes[..., :half]
        | (codes[..., half:] << 4),
        "you paired the first half of the row with the second half and swapped the nibbles; pair the "
        f"neighbours 2j and 2j + 1: {_ORDER}": codes[..., half:] | (codes[..., :half] << 4),
    }


def _check_pack(fn: Callable[..., Any], codes: Tensor, expected: Tensor, what: str) -> Tensor:
    out = _call(fn, codes, "pack_int4", what)
    expect(
        isinstance(out, torch.Tensor),
        f"pack_int4 must return a torch.Tensor for {what}, got {type(out).__name__}",
    )
    shape = (*codes.shape[:-1], codes.shape[-1] // 2)
    if tuple(out.shape) != shape and out.numel() == codes.numel() // 2:
        raise CheckFailed(
            f"pack_int4 returned shape {tuple(out.shape)} for {what}, expected {shape}: pack along the last "
            "axis only and keep every leading axis"
        )
    assert_shape(
        out, shape, f"pack_int4's result for {what}", "two codes per byte along the last axis: [..., D // 2]"
    )
    assert_dtype(
        out,
        torch.uint8,
        f"pack_int4's result for {what}",
        "a byte holds two nibbles: return torch.uint8 (0..255)",
    )
    if not torch.equal(out, expected):
        mistake = diagnose(out, _pack_variants(codes), atol=0)
        raise CheckFailed(
            f"pack_int4 is wrong for {what}: " + (mistake or f"{_ORDER}; e.g. [3, 10] -> 0xA3 = 163")
        )
    return out


def _expect_value_error(fn: Callable[..., Any], codes: Tensor, why: str, masked_hint: str = "") -> None:
    try:
        out = fn(codes.clone())
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailed("pack_int4 is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - any other error names the one promised
        raise CheckFailed(f"pack_int4 must raise ValueError {why}, got {type(exc).__name__}: {exc}") from None
    raise CheckFailed(
        f"pack_int4 must raise ValueError {why}, but it returned "
        + (f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"shape {tuple(out.shape)}")
        + masked_hint
    )


@graded("pack_int4", *PACK_REFERENCES)
def pack_int4_visible(fn: Callable[..., Any]) -> None:
    """The docstring's example, hand-written layouts, and a batch with distinct rows."""
    for codes, packed in _LAYOUTS:
        _check_pack(fn, _u8(codes), _u8(packed), f"codes {codes}")
    _check_pack(fn, _u8(_BATCH_CODES), _u8(_BATCH_BYTES), f"codes of shape [2, 2, 4] {_BATCH_CODES}")
    print("pack_int4: visible tests passed")


@graded("pack_int4", *PACK_REFERENCES)
def pack_int4_hidden(fn: Callable[..., Any]) -> None:
    """Every pair of codes, leading axes, long rows, a non-contiguous input, the two ValueErrors."""
    # All 256 pairs (a, b) in one row: byte 16 * b + a; the top of the range, 15, included.
    pairs = torch.cartesian_prod(torch.arange(16), torch.arange(16)).to(torch.uint8)  # (256, 2): (a, b)
    every = _u8([16 * b + a for a, b in pairs.tolist()])
    _check_pack(fn, pairs.flatten(), every, "every pair of codes (a, b) in one row, expecting 16 * b + a")
    _check_pack(fn, pairs, every[:, None], "every pair of codes as 256 rows of 2")
    g = generator(404)
    for shape in [(2, 3, 5, 8), (3, 130), (1, 2, 3, 2, 6), (4, 2), (2, 2, 17, 32)]:
        codes = _random_codes(g, *shape)
        _check_pack(fn, codes, _pack_reference(codes), f"random codes of shape {shape}")
    # Codes laid out [B, D, T] and transposed to [B, T, D]: the last axis is not contiguous.
    codes = _random_codes(g, 2, 6, 5).transpose(-1, -2)
    _check_pack(fn, codes, _pack_reference(codes), "a non-contiguous input (codes.transpose(-1, -2))")
    for shape in [(3,), (2, 5), (4, 2, 1)]:
        _expect_value_error(
            fn, _random_codes(g, *shape), f"for an odd last axis (codes of shape {shape}): two codes per byte"
        )
    masked = (
        ": a code above 15 spills into its neighbour's nibble (or is silently cut to its low 4 bits); check "
        "codes > 15 anywhere in the tensor and raise"
    )
    for value, where in [(16, (1, 2, 3)), (255, (0, 1, 6)), (200, (1, 0, 0))]:
        codes = _random_codes(g, 2, 3, 8)
        codes[where] = value
        _expect_value_error(
            fn, codes, f"for a code of {value} (at index {where} of a [2, 3, 8] input)", masked
        )
    print("pack_int4: hidden tests passed")


# --- unpack_int4 -----------------------------------------------------------------------------------


def _unpack_variants(packed: Tensor) -> dict[str, Tensor]:
    low, high = packed & 0x0F, packed >> 4
    n = packed.shape[-1]
    lead = packed.shape[:-1]
    signed_high = (packed.to(torch.int8) >> 4).to(torch.uint8)
    return {
        f"the nibbles are swapped: {_ORDER}": torch.stack([high, low], -1).reshape(*lead, 2 * n),
        "all low nibbles come first, then all high nibbles: interleave them (stack on a new last axis, "
        "then reshape to [..., 2 * n])": torch.cat([low, high], -1),
        "all high nibbles come first, then all low nibbles: interleave them, low nibble first (stack on a "
        "new last axis, then reshape to [..., 2 * n])": torch.cat([high, low], -1),
        "bytes of 128 and above give a high nibble above 15: shifting an int8 (signed) tensor copies the "
        "sign bit into the top bits; shift the uint8 bytes, or mask the result with & 0x0F": torch.stack(
            [low, signed_high], -1
        ).reshape(*lead, 2 * n),
        "the high nibble is not shifted down: use packed >> 4 (or // 16), not packed & 0xF0": torch.stack(
            [low, packed & 0xF0], -1
        ).reshape(*lead, 2 * n),
        "the low nibble is not masked: use packed & 0x0F (or % 16), not the whole byte": torch.stack(
            [packed, high], -1
        ).reshape(*lead, 2 * n),
    }


def _check_unpack(fn: Callable[..., Any], packed: Tensor, expected: Tensor, what: str) -> Tensor:
    out = _call(fn, packed, "unpack_int4", what)
    expect(
        isinstance(out, torch.Tensor),
        f"unpack_int4 must return a torch.Tensor for {what}, got {type(out).__name__}",
    )
    shape = (*packed.shape[:-1], 2 * packed.shape[-1])
    if tuple(out.shape) != shape and out.numel() == 2 * packed.numel():
        hint = (
            "stack low and high on a new last axis, then reshape to [..., 2 * n]: every leading axis stays"
            if tuple(out.shape) == (*packed.shape, 2)
            else "unpack along the last axis only and keep every leading axis"
        )
        raise CheckFailed(
            f"unpack_int4 returned shape {tuple(out.shape)} for {what}, expected {shape}: {hint}"
        )
    assert_shape(out, shape, f"unpack_int4's result for {what}", "two codes per byte: [..., 2 * n]")
    if not torch.equal(out.to(torch.int64), expected.to(torch.int64)):
        variants = {k: v.to(torch.int64) for k, v in _unpack_variants(packed).items()}
        mistake = diagnose(out.to(torch.int64), variants, atol=0) if not out.dtype.is_floating_point else None
        raise CheckFailed(
            f"unpack_int4 is wrong for {what}: " + (mistake or f"{_ORDER}; e.g. 0xA3 = 163 -> [3, 10]")
        )
    assert_dtype(
        out, torch.uint8, f"unpack_int4's result for {what}", "codes 0..15 are stored as torch.uint8"
    )
    return out


@graded("unpack_int4", *UNPACK_REFERENCES)
def unpack_int4_visible(fn: Callable[..., Any]) -> None:
    """The docstring's example, hand-written layouts, and a batch with distinct rows."""
    for codes, packed in _LAYOUTS:
        _check_unpack(fn, _u8(packed), _u8(codes), f"bytes {[hex(b) for b in packed]}")
    _check_unpack(fn, _u8(_BATCH_BYTES), _u8(_BATCH_CODES), "bytes of shape [2, 2, 2]")
    print("unpack_int4: visible tests passed")


@graded("unpack_int4", *UNPACK_REFERENCES)
def unpack_int4_hidden(fn: Callable[..., Any]) -> None:
    """Every byte value, leading axes, odd and long rows, a non-contiguous input, no shared output."""
    every = torch.arange(256).to(torch.uint8)
    expected = _u8([[b % 16, b // 16][i] for b in range(256) for i in (0, 1)])  # low nibble first
    _check_unpack(fn, every, expected, "every byte value 0..255 in one row")
    _check_unpack(fn, every.reshape(16, 16), expected.reshape(16, 32), "every byte value as 16 rows of 16")
    g = generator(405)
    for shape in [(2, 3, 5, 4), (3, 65), (1, 2, 3, 2, 3), (4, 1), (2, 2, 17, 16)]:
        packed = _random_codes(g, *shape) | (_random_codes(g, *shape) << 4)
        _check_unpack(fn, packed, _unpack_reference(packed), f"random bytes of shape {shape}")
    packed = torch.randint(0, 256, (2, 6, 5), generator=g).to(torch.uint8).transpose(-1, -2)
    _check_unpack(fn, packed, _unpack_reference(packed), "a non-contiguous input (packed.transpose(-1, -2))")
    # The first result must not change when the function runs again on other bytes of the same shape.
    first_in = torch.randint(0, 256, (2, 3, 4), generator=g).to(torch.uint8)
    first = call(fn, first_in.clone(), what="unpack_int4")
    copy = snapshot(first)
    call(fn, torch.randint(0, 256, (2, 3, 4), generator=g).to(torch.uint8), what="unpack_int4")
    assert_unchanged(
        first,
        copy,
        "unpack_int4's result",
        "it shares memory with a buffer or an input the next call overwrites",
    )
    print("unpack_int4: hidden tests passed")
