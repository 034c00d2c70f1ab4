"""Properties every exercise's hidden tests check, whatever the chapter (see AUTHORING.md).

A spec sentence that no test can violate teaches nothing, so these helpers turn the sentences
that recur in every chapter into one call each:

- inputs are never mutated: :func:`call_pure` clones every tensor argument, calls, and compares;
- the dtype is kept: :func:`assert_dtype`;
- results do not alias state that a later call changes: :func:`snapshot` then :func:`assert_unchanged`;
- state lives in the object: :func:`interleaved` drives two instances turn by turn;
- the sizes a learner never saw: :data:`PAST_VISIBLE_LENGTHS`, :func:`large_scores`.

Each failure message names the mistake, as every check message must.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

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
