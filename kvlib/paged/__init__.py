"""Paged KV-cache bookkeeping (chapter 06): allocator, block tables, copy-on-write, prefix caching,
and a fragmentation/capacity simulator (:mod:`kvlib.paged.simulate`).

Nothing here touches KV tensors: the manager returns block ids, slots and ``(src, dst)`` copies,
and the caller (an engine, or :mod:`kvlib.kernels`) moves the data.
"""

from kvlib.paged.blocks import BlockAllocator, OutOfBlocks, PhysicalBlock
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
]
