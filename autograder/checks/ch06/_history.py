"""The context of a failing operation in a replayed walk, shared by the chapter 06 checks.

A walk's failure names the operation number and the few operations before it, so a learner can
replay the exact sequence by hand: "operation 17: append(2, 5) (after 13 earlier operation(s), then
fork(0, 2), append(0, 4), append(2, 9))"."""

from __future__ import annotations


def after_context(history: list[str], shown: int) -> str:
    """`` (after ...)`` listing up to ``shown`` operations before the last one of ``history`` (the
    failing one) and how many came earlier; `` (the first operation)`` when nothing came before."""
    before = history[-shown - 1 : -1]
    skipped = len(history) - 1 - len(before)
    context = ", ".join(before)
    if skipped:
        context = f"{skipped} earlier operation(s), then {context}" if context else f"{skipped} operation(s)"
    return f" (after {context})" if context else " (the first operation)"
