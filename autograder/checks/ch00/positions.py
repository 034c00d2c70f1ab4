"""Exercise `ex_positions`: absolute positions of the tokens appended after a cache."""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, as_int, call, expect
from ..delegation import graded
from ..properties import PAST_VISIBLE_LENGTHS

REFERENCES = ("kvlib.generate.new_token_positions",)


def _expected(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new, dtype=torch.long)


def _check_case(
    fn: Any, cache_len: Any, n_new: Any, earlier: dict[tuple[int, int], torch.Tensor] | None = None
) -> torch.Tensor:
    """One call; `earlier` maps the arguments of previous calls to their answers (for diagnosis)."""
    got = call(fn, cache_len, n_new, what="new_token_positions")
    cache_len, n_new = as_int(cache_len, "cache_len"), as_int(n_new, "n_new")
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, got {type(got).__name__}")
    expect(
        got.dtype == torch.long,
        f"positions index embeddings, so they must be torch.long, got {got.dtype}"
        + (" (torch.tensor([]) is float32: pass dtype=torch.long)" if n_new == 0 else ""),
    )
    expect(
        got.dim() == 1,
        f"positions must be a 1-D tensor of length n_new, got shape {tuple(got.shape)} (no batch axis)",
    )
    prefix = _expected(cache_len, got.numel()) if got.dim() == 1 else None
    if got.numel() < n_new and prefix is not None and torch.equal(got, prefix):
        raise CheckFailed(
            f"with cache_len={cache_len}, n_new={n_new} you return only {got.numel()} positions, the "
            f"ones below {cache_len + got.numel()}: are they sliced from a precomputed table? New tokens "
            "can sit past any fixed length"
        )
    expect(
        got.numel() == n_new,
        f"with {n_new} new tokens expect {n_new} positions, got shape {tuple(got.shape)} (off by one?)",
    )
    want = _expected(cache_len, n_new)
    if torch.equal(got, want):
        if earlier is not None:
            earlier[(cache_len, n_new)] = want
        return got
    for (old_len, old_new), old in (earlier or {}).items():
        if torch.equal(got, old):
            raise CheckFailed(
                f"new_token_positions({cache_len}, {n_new}) returned the answer of an earlier call "
                f"({old_len}, {old_new}): the result must depend on this call's arguments only "
                "(a memo keyed on n_new alone?)"
            )
    if n_new and torch.equal(got, torch.arange(n_new)):
        raise CheckFailed("positions restart at 0: new tokens come after the cached ones, start at cache_len")
    if n_new and torch.equal(got, want + 1):
        raise CheckFailed(
            "positions are one too high: the first new token sits at index cache_len, not cache_len+1"
        )
    raise CheckFailed(
        f"positions for cache_len={cache_len}, n_new={n_new} are wrong: got {got.tolist()[:8]}..."
    )


@graded("new_token_positions", *REFERENCES)
def positions_visible(fn: Any) -> None:
    _check_case(fn, 0, 4)
    _check_case(fn, 5, 1)
    _check_case(fn, 12, 3)
    print("visible tests passed")


@graded("new_token_positions", *REFERENCES)
def positions_hidden(fn: Any) -> None:
    gen = torch.Generator().manual_seed(0)
    cases = [(0, 1), (7, 3), (511, 1), (128, 64), (3, 0), (0, 0)]
    cases += [(n, 2) for n in PAST_VISIBLE_LENGTHS] + [(1000, 300), (4096, 1)]
    cases += [(2**24 + 1, 3)]  # past float32's exact integers: no detour through linspace or floats
    cases += [tuple(torch.randint(0, 300, (2,), generator=gen).tolist()) for _ in range(5)]
    earlier: dict[tuple[int, int], torch.Tensor] = {}
    # state across calls first: each call depends on its own arguments only (no memo keyed on n_new)
    for cache_len, n_new in [(10, 2), (20, 2), (10, 3), (0, 2)]:
        _check_case(fn, cache_len, n_new, earlier)
    for cache_len, n_new in cases:
        _check_case(fn, cache_len, n_new, earlier)
    # a later call must not change what an earlier call returned (no shared buffer handed out)
    first = _check_case(fn, 4, 3)
    copy = first.clone()
    for later in ((50, 3), (4, 5)):
        _check_case(fn, *later)
        expect(
            torch.equal(first, copy),
            "the positions returned by an earlier call changed after a later call: return a new tensor "
            "each time, not a view of a buffer you keep and overwrite",
        )
    print("hidden tests passed")
