"""Building blocks for check helpers: failures that carry a message naming the likely mistake.

A check raises `CheckFailed` (an `AssertionError`, so nbgrader scores the cell 0) whose message
is what the learner sees. Helpers here never print hidden-test inputs or source.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch


class CheckFailed(AssertionError):
    """A check did not pass; the message says what was expected and the likely mistake."""


def expect(condition: bool, message: str) -> None:
    """Fail with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def call(fn: Callable[..., Any], *args: Any, what: str = "your function", **kwargs: Any) -> Any:
    """Call learner code, turning its exceptions into a message that names the exercise."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{what} is not implemented yet (it raised NotImplementedError)") from None
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any learner error becomes feedback
        raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from None


def assert_shape(tensor: Any, shape: tuple[int, ...], what: str, hint: str = "") -> None:
    """Fail unless `tensor` is a tensor of exactly `shape`."""
    expect(isinstance(tensor, torch.Tensor), f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    got = tuple(tensor.shape)
    expect(
        got == tuple(shape),
        f"{what} must have shape {tuple(shape)}, got {got}" + (f"; {hint}" if hint else ""),
    )


def assert_close(
    actual: Any,
    expected: torch.Tensor,
    what: str,
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Fail unless `actual` matches `expected` in shape and values (float tolerance)."""
    assert_shape(actual, tuple(expected.shape), what, hint)
    if actual.dtype.is_floating_point or expected.dtype.is_floating_point:
        a, e = actual.detach().double(), expected.detach().double()
        err = (a - e).abs().max().item() if a.numel() else 0.0
        ok = err <= atol + rtol * (e.abs().max().item() if e.numel() else 0.0)
        ok = ok and not bool(torch.isnan(a).any().item())
    else:
        err = None
        ok = bool(torch.equal(actual.detach().cpu(), expected.detach().cpu()))
    if not ok:
        detail = f" (max abs error {err:.3g})" if err is not None else ""
        raise CheckFailed(f"{what} is wrong{detail}" + (f"; {hint}" if hint else ""))


def matches(actual: torch.Tensor, candidate: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when `actual` equals `candidate` (same shape, values within atol); for diagnosing mistakes."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(candidate.shape):
        return False
    return bool(((actual.detach().double() - candidate.detach().double()).abs() <= atol).all().item())


def diagnose(actual: torch.Tensor, wrong_variants: dict[str, torch.Tensor], atol: float = 1e-5) -> str | None:
    """Return the message of the first classic wrong variant that `actual` reproduces, if any."""
    for message, candidate in wrong_variants.items():
        if matches(actual, candidate, atol):
            return message
    return None


def as_number(value: Any, what: str) -> float:
    """A learner's numeric answer as a float: Python and NumPy numbers and one-element tensors count.

    Anything else fails with a message naming what was returned (a string, a list, None, ...).
    """
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if type(value).__name__ == "ndarray" and getattr(value, "size", 0) == 1:  # a NumPy 0-d/1-element array
        value = value.item()
    expect(
        isinstance(value, numbers.Real) and not isinstance(value, bool),
        f"{what} must be a number (int or float), got {type(value).__name__}: {value!r:.60}",
    )
    value = float(value)
    expect(math.isfinite(value), f"{what} must be a finite number, got {value}")
    return value


def as_int(value: Any, what: str) -> int:
    """A learner's answer that the spec says is an int: Python or NumPy integers, nothing else.

    A float (even 4096.0) or a tensor fails: the spec promised an int, and callers index with it.
    """
    if isinstance(value, torch.Tensor):
        raise CheckFailed(
            f"{what} must be a Python int, got a tensor ({value!r:.40}): convert it with int(...) or .item()"
        )
    expect(
        isinstance(value, numbers.Integral) and not isinstance(value, bool),
        f"{what} must be an int, got {type(value).__name__} {value!r:.60}"
        + (": use integer arithmetic (//, int(...)), not /" if isinstance(value, float) else ""),
    )
    return int(value)


def shown(value: Any) -> str:
    """A short, plain rendering of a learner's value for a message (tensor(1.) is shown as 1.0)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return f"{value.item()!r} (a one-element tensor)"
    return f"{value!r:.80}"


def expect_value_error(
    fn: Callable[..., Any], name: str, label: str, args: tuple, why: str, hint: str = ""
) -> None:
    """``fn(*args)`` must raise ValueError (``why`` says which docstring rule); ``label`` names the call and
    ``hint`` is added when another exception comes instead."""
    try:
        got = fn(*args)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckFailed(f"{name} is not implemented yet (it raised NotImplementedError)") from None
    except Exception as exc:  # noqa: BLE001 - the promised error is ValueError, not another one
        raise CheckFailed(
            f"{label} must raise ValueError ({why}), got {type(exc).__name__}: {exc}{hint}"
        ) from None
    raise CheckFailed(f"{label} must raise ValueError ({why}), but it returned {got!r}")
