"""Exercise `ex4_interview`: KV-cache sizes of published models, in GiB, `interview_answers`.

Numeric answers are compared by value; when they are off, the ratio to the right answer usually
names the mistake (1/2: keys or values forgotten; 8: query heads instead of KV heads under GQA;
1.074: GB instead of GiB), so the checks test those ratios first.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..common import CheckFailed, as_number, call, expect, shown
from ..delegation import graded

# No kvlib function has this exercise's signature (it takes no arguments): the formula and the
# model table of kvlib.memory are what would hand the answers in.
REFERENCES = ("kvlib.memory.kv_cache_bytes", "kvlib.memory")
GiB = 1024**3

KEYS = (
    "llama2_7b_4096_fp16",
    "llama2_70b_4096_fp16_if_mha",
    "llama2_70b_4096_fp16",
    "llama2_70b_100x2048_fp16",
    "system_prompt_1000_users_unshared",
    "system_prompt_1000_users_shared",
)
QUESTION = {
    "llama2_7b_4096_fp16": "Llama-2-7B, one 4096-token sequence, fp16",
    "llama2_70b_4096_fp16_if_mha": "Llama-2-70B if it kept all 64 heads as KV heads, 4096 tokens, fp16",
    "llama2_70b_4096_fp16": "Llama-2-70B (8 KV heads), 4096 tokens, fp16",
    "llama2_70b_100x2048_fp16": "Llama-2-70B, 100 concurrent requests of 2048 tokens, fp16",
    "system_prompt_1000_users_unshared": "a 1000-token system prompt copied for 1000 users, Llama-2-7B, fp16",
    "system_prompt_1000_users_shared": "the same system prompt stored once and shared",
}


def reference() -> dict[str, float]:
    from kvlib.memory import MODEL_CONFIGS, kv_cache_bytes

    l7, l70 = MODEL_CONFIGS["Llama-2-7B"], MODEL_CONFIGS["Llama-2-70B"]
    fp16 = torch.float16
    return {
        "llama2_7b_4096_fp16": l7.kv_bytes(4096, 1, fp16) / GiB,
        "llama2_70b_4096_fp16_if_mha": kv_cache_bytes(
            l70.num_layers, l70.num_heads, l70.head_dim, 4096, 1, fp16
        )
        / GiB,
        "llama2_70b_4096_fp16": l70.kv_bytes(4096, 1, fp16) / GiB,
        "llama2_70b_100x2048_fp16": l70.kv_bytes(2048, 100, fp16) / GiB,
        "system_prompt_1000_users_unshared": l7.kv_bytes(1000, 1000, fp16) / GiB,
        "system_prompt_1000_users_shared": l7.kv_bytes(1000, 1, fp16) / GiB,
    }


def diagnose_ratio(key: str, ratio: float) -> str:
    close = lambda x: math.isclose(ratio, x, rel_tol=5e-3)
    if close(0.5):
        return "half the right value: the factor 2 for keys AND values is missing"
    if close(2.0) and "100x2048" in key:
        return (
            "twice the right value: each of the 100 requests holds 2048 tokens (not 4096), and fp16 "
            "is 2 bytes "
            "per element"
        )
    if close(2.0):
        return "twice the right value: fp16 is 2 bytes per element (or the factor 2 was counted twice)"
    if close(8.0) and "70b" in key and "mha" not in key:
        return (
            "8x too large: Llama-2-70B uses grouped-query attention, its cache width is 8 KV heads * 128 = "
            "1024, not the model dimension 8192 (64 query heads)"
        )
    if close(1 / 8) and "mha" in key:
        return "8x too small: this question asks about all 64 heads being KV heads (no GQA), width 8192"
    if close(1e9 / GiB) or close(GiB / 1e9):
        return "off by 7.4%: answer in GiB (2**30 bytes), not GB (10**9 bytes)"
    if close(1 / 1000) and "unshared" in key:
        return "1000x too small: without sharing every one of the 1000 users holds its own copy"
    if close(1000) and key.endswith("_shared"):
        return "1000x too large: shared, the prompt's keys and values are stored once"
    if close(1 / 100) and "100x" in key:
        return "100x too small: each of the 100 requests has its own cache"
    if close(GiB) or close(1e9):
        return "that is a number of bytes: give GiB (divide the bytes by 2**30)"
    if close(1024) or close(1 / 1024):
        return "off by 1024: give GiB (divide bytes by 2**30), not MiB or TiB"
    return "recompute 2 * layers * num_kv_heads * head_dim * tokens * batch * bytes, in GiB"


def check_answer(value: Any, want: float, key: str, question: str) -> None:
    got = as_number(value, f"the answer {key!r}")
    if math.isclose(got, want, rel_tol=5e-3):
        return
    if got == round(want) or got == round(want, 1) or got == round(want, 2):
        raise CheckFailed(
            f"{key} ({question}): you answered {shown(value)} GiB, the exact value is {want:.6g}: "
            f"do not round "
            "(the grader compares to 0.5%)"
        )
    ratio = got / want if want else float("inf")
    raise CheckFailed(f"{key} ({question}): you answered {got:.4g} GiB; {diagnose_ratio(key, ratio)}")


def answers(fn: Any) -> dict[str, Any]:
    got = call(fn, what="interview_answers")
    expect(isinstance(got, dict), f"interview_answers must return a dict, got {type(got).__name__}")
    missing = [k for k in KEYS if k not in got]
    expect(not missing, f"interview_answers is missing the keys {missing}")
    return got


@graded("interview_answers", *REFERENCES)
def interview_visible(fn: Any) -> None:
    got, want = answers(fn), reference()
    check_answer(got["llama2_7b_4096_fp16"], want["llama2_7b_4096_fp16"], "llama2_7b_4096_fp16",
                 QUESTION["llama2_7b_4096_fp16"])  # fmt: skip
    print("visible tests passed")


@graded("interview_answers", *REFERENCES)
def interview_hidden(fn: Any) -> None:
    got, want = answers(fn), reference()
    for key in KEYS:
        check_answer(got[key], want[key], key, QUESTION[key])
    again = answers(fn)  # a second call gives the same answers (nothing consumed or remembered)
    for key in KEYS:
        check_answer(again[key], want[key], key, QUESTION[key] + ", on a second call")
    print("hidden tests passed")
