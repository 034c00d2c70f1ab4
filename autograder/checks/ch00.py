"""Checks for chapter 00's warm-up: positions of new tokens after a cache of a given length."""

from __future__ import annotations

import torch

from .common import CheckFailed, call, expect


def _expected(cache_len: int, n_new: int) -> torch.Tensor:
    return torch.arange(cache_len, cache_len + n_new, dtype=torch.long)


def _check_case(fn, cache_len: int, n_new: int) -> None:
    got = call(fn, cache_len, n_new, what="new_token_positions")
    expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, got {type(got).__name__}")
    expect(
        got.dtype == torch.long, f"positions index embeddings, so they must be torch.long, got {got.dtype}"
    )
    want = _expected(cache_len, n_new)
    expect(
        got.dim() == 1 and got.numel() == n_new,
        f"with {n_new} new tokens expect {n_new} positions, got shape {tuple(got.shape)} (off by one?)",
    )
    if torch.equal(got, want):
        return
    if n_new and torch.equal(got, torch.arange(n_new)):
        raise CheckFailed("positions restart at 0: new tokens come after the cached ones, start at cache_len")
    if n_new and torch.equal(got, want + 1):
        raise CheckFailed(
            "positions are one too high: the first new token sits at index cache_len, not cache_len+1"
        )
    raise CheckFailed(
        f"positions for cache_len={cache_len}, n_new={n_new} are wrong: got {got.tolist()[:8]}..."
    )


def positions_visible(fn) -> None:
    _check_case(fn, 0, 4)
    _check_case(fn, 5, 1)
    print("visible tests passed")


def positions_hidden(fn) -> None:
    gen = torch.Generator().manual_seed(0)
    cases = [(0, 1), (7, 3), (511, 1), (128, 64), (3, 0)]
    cases += [tuple(torch.randint(0, 300, (2,), generator=gen).tolist()) for _ in range(5)]
    for cache_len, n_new in cases:
        _check_case(fn, cache_len, n_new)
    print("hidden tests passed")
