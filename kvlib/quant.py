"""Quantization primitives for the KV cache (chapter 04): integers in, a scale (and offset) beside them.

A cache tensor has the layout ``[..., T, D]`` (``[B, num_kv_heads, T, head_dim]`` in the cache). To
store it in ``b`` bits we split it into groups of ``G`` neighbouring elements, give each group a
floating-point ``scale`` (and, for the asymmetric schemes, an offset), and keep one small integer
code per element. Three schemes, with ``L = 2^b - 1`` code steps:

- ``"symmetric"``: ``s = max|x| / qmax`` with ``qmax = 2^(b-1) - 1``; ``q = clamp(round(x / s), -qmax,
  qmax)``; ``x_hat = q * s``. Codes use the restricted range ``[-qmax, qmax]`` (-127..127, -7..7,
  -1..1), not ``[-qmax - 1, qmax]``: the grid is symmetric around 0, so ``+max|x|`` and ``-max|x|``
  are both on it and negating a tensor negates its codes. The price is one unused level, which at
  2 bits is a third of the grid (3 values, not 4): that is why 2-bit caches are asymmetric.
- ``"asymmetric"`` (integer zero-point, as PyTorch's quantized tensors): the range ``[lo, hi]`` is
  ``[min(x), max(x)]`` widened to include 0; ``s = (hi - lo) / L``; ``z = round(-lo / s)`` in
  ``[0, L]``; ``q = clamp(round(x / s) + z, 0, L)``; ``x_hat = (q - z) * s``. Widening to 0 keeps
  ``z`` a valid code and makes 0.0 exact. The clamp is needed: ``round(x / s) + z`` can reach
  ``L + 1`` (e.g. ``x / s = 13.5``, ``z = 2`` rounds to 16 at 4 bits), which would wrap around in
  the packed nibble.
- ``"kivi"`` (KIVI, Liu et al. 2024: the group minimum kept in floating point): ``lo = min(x)``,
  ``s = (max(x) - lo) / L``; ``q = clamp(round((x - lo) / s), 0, L)``; ``x_hat = q * s + lo``. No
  widening, so a group far from 0 keeps all ``2^b`` levels for its own range.

Error bound (round to nearest): ``|x - x_hat| <= s / 2`` elementwise for every scheme, in exact
arithmetic; ``dequantize`` computes in float32 (float64 for a float64 input) and rounds to the input
dtype, which adds at most half an ulp of that dtype. ``x_hat`` is clamped to the dtype's largest
finite value: a scale rounded up can put ``qmax * s`` just past it (a row of 65504s in fp16), and
the clamp only moves ``x_hat`` towards ``x``.

Granularity, for ``x`` of shape ``[..., T, D]``:

- ``"per_token"``: each token's ``D`` channels share a scale (groups of ``G`` channels with
  ``group_size=G``): scales ``[..., T, D / G]``. KIVI quantizes values this way.
- ``"per_channel"``: each channel's ``T`` tokens share a scale (groups of ``G`` consecutive tokens):
  scales ``[..., T / G, D]``. KIVI quantizes keys this way, because a few key channels are much
  larger than the rest and a per-token scale would be set by those outliers.

``G`` must divide the axis it runs along (``group_size=None`` means the whole axis).

Hard input, defined: the scale never drops below the smallest positive number its dtype can hold
(``2^-24``, a subnormal, for fp16) nor below the smallest normal number of the float32 arithmetic,
so an all-zero group round-trips to exact zeros, a tiny range never divides by zero or by an
imprecise subnormal, and a small but ordinary fp16 group (``max|x| = 1e-3``) keeps the step it needs.
Under ``"kivi"`` a constant group round-trips exactly (``x_hat = 0 * s + lo``); under the other
schemes it obeys the same ``s / 2`` bound (``qmax * fl(c / qmax)`` is not always ``c``). A group
whose range ``hi - lo`` overflows the arithmetic (bf16 or fp32 values of both signs near 3.4e38) is
a ValueError, as are NaN and inf (naming the index of the first one): no KV cache holds such values,
and a scale of inf would turn the whole group into NaN. The input is never modified;
``dequantize`` returns the input's dtype.

Storage: codes are ``uint8``, packed along the last axis (see :func:`pack_codes`): 8-bit one per
byte, 4-bit two per byte, 2-bit four per byte. Symmetric codes are stored with an offset of
``2^(b-1)`` (``-7..7`` as ``1..15``). Scales and KIVI mins are kept in the input's dtype (fp16 for an
fp16 cache, as KIVI does), computed in float32 and rounded up to that dtype; zero-points are
``uint8``.

:func:`quantize_fp8` is the comparison row: ``torch.float8_e4m3fn`` with one float32 scale per
tensor (a float format: relative, not absolute, error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kvlib.validate import describe, require_int, require_tensor

__all__ = [
    "BITS",
    "FLOAT_DTYPES",
    "FP8_MAX",
    "GRANULARITIES",
    "SCHEMES",
    "STORAGE_DTYPES",
    "QuantizedTensor",
    "check_bits",
    "check_key_granularity",
    "check_scheme",
    "check_storage_dtype",
    "compare_rows",
    "dequantize",
    "layout_errors",
    "pack_codes",
    "pack_int4",
    "quantize",
    "quantize_fp8",
    "quantize_groups",
    "quantize_int8",
    "quantize_kv",
    "unpack_codes",
    "unpack_int4",
    "value_group_size",
]

BITS = (2, 4, 8)
SCHEMES = ("symmetric", "asymmetric", "kivi")
GRANULARITIES = ("per_token", "per_channel")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # what can be quantized
FP8_MAX = 448.0  # largest finite torch.float8_e4m3fn
STORAGE_DTYPES = (torch.bfloat16, torch.float16, torch.float8_e4m3fn)  # what FloatKVCache stores in


@dataclass(frozen=True, eq=False)  # eq=False: == on tensors is elementwise, not a bool
class QuantizedTensor:
    """What a quantized tensor is: packed codes plus what it takes to turn them back into numbers.

    ``codes``: uint8 ``[..., T, ceil(D * bits / 8)]`` (float8_e4m3fn ``shape`` for ``"fp8"``);
    ``scales``: ``[..., T, D / G]`` per token, ``[..., T / G, D]`` per channel, ``[]`` for fp8;
    ``zero_points`` (uint8, ``"asymmetric"`` only) and ``mins`` (``"kivi"`` only): shaped like ``scales``.
    """

    codes: Tensor
    scales: Tensor
    zero_points: Tensor | None
    mins: Tensor | None
    bits: int
    scheme: str  # "symmetric", "asymmetric", "kivi" or "fp8"
    granularity: str  # "per_token", "per_channel" or "per_tensor" (fp8)
    group_size: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    def dequantize(self) -> Tensor:
        """The tensor back, ``shape`` and ``dtype`` as given to quantize (see the module docstring)."""
        compute = _compute_dtype(self.dtype)
        if self.scheme == "fp8":
            return _clamped(self.codes.to(compute) * self.scales.to(compute), self.dtype)
        codes = unpack_codes(self.codes, self.bits, self.shape[-1]).to(compute)  # (..., T, D)
        grouped, dim = _grouped(codes, self.granularity, self.group_size)
        scales = self.scales.to(compute).unsqueeze(dim)  # broadcasts over the G elements of each group
        if self.scheme == "kivi":
            x_hat = grouped * scales + self.mins.to(compute).unsqueeze(dim)
        elif self.scheme == "symmetric":
            x_hat = (grouped - _half(self.bits)) * scales
        else:
            x_hat = (grouped - self.zero_points.to(compute).unsqueeze(dim)) * scales
        return _clamped(x_hat.reshape(self.shape), self.dtype)  # (..., T, D)

    def nbytes(self) -> int:
        """Bytes held: packed codes + scales + zero-points or mins, measured from the tensors."""
        tensors = [t for t in (self.codes, self.scales, self.zero_points, self.mins) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


def quantize(
    x: Tensor,
    bits: int = 8,
    scheme: str = "symmetric",
    granularity: str = "per_token",
    group_size: int | None = None,
    *,
    where: str = "",
) -> QuantizedTensor:
    """Quantize ``x`` ``[..., T, D]`` to ``bits`` in {2, 4, 8} (formulas in the module docstring).

    ``group_size=None`` is the whole axis: ``D`` per token, ``T`` per channel. ``where`` (such as
    ``"layer 3 keys"``) starts the message of an error about ``x``'s values or shape.
    """
    bits, scheme, granularity = _check_args(x, bits, scheme, granularity, where)
    group_size = _check_group(x, granularity, group_size, where)
    _check_finite(x, where)
    values = x.detach().to(_compute_dtype(x.dtype))  # no autograd graph kept
    grouped, dim = _grouped(values, granularity, group_size)
    scales, zero_points, mins = _SCALE_RULES[scheme](grouped, dim, bits, x.dtype)
    if not torch.isfinite(scales).all():  # hi - lo overflowed: values of both signs near the max
        raise ValueError(
            f"{_prefix(where)}a group of x spans more than {torch.finfo(values.dtype).max:.3g} (its largest "
            f"minus its smallest value overflows {values.dtype}), so no {scheme} scale can cover it"
        )
    q = _codes(grouped, dim, scheme, bits, scales, zero_points, mins)  # like grouped
    codes = pack_codes(q.reshape(x.shape).to(torch.uint8), bits)  # (..., T, ceil(D * bits / 8))
    return QuantizedTensor(
        codes=codes,
        scales=scales.to(x.dtype),
        zero_points=None if zero_points is None else zero_points.to(torch.uint8),
        mins=None if mins is None else mins.to(x.dtype),
        bits=bits,
        scheme=scheme,
        granularity=granularity,
        group_size=group_size,
        shape=tuple(x.shape),
        dtype=x.dtype,
    )


def dequantize(q: QuantizedTensor) -> Tensor:
    """``q.dequantize()``: the tensor back in its original shape and dtype."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor (from quantize or quantize_fp8), got {describe(q)}")
    return q.dequantize()


