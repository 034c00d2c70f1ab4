"""Checks for chapter 05 (placeholder: being written)."""


def pruned_fraction_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def pruned_fraction_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks
