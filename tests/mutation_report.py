"""Kill rate per module of the last `make mutation` run (reads `mutmut results --all true`).

A mutant is one small change to kvlib (``<`` for ``<=``, a constant off by one, a dropped argument).
Killed means some test failed on it; survived means every test passed, so the suite cannot tell
that version of kvlib from the real one. "no tests" means no selected test even runs that code.
The kill rate counts killed and timed-out mutants over every mutant that was tested or had no test.

Not a test module (no ``test_`` prefix): `make mutation` runs it after mutmut.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

# mutmut names a mutant after its function: kvlib.paged.manager.xǁBlockManagerǁfork__mutmut_3
NAME = re.compile(r"^\s*(?P<module>[\w.]+?)\.x[_ǁ].*__mutmut_\d+: (?P<status>.+)$")
KILLED = ("killed", "timeout")
COUNTED = (*KILLED, "survived", "no tests", "suspicious", "segfault")


def module_counts(results: str) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for line in results.splitlines():
        if match := NAME.match(line):
            counts[match["module"]][match["status"].strip()] += 1
    return counts


def report(counts: dict[str, Counter]) -> str:
    columns = ("kill rate", "killed", "survived", "no tests", "unchecked")
    header = f"{'module':<28} " + " ".join(f"{c:>9}" for c in columns)
    lines = [header, "-" * len(header)]
    for module, c in sorted(counts.items()):
        killed = sum(c[s] for s in KILLED)
        counted = sum(c[s] for s in COUNTED)
        rate = f"{killed / counted:.1%}" if counted else "-"
        values = (rate, killed, c["survived"], c["no tests"], c["not checked"])
        lines.append(f"{module:<28} " + " ".join(f"{v:>9}" for v in values))
    return "\n".join(lines)


def main() -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(proc.stderr or proc.stdout, file=sys.stderr)
        return proc.returncode
    counts = module_counts(proc.stdout)
    if not counts:
        print("no mutmut results: run `make mutation` first", file=sys.stderr)
        return 2
    print(report(counts))
    print("\nsurvivors: `python -m mutmut results`; one of them: `python -m mutmut show NAME`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
