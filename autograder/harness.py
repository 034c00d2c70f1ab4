"""What a test cell imports: a fresh copy of a chapter's checks, with patched functions restored.

Test cells run in the learner's kernel, after the learner's code. A learner (or a careless
helper cell) may have replaced `torch.allclose`, a check helper or `builtins.__import__`.
`fresh("ch01")` therefore drops every cached `autograder.checks` module, restores the torch and
builtins functions snapshotted by `autograder._guard` (imported by the grader before any learner
code runs, or here as a fallback), and imports the chapter's checks again from disk.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def fresh(chapter: str) -> ModuleType:
    """Return `autograder.checks.<chapter>` re-imported from disk after undoing monkeypatches."""
    for name in [m for m in sys.modules if m.startswith("autograder.checks")]:
        del sys.modules[name]
    guard = sys.modules.get("autograder._guard") or importlib.import_module("autograder._guard")
    guard.restore()
    return importlib.import_module(f"autograder.checks.{chapter}")
