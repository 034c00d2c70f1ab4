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

from .decode import decode_attention_hidden, decode_attention_visible
from .gqa import paged_decode_gqa_hidden, paged_decode_gqa_visible
from .paged import paged_decode_hidden, paged_decode_visible
from .softmax import softmax_rows_hidden, softmax_rows_visible
from .split import (
    merge_splits_hidden,
    merge_splits_visible,
    paged_decode_partials_hidden,
    paged_decode_partials_visible,
)

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
