"""Benchmarks behind the course's figures: ``python -m kvlib.bench <name> [options]``.

Adding one is dropping a module in this package (no registry to edit): ``kvlib/bench/my_thing.py``
becomes the subcommand ``my-thing`` when it defines

- a module docstring, whose first line is the one-line help shown by ``python -m kvlib.bench``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``main(args: argparse.Namespace) -> int`` (the exit status);
- optionally ``validate(args, parser) -> None``, run after parsing and before ``main``, for checks
  that span several options or need the environment (e.g. ``--device cuda`` without a GPU); it
  reports a mistake with ``parser.error(...)`` (a usage line and exit status 2, no traceback).

Validate every option when parsing: ``type=`` converters from :mod:`kvlib.validate`
(``positive_int_arg``, ``int_list_arg``, ...) for single values, ``validate`` for the rest, so a
mistake never reaches ``main`` as a traceback or a silently wrong table.

Modules whose name starts with ``_`` are private. Keep heavy imports (torch, triton) inside
functions or accept that they load when the subcommand runs: listing the subcommands reads only
docstrings (with ``ast``), it never imports the modules.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["BenchInfo", "discover", "load"]


@dataclass(frozen=True)
class BenchInfo:
    """A discovered benchmark: subcommand name, module name and one-line summary."""

    name: str
    module: str
    summary: str


def discover() -> dict[str, BenchInfo]:
    """All benchmark subcommands in this package, by name, without importing them."""
    found: dict[str, BenchInfo] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        path = Path(info.module_finder.path) / f"{info.name}.py"  # type: ignore[union-attr]
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else "(no description)"
        name = info.name.replace("_", "-")
        found[name] = BenchInfo(name, f"{__name__}.{info.name}", summary)
    return dict(sorted(found.items()))


def load(name: str) -> ModuleType:
    """Import the module of subcommand ``name`` and check it follows the convention."""
    benches = discover()
    if name not in benches:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(benches) or 'none'}")
    module = importlib.import_module(benches[name].module)
    for attr in ("add_arguments", "main"):
        if not callable(getattr(module, attr, None)):
            raise TypeError(f"benchmark module {module.__name__} must define {attr}()")
    return module
