"""Exercise `ex3_generate`: greedy generation with a cache, a prefill call, then a decode call per token."""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, assert_shape, expect
from ..delegation import graded
from ..fixtures import generator, tiny_model
from ..properties import assert_unchanged, call_pure, snapshot
from ._models import Recorder

# kvlib's generate first (same signature), then the other generation loops of kvlib.generate, each of
# which hands in all or part of the answer (new_token_positions, the ch00 exercise, is fine to use).
REFERENCES = (
    "kvlib.generate.generate",
    "kvlib.generate.generate_uncached",
    "kvlib.generate.timed_generate",
    "kvlib.generate.time_next_token",
)


def _prompt(model: Any, B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (B, T), generator=generator(seed))


def _generate_case(
    fn: Any, model: Any, B: int, T: int, N: int, seed: int, later_call: bool = False
) -> torch.Tensor:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate_uncached

    prompt = _prompt(model, B, T, seed)
    want = generate_uncached(model, prompt, N)  # [B, T + N]
    cache = NaiveKVCache(model.config.num_layers)
    rec = Recorder(model, cache)
    what = f"generate(prompt of {B}x{T} tokens, max_new_tokens={N})"
    try:
        with torch.no_grad():
            got = call_pure(fn, rec, prompt, N, cache, what="generate")
    except CheckFailed as exc:
        hints = []
        if "raised" in str(exc) and B > 1:
            hints.append(f"this case has batch {B}: each row picks its own token (no .item(), no [0])")
        if "raised" in str(exc) and T > 16:
            hints.append(f"this prompt has {T} tokens, longer than the visible tests")
        if hints:
            raise CheckFailed(f"{what}: {exc} ({'; '.join(hints)})") from None
        raise
    calls = rec.calls
    expect(len(calls) > 0, f"{what} never called the model")
    expect(calls[0]["cache"], "pass the cache to the model: model(input_ids, positions=..., cache=cache)")
    if calls[0]["T"] != T:
        raise CheckFailed(
            f"{what}: the first call fed {calls[0]['T']} tokens; prefill must process the whole "
            f"prompt ({T} tokens) in one call, not token by token"
        )
    expect(
        calls[0]["positions"] == list(range(T)),
        f"{what}: the prefill must use positions 0..{T - 1}, got {calls[0]['positions'][:6]}...",
    )
    for s, c in enumerate(calls[1:], start=1):
        expect(c["cache"], f"{what}: decode call {s} was made without the cache; pass cache=cache every step")
        if c["T"] != 1:
            raise CheckFailed(
                f"{what}: decode call {s} fed {c['T']} tokens; after the prefill feed only the "
                "newest token, the cache already holds the others (re-feeding them stores "
                "duplicate keys)"
            )
        pos = T + s - 1
        if c["positions"] != [pos]:
            got_pos = c["positions"][0]
            hint = {
                pos + 1: "off by one: one too high",
                pos - 1: "off by one: one too low",
                0: "restarted at 0",
                s: "counted from the start of the generation, not of the sequence",
            }.get(got_pos, "wrong")
            raise CheckFailed(
                f"{what}: decode call {s} used position {got_pos}, but the token it feeds sits at "
                f"position {pos} (prompt length {T} + {s - 1} generated before it): {hint} "
                "(positions of decode call s are [T + s - 1])"
            )
    expect(
        cache.seq_len == T + N - 1,
        f"{what}: afterwards the cache you were given holds {cache.seq_len} tokens, expected {T + N - 1} "
        "(the prompt and every fed token): pass that cache to every model call",
    )
    expect(
        len(calls) in (N, N + 1),
        f"{what} made {len(calls)} model calls; expected one prefill and one decode call per further token "
        f"({N} calls)",
    )
    expect(isinstance(got, torch.Tensor), f"generate must return a tensor of ids, got {type(got).__name__}")
    if tuple(got.shape) == (B, N):
        raise CheckFailed(
            f"{what} returned only the {N} new tokens; return the prompt followed by them, "
            f"shape [{B}, {T + N}]"
        )
    if later_call and got.dim() == 2 and got.shape[0] == B and got.shape[1] > T + N:
        raise CheckFailed(
            f"{what}, a later call with a new prompt and a new cache, returned {got.shape[1]} ids instead of "
            f"{T + N}: tokens of an earlier call were kept (a mutable default argument such as "
            "tokens=[] or a module-level list); build everything inside the function, per call"
        )
    assert_shape(
        got, (B, T + N), f"the ids returned by {what}", "prompt followed by max_new_tokens new tokens"
    )
    expect(
        got.dtype == torch.long,
        f"{what} returned ids of dtype {got.dtype}; token ids must be torch.long (int64), as the model's "
        "input: build them with torch.cat of the prompt and the argmax results (torch.zeros(...) is float32)",
    )
    expect(torch.equal(got[:, :T], prompt), f"{what}: the returned ids must start with the prompt unchanged")
    if not torch.equal(got, want):
        bad_rows = (got != want).any(dim=1).nonzero().flatten().tolist()
        if B > 1 and 0 not in bad_rows and all(torch.equal(got[r, T:], got[0, T:]) for r in bad_rows):
            raise CheckFailed(
                f"{what}: batch rows {bad_rows} got row 0's tokens; every batch row picks its own greedy "
                "token: argmax over the vocabulary for each row, logits[:, -1].argmax(dim=-1, keepdim=True)"
            )
        first = int((got != want).any(dim=0).nonzero()[0].item()) - T
        raise CheckFailed(
            f"{what}: new token {first} differs from greedy decoding without a cache"
            + (f" (in batch row {bad_rows[0]})" if B > 1 else "")
            + "; pick argmax over the vocabulary (dim=-1) of the logits at the last position, "
            "logits[:, -1, :]"
        )
    return got


