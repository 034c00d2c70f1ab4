"""Exercise 6: `expose_bugs`, the shortest operation sequence that exposes each buggy block manager of
`kvlib.paged.bugs`, and the invariant it breaks.

The answer is data, so it is graded by running it: each letter's sequence must run cleanly on the
correct `BlockManager` (no operation raises, no invariant breaks), be at most `SLACK` operations longer
than the shortest exposing sequence (`SHORTEST`, proved by exhaustive search in
tests/test_paged_bugs.py), and make that letter's buggy manager break the named invariant first (the
first invariant `run_ops` reports). Each letter is judged and reported on its own; the cell passes
only when all five do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import CheckFailed, call, expect, shown
from ..delegation import graded

# The answer is data that no kvlib function computes; running the exercise's own harness from inside
# the graded function is what counts as handing in kvlib's work (the checks run it themselves).
REFERENCES = ("kvlib.paged.bugs.run_ops",)

LETTERS = ("A", "B", "C", "D", "E")
SHORTEST = {"A": 3, "B": 4, "C": 1, "D": 3, "E": 2}
SLACK = 2

_SHAPE = "{'A': (ops, invariant), ...}"


def _lib() -> Any:
    from kvlib.paged import bugs

    return bugs


def _letter(key: Any) -> str:
    expect(
        isinstance(key, str),
        f"expose_bugs: the keys are the letters 'A' to 'E' (str), got the key {shown(key)} of type "
        f"{type(key).__name__}",
    )
    letter = key.strip().upper()
    expect(letter in LETTERS, f"expose_bugs: {key!r} is not one of the manager letters A to E")
    return letter


def _entry(letter: str, value: Any) -> tuple[list[tuple], str]:
    """One letter's (ops, invariant), checked and normalised; the message names the letter."""
    where = f"expose_bugs()[{letter!r}]"
    expect(
        isinstance(value, (tuple, list)) and len(value) == 2,
        f"{where} must be a pair (ops, invariant name), got {shown(value)}",
    )
    ops, name = value
    if isinstance(ops, str) and not isinstance(name, str):
        raise CheckFailed(f"{where}: the pair is (ops, invariant name): the ops come first, then the name")
    try:
        checked = _lib().check_ops(ops)
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"{where}: {exc}") from None
    expect(len(checked) > 0, f"{where}: the sequence is empty; an empty run breaks nothing")
    invariants = _lib().INVARIANTS
    expect(
        isinstance(name, str) and name.strip().lower() in invariants,
        f"{where}: the invariant must be one of the names in INVARIANTS ({', '.join(invariants)}), "
        f"got {shown(name)}",
    )
    return checked, name.strip().lower()


def answer(fn: Callable[..., Any]) -> dict[str, tuple[list[tuple], str]]:
    """The learner's answer, checked for shape: a dict with one (ops, invariant) entry per letter."""
    got = call(fn, what="expose_bugs")
    expect(
        isinstance(got, dict),
        f"expose_bugs must return a dict {_SHAPE}, got {type(got).__name__} {shown(got)}",
    )
    entries: dict[str, Any] = {}
    for key, value in got.items():
        letter = _letter(key)
        expect(letter not in entries, f"expose_bugs: the letter {letter} appears twice (keys {list(got)})")
        entries[letter] = value
    missing = [c for c in LETTERS if c not in entries]
    expect(
        not missing,
        f"expose_bugs has no entry for {', '.join(missing)}: return one (ops, invariant) pair for each "
        "of the five managers A to E",
    )
    return {c: _entry(c, entries[c]) for c in LETTERS}


def _describe_step(step: Any) -> str:
    if step.result.startswith("raised "):
        return f"op {step.index} {step.op!r} {step.result}"
    name, detail = next(iter(step.broken.items()))
    return f"op {step.index} {step.op!r} breaks {name} ({detail})"