def quantize_fp8(x: Tensor, *, scale: Tensor | float | None = None, where: str = "") -> QuantizedTensor:
    """``torch.float8_e4m3fn`` with one float32 scale for the whole tensor: ``s = max|x| / 448``.

    e4m3 has 3 mantissa bits: a value in the normal range keeps a relative error <= 2^-4; below
    ``2^-6 * s`` the format is subnormal and the error is absolute, <= ``2^-10 * s``.

    ``scale`` fixes ``s`` instead (a positive finite number or one-element tensor), as vLLM's static
    ``k_scale``/``v_scale`` do: values beyond ``+-448 * s`` saturate at it (e4m3fn has no infinity, and a
    cast past its range would give NaN).
    """
    _check_float(x, where)
    _check_finite(x, where)
    x = x.detach()  # a cache stores values, never autograd history
    compute = _compute_dtype(x.dtype)
    scale = _fp8_scale(x, compute, where) if scale is None else _checked_fp8_scale(scale)
    codes = (x.to(compute) / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)  # like x, 1 byte each
    return QuantizedTensor(
        codes=codes,
        scales=scale,
        zero_points=None,
        mins=None,
        bits=8,
        scheme="fp8",
        granularity="per_tensor",
        group_size=x.numel(),
        shape=tuple(x.shape),
        dtype=x.dtype,
    )


