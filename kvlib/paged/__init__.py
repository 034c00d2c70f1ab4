"""Paged KV cache (chapters 06-08): allocator, block tables, copy-on-write, prefix caching, a
fragmentation/capacity simulator (:mod:`kvlib.paged.simulate`, over :mod:`kvlib.paged.workload`,
:mod:`kvlib.paged.allocators` and :mod:`kvlib.paged.sharing`), and the cache a model runs on.

The bookkeeping (blocks, manager, prefix) never touches KV tensors: the manager returns block ids,
slots and ``(src, dst)`` copies. :class:`PagedKVCache` (:mod:`kvlib.paged.cache`) is the caller
that moves the data: per-layer block pools that a model writes and attends through.
"""

from kvlib.paged.blocks import BlockAllocator, OutOfBlocks, PhysicalBlock
from kvlib.paged.cache import PagedKVCache
from kvlib.paged.manager import BlockManager, BlockTable
from kvlib.paged.prefix import HashPrefixCache, PrefixCache, RadixNode, RadixPrefixCache, make_prefix_cache

__all__ = [
    "PhysicalBlock",
    "BlockAllocator",
    "OutOfBlocks",
    "BlockManager",
    "BlockTable",
    "PrefixCache",
    "HashPrefixCache",
    "RadixPrefixCache",
    "RadixNode",
    "make_prefix_cache",
    "PagedKVCache",
]
