"""Checks for chapter 05 (placeholder: being written)."""


def h2o_scores_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def h2o_scores_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def h2o_keep_visible(answer):
    return None  # PLACEHOLDER: replaced by the real checks


def h2o_keep_hidden(answer):
    return None  # PLACEHOLDER: replaced by the real checks
