"""Kill rate per module of the last `make mutation` run (reads `mutmut results --all true`).

A mutant is one small change to kvlib (``<`` for ``<=``, a constant off by one, a dropped argument).
Killed means some test failed on it; survived means every test passed, so the suite cannot tell
that version of kvlib from the real one. "no tests" means no selected test even runs that code.

Two kinds of survivor are set apart, and the second rate leaves them out:

- **message**: the mutant changes only the text of a string inside a ``raise`` statement
  ("XXexpectedXX", a word upper-cased), or the name a ``kvlib.validate`` check shows
  (``require_int("XXbudgetXX", ...)``). The bad-input tests check the words a message must
  contain (the argument's name, what was expected, what was given), not its exact wording, so that
  a message can be reworded without touching a test; such a mutant is found by reading the
  mutated source, not listed by hand.
- **equivalent**: listed in `tests/mutation_equivalents.py` with the reason no test can tell it from
  the real code. Each entry names a fragment of the mutated line; an entry whose mutant no longer
  survives, or whose fragment is not in the mutant any more (mutmut renumbers a function's mutants
  when the function changes), is printed as stale.

Not a test module (no ``test_`` prefix): `make mutation` runs it after mutmut.
"""

from __future__ import annotations

import ast
import copy
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mutation_equivalents import EQUIVALENT

# mutmut names a mutant after its function: kvlib.paged.manager.xǁBlockManagerǁfork__mutmut_3
NAME = re.compile(r"^\s*(?P<name>(?P<module>[\w.]+?)\.(?P<function>x[_ǁ].*__mutmut_\d+)): (?P<status>.+)$")
KILLED = ("killed", "timeout")
COUNTED = (*KILLED, "survived", "no tests", "suspicious", "segfault")
MUTANTS_DIR = Path("mutants")


@dataclass
class ModuleResult:
    statuses: Counter = field(default_factory=Counter)
    message: list[str] = field(default_factory=list)  # survivors that change only a raise's text
    equivalent: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(self.statuses[s] for s in KILLED)

    @property
    def counted(self) -> int:
        return sum(self.statuses[s] for s in COUNTED)


def parse_results(results: str) -> dict[str, dict[str, str]]:
    """{module: {mutant name: status}} from `mutmut results --all true`."""
    by_module: dict[str, dict[str, str]] = defaultdict(dict)
    for line in results.splitlines():
        if match := NAME.match(line):
            by_module[match["module"]][match["name"]] = match["status"].strip()
    return by_module


class _BlankMessageText(ast.NodeTransformer):
    """Blank the strings that only ever reach an error message: those inside a ``raise``, and the
    first argument of a check (kvlib.validate's ``require_int("budget", ...)``, a module's own
    ``_require_block_ids``), the name its message shows."""

    def visit_Raise(self, node: ast.Raise) -> ast.Raise:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                sub.value = ""
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0] if node.args else None
        is_name = isinstance(first, ast.Constant) and (first.value is None or isinstance(first.value, str))
        if callee.lstrip("_").startswith("require_") and is_name:
            first.value = ""  # a name mutated to "XX..XX", upper case or None
        return node


def _shape_without_message_text(function: ast.FunctionDef) -> str:
    function = _BlankMessageText().visit(copy.deepcopy(function))
    function.name = "f"
    return ast.dump(function)


def mutant_functions(source: str) -> dict[str, ast.FunctionDef]:
    """Every function in a mutmut-generated module, by name (x_f__mutmut_orig, x_f__mutmut_3, ...)."""
    return {
        node.name: node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and "__mutmut_" in node.name
    }


