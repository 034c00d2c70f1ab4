"""Checks for chapter 06 (the paged block manager): the block allocator, appending to a block table,
fork and copy-on-write, chain hashes and the prefix cache, two closed-form numbers, and the
find-the-bug exercise. One module per exercise; the notebook's test cells call the names re-exported
here.

The bookkeeping exercises are graded by replaying seeded random operation sequences on the learner's
code and on kvlib's (`kvlib.paged`) side by side, comparing every result and the whole state after
every step, so a mistake that shows only on the hundredth operation still fails with the operation
that exposed it.
"""

from .allocator import block_allocator_hidden, block_allocator_visible
from .find_bugs import expose_bugs_hidden, expose_bugs_visible
from .numbers import block_waste_hidden, block_waste_visible, prefix_saving_hidden, prefix_saving_visible
from .prefix import block_hashes_hidden, block_hashes_visible, prefix_cache_hidden, prefix_cache_visible
from .tables import (
    append_token_cow_hidden,
    append_token_cow_visible,
    append_token_hidden,
    append_token_visible,
    fork_hidden,
    fork_visible,
)

__all__ = [
    "append_token_cow_hidden",
    "append_token_cow_visible",
    "append_token_hidden",
    "append_token_visible",
    "block_allocator_hidden",
    "block_allocator_visible",
    "block_hashes_hidden",
    "block_hashes_visible",
    "block_waste_hidden",
    "block_waste_visible",
    "expose_bugs_hidden",
    "expose_bugs_visible",
    "fork_hidden",
    "fork_visible",
    "prefix_cache_hidden",
    "prefix_cache_visible",
    "prefix_saving_hidden",
    "prefix_saving_visible",
]
