"""Checks for chapter 00 (setup): one warm-up exercise, positions of new tokens after a cache."""

from .positions import positions_hidden, positions_visible

__all__ = ["positions_hidden", "positions_visible"]