@graded("generate", *REFERENCES)
def generate_visible(fn: Any) -> None:
    model = tiny_model(0)
    _generate_case(fn, model, B=1, T=4, N=5, seed=1)
    _generate_case(fn, model, B=1, T=3, N=2, seed=3, later_call=True)  # a second call, a new cache
    _generate_case(fn, model, B=2, T=5, N=4, seed=2, later_call=True)  # two rows with different tokens
    print("visible tests passed")


@graded("generate", *REFERENCES)
def generate_hidden(fn: Any) -> None:
    model = tiny_model(1)
    first = _generate_case(fn, model, B=2, T=7, N=9, seed=2)
    copy = snapshot(first)
    # smaller calls after it (a buffer kept between calls is reused, not regrown, by these)
    for B, T, N, seed in [(1, 5, 1, 4), (2, 6, 6, 6), (1, 1, 6, 3)]:
        _generate_case(fn, model, B=B, T=T, N=N, seed=seed, later_call=True)
        assert_unchanged(
            first, copy, "the ids generate returned earlier",
            "a later call wrote into them: return a new tensor per call, not a buffer kept between calls",
        )  # fmt: skip
    _generate_case(fn, model, B=3, T=6, N=6, seed=6, later_call=True)  # rows whose greedy choices differ
    _generate_case(fn, tiny_model(2, num_kv_heads=2), B=3, T=3, N=8, seed=5, later_call=True)  # GQA
    _generate_case(fn, tiny_model(4, num_kv_heads=1), B=2, T=4, N=5, seed=7, later_call=True)  # one KV head
    long_model = tiny_model(3, max_seq_len=512)  # prompts past every visible length, up to the context
    for seed, (B, T, N) in enumerate([(2, 33, 6), (1, 100, 4), (2, 257, 3), (1, 500, 12), (1, 3, 70)]):
        _generate_case(fn, long_model, B=B, T=T, N=N, seed=20 + seed, later_call=True)
    print("hidden tests passed")