def _valid_problem(letter: str, ops: list[tuple]) -> str | None:
    """Why the sequence is not a valid exposing sequence whatever the bug (None if it is)."""
    from kvlib.paged import BlockManager

    run = _lib().run_ops(BlockManager, ops)
    if not run.clean:
        step = next(s for s in run.steps if s.broken or s.result.startswith("raised "))
        return (
            f"{letter}: on the correct BlockManager, {_describe_step(step)}. An exposing sequence must "
            "run cleanly on the correct manager (every operation valid and accepted), so that only the bug "
            "breaks it"
        )
    limit = SHORTEST[letter] + SLACK
    if len(ops) > limit:
        return (
            f"{letter}: {len(ops)} operations; at most {limit} are accepted (the shortest sequence that "
            f"exposes this bug has {SHORTEST[letter]}): drop the operations the bug does not need"
        )
    return None


def _exposes(letter: str, ops: list[tuple]) -> tuple[int, str] | None:
    """The first violation of ``letter``'s buggy manager on ``ops`` (None if it runs clean)."""
    return _lib().run_ops(_lib().BUGGY_MANAGERS[letter], ops).violation


def _judge(letter: str, ops: list[tuple], name: str) -> str | None:
    """None if ``(ops, name)`` is a right answer for ``letter``, else the message that says why not."""
    problem = _valid_problem(letter, ops)
    if problem:
        return problem
    run = _lib().run_ops(_lib().BUGGY_MANAGERS[letter], ops)
    violation = run.violation
    if violation is None:
        others = [c for c in LETTERS if c != letter and _exposes(c, ops) is not None]
        swapped = f" (it exposes manager {' and '.join(others)}: are the letters swapped?)" if others else ""
        return (
            f"{letter}: the sequence does not expose manager {letter}'s bug: it runs {len(ops)} "
            f"operation(s) without breaking any invariant{swapped}. Run run_ops(BUGGY_MANAGERS[{letter!r}], "
            "ops) and look for the operation the bug gets wrong"
        )
    index, first = violation
    if first != name:
        step = run.steps[index]
        also = (
            f"; {name} breaks there too, but {first} comes first in INVARIANTS and run_ops reports the first"
            if name in step.broken
            else ""
        )
        return (
            f"{letter}: the sequence exposes the bug, but manager {letter} first breaks {first} (at op "
            f"{index}, {step.op!r}), not {name}{also}"
        )
    return None


@graded("expose_bugs", *REFERENCES)
def expose_bugs_visible(fn: Callable[..., Any]) -> None:
    """The answer's shape, and each sequence valid on the correct manager and short enough (whether it
    exposes its bug is checked by the hidden tests)."""
    got = answer(fn)
    problems = [p for c in LETTERS if (p := _valid_problem(c, got[c][0]))]
    expect(not problems, "expose_bugs:\n" + "\n".join(problems))
    print("expose_bugs: visible tests passed (each sequence runs cleanly on the correct manager)")


@graded("expose_bugs", *REFERENCES)
def expose_bugs_hidden(fn: Callable[..., Any]) -> None:
    """Each letter in turn: valid, short enough, and exposing its manager's bug with the named invariant
    first. Every letter is reported; the check fails if any letter fails."""
    got = answer(fn)
    expect(
        answer(fn) == got,
        "expose_bugs returned a different answer on a second call: return fixed sequences, not random ones",
    )
    failures = []
    for letter in LETTERS:
        ops, name = got[letter]
        problem = _judge(letter, ops, name)
        if problem:
            failures.append(problem)
            print(f"  {letter}: not yet ({len(ops)} ops)")
        else:
            print(f"  {letter}: exposed, {name} breaks first; {len(ops)} ops (shortest {SHORTEST[letter]})")
    expect(
        not failures,
        f"expose_bugs: {len(LETTERS) - len(failures)} of {len(LETTERS)} bugs exposed.\n"
        + "\n".join(failures),
    )
    print("expose_bugs: hidden tests passed")
