"""Mutation testing: every catalogued wrong answer must fail its exercise's hidden tests.

One kernel per notebook runs the instructor notebook once; then, for each mutant, only the
mutant (as the solution cell) and the exercise's test cell run, and the reference solution is
put back. A mutant that kills the kernel costs one rebuild, not a rerun per mutant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import notebook as nbk
from .grading import Replayer, cell_timeout, failure_message

MIN_MUTANTS_PER_EXERCISE = 4


@dataclass
class MutantResult:
    exercise: str
    name: str
    mistake: str
    expect: str
    killed: bool
    message: str

    @property
    def named(self) -> bool:
        """True when the failure message names the mistake (contains the EXPECT text)."""
        return self.killed and bool(self.expect) and self.expect.lower() in self.message.lower()


def parse_header(source: str) -> tuple[str, str]:
    """The `# MISTAKE:` and `# EXPECT:` lines at the top of a mutant file."""
    mistake = expect = ""
    for line in source.splitlines()[:3]:
        if line.startswith("# MISTAKE:"):
            mistake = line.split(":", 1)[1].strip()
        elif line.startswith("# EXPECT:"):
            expect = line.split(":", 1)[1].strip()
    return mistake, expect


def catalog(notebook_path: Path, mutants_root: Path) -> dict[str, list[Path]]:
    """Mutant files per solution grade_id, for every exercise of the notebook (maybe empty)."""
    nb = nbk.read(notebook_path)
    base = mutants_root / Path(notebook_path).stem
    return {e.solution_id: sorted((base / e.solution_id).glob("*.py")) for e in nbk.exercises(nb)}


class BaselineFailed(RuntimeError):
    """The instructor's own solution fails its tests, so mutants would prove nothing."""


def run_mutants(notebook_path: Path, mutants_root: Path, memory_mb: int | None = None) -> list[MutantResult]:
    instructor = nbk.with_fixed_cell_ids(nbk.read(notebook_path))
    plan = nbk.grading_cells(instructor, instructor)
    solution_source = {nbk.grade_id(c): c.source for kind, c in plan if kind == "solution"}
    test_source = {nbk.grade_id(c): c.source for kind, c in plan if kind == "test"}
    results: list[MutantResult] = []
    with Replayer(Path(notebook_path).resolve().parent, memory_mb, cell_timeout(instructor)) as runner:
        for kind, cell in plan:
            outcome = runner.run(cell.source, remember=kind != "test")
            if kind == "test" and not outcome.ok:
                raise BaselineFailed(
                    f"{notebook_path}: reference fails {nbk.grade_id(cell)}: {failure_message(outcome)}"
                )
        for exercise, files in catalog(notebook_path, mutants_root).items():
            for path in files:
                results.append(_run_one(runner, exercise, path, test_source[f"{exercise}_test"]))
                runner.kernel.run(solution_source[exercise], timeout=runner.timeout)  # put the reference back
    return results


def _run_one(runner: Replayer, exercise: str, path: Path, test_code: str) -> MutantResult:
    source = path.read_text()
    mistake, expect = parse_header(source)
    if nbk.mentions_reference_library(source):
        return MutantResult(exercise, path.stem, mistake, expect, False, "invalid mutant: it uses kvlib")
    planted = runner.run(source, remember=False)
    tested = runner.run(test_code, remember=False)
    message = failure_message(tested) if not tested.ok else ""
    if planted.status == "dead":
        message = f"mutant killed the kernel: {failure_message(planted)}"
    return MutantResult(
        exercise, path.stem, mistake, expect, not tested.ok or planted.status == "dead", message
    )


def summarize(
    notebook: str, results: list[MutantResult], files: dict[str, list[Path]], seconds: float
) -> list[str]:
    """Lines for the terminal: per exercise killed/total and messages that name the mistake."""
    lines = [f"{notebook}  ({seconds:.1f} s)"]
    for exercise, paths in files.items():
        mine = [r for r in results if r.exercise == exercise]
        killed = sum(r.killed for r in mine)
        named = sum(r.named for r in mine)
        flag = (
            ""
            if len(paths) >= MIN_MUTANTS_PER_EXERCISE
            else f"  <- fewer than {MIN_MUTANTS_PER_EXERCISE} mutants"
        )
        lines.append(
            f"  {exercise:<28} killed {killed}/{len(mine)}   named the mistake {named}/{len(mine)}{flag}"
        )
        for r in mine:
            if not r.killed:
                lines.append(f"    SURVIVED {r.name}: {r.mistake} {r.message}".rstrip())
            elif not r.named:
                lines.append(f"    vague    {r.name}: expected '{r.expect}' in: {r.message[:140]}")
    return lines


def mutants_command(notebooks: list[Path], mutants_root: Path, as_json: bool = False) -> int:
    import json

    status = 0
    everything = []
    for path in notebooks:
        files = catalog(path, mutants_root)
        if not files:
            continue
        started = time.monotonic()
        results = run_mutants(path, mutants_root)
        seconds = time.monotonic() - started
        too_few = [e for e, p in files.items() if len(p) < MIN_MUTANTS_PER_EXERCISE]
        if any(not r.killed for r in results) or too_few:
            status = 1
        if as_json:
            everything.append(
                {
                    "notebook": path.name,
                    "seconds": round(seconds, 1),
                    "mutants": [r.__dict__ | {"named": r.named} for r in results],
                    "too_few": too_few,
                }
            )
        else:
            print("\n".join(summarize(path.name, results, files, seconds)), flush=True)
    if as_json:
        print(json.dumps(everything, indent=1))
    return status
