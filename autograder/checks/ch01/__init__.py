"""Checks for chapter 01 (naive KV cache): attention with an offset mask, the cache, generation, agreement.

One module per exercise; the notebook's test cells call the functions re-exported here. Every check
builds its own inputs and reference (kvlib) and, when the learner's output is wrong, recomputes the
classic wrong variants to name the mistake.
"""

from .attention import causal_attention_hidden, causal_attention_visible
from .cache import naive_cache_hidden, naive_cache_visible
from .compare import compare_hidden, compare_visible
from .generation import generate_hidden, generate_visible

__all__ = [
    "causal_attention_hidden",
    "causal_attention_visible",
    "compare_hidden",
    "compare_visible",
    "generate_hidden",
    "generate_visible",
    "naive_cache_hidden",
    "naive_cache_visible",
]
