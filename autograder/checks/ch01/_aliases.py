"""Aliases of kvlib functions decorated with @torch.no_grad() (kvlib.generate's), caught by identity.

`delegation.graded` compares code objects, but a decorated function's code is torch's wrapper (shared
by every decorated function, the learner's own included), so an alias such as
`from kvlib.generate import generate` is not recognised, and the real body is only reachable through
`__wrapped__` (which is why the REFERENCES of this chapter also name `...__wrapped__`). Until
delegation.py follows `__wrapped__` itself, the checks call :func:`reject_decorated_alias` first.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..common import CheckFailed
from ..delegation import _resolve, delegation_message


def wrapped(*names: str) -> tuple[str, ...]:
    """`name.__wrapped__` for each decorated kvlib function among `names` (the body the watcher must see)."""
    return tuple(f"{n}.__wrapped__" for n in names if hasattr(_resolve(n), "__wrapped__"))


def reject_decorated_alias(obj: Any, exercise: str, references: tuple[str, ...]) -> None:
    """Fail when `obj` is one of the decorated kvlib functions named (directly or inside a named module)."""
    targets: dict[int, str] = {}
    for name in references:
        if name.endswith(".__wrapped__"):
            continue
        ref = _resolve(name)
        items = (
            [
                (f"{name}.{k}", v)
                for k, v in vars(ref).items()
                if getattr(v, "__module__", None) == ref.__name__
            ]
            if inspect.ismodule(ref)
            else [(name, ref)]
        )
        for dotted, value in items:
            inner = getattr(value, "__wrapped__", None)
            if inner is not None:
                targets.setdefault(id(inner), dotted)
    inner = getattr(obj, "__wrapped__", None)
    if inner is not None and id(inner) in targets:
        how = f"{getattr(obj, '__name__', 'your function')} is kvlib's {targets[id(inner)]} itself (an alias)"
        raise CheckFailed(delegation_message(exercise, how))
