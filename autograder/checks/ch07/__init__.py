"""Checks for chapter 07 (the paged decode kernel in Triton): a row softmax, decode attention over a
contiguous cache, the same through a block table, split-K's merge and first pass, and the GQA kernel
with one program per KV head. One module per exercise; the notebook's test cells call the names
re-exported here.

Every check builds its own inputs (`_cases`: caches whose unused slots hold NaN) and compares the
learner's launcher with kvlib's reference (`kvlib.kernels`). In Triton's CPU interpreter the checks
also record which elements each program loads (`kvlib.kernels.trace`), so a read past a sequence's
end, a kernel that reads each key once per query head, or an answer computed without any kernel
fails with a message that says so.
"""

import functools
from collections.abc import Callable
from typing import Any

from ..common import CheckFailed
from . import decode, gqa, paged, softmax, split
from .paged import memory_guard


def _memory_safe(check: Callable[..., None]) -> Callable[..., None]:
    """Run a whole check with interpreted loads and stores confined to the launch's tensors.

    In Triton's interpreter an unmasked store writes past the end of its tensor into the grader's own
    heap: a mutant that stored a tile's padding rows crashed pytest (``munmap_chunk(): invalid pointer``)
    several tests later. The guard drops such lanes and counts them, so the check reports the store
    instead of the process dying; a check that already failed keeps its own message."""

    @functools.wraps(check)  # keeps `references`, which the delegation tests read
    def run(fn: Any, *args: Any, **kwargs: Any) -> None:
        with memory_guard() as guard:
            check(fn, *args, **kwargs)
        if guard is not None and guard.stray_stores:
            raise CheckFailed(
                f"your kernel stored {guard.stray_stores} values outside every tensor it was given (past the "
                "end of its output: on a GPU that corrupts memory or faults); mask every store"
            )

    return run


decode_attention_visible = _memory_safe(decode.decode_attention_visible)
decode_attention_hidden = _memory_safe(decode.decode_attention_hidden)
merge_splits_visible = _memory_safe(split.merge_splits_visible)
merge_splits_hidden = _memory_safe(split.merge_splits_hidden)
paged_decode_gqa_visible = _memory_safe(gqa.paged_decode_gqa_visible)
paged_decode_gqa_hidden = _memory_safe(gqa.paged_decode_gqa_hidden)
paged_decode_visible = _memory_safe(paged.paged_decode_visible)
paged_decode_hidden = _memory_safe(paged.paged_decode_hidden)
paged_decode_partials_visible = _memory_safe(split.paged_decode_partials_visible)
paged_decode_partials_hidden = _memory_safe(split.paged_decode_partials_hidden)
softmax_rows_visible = _memory_safe(softmax.softmax_rows_visible)
softmax_rows_hidden = _memory_safe(softmax.softmax_rows_hidden)

__all__ = [
    "decode_attention_hidden",
    "decode_attention_visible",
    "merge_splits_hidden",
    "merge_splits_visible",
    "paged_decode_gqa_hidden",
    "paged_decode_gqa_visible",
    "paged_decode_hidden",
    "paged_decode_partials_hidden",
    "paged_decode_partials_visible",
    "paged_decode_visible",
    "softmax_rows_hidden",
    "softmax_rows_visible",
]
