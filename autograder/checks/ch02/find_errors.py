"""Exercise `ex5_find_error`: judge two published claims about KV-cache memory, `find_the_errors`."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..common import CheckFailed, as_number, call, expect, shown
from ..delegation import graded
from .interview import GiB, diagnose_ratio

# No kvlib function has this exercise's signature (it takes no arguments): the formula and the
# model table of kvlib.memory are what would hand the answers in.
REFERENCES = ("kvlib.memory.kv_cache_bytes", "kvlib.memory")
KEYS = (
    "claim_a_is_correct",
    "claim_a_true_gib",
    "claim_a_mistake",
    "claim_b_is_correct",
    "claim_b_memory_exponent",
    "claim_b_attention_scores_exponent",
)


def _verdict(value: Any, key: str) -> bool:
    expect(
        type(value).__name__ in ("bool", "bool_"),
        f"{key} must be True or False, got {type(value).__name__} {shown(value)}"
        + (" (a string is not a verdict: write False, not 'False')" if isinstance(value, str) else ""),
    )
    return bool(value)


def _choice(value: Any) -> str:
    expect(isinstance(value, str), f"claim_a_mistake must be one of 'a', 'b', 'c', 'd', got {shown(value)}")
    letter = value.strip().strip("()").strip().lower()
    expect(
        letter in ("a", "b", "c", "d"), f"claim_a_mistake must be one of 'a', 'b', 'c', 'd', got {value!r}"
    )
    return letter


def answers(fn: Any) -> dict[str, Any]:
    got = call(fn, what="find_the_errors")
    expect(isinstance(got, dict), f"find_the_errors must return a dict, got {type(got).__name__}")
    missing = [k for k in KEYS if k not in got]
    expect(not missing, f"find_the_errors is missing the keys {missing}")
    _verdict(got["claim_a_is_correct"], "claim_a_is_correct")
    _verdict(got["claim_b_is_correct"], "claim_b_is_correct")
    _choice(got["claim_a_mistake"])
    as_number(got["claim_a_true_gib"], "claim_a_true_gib")
    as_number(got["claim_b_memory_exponent"], "claim_b_memory_exponent")
    as_number(got["claim_b_attention_scores_exponent"], "claim_b_attention_scores_exponent")
    return got


@graded("find_the_errors", *REFERENCES)
def find_errors_visible(fn: Any) -> None:
    answers(fn)
    print("visible tests passed")


@graded("find_the_errors", *REFERENCES)
def find_errors_hidden(fn: Any) -> None:
    from kvlib.memory import MODEL_CONFIGS

    got = answers(fn)
    true_gib = MODEL_CONFIGS["Llama-2-7B"].kv_bytes(4096, 1, torch.float16) / GiB
    expect(
        _verdict(got["claim_a_is_correct"], "claim_a_is_correct") is False,
        "claim A is wrong: recompute Llama-2-7B at 4096 tokens in fp16 with the formula; the table "
        "is off by a factor",
    )
    value = as_number(got["claim_a_true_gib"], "claim_a_true_gib")
    if not math.isclose(value, true_gib, rel_tol=5e-3):
        raise CheckFailed(
            f"claim_a_true_gib: you answered {value:.4g} GiB; " + diagnose_ratio("a", value / true_gib)
        )
    letter = _choice(got["claim_a_mistake"])
    expect(
        letter != "b",
        "claim_a_mistake: fp32 would make the cache twice as large (4 GiB), not smaller than the true 2 GiB",
    )
    expect(
        letter != "c",
        "claim_a_mistake: the claim is about one sequence; a wrong batch would multiply, not halve",
    )
    expect(
        letter == "a",
        "claim_a_mistake: the table's 1 GB is exactly half of 2 GiB (give or take GB vs GiB, only 7%); which "
        "factor of 2 did it drop?",
    )
    expect(
        _verdict(got["claim_b_is_correct"], "claim_b_is_correct") is False,
        "claim B is wrong: the cache adds the same number of bytes for every token, so its memory grows "
        "linearly with the sequence length",
    )
    mem = as_number(got["claim_b_memory_exponent"], "claim_b_memory_exponent")
    expect(
        abs(mem - 1) < 0.01,
        f"claim_b_memory_exponent: KV memory grows like seq_len**1 (linear), you answered {mem:g}; "
        "a quadratic term is attention compute, not cache memory",
    )
    comp = as_number(got["claim_b_attention_scores_exponent"], "claim_b_attention_scores_exponent")
    expect(
        abs(comp - 3) >= 0.01,
        "claim_b_attention_scores_exponent: n**3 is the total over a whole uncached generation of n "
        "tokens (n forward passes); the question asks for one forward pass over n tokens",
    )
    expect(
        abs(comp - 2) < 0.01,
        f"claim_b_attention_scores_exponent: one forward pass over n tokens computes n x n "
        f"attention scores, so it grows like n**2; you answered {comp:g}",
    )
    print("hidden tests passed")
