"""Checks for chapter 02 (memory): the KV-size formula, measuring a cache, a static cache, numbers."""

from .cache_bytes import cache_bytes_hidden, cache_bytes_visible
from .find_errors import find_errors_hidden, find_errors_visible
from .interview import interview_hidden, interview_visible
from .kv_bytes import kv_bytes_hidden, kv_bytes_visible
from .static_cache import static_cache_hidden, static_cache_visible

__all__ = [
    "cache_bytes_hidden",
    "cache_bytes_visible",
    "find_errors_hidden",
    "find_errors_visible",
    "interview_hidden",
    "interview_visible",
    "kv_bytes_hidden",
    "kv_bytes_visible",
    "static_cache_hidden",
    "static_cache_visible",
]