def _fp8_scale(x: Tensor, compute: torch.dtype, where: str) -> Tensor:
    """``max|x| / 448`` as a float32 scalar, floored at float32's smallest normal number."""
    absmax = x.abs().amax().to(compute) if x.numel() else x.new_zeros((), dtype=compute)
    scale = (absmax / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny).float()  # [] float32
    if not torch.isfinite(scale):  # only a float64 input can get here
        raise ValueError(
            f"{_prefix(where)}x reaches {absmax.item():.3g}: its fp8 scale max|x| / {FP8_MAX:g} does not fit "
            "the float32 it is stored in"
        )
    return scale


def _checked_fp8_scale(scale: Any) -> Tensor:
    """A fixed fp8 scale as a float32 scalar tensor (ValueError unless positive and finite)."""
    if isinstance(scale, Tensor):
        if scale.numel() != 1 or not scale.is_floating_point():
            raise ValueError(
                f"scale must be one floating-point number, got {scale.dtype} {list(scale.shape)}"
            )
        value = scale.detach().float().reshape(())
    elif isinstance(scale, (int, float)) and not isinstance(scale, bool):
        value = torch.tensor(float(scale))
    else:
        raise TypeError(f"scale must be a positive number or a one-element tensor, got {describe(scale)}")
    if not (torch.isfinite(value) and value > 0):
        raise ValueError(f"scale must be positive and finite, got {value.item()}")
    return value


