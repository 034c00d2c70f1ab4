"""Exercise 5: two closed-form numbers, `prefix_saving` and `block_waste`, checked by value on many inputs.

A formula answer is easy to get right on the one case the notebook prints and wrong elsewhere, so the
hidden checks sweep inputs chosen to separate the classic slips: the system prompt's partial block
counted as shared, `users` copies saved instead of `users - 1`, a percentage instead of a share, the
mean of per-length waste shares instead of the share of the summed slots, the shares ignored, a block
of waste counted for a length that fills its last block exactly.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable
from typing import Any

from ..common import CheckFailed, as_number, call
from ..delegation import graded

SAVING_REFERENCES = (
    "kvlib.paged.sharing.analytic_prefix_saving",
    "kvlib.paged.sharing.shared_prefix_savings",
)
WASTE_REFERENCES = ("kvlib.paged.sharing.block_waste", "kvlib.paged.simulate.simulate_stream")

REL_TOL = 1e-6


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --- prefix_saving ---------------------------------------------------------------------------------


def saving_reference(users: int, system_len: int, question_len: int, block_size: int) -> float:
    """The saved share of prompt tokens: the full system blocks are stored once instead of `users` times."""
    shared = (system_len // block_size) * block_size
    return (users - 1) * shared / (users * (system_len + question_len))


def _saving_variants(users: int, system_len: int, question_len: int, block_size: int) -> dict[str, float]:
    """Classic wrong answers, each with the message that names it."""
    total = users * (system_len + question_len)
    shared = (system_len // block_size) * block_size
    per_prompt_blocks = _ceil_div(system_len + question_len, block_size)
    full = system_len // block_size
    blocks_saving = (users - 1) * full / (users * per_prompt_blocks)
    return {
        "the whole system prompt counted as shared: only its full blocks are (floor(system_len / block_size) "
        "* block_size tokens); its last partial block is stored by every request": (users - 1)
        * system_len
        / total,
        "the system prompt's partial block counted as a shared block (ceil instead of floor)": (
            (users - 1) * _ceil_div(system_len, block_size) * block_size / total
        ),
        "a system prompt that fills its last block exactly shares that block too: floor(system_len / "
        "block_size) full blocks, not floor((system_len - 1) / block_size)": (
            (users - 1) * ((system_len - 1) // block_size) * block_size / total
        ),
        "users copies saved instead of users - 1: one copy of the shared blocks is still stored": (
            users * shared / total
        ),
        "a percentage: return a share between 0 and 1": 100
        * saving_reference(users, system_len, question_len, block_size),
        "the saved share of blocks, with every prompt rounded up to whole blocks: the question counts "
        "tokens (each prompt stores system_len + question_len tokens)": blocks_saving,
        "saved tokens, not the saved share: divide by the unshared total": (users - 1) * shared,
        "the share of the shared prompt in one request (the users are missing)": shared
        / (system_len + question_len),
    }


def _check_value(got_raw: Any, want: float, what: str, variants: dict[str, float]) -> None:
    if isinstance(got_raw, numbers.Integral) and not isinstance(got_raw, bool):
        raise CheckFailed(
            f"{what}: you returned the int {got_raw!r}; the share is a float on every input (0.0, not 0): "
            "compute it with /, and return float(...) from any early exit"
        )
    got = as_number(got_raw, what)
    if math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12):
        return
    for message, value in variants.items():
        if math.isclose(got, value, rel_tol=REL_TOL, abs_tol=1e-12) and not math.isclose(
            value, want, rel_tol=REL_TOL
        ):
            raise CheckFailed(f"{what}: you returned {got:.6g}, expected {want:.6g}: {message}")
    if (
        math.isclose(got, round(want, 2))
        or math.isclose(got, round(want, 3))
        or math.isclose(got, round(want, 4))
    ):
        raise CheckFailed(f"{what}: you returned {got!r}, expected {want:.8g}: do not round the answer")
    raise CheckFailed(f"{what}: you returned {got:.6g}, expected {want:.6g}")


def _saving(fn: Callable[..., Any], users: int, system_len: int, question_len: int, block_size: int) -> None:
    args = (users, system_len, question_len, block_size)
    what = f"prefix_saving({users}, {system_len}, {question_len}, {block_size})"
    got = call(fn, *args, what="prefix_saving")
    _check_value(got, saving_reference(*args), what, _saving_variants(*args))


@graded("prefix_saving", *SAVING_REFERENCES)
def prefix_saving_visible(fn: Callable[..., Any]) -> None:
    _saving(fn, 1000, 1000, 100, 16)  # the case to remember
    _saving(fn, 4, 40, 8, 16)  # a partial system block: 32 of its 40 tokens can be shared
    print("visible tests passed")


@graded("prefix_saving", *SAVING_REFERENCES)
def prefix_saving_hidden(fn: Callable[..., Any]) -> None:
    _saving(fn, 1000, 1000, 100, 16)
    _saving(fn, 1, 512, 64, 16)  # one user: nothing to share
    _saving(fn, 8, 10, 5, 16)  # a system prompt shorter than a block: nothing shared
    _saving(fn, 8, 64, 1, 16)  # a system prompt of whole blocks
    _saving(fn, 3, 100, 50, 1)  # block size 1: every system token is shared
    _saving(fn, 100_000, 4096, 256, 32)  # large counts
    rng = random.Random(6)
    for _ in range(40):
        _saving(
            fn,
            rng.randint(1, 5000),
            rng.randint(0, 3000),
            rng.randint(1, 800),
            rng.choice([1, 2, 8, 16, 32, 128]),
        )
    print("hidden tests passed")


# --- block_waste -----------------------------------------------------------------------------------


def waste_reference(lengths: list[int], shares: list[float], block_size: int) -> float:
    allocated = sum(s * _ceil_div(n, block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    return (allocated - tokens) / allocated


def _waste_variants(lengths: list[int], shares: list[float], block_size: int) -> dict[str, float]:
    def share(n: int) -> float:
        alloc = _ceil_div(n, block_size) * block_size
        return (alloc - n) / alloc

    allocated = sum(s * _ceil_div(n, block_size) * block_size for n, s in zip(lengths, shares))
    tokens = sum(s * n for n, s in zip(lengths, shares))
    plus_one = sum(s * (n // block_size + 1) * block_size for n, s in zip(lengths, shares))
    unweighted_alloc = sum(_ceil_div(n, block_size) * block_size for n in lengths)
    return {
        "the weighted mean of each length's waste share: the question asks for the share of all allocated "
        "slots (sum the slots over the workload, then divide)": sum(
            s * share(n) for n, s in zip(lengths, shares)
        )
        / sum(shares),
        "the shares are ignored: a fraction shares[i] of the sequences has lengths[i] tokens": (
            unweighted_alloc - sum(lengths)
        )
        / unweighted_alloc,
        "a whole extra block counted for a length that fills its blocks exactly (n // B + 1 blocks instead "
        "of ceil(n / B))": (plus_one - tokens) / plus_one,
        "empty slots over tokens: divide by the allocated slots": (allocated - tokens) / tokens,
        "a percentage: return a share between 0 and 1": 100 * waste_reference(lengths, shares, block_size),
        "the empty slots, not their share": allocated - tokens,
    }


def _waste(fn: Callable[..., Any], lengths: Any, shares: Any, block_size: int) -> None:
    what = f"block_waste({lengths}, {shares}, {block_size})"
    before = (list(lengths), list(shares))
    got = call(fn, lengths, shares, block_size, what="block_waste")
    if (list(lengths), list(shares)) != before:
        raise CheckFailed(f"{what}: your function changed the lists it was given (to {lengths}, {shares})")
    lengths, shares = before
    _check_value(
        got, waste_reference(lengths, shares, block_size), what, _waste_variants(lengths, shares, block_size)
    )


@graded("block_waste", *WASTE_REFERENCES)
def block_waste_visible(fn: Callable[..., Any]) -> None:
    for bs in (8, 16, 32):
        _waste(fn, [37, 1000], [0.3, 0.7], bs)
    print("visible tests passed")


@graded("block_waste", *WASTE_REFERENCES)
def block_waste_hidden(fn: Callable[..., Any]) -> None:
    for bs in (8, 16, 32):
        _waste(fn, [37, 1000], [0.3, 0.7], bs)
    _waste(fn, [64], [1.0], 16)  # whole blocks: no waste
    _waste(fn, [1], [1.0], 16)  # one token in a block of 16
    _waste(fn, [5, 17, 33], [1.0, 1.0, 2.0], 16)  # shares that do not sum to 1 are proportions
    _waste(fn, [100, 3], [0.999, 0.001], 1)  # block size 1: nothing wasted
    rng = random.Random(6)
    for _ in range(40):
        k = rng.randint(1, 5)
        lengths = [rng.randint(1, 5000) for _ in range(k)]
        shares = [rng.random() + 0.01 for _ in range(k)]
        _waste(fn, lengths, shares, rng.choice([1, 4, 8, 16, 32, 256]))
    _waste(fn, (37, 1000), (0.3, 0.7), 16)  # tuples are sequences too
    print("hidden tests passed")
