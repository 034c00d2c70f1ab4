"""Checks for chapter 05 (placeholder: being written)."""


def sink_positions_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def sink_positions_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks
