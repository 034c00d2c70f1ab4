"""Argument checks shared by kvlib's public functions and command lines: one home, one wording.

Every check raises at the caller's mistake with one line that names the argument, what was
expected and what was given, e.g. ``num_blocks must be an integer >= 1, got 4.5 (float)``.
They are ordinary exceptions, never ``assert``: ``python -O`` strips asserts, and a guard that
vanishes under -O lets a caller's mistake corrupt state instead of stopping it.

``*_arg`` functions are ``argparse`` ``type=`` converters: they raise
``argparse.ArgumentTypeError``, which argparse turns into a usage line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "describe",
    "require_int",
    "require_token_ids",
    "require_number",
    "require_tensor",
    "require_bool",
    "require_device",
    "positive_int_arg",
    "nonnegative_int_arg",
    "positive_float_arg",
    "int_list_arg",
    "device_arg",
    "number_arg",
]


def describe(value: Any) -> str:
    """``4.5 (float)``: the value as given plus its type, for error messages; an array or tensor by
    its type and shape (``a numpy.ndarray of shape (1, 2)``), since its values say nothing useful."""
    # not for a class: on numpy.ndarray or torch.Tensor itself, ndim and shape are descriptors
    if not isinstance(value, type) and getattr(value, "ndim", 0) and hasattr(value, "shape"):
        return f"a {type(value).__module__}.{type(value).__name__} of shape {tuple(value.shape)}"
    text = " ".join(repr(value).split())  # a tensor's repr spans lines; messages are one line
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _bound_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def require_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, or TypeError/ValueError naming ``name`` and the allowed range.

    Accepts Python and NumPy integers (and 0-d integer tensors); rejects bool, float (even 4.0) and
    str, because a float block count or a bool length is always a caller's mistake.
    """
    # fast path: block managers call this per token; building the message costs more than the check
    if type(value) is int and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return value
    expected = _bound_text(minimum, maximum)
    integral = isinstance(value, numbers.Integral) or (
        hasattr(value, "dim") and value.dim() == 0 and not value.dtype.is_floating_point
    )
    if isinstance(value, bool) or not integral:
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {expected}, got {number}")
    return number


def require_token_ids(name: str, tokens: Any, *, vocab_size: int | None = None) -> list[int]:
    """A sequence of token ids as a list of ints; a str/bytes or a non-integer item is an error."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise TypeError(f"{name} must be a sequence of integer token ids, got {describe(tokens)}")
    maximum = None if vocab_size is None else vocab_size - 1
    # fast path for the common list of plain ints: map(type), min and max run in C
    if type(tokens) in (list, tuple) and set(map(type, tokens)) <= {int}:
        low, high = min(tokens, default=0), max(tokens, default=0)
        if low >= 0 and (maximum is None or high <= maximum):
            return list(tokens)
    out = []
    for i, token in enumerate(tokens):
        out.append(require_int(f"{name}[{i}]", token, minimum=0, maximum=maximum))
    return out


def _number_text(minimum: float | None, inclusive: bool, maximum: float | None) -> str:
    text = "a finite number"
    if minimum is not None:
        text += f" {'>=' if inclusive else '>'} {minimum:g}"
    return text if maximum is None else f"{text} and <= {maximum:g}"


def require_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = 0.0,
    inclusive: bool = True,
    maximum: float | None = None,
) -> float:
    """A finite real number >= ``minimum`` (> it when ``inclusive`` is False; no lower bound when
    ``minimum`` is None) and <= ``maximum`` as a float: a median, a spread, a temperature, a fraction,
    a scale. Rejects bool, str, NaN and inf."""
    expected = _number_text(minimum, inclusive, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    number = float(value)
    too_low = minimum is not None and (number < minimum or (not inclusive and number == minimum))
    if not math.isfinite(number) or too_low or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return number


def require_tensor(name: str, value: Any, dims: int | None = None, layout: str = "") -> Any:
    """``value`` if it is a torch.Tensor (with ``dims`` dimensions when given), else TypeError/ValueError
    naming ``name`` and the expected ``layout`` such as ``"[B, num_kv_heads, T, head_dim]"``."""
    import torch  # here, so that the argparse converters above stay importable without torch

    expected = f"a torch.Tensor {layout}".rstrip()
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    if dims is not None and value.dim() != dims:
        shape = list(value.shape)
        raise ValueError(f"{name} must be {layout or 'a tensor'} ({dims} dims), got shape {shape}")
    return value


def require_bool(name: str, value: Any) -> bool:
    """True or False (NumPy bools too); a string such as "no" would be truthy, so it is an error."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    if type(value) is bool or numpy_bool:
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {describe(value)}")


def require_device(
    name: str, value: Any, *, allowed: tuple[str, ...] | None = None, available: bool = True
) -> Any:
    """``value`` as a torch.device, ValueError naming ``name`` for a name torch does not know
    (``'gpu'``) or a type outside ``allowed``; with ``available`` (the default) also for CUDA on a
    machine without it and for a CUDA index past the visible devices."""
    import torch

    expected = f"one of {', '.join(allowed)} (or 'cuda:N')" if allowed else "a name like 'cpu' or 'cuda:0'"
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):  # torch's own message lists 20 device types
        raise ValueError(f"{name} must be a torch.device or {expected}, got {describe(value)}") from None
    if allowed is not None and device.type not in allowed:
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    if available and device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={str(value)!r} but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name}={str(value)!r} but only {count} CUDA device(s) are visible")
    return device


# --- argparse converters --------------------------------------------------------------------------


def _arg_converter(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a checker that raises TypeError/ValueError into an argparse ``type=``."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


def _parse_int(text: str, minimum: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"expected an integer >= {minimum}, got {text!r}") from None
    if number < minimum:
        raise ValueError(f"expected an integer >= {minimum}, got {number}")
    return number


@_arg_converter
def positive_int_arg(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _parse_int(text, 1)


def auto_or_positive_int_arg(text: str) -> int | str:
    """argparse type: ``auto`` (the program picks) or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None


@_arg_converter
def nonnegative_int_arg(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _parse_int(text, 0)


@_arg_converter
def positive_float_arg(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"expected a finite number > 0, got {text!r}")
    return number


@_arg_converter
def device_arg(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``, usable on this machine (kept as the text)."""
    require_device("device", text, allowed=("cpu", "cuda"))
    return text


@_arg_converter
def int_list_arg(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1, e.g. ``16,64,128``."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"expected comma-separated integers >= 1 like 16,64,128, got {text!r}")
    return [_parse_int(item, 1) for item in items]


def number_arg(minimum: float = 0.0, maximum: float | None = None) -> Callable[[str], float]:
    """argparse type factory: a finite number in [minimum, maximum], e.g. ``number_arg(0, 1)`` for a
    fraction (:func:`positive_float_arg` is the common ``> 0`` case)."""

    expected = _number_text(minimum, True, maximum)

    def number(text: str) -> float:
        try:
            return require_number("value", float(text), minimum=minimum, maximum=maximum)
        except ValueError:  # float() or the range: either way, say it in the converters' words
            raise ValueError(f"expected {expected}, got {text!r}") from None

    return _arg_converter(number)