# --- packing --------------------------------------------------------------------------------------


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack uint8 codes in ``[0, 2^bits)`` along the last axis, ``8 // bits`` per byte, low bits first.

    Byte ``j`` of a row holds elements ``j * n .. j * n + n - 1`` (``n = 8 // bits``); element
    ``j * n + i`` sits in bits ``[i * bits, (i + 1) * bits)``. For int4: element ``2j`` in the low
    nibble, ``2j + 1`` in the high nibble (``[3, 10] -> 0xA3``). For int2: elements ``4j .. 4j + 3``
    in bits 0-1, 2-3, 4-5, 6-7 (``[1, 2, 3, 0] -> 0b00_11_10_01 = 0x39``). A row whose length is not a
    multiple of ``n`` is padded with zero codes. 8-bit codes are returned as they are (a copy).
    """
    require_tensor("codes", codes, layout="of uint8 codes")
    bits = check_bits(bits)
    if codes.dtype != torch.uint8:
        raise TypeError(f"codes must be a torch.uint8 tensor, got {codes.dtype}")
    if codes.dim() == 0:
        raise ValueError("codes must have at least one dimension (packing runs along the last one)")
    _check_code_range(codes, bits)
    per_byte = 8 // bits
    pad = -codes.shape[-1] % per_byte
    padded = torch.nn.functional.pad(codes, (0, pad))  # (..., n_bytes * per_byte)
    grouped = padded.reshape(
        *codes.shape[:-1], padded.shape[-1] // per_byte, per_byte
    )  # (..., n_bytes, per_byte)
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=codes.device)  # [0, bits, 2 bits, ...]
    return (grouped << shifts).sum(dim=-1, dtype=torch.uint8)  # (..., n_bytes): disjoint bits, sum = OR


def unpack_codes(packed: Tensor, bits: int, length: int) -> Tensor:
    """Inverse of :func:`pack_codes`: uint8 ``[..., ceil(length * bits / 8)]`` -> codes ``[..., length]``."""
    require_tensor("packed", packed, layout="of packed uint8 codes")
    bits = check_bits(bits)
    length = require_int("length", length, minimum=0)
    per_byte = 8 // bits
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a torch.uint8 tensor, got {packed.dtype}")
    if packed.dim() == 0 or packed.shape[-1] != -(-length // per_byte):
        raise ValueError(
            f"packed must be uint8 [..., ceil(length / {per_byte})] = [..., {-(-length // per_byte)}] for "
            f"length={length} at {bits} bits, got {packed.dtype} {list(packed.shape)}"
        )
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    codes = (packed.unsqueeze(-1) >> shifts) & (2**bits - 1)  # (..., n_bytes, per_byte)
    return codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte)[..., :length]  # (..., length)


# --- the three schemes ------------------------------------------------------------------------------


def _half(bits: int) -> int:
    """``2^(bits-1)``: the offset symmetric codes are stored with (so -qmax..qmax fit in uint8)."""
    return 2 ** (bits - 1)


def _floor(dtype: torch.dtype) -> float:
    """Smallest scale allowed: the smallest positive number of the scale's dtype, but a normal number
    of the arithmetic. fp16's smallest *normal* (6.1e-5) would coarsen every fp16 group with max|x|
    below qmax * 6.1e-5 (7.8e-3 at 8 bits) for no reason, as the division runs in float32; a float32
    subnormal scale would make range / L lose digits and codes overshoot the grid."""
    storage, compute = torch.finfo(dtype), torch.finfo(_compute_dtype(dtype))
    return max(storage.tiny * storage.eps, compute.tiny)


def _symmetric_scales(grouped: Tensor, dim: int, bits: int, dtype: torch.dtype) -> tuple:
    qmax = _half(bits) - 1
    absmax = grouped.abs().amax(dim=dim)  # one per group
    return _stored(absmax / qmax, dtype), None, None


def _asymmetric_scales(grouped: Tensor, dim: int, bits: int, dtype: torch.dtype) -> tuple:
    levels = 2**bits - 1
    lo = grouped.amin(dim=dim).clamp(max=0)  # the range widened to include 0
    hi = grouped.amax(dim=dim).clamp(min=0)
    scales = _stored((hi - lo) / levels, dtype)
    zero_points = torch.round(-lo / scales).clamp(0, levels)
    return scales, zero_points, None


def _kivi_scales(grouped: Tensor, dim: int, bits: int, dtype: torch.dtype) -> tuple:
    levels = 2**bits - 1
    lo = grouped.amin(dim=dim)  # an element of x: exact in x's dtype
    scales = _stored((grouped.amax(dim=dim) - lo) / levels, dtype)
    return scales, None, lo


_SCALE_RULES = {"symmetric": _symmetric_scales, "asymmetric": _asymmetric_scales, "kivi": _kivi_scales}


def _stored(scales: Tensor, dtype: torch.dtype) -> Tensor:
    """Scales as they will be stored, back in the compute dtype: floored at the dtype's smallest
    normal and rounded *up* to the dtype, so that ``L * s`` still covers the range (a scale rounded
    down would push the group's largest value past the last code, an error beyond ``s / 2``)."""
    scales = scales.clamp(min=_floor(dtype))
    stored = scales.to(dtype)
    rounded_down = stored.to(scales.dtype) < scales
    stored = torch.where(rounded_down, torch.nextafter(stored, torch.full_like(stored, float("inf"))), stored)
    return stored.to(scales.dtype)


def _codes(
    grouped: Tensor, dim: int, scheme: str, bits: int, scales: Tensor, zero_points: Any, mins: Any
) -> Tensor:
    """Unsigned codes in ``[0, 2^bits - 1]``, shaped like ``grouped`` (its groups on ``dim``)."""
    scales = scales.unsqueeze(dim)  # one per group, broadcast over its G elements
    if scheme == "symmetric":
        qmax = _half(bits) - 1
        return torch.round(grouped / scales).clamp(-qmax, qmax) + _half(bits)
    if scheme == "asymmetric":
        return (torch.round(grouped / scales) + zero_points.unsqueeze(dim)).clamp(0, 2**bits - 1)
    return torch.round((grouped - mins.unsqueeze(dim)) / scales).clamp(0, 2**bits - 1)


def _grouped(x: Tensor, granularity: str, group_size: int) -> tuple[Tensor, int]:
    """View ``x`` [..., T, D] with one axis of G elements per group; return it and that axis.

    per_token:   (..., T, D // G, G), groups on dim -1
    per_channel: (..., T // G, G, D), groups on dim -2
    """
    *lead, T, D = x.shape
    if granularity == "per_token":
        return x.reshape(*lead, T, D // group_size, group_size), -1  # (..., T, D/G, G)
    return x.reshape(*lead, T // group_size, group_size, D), -2  # (..., T/G, G, D)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or float64 for float64: fp16/bf16 statistics and dequantization run in float32."""
    return torch.promote_types(dtype, torch.float32)


def _clamped(x_hat: Tensor, dtype: torch.dtype) -> Tensor:
    """``x_hat`` in ``dtype``, clamped to its finite range (a rounded-up scale can overshoot it)."""
    largest = torch.finfo(dtype).max
    return x_hat.clamp(-largest, largest).to(dtype)


# --- argument and value checks ----------------------------------------------------------------------


def value_group_size(group_size: int, head_dim: int) -> int:
    """Channels sharing one per-token scale when ``group_size`` tokens share a per-channel one (KIVI's
    keys and values with one G): ``group_size`` if it divides ``head_dim``, else the whole ``head_dim``."""
    return group_size if head_dim % group_size == 0 else head_dim


def check_bits(bits: Any) -> int:
    """``bits`` as an int in :data:`BITS` (TypeError for a non-integer, ValueError otherwise)."""
    bits = require_int("bits", bits)
    if bits not in BITS:
        raise ValueError(f"bits must be 2, 4 or 8, got {bits}")
    return bits


def check_scheme(scheme: Any) -> str:
    """``scheme`` as one of :data:`SCHEMES` (TypeError for a non-string, ValueError otherwise)."""
    return _check_choice("scheme", scheme, SCHEMES)


def check_key_granularity(key_granularity: Any) -> str:
    """How a quantized cache groups its keys: one of :data:`GRANULARITIES` ("per_channel" is KIVI's)."""
    return _check_choice("key_granularity", key_granularity, GRANULARITIES)


def check_storage_dtype(storage_dtype: Any) -> torch.dtype:
    """``storage_dtype`` as one of :data:`STORAGE_DTYPES` (TypeError for a non-dtype, ValueError
    otherwise)."""
    expected = "torch.bfloat16, torch.float16 or torch.float8_e4m3fn"
    if not isinstance(storage_dtype, torch.dtype):
        raise TypeError(f"storage_dtype must be a torch.dtype ({expected}), got {describe(storage_dtype)}")
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be {expected}, got {storage_dtype}")
    return storage_dtype


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    expected = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {expected}, got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {expected}, got {value!r}")
    return value


def _check_float(x: Any, where: str, name: str = "x") -> None:
    require_tensor(name, x, layout="of floating-point values")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{_prefix(where)}{name} must be a float32, float16, bfloat16 or float64 tensor, got {x.dtype}"
        )


def _check_args(x: Any, bits: Any, scheme: Any, granularity: Any, where: str) -> tuple[int, str, str]:
    _check_float(x, where)
    if x.dim() < 2:
        raise ValueError(
            f"{_prefix(where)}x must be [..., T, D] (at least 2 dims), got shape {list(x.shape)}"
        )
    bits = check_bits(bits)
    scheme = check_scheme(scheme)
    return bits, scheme, _check_choice("granularity", granularity, GRANULARITIES)


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _check_group(x: Tensor, granularity: str, group_size: Any, where: str) -> int:
    """``group_size`` as an int dividing the axis its groups run along (D per token, T per channel)."""
    axis, length = (
        ("head_dim (D)", x.shape[-1]) if granularity == "per_token" else ("tokens (T)", x.shape[-2])
    )
    if length == 0:
        raise ValueError(
            f"{_prefix(where)}x has no elements along {axis} to share a scale, shape {list(x.shape)}"
        )
    group_size = length if group_size is None else require_int("group_size", group_size, minimum=1)
    if length % group_size:
        raise ValueError(
            f"{_prefix(where)}group_size={group_size} must divide {axis} = {length}, the axis {granularity} "
            f"groups run along (x has shape {list(x.shape)}); pick a divisor or pad x"
        )
    return group_size


def _check_finite(x: Tensor, where: str) -> None:
    finite = torch.isfinite(x)
    if not finite.all():
        first = tuple(torch.nonzero(~finite)[0].tolist())
        raise ValueError(
            f"{_prefix(where)}x holds {int((~finite).sum())} NaN/inf value(s), first at index {first} "
            f"(= {x[first].item()}): a scale cannot be computed from them"
        )


def _check_code_range(codes: Tensor, bits: int) -> None:
    too_big = codes > 2**bits - 1
    if too_big.any():
        first = tuple(torch.nonzero(too_big)[0].tolist())
        raise ValueError(
            f"codes must be in [0, {2**bits - 1}] for {bits} bits, got {codes[first].item()} at {first}"
        )


# --- chapter 04's exercises, in the shapes the notebook asks for ----------------------------------------
# Each is the production version of one exercise, built on quantize / pack_codes above (one home for the
# formulas): the notebook falls back to them while an exercise is a stub, and the grader compares with them.


def quantize_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8, one scale per token: ``(codes int8 [..., T, D], scale float32 [..., T, 1])``.

    ``scale = max|x| / 127`` in float32 (1.0 for a token of zeros), ``codes = round(x / scale)`` in
    ``[-127, 127]``; ``codes * scale`` is within ``scale / 2`` of ``x``.
    """
    return _symmetric_per_token(x, 8, "x")


def quantize_groups(x: Tensor, group_size: int, bits: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric (zero-point) quantization in groups of ``group_size`` channels of each token.

    Returns ``(codes uint8 [..., T, D] unpacked, scale float32 [..., T, D / G], zero_point uint8
    [..., T, D / G])``; the range of each group is widened to include 0 and a group of zeros gets
    scale 1.0 (the ``"asymmetric"`` scheme of :func:`quantize`, computed in float32).
    """
    q = quantize(_float32(x, "x"), bits, "asymmetric", "per_token", group_size)
    zeros = _all_zero_groups(x, group_size)
    scale = torch.where(zeros, torch.ones_like(q.scales), q.scales)  # any scale codes a 0 as its zero-point
    return unpack_codes(q.codes, q.bits, x.shape[-1]), scale, q.zero_points


def pack_int4(codes: Tensor) -> Tensor:
    """:func:`pack_codes` at 4 bits for an even-length last axis (ValueError for an odd one)."""
    require_tensor("codes", codes, layout="of uint8 codes")
    if codes.dim() == 0 or codes.shape[-1] % 2:
        raise ValueError(
            f"codes must have an even last axis to pack two per byte, got shape {list(codes.shape)}"
        )
    return pack_codes(codes, 4)


def unpack_int4(packed: Tensor) -> Tensor:
    """:func:`unpack_codes` at 4 bits: uint8 ``[..., n]`` -> codes ``[..., 2 n]``, low nibble first."""
    require_tensor("packed", packed, layout="of packed uint8 codes")
    if packed.dim() == 0:
        raise ValueError("packed must have at least one dimension")
    return unpack_codes(packed, 4, 2 * packed.shape[-1])


def layout_errors(x: Tensor, bits: int, group_size: int) -> dict[str, float]:
    """``||x - x_hat|| / ||x||`` for KIVI-scheme groups of ``group_size`` per token and per channel."""
    x = _float32(x, "x")
    norm = x.norm()
    if norm == 0:
        raise ValueError("x is all zero: its relative error is undefined")
    return {
        layout: ((x - quantize(x, bits, "kivi", layout, group_size).dequantize()).norm() / norm).item()
        for layout in GRANULARITIES
    }


def quantize_kv(k: Tensor, v: Tensor, bits: int = 8) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Symmetric per-token quantization of keys and values at 8 or 4 bits (the find-the-bugs fix):
    ``(k_codes, k_scale, v_codes, v_scale)``, codes int8 in ``[-qmax, qmax]``, scales float32 [..., T, 1]."""
    bits = require_int("bits", bits)
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    return (*_symmetric_per_token(k, bits, "k"), *_symmetric_per_token(v, bits, "v"))


def compare_rows(table: dict[str, dict[str, float]], a: str, b: str) -> dict[str, float]:
    """What replacing cache ``a`` by cache ``b`` saves and costs, relative to ``a``, from a table of
    measurements with ``"bytes_per_token"``, ``"perplexity"`` and ``"ms_per_token"`` per row:
    ``memory_saving = 1 - bytes_b / bytes_a``, ``latency_overhead = ms_b / ms_a - 1``,
    ``quality_loss = ppl_b / ppl_a - 1`` (Python floats)."""
    for name in (a, b):
        if name not in table:
            raise KeyError(f"no row {name!r} in the table; rows: {sorted(table)}")
    row_a, row_b = table[a], table[b]
    return {
        "memory_saving": float(1 - row_b["bytes_per_token"] / row_a["bytes_per_token"]),
        "latency_overhead": float(row_b["ms_per_token"] / row_a["ms_per_token"] - 1),
        "quality_loss": float(row_b["perplexity"] / row_a["perplexity"] - 1),
    }


def _float32(x: Any, name: str) -> Tensor:
    _check_float(x, "", name)
    return x.detach().float()


def _all_zero_groups(x: Tensor, group_size: int) -> Tensor:
    """True for each per-token group of ``group_size`` channels that holds only zeros: [..., T, D / G]."""
    return (x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size) == 0).all(dim=-1)


def _symmetric_per_token(x: Tensor, bits: int, name: str) -> tuple[Tensor, Tensor]:
    """``(codes int8, scale float32 [..., T, 1])`` with scale 1.0 for a token of zeros."""
    q = quantize(_float32(x, name), bits, "symmetric", "per_token", where=name)
    codes = (unpack_codes(q.codes, bits, x.shape[-1]).to(torch.int16) - _half(bits)).to(torch.int8)
    zeros = _all_zero_groups(x, x.shape[-1])  # (..., T, 1)
    return codes, torch.where(zeros, torch.ones_like(q.scales), q.scales)
