"""Glue for the notebooks' own cells: after the exercises, run the learner's code when it is written.

A chapter's demonstrations (timings, memory, agreement on the shipped model) use what the learner
built, so the payoff is theirs. While an exercise is still a stub (it raises NotImplementedError),
kvlib's reference stands in and the notebook says so, so Run All never breaks on an unfinished one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kvlib.validate import describe

T = TypeVar("T")


def yours_or_reference(name: str, yours: T, reference: T, try_it: Callable[[T], object]) -> T:
    """`yours` if `try_it(yours)` runs; `reference` (with a printed note) if it raises NotImplementedError.

    `try_it` exercises the object on a tiny input (construct a cache, call a function once). Any
    other exception propagates: a bug in finished code should be seen, not silently replaced.
    """
    if not callable(try_it):
        raise TypeError(f"try_it must be a callable that exercises {name!r} once, got {describe(try_it)}")
    try:
        try_it(yours)
    except NotImplementedError:
        print(f"note: your {name} is not implemented yet, kvlib's reference stands in for it here")
        return reference
    print(f"using your {name}")
    return yours
