"""A hint shared by chapter 03's tensor exercises: right for one sequence, wrong for a batch."""

from __future__ import annotations

from collections.abc import Callable

from ..common import CheckFailed

# Failures that re-running one sequence cannot explain (the row re-run works on copies, in the same dtype).
_NOT_ABOUT_BATCHES = ("modified its input", "must keep the dtype", "changed after a later call")


def with_batch_hint(exc: CheckFailed, batch: int, row_ok: Callable[[], bool]) -> CheckFailed:
    """`exc`, plus a sentence when the same function is right on the first sequence alone.

    `row_ok()` re-runs the learner's function on sequence 0 only and says whether it was right; any
    error it raises counts as "not right", so the hint never hides the original failure.
    """
    if batch <= 1 or any(m in str(exc) for m in _NOT_ABOUT_BATCHES):
        return exc
    try:
        ok = row_ok()
    except Exception:  # noqa: BLE001 - the learner's code failing on one row: no hint
        ok = False
    if not ok:
        return exc
    return CheckFailed(
        f"{exc}. Your function is right for a single sequence but not for a batch of {batch}: keep the "
        "batch axis (dim 0) through every reshape/view, never index it ([0]) or squeeze it"
    )
