"""Checks for chapter 05 (placeholder: being written)."""


def distant_attention_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def distant_attention_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks
