"""Exercise `ex4_compare`: cached and uncached greedy generation agree (logits and tokens).

The checks hand the learner models whose cached path is wrong in one place at a time (one batch
row, one step, the prefill, a signed difference), so an answer that looks at part of the output fails.
"""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, as_number, expect, shown
from ..delegation import graded
from ..fixtures import generator, tiny_model
from ..properties import call_pure
from ._models import BuggyCachedModel

# kvlib's own compare_cached_uncached first; its generation loops (generate, and generate_uncached
# with return_logits) would each hand in one half of the comparison.
REFERENCES = (
    "kvlib.generate.compare_cached_uncached",
    "kvlib.generate.generate",
    "kvlib.generate.generate_uncached",
    "kvlib.generate.timed_generate",
    "kvlib.generate.time_next_token",
)


def _reference(
    model: Any, prompt: torch.Tensor, N: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate, generate_uncached

    ids_c, logits_c = generate(model, prompt, N, NaiveKVCache(model.config.num_layers), return_logits=True)
    ids_u, logits_u = generate_uncached(model, prompt, N, return_logits=True)
    return ids_c, logits_c.double(), ids_u, logits_u.double()  # logits [B, N, V]


def _as_bool(value: Any) -> bool:
    import numpy as np

    if isinstance(value, torch.Tensor):
        expect(
            value.numel() == 1,
            f"tokens_equal must be one bool, got a tensor of shape {tuple(value.shape)}: reduce it to one "
            "answer for all tokens (torch.equal(a, b), or (a == b).all())",
        )
        expect(value.dtype == torch.bool, f"tokens_equal must be a bool, got {shown(value)}: use torch.equal")
        return bool(value.item())
    expect(
        isinstance(value, (bool, np.bool_)),
        f"tokens_equal must be a bool (True or False), got {type(value).__name__} {value!r:.60}"
        + (": use torch.equal(a, b) or bool(...)" if not isinstance(value, str) else ""),
    )
    return bool(value)


def _partial_answers(logits_c: torch.Tensor, logits_u: torch.Tensor) -> list[tuple[str, float]]:
    """Numbers that an answer looking at part of the output reports, each with the mistake it names."""
    d = logits_c - logits_u  # [B, N, V]
    signed = (
        "the difference is not taken in absolute value before the max (a logit 3 lower is as wrong as one 3 "
        "higher): use (a - b).abs().max()"
    )
    out = [(signed, d.max().item()), (signed, (-d).max().item())]
    if d.shape[1] > 1:
        every = "compare every generated step, not only the first or last"
        out += [
            ("the prefill step's logits (those that choose the first new token) are left out: compare every "
             "generated step, the prefill included", d[:, 1:].abs().max().item()),
            (f"only the first step is compared: {every}", d[:, 0].abs().max().item()),
            (f"only the last step is compared: {every}", d[:, -1].abs().max().item()),
        ]  # fmt: skip
    if d.shape[0] > 1:
        out.append(
            ("only batch row 0 is compared: take the max over every batch row", d[0].abs().max().item())
        )
    return out


def _where_it_differs(logits_c: torch.Tensor, logits_u: torch.Tensor) -> str | None:
    """When the cached path is wrong in one place only (a step, the prefill, some rows), say where."""
    bad = (logits_c - logits_u).abs().amax(dim=-1) > 1e-3  # [B, N]
    steps = bad.any(dim=0).nonzero().flatten().tolist()
    rows = bad.any(dim=1).nonzero().flatten().tolist()
    B, N = bad.shape
    if steps == [0] and N > 1:
        return (
            "the logits differ only in the prefill step (those that choose the first new token), which your "
            "comparison leaves out: compare every generated step, the prefill included"
        )
    if B > 1 and rows and 0 not in rows:
        return (
            f"the logits differ only in batch row {', '.join(map(str, rows))}, which your comparison leaves "
            "out: take the max over every batch row, not row 0"
        )
    if len(steps) == 1 and N > 1:
        return (
            f"the logits differ only at decode step {steps[0]} (of {N - 1}), which your comparison leaves "
            "out: compare every generated step, not only the first or last"
        )
    return None


def _agreement_case(fn: Any, make_model: Any, B: int, T: int, N: int, seed: int, label: str) -> None:
    from kvlib.cache.dense import NaiveKVCache

    model = make_model()
    prompt = torch.randint(0, model.config.vocab_size, (B, T), generator=generator(seed))
    ids_c, logits_c, ids_u, logits_u = _reference(make_model(), prompt, N)
    want_diff = (logits_c - logits_u).abs().max().item()
    want_same = bool(torch.equal(ids_c, ids_u))
    with torch.no_grad():
        out = call_pure(
            fn, model, prompt, N, NaiveKVCache(model.config.num_layers), what="compare_cached_uncached"
        )
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2,
        "compare_cached_uncached must return a pair (max_abs_logit_diff, tokens_equal), got "
        f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""),
    )
    diff = as_number(out[0], "the first returned value, max_abs_logit_diff,")
    same = _as_bool(out[1])
    where = f"on {label}"
    if want_diff < 1e-4:  # a healthy model: both numbers are rounding noise
        if diff > 1e-4:
            raise CheckFailed(
                f"{where} the cached and uncached logits agree to {want_diff:.1e}, you report "
                f"{diff:.3g}: the uncached run must feed the whole sequence with cache=None at "
                "every step (positions 0..t), and the cached run must prefill once and decode "
                "with positions T + s - 1"
            )
    else:
        if diff < 1e-3 * want_diff:  # only rounding noise reported: say where the true difference hides
            hidden = _where_it_differs(logits_c, logits_u)
            if hidden:
                raise CheckFailed(
                    f"{where} you report a max |logit difference| of {diff:.3g}, expected {want_diff:.4g}: "
                    f"{hidden}"
                )
        if diff < 1e-9:
            raise CheckFailed(
                f"{where} your check reports identical logits, but the cached path is broken "
                f"(true max difference {want_diff:.3g}): are both runs using the cache, do "
                "you compare only tokens, or not every generated step?"
            )
        if abs(diff - want_diff) > 1e-3 * max(1.0, want_diff):
            for message, value in _partial_answers(logits_c, logits_u):
                if value < 1e-3 or abs(value - want_diff) <= 1e-3 * max(1.0, want_diff):
                    continue  # rounding noise, or a part that holds the whole answer: names no mistake
                if abs(diff - value) <= 1e-3 * max(1.0, value):
                    raise CheckFailed(f"{where} you report a max |logit difference| of {diff:.4g}, expected "
                                      f"{want_diff:.4g}: {message}")  # fmt: skip
            raise CheckFailed(
                f"{where} you report a max |logit difference| of {diff:.4g}, expected "
                f"{want_diff:.4g}: compare the raw logits (not probabilities) of every generated "
                "step (not only the first or last) and every batch row, each run greedy on its own"
            )
    if same != want_same:
        rows = (
            "" if B == 1 else f" (they differ in batch row {int((ids_c != ids_u).any(dim=1).nonzero()[0])})"
        )
        raise CheckFailed(
            f"{where} the generated tokens are {'identical' if want_same else 'different' + rows}, you "
            f"report tokens_equal={same}: every token of every batch row must match (torch.equal, or "
            "(a == b).all(), not .any())"
        )


@graded("compare_cached_uncached", *REFERENCES)
def compare_visible(fn: Any) -> None:
    _agreement_case(fn, lambda: tiny_model(0), B=1, T=4, N=5, seed=1, label="a healthy model")
    _agreement_case(
        fn,
        lambda: BuggyCachedModel(tiny_model(0), 0.25),
        B=2,
        T=4,
        N=5,
        seed=1,
        label="a model whose cached logits are shifted by 0.25 (batch 2)",
    )
    print("visible tests passed")


@graded("compare_cached_uncached", *REFERENCES)
def compare_hidden(fn: Any) -> None:
    cases = [
        ("a healthy model (batch 2)", lambda: tiny_model(3), 2, 6, 8),
        ("a healthy GQA model, prompt of 33 tokens",
         lambda: tiny_model(5, num_kv_heads=2, max_seq_len=128), 2, 33, 5),
        ("a model whose cached logits drift by 0.01 (same tokens)",
         lambda: BuggyCachedModel(tiny_model(3), 0.01), 1, 5, 6),
        ("a model whose cached logits are off at one middle step",
         lambda: BuggyCachedModel(tiny_model(3), 3.0, calls={2}), 1, 5, 6),
        ("a model whose cached path picks a different token at step 3",
         lambda: BuggyCachedModel(tiny_model(3), 50.0, calls={3}, shift=True), 2, 4, 7),
        ("a model whose cached path picks the runner-up token at step 1 (its logits move by 0.05 only: "
         "after it the two runs continue from different tokens)",
         lambda: BuggyCachedModel(tiny_model(3), 0.05, calls={1}, shift="flip"), 1, 4, 8),
        ("a model whose cached prefill logits are off (only the first new token's)",
         lambda: BuggyCachedModel(tiny_model(3), 2.0, calls={0}), 2, 5, 5),
        ("a model whose cached logits are off in batch row 1 only",
         lambda: BuggyCachedModel(tiny_model(3), 1.5, rows=[1]), 2, 5, 5),
        ("a model whose cached path picks a different token in batch row 2 only",
         lambda: BuggyCachedModel(tiny_model(3), 50.0, calls={2}, rows=[2], shift=True), 3, 4, 6),
        ("a model whose cached logits are 3 lower at step 1 and 1 higher at step 3",
         lambda: BuggyCachedModel(tiny_model(3), {1: -3.0, 3: 1.0}), 1, 4, 5),
        ("a model whose cached logits are 3 higher at step 1 and 1 lower at step 3",
         lambda: BuggyCachedModel(tiny_model(3), {1: 3.0, 3: -1.0}), 1, 4, 5),
    ]  # fmt: skip
    for seed, (label, make_model, B, T, N) in enumerate(cases):
        _agreement_case(fn, make_model, B=B, T=T, N=N, seed=2 + seed, label=label)
    print("hidden tests passed")