def _original_and_mutant(
    functions: dict[str, ast.FunctionDef], function: str
) -> tuple[ast.FunctionDef, ast.FunctionDef] | None:
    original = functions.get(function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
    mutant = functions.get(function)
    return None if original is None or mutant is None else (original, mutant)


def only_message_text_differs(functions: dict[str, ast.FunctionDef], function: str) -> bool:
    pair = _original_and_mutant(functions, function)
    return pair is not None and _shape_without_message_text(pair[0]) == _shape_without_message_text(pair[1])


def stale_equivalent(functions: dict[str, ast.FunctionDef], function: str, fragment: str) -> bool:
    """True when the listed fragment is not what this mutant changed (the names moved)."""
    pair = _original_and_mutant(functions, function)
    if pair is None:
        return True
    original, mutant = pair
    return fragment not in ast.unparse(mutant) or fragment in ast.unparse(original)


def classify(
    by_module: dict[str, dict[str, str]], sources: dict[str, str], equivalent: dict[str, tuple[str, str]]
) -> tuple[dict[str, ModuleResult], list[str]]:
    """Per-module results with every survivor sorted into message / equivalent / unexplained, and
    the stale entries of `equivalent`."""
    results: dict[str, ModuleResult] = {}
    stale: list[str] = []
    functions_of = {module: mutant_functions(sources.get(module, "")) for module in by_module}
    for module, statuses in by_module.items():
        result = results[module] = ModuleResult(Counter(statuses.values()))
        functions = functions_of[module]
        for name, status in sorted(statuses.items()):
            if status != "survived":
                continue
            function = name[len(module) + 1 :]
            if name in equivalent and not stale_equivalent(functions, function, equivalent[name][0]):
                result.equivalent.append(name)
            elif only_message_text_differs(functions, function):
                result.message.append(name)
            else:
                result.unexplained.append(name)
    for name, (fragment, _) in equivalent.items():
        module = next((m for m in by_module if name.startswith(m + ".")), None)
        if module is None:
            continue  # that module was not run this time
        function = name[len(module) + 1 :]
        status = by_module[module].get(name, "absent")
        if status == "not checked":
            continue  # no verdict yet, say nothing
        if status != "survived" or stale_equivalent(functions_of[module], function, fragment):
            stale.append(f"{name} ({status}; listed for {fragment!r})")
    return results, stale


def report(results: dict[str, ModuleResult]) -> str:
    columns = ("kill rate", "non-equiv", "killed", "survived", "message", "equiv", "no tests", "unchecked")
    header = f"{'module':<26} " + " ".join(f"{c:>9}" for c in columns)
    lines = [header, "-" * len(header)]
    for module, r in sorted(results.items()):
        rate = f"{r.killed / r.counted:.1%}" if r.counted else "-"
        real = r.counted - len(r.message) - len(r.equivalent)
        real_rate = f"{r.killed / real:.1%}" if real else "-"
        values = (
            rate, real_rate, r.killed, r.statuses["survived"], len(r.message), len(r.equivalent),
            r.statuses["no tests"], r.statuses["not checked"],
        )  # fmt: skip
        lines.append(f"{module:<26} " + " ".join(f"{v:>9}" for v in values))
    return "\n".join(lines)


def read_sources(modules: list[str], root: Path = MUTANTS_DIR) -> dict[str, str]:
    sources = {}
    for module in modules:
        path = root / Path(*module.split(".")).with_suffix(".py")
        if path.exists():
            sources[module] = path.read_text()
    return sources


def main() -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(proc.stderr or proc.stdout, file=sys.stderr)
        return proc.returncode
    by_module = parse_results(proc.stdout)
    if not by_module:
        print("no mutmut results: run `make mutation` first", file=sys.stderr)
        return 2
    results, stale = classify(by_module, read_sources(list(by_module)), EQUIVALENT)
    print(report(results))
    print(
        "\nkill rate: killed (or timed out) over every tested or untested mutant; non-equiv: the same "
        "without survivors that change only a raise's text (message) or are listed in "
        "tests/mutation_equivalents.py (equiv)"
    )
    unexplained = [name for r in results.values() for name in r.unexplained]
    if unexplained:
        print(f"\n{len(unexplained)} survivors with no test and no explanation:")
        print("\n".join(f"  {name}" for name in unexplained))
    if stale:
        print(f"\n{len(stale)} stale entries in tests/mutation_equivalents.py:")
        print("\n".join(f"  {entry}" for entry in stale))
    print("\none survivor: `python -m mutmut show NAME`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
