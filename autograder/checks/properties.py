"""Properties every exercise's hidden tests check, whatever the chapter (see AUTHORING.md).

A spec sentence that no test can violate teaches nothing, so these helpers turn the sentences
that recur in every chapter into one call each:

- inputs are never mutated: :func:`call_pure` clones every tensor argument, calls, and compares;
- the dtype is kept: :func:`assert_dtype`;
- results do not alias state that a later call changes: :func:`snapshot` then :func:`assert_unchanged`;
- state lives in the object: :func:`interleaved` drives two instances turn by turn;
- the sizes a learner never saw: :data:`PAST_VISIBLE_LENGTHS`, :func:`large_scores`;
- a zero guard applied before the division, not after: :func:`assert_no_nan_cast` (quantizers).

Each failure message names the mistake, as every check message must.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .common import CheckFailed, call, expect

# Lengths past every power of two a visible test uses, up to a 512-token model context.
PAST_VISIBLE_LENGTHS = (17, 33, 100, 257, 511)


def clone_tree(obj: Any) -> Any:
    """A deep copy of the tensors inside tuples, lists and dicts (other objects are kept as they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple takes its fields one by one
        return type(obj)(*(clone_tree(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(x) for x in obj)
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    return obj


def _tensors_with_paths(obj: Any, path: str) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield from _tensors_with_paths(x, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from _tensors_with_paths(x, f"{path}[{k!r}]")


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exactly equal shape, dtype and values (NaN equals NaN: NaN-filled test buffers stay comparable)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point:
        return bool(torch.equal(torch.nan_to_num(a, nan=0.125), torch.nan_to_num(b, nan=0.125)))
    return bool(torch.equal(a, b))


def _argument_names(fn: Callable[..., Any], args: tuple, kwargs: dict) -> list[str]:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        return list(bound.arguments)
    except (TypeError, ValueError):
        return [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)


def call_pure(fn: Callable[..., Any], *args: Any, what: str = "your function", **kwargs: Any) -> Any:
    """Call learner code and fail if it changed any tensor it was given (in-place ops on inputs).

    The caller keeps using its arguments after the call (a model keeps its keys, a cache its
    past), so `x *= s`, `x.mul_(s)`, `x[...] = ...` or `torch.cat(..., out=x)` on an input is a bug
    even when the returned value is right.
    """
    before_args, before_kwargs = clone_tree(args), clone_tree(kwargs)
    out = call(fn, *args, what=what, **kwargs)
    names = _argument_names(fn, args, kwargs)
    pairs = list(zip(names, args)) + list(kwargs.items())
    before = list(zip(names, before_args)) + list(before_kwargs.items())
    for (name, now), (_, then) in zip(pairs, before):
        now_tensors = dict(_tensors_with_paths(now, name))
        for path, old in _tensors_with_paths(then, name):
            if path not in now_tensors or not same_values(now_tensors[path], old):
                raise CheckFailed(
                    f"{what} modified its input {path} in place (or removed it from the container it came "
                    "in); the caller still needs it unchanged (use out-of-place operations: x = x * s, "
                    "not x *= s, x.mul_(s), x[...] = ... or list.pop())"
                )
    return out


def assert_dtype(tensor: Any, dtype: torch.dtype, what: str, hint: str = "") -> None:
    """Fail unless `tensor` is a tensor of `dtype` (fp16 in, fp16 out: no silent upcast or downcast)."""
    expect(isinstance(tensor, torch.Tensor), f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    expect(
        tensor.dtype == dtype,
        f"{what} must keep the dtype {dtype}, got {tensor.dtype}"
        + (f"; {hint}" if hint else ": do not hard-code float32/float64 (torch.zeros(..., dtype=x.dtype), "
           "or compute in the input's dtype)"),
    )  # fmt: skip


def snapshot(result: Any) -> Any:
    """A private copy of a returned value, to compare against after later calls."""
    return clone_tree(result)


def assert_unchanged(result: Any, copy: Any, what: str, cause: str) -> None:
    """Fail if a value returned earlier changed since `snapshot` (it aliases state a later call wrote)."""
    now = dict(_tensors_with_paths(result, "result"))
    for path, old in _tensors_with_paths(copy, "result"):
        if path not in now or not same_values(now[path], old):
            raise CheckFailed(f"{what} changed after a later call: {cause}")


def interleaved(
    make: Callable[[], Any], step: Callable[[Any, int, int], None], steps: int, what: str
) -> None:
    """Drive two fresh instances turn by turn: instance 0 step 0, instance 1 step 0, instance 0 step 1...

    `step(obj, which, i)` performs and checks step i on instance `which`; a class that keeps its
    state in class attributes or module globals fails it (the two instances see each other's data).
    """
    objs = [make(), make()]
    for i in range(steps):
        for which, obj in enumerate(objs):
            try:
                step(obj, which, i)
            except CheckFailed as exc:
                raise CheckFailed(
                    f"{what}: with two instances used in turn, instance {which + 1} failed at step {i + 1}: "
                    f"{exc} (do two objects share state? keep it on self, created in __init__, not in "
                    "class attributes or module-level variables)"
                ) from None


def large_scores(*shape: int, generator: torch.Generator, magnitude: float = 60.0) -> torch.Tensor:
    """Random vectors whose dot products reach thousands: a softmax without max subtraction overflows."""
    return torch.randn(*shape, generator=generator) * magnitude


def with_fill_hint(exc: CheckFailed) -> CheckFailed:
    """`exc`, plus the cause when torch refused a mask fill value that does not fit a 16-bit dtype."""
    if "without overflow" not in str(exc):
        return exc
    return CheckFailed(
        f"{exc}. A fill value such as torch.finfo(torch.float32).min or -1e9 overflows float16 (largest "
        "value 65504): fill masked scores with float('-inf') (or torch.finfo(scores.dtype).min), which "
        "every dtype holds"
    )


# --- a NaN cast to an integer dtype -----------------------------------------------------------------

_T = torch.Tensor
_CASTS = frozenset({_T.to, _T.type, _T.char, _T.byte, _T.int, _T.long, _T.short, _T.copy_, _T.__setitem__})


def _cast_source(func: Callable[..., Any]) -> int:
    """Where the converted tensor sits: dst.copy_(src), dst[index] = src, else src.to(...)."""
    return {_T.copy_: 1, _T.__setitem__: 2}.get(func, 0)


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


class _NanCasts(TorchFunctionMode):
    """Counts conversions of a floating tensor holding NaN to an integer dtype; with `replace`, redoes
    each with the NaNs replaced by that value (as a machine whose NaN cast gives another integer would)."""

    def __init__(self, replace: float | None = None) -> None:
        super().__init__()
        self.replace, self.seen = replace, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func not in _CASTS:
            return out
        i = _cast_source(func)
        src = args[i] if len(args) > i else None
        dst = args[0] if i else out
        if not (isinstance(src, _T) and isinstance(dst, _T) and src.is_floating_point()):
            return out
        if not (_is_integer(dst.dtype) and bool(torch.isnan(src).any())):
            return out
        self.seen += 1
        if self.replace is None:
            return out
        filled = torch.where(torch.isnan(src), torch.full_like(src, self.replace), src)
        return func(*args[:i], filled, *args[i + 1 :], **kwargs)


def _same_results(a: Any, b: Any) -> bool:
    ta, tb = dict(_tensors_with_paths(a, "result")), dict(_tensors_with_paths(b, "result"))
    return ta.keys() == tb.keys() and all(same_values(ta[p], tb[p]) for p in ta)


def assert_no_nan_cast(run: Callable[[], Any], what: str, unit: str = "token") -> None:
    """Fail if the result of `run()` depends on a NaN converted to an integer dtype.

    A quantizer that guards a zero scale only AFTER dividing computes 0 / 0 = NaN for a `unit` of
    zeros and casts it: x86 happens to turn NaN into code 0, so the result looks right, but the cast
    is undefined (other machines give another integer). `run` (the learner's call, inputs already
    checked unchanged) runs once watching Tensor.to / type / char / byte / int / long / short /
    copy_ / item assignment; if a NaN was cast, it runs again with those NaNs cast as 1 and fails
    when the result differs. Correct code passes: torch.where(mask, x / scale, 0) casts no NaN, and
    code that overwrites the codes it got from a NaN does not depend on them. The mode is popped
    even when the learner's code raises.
    """
    watch = _NanCasts()
    with watch:
        first = clone_tree(run())  # a copy: a reused output buffer would be rewritten by the second run
    if not watch.seen:
        return
    try:
        with _NanCasts(replace=1.0):
            depends = not _same_results(first, run())
    except Exception:  # noqa: BLE001 - raising once the NaN casts to 1: the result depends on it
        depends = True
    if depends:
        raise CheckFailed(
            f"{what}: a NaN (0 / 0 for a {unit} of zeros) was cast to an integer dtype: guard the zero "
            "scale before dividing (scale = torch.where(scale > 0, scale, 1.0), then x / scale); a NaN "
            "cast happens to give 0 on x86 but is undefined, and a guard applied after the division leaves "
            "the codes computed from 0 / 0"
        )
