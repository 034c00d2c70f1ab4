"""Snapshot of functions the checks rely on, so `harness.fresh` can undo a learner's monkeypatch.

The grader imports this module in the kernel before any learner code runs; the snapshot then
holds the genuine functions. If it is first imported later (e.g. under plain nbgrader), torch's
C-level functions are still restored from `torch._C._VariableFunctions`, which a learner's
`torch.allclose = ...` does not touch.
"""

from __future__ import annotations

import builtins

import torch
import torch.nn.functional as F

_MODULES = {"torch": torch, "torch.nn.functional": F, "builtins": builtins}
_SNAPSHOT = {
    modname: {
        name: getattr(mod, name) for name in dir(mod) if not name.startswith("__") or name == "__import__"
    }
    for modname, mod in _MODULES.items()
}
_TENSOR_SNAPSHOT = {name: getattr(torch.Tensor, name) for name in dir(torch.Tensor)}


def restore() -> None:
    """Put back every snapshotted attribute whose object has been replaced."""
    for modname, mod in _MODULES.items():
        for name, original in _SNAPSHOT[modname].items():
            if getattr(mod, name, None) is not original:
                setattr(mod, name, original)
    for name, original in _TENSOR_SNAPSHOT.items():
        try:
            if getattr(torch.Tensor, name) is not original:
                setattr(torch.Tensor, name, original)
        except (AttributeError, TypeError):
            pass
    c_functions = torch._C._VariableFunctions
    for name in ("allclose", "equal", "isclose", "all", "any", "abs", "max", "eq", "testing"):
        if hasattr(c_functions, name):
            setattr(torch, name, getattr(c_functions, name))
