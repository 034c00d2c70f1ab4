"""Checks for chapter 05 (placeholder: being written)."""


def window_cache_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def window_cache_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks
