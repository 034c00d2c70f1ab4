"""Checks for chapter 01 (naive KV cache): attention with an offset mask, the cache, generation, agreement.

Every check builds its own inputs and reference (kvlib) and, when the learner's output is wrong,
recomputes the classic wrong variants to name the mistake.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import CheckFailed, assert_shape, call, diagnose, expect, matches

# --------------------------------------------------------------------------------------------
# Exercise 1: causal attention with the query block starting at q_start
# --------------------------------------------------------------------------------------------


def _attention_variant(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_start: int,
    mask: str = "offset",
    scale: float | None = None,
    softmax_dim: int = -1,
    fill: float = float("-inf"),
) -> torch.Tensor:
    """Attention with a chosen (possibly wrong) mask, scale and softmax axis, for diagnosis."""
    Tq, Tk, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scores = (q.double() @ k.double().transpose(-2, -1)) * (1 / math.sqrt(D) if scale is None else scale)
    i = torch.arange(Tq)[:, None]
    j = torch.arange(Tk)[None, :]
    masked = {
        "offset": j > q_start + i,
        "no_offset": j > i,
        "end_aligned": j > (Tk - Tq) + i,
        "wrong_axis": j < q_start + i,
        "strict": j >= q_start + i,
        "none": torch.zeros(Tq, Tk, dtype=torch.bool),
        "transposed_tril": (torch.tril(torch.ones(Tk, Tq, dtype=torch.bool)).T == 0)
        if Tk >= Tq
        else torch.zeros(Tq, Tk, dtype=torch.bool),
    }[mask]
    scores = scores.masked_fill(masked, fill) if fill != 0.0 else scores * (~masked)
    weights = torch.softmax(scores, dim=softmax_dim)
    return (weights @ v.double()).to(q.dtype)


def _attention_case(
    fn: Any, B: int, H: int, Tq: int, Tk: int, D: int, q_start: int | None, seed: int
) -> None:
    from kvlib.attention import causal_attention as reference

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, D, generator=gen)
    k = torch.randn(B, H, Tk, D, generator=gen)
    v = torch.randn(B, H, Tk, D, generator=gen)
    start = Tk - Tq if q_start is None else q_start
    args = (
        (q.clone(), k.clone(), v.clone()) if q_start is None else (q.clone(), k.clone(), v.clone(), q_start)
    )
    what = f"causal_attention with q [{B},{H},{Tq},{D}], k/v [{B},{H},{Tk},{D}], q_start={q_start}"
    got = call(fn, *args, what="causal_attention")
    want = reference(q, k, v, start)
    assert_shape(
        got, tuple(want.shape), f"the output of {what}", "one output vector per query: [B, H, Tq, D]"
    )
    expect(
        not bool(torch.isnan(got).any()),
        f"{what} returned NaN: a query row is fully masked; "
        "query i must always see its own key at position q_start + i, the diagonal of the mask "
        "(mask j > q_start + i, not j >= ...)",
    )
    if matches(got, want, atol=1e-4):
        return
    mistakes = [
        ("the mask ignores q_start: query i sits at absolute position q_start + i, so it may attend keys "
         "j <= q_start + i (a plain lower-triangular mask j <= i is only right for a prefill)",
         {"mask": "no_offset"}),
        ("the mask uses Tk - Tq instead of the q_start argument (keys after the query block must stay "
         "masked)",
         {"mask": "end_aligned"}),
        ("the causal mask is on the wrong axis (it lets queries see the future and hides the past); mask "
         "scores[..., i, j] where key j > q_start + i", {"mask": "wrong_axis"}),
        ("the lower-triangular mask is built on the wrong axis (tril of shape [Tk, Tq] transposed); mask "
         "scores[..., i, j] where key j > q_start + i", {"mask": "transposed_tril"}),
        ("no causal mask: queries attend to keys after their own position", {"mask": "none"}),
        ("the mask excludes the diagonal: a query must attend to its own key (mask j > q_start + i)",
         {"mask": "strict"}),
        ("scores are not scaled by 1/sqrt(head_dim)", {"scale": 1.0}),
        ("scores are scaled by 1/head_dim instead of 1/sqrt(head_dim)", {"scale": 1.0 / D}),
        ("softmax is taken over the query axis; it must normalise over the keys (dim=-1)",
         {"softmax_dim": -2}),
        ("masked scores were set to 0 (or multiplied by the mask) instead of -inf, so masked keys still "
         "get weight after softmax", {"fill": 0.0}),
    ]  # fmt: skip
    if q_start == 0 and Tq < Tk:  # reproduces "end_aligned" too, but the cause is more specific
        mistakes.insert(0, (
            "q_start=0 was treated like None (`if not q_start` is also true for 0): test `q_start is None`",
            {"mask": "end_aligned"},
        ))
    variants = {message: _attention_variant(q, k, v, start, **kw) for message, kw in mistakes}
    found = diagnose(got, variants, atol=1e-4)
    if found:
        raise CheckFailed(f"{what}: {found}")
    err = (got.double() - want.double()).abs().max().item()
    raise CheckFailed(
        f"{what} is wrong (max abs error {err:.3g}); check the mask offset, the 1/sqrt(D) "
        "scale and that softmax runs over the key axis"
    )


def causal_attention_visible(fn: Any) -> None:
    _attention_case(fn, 1, 2, 4, 4, 8, 0, seed=1)  # prefill: Tq == Tk
    _attention_case(fn, 1, 2, 1, 5, 8, 4, seed=2)  # one decode step after 4 cached tokens
    print("visible tests passed")


def causal_attention_hidden(fn: Any) -> None:
    cases = [
        (2, 3, 3, 7, 8, 4),  # a chunk of 3 new tokens after 4 cached ones
        (1, 2, 2, 9, 4, 3),  # a block in the middle: keys after it (a preallocated tail) stay masked
        (2, 2, 5, 5, 16, 0),  # prefill
        (1, 1, 1, 6, 8, 5),  # decode
        (1, 2, 4, 10, 8, None),  # default q_start = Tk - Tq
        (1, 1, 1, 1, 4, 0),  # a single token
        (2, 4, 6, 12, 32, 2),  # block near the start of a long buffer
        (1, 2, 3, 8, 4, 0),  # q_start=0 but fewer queries than keys: 0 is not None
    ]
    for seed, case in enumerate(cases):
        _attention_case(fn, *case, seed=100 + seed)
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 2: NaiveKVCache
# --------------------------------------------------------------------------------------------


def _seq_len(cache: Any, what: str) -> int:
    expect(hasattr(cache, "seq_len"), f"{what} has no seq_len attribute or property")
    value = cache.seq_len
    expect(not callable(value), "seq_len must be a property or attribute (cache.seq_len), not a method")
    expect(
        isinstance(value, int) or (isinstance(value, torch.Tensor) and value.numel() == 1),
        f"seq_len must be an int, got {type(value).__name__}",
    )
    return int(value)


def _update(cache: Any, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        out = call(cache.update, layer, k.clone(), v.clone(), what="NaiveKVCache.update")
    except CheckFailed as exc:
        text = str(exc)
        axis = {
            "dimension 0": "the batch axis (dim=0)",
            "dimension 1": "the head axis (dim=1)",
            "dimension 3": "the head_dim axis (dim=-1)",
        }
        for key, name in axis.items():
            if "except in dimension" in text and key in text.split("except in")[1][:14]:
                raise CheckFailed(
                    f"{text}: torch.cat ran on {name}; new tokens go on the sequence axis, dim=-2"
                ) from None
        raise
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2,
        "update(layer, k, v) must return a pair (k_all, v_all)",
    )
    return out[0], out[1]


def _check_returned(
    got: torch.Tensor,
    want: torch.Tensor,
    new: torch.Tensor,
    other: torch.Tensor,
    what: str,
    layer_prev: torch.Tensor | None,
) -> None:
    expect(isinstance(got, torch.Tensor), f"{what} must be a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        B, H, T, D = want.shape
        hint = ""
        if tuple(got.shape) == tuple(new.shape):
            hint = "you returned only the new tokens; update must return everything cached for that layer"
        elif got.dim() == 4 and got.shape[1] > H:
            hint = "you concatenated on the head axis (dim=1); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[3] > D:
            hint = "you concatenated on the head_dim axis (dim=-1); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[0] > B:
            hint = "you concatenated on the batch axis (dim=0); the sequence axis is dim=-2"
        elif got.dim() == 4 and got.shape[2] > T:
            hint = (
                "it holds more tokens than were given to this layer: do all layers share one "
                "tensor (or do two caches share a class-level list)?"
            )
        else:
            hint = "keys must be concatenated on the sequence axis, dim=-2"
        raise CheckFailed(f"{what} must have shape {tuple(want.shape)}, got {tuple(got.shape)}: {hint}")
    if matches(got, want):
        return
    if matches(got, other):
        raise CheckFailed(f"{what} holds the values instead of the keys: return (k_all, v_all) in that order")
    raise CheckFailed(
        f"{what} has the right shape but wrong contents: append the new tokens after the "
        "old ones (torch.cat([old, new], dim=-2)), per layer"
    )


def _cache_scenario(cls: Any, num_layers: int, B: int, H: int, D: int, steps: list[int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    cache = call(cls, num_layers, what="NaiveKVCache(num_layers)")
    expect(_seq_len(cache, "a new cache") == 0, "a new cache must have seq_len == 0")
    history_k: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
    history_v: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
    total = 0
    for n_new in steps:
        for layer in range(num_layers):
            k = torch.randn(B, H, n_new, D, generator=gen)
            v = torch.randn(B, H, n_new, D, generator=gen)
            history_k[layer].append(k)
            history_v[layer].append(v)
            k_all, v_all = _update(cache, layer, k, v)
            want_k, want_v = torch.cat(history_k[layer], dim=-2), torch.cat(history_v[layer], dim=-2)
            where = f"after {total + n_new} tokens, the keys returned for layer {layer}"
            _check_returned(k_all, want_k, k, want_v, where, None)
            _check_returned(v_all, want_v, v, want_k, where.replace("keys", "values"), None)
        total += n_new
        got_len = _seq_len(cache, "the cache")
        if got_len != total:
            if got_len == total * num_layers:
                msg = (
                    "seq_len counts tokens of every layer added together; count one layer's tokens (layer 0)"
                )
            elif n_new > 1 or total > n_new:
                msg = "seq_len must count tokens (the size of the sequence axis), not calls to update"
            else:
                msg = "seq_len is wrong"
            raise CheckFailed(
                f"after storing {total} tokens per layer, seq_len must be {total}, got {got_len}: {msg}"
            )


def naive_cache_visible(cls: Any) -> None:
    _cache_scenario(cls, num_layers=2, B=1, H=2, D=4, steps=[3, 1], seed=1)
    print("visible tests passed")


def naive_cache_hidden(cls: Any) -> None:
    _cache_scenario(cls, num_layers=3, B=2, H=3, D=5, steps=[4, 1, 1, 2], seed=10)
    _cache_scenario(cls, num_layers=1, B=1, H=1, D=2, steps=[1, 1, 1], seed=11)
    # reset() forgets everything; the next update starts a new sequence
    gen = torch.Generator().manual_seed(12)
    cache = call(cls, 2, what="NaiveKVCache(2)")
    for layer in range(2):
        _update(cache, layer, torch.randn(1, 2, 5, 3, generator=gen), torch.randn(1, 2, 5, 3, generator=gen))
    reset = getattr(cache, "reset", None)
    expect(callable(reset), "NaiveKVCache needs a reset() method")
    call(reset, what="NaiveKVCache.reset")
    expect(_seq_len(cache, "the cache") == 0, "after reset() seq_len must be 0")
    k, v = torch.randn(1, 2, 2, 3, generator=gen), torch.randn(1, 2, 2, 3, generator=gen)
    for layer in range(2):
        k_all, v_all = _update(cache, layer, k, v)
        expect(
            isinstance(k_all, torch.Tensor)
            and tuple(k_all.shape) == (1, 2, 2, 3)
            and isinstance(v_all, torch.Tensor)
            and tuple(v_all.shape) == (1, 2, 2, 3),
            f"after reset() the next update of layer {layer} must return only the new tokens (shape "
            f"(1, 2, 2, 3)), got {tuple(getattr(k_all, 'shape', ()))}: reset must clear the keys and values "
            "of every layer",
        )
    # two caches must not share storage (a mutable class attribute would)
    a, b = call(cls, 1, what="NaiveKVCache(1)"), call(cls, 1, what="NaiveKVCache(1)")
    _update(a, 0, torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
    expect(
        _seq_len(b, "a second cache") == 0,
        "two NaiveKVCache objects share state: create the per-layer lists in __init__ (self.keys = ...), "
        "not as class attributes",
    )
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 3: generate (prefill once, then decode one token at a time)
# --------------------------------------------------------------------------------------------


def _tiny_model(seed: int = 0, n_kv_heads: int = 4) -> Any:
    from kvlib.model import ModelConfig, TinyDecoder

    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, ffn_dim=64, max_seq_len=64
    )
    model = TinyDecoder(cfg).eval()
    with torch.no_grad():  # sharper logits than the default init, so greedy choices depend on the context
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return model


class _ModelWrapper:
    """Stands in for a model: the checks override the call, everything else (config, eval(),
    parameters(), ...) reaches the wrapped model, so correct solutions that use it still work."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class _Recorder(_ModelWrapper):
    """Wraps a model and records every call: tokens fed, positions actually used, cache length before."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, input_ids: torch.Tensor, positions: Any = None, cache: Any = None, **kwargs: Any
    ) -> Any:
        expect(not kwargs, f"the model takes (input_ids, positions=None, cache=None); got {sorted(kwargs)}")
        expect(
            isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2,
            "feed the model a [batch, T] tensor of token ids",
        )
        T = input_ids.shape[1]
        before = cache.seq_len if cache is not None else 0
        used = (
            torch.arange(before, before + T)
            if positions is None
            else torch.as_tensor(positions).reshape(-1, T)[0]
        )
        self.calls.append({"T": T, "positions": used.tolist(), "cache": cache is not None, "before": before})
        return self.model(input_ids, positions=positions, cache=cache)

    forward = __call__


def _generate_case(fn: Any, model: Any, B: int, T: int, N: int, seed: int) -> None:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate_uncached

    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.config.vocab_size, (B, T), generator=gen)
    want = generate_uncached(model, prompt, N)  # [B, T + N]
    rec, cache = _Recorder(model), NaiveKVCache(model.config.n_layers)
    with torch.no_grad():
        got = call(fn, rec, prompt.clone(), N, cache, what="generate")
    what = f"generate(prompt of {B}x{T} tokens, max_new_tokens={N})"
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
    assert_shape(
        got, (B, T + N), f"the ids returned by {what}", "prompt followed by max_new_tokens new tokens"
    )
    expect(
        torch.equal(got[:, :T].long(), prompt),
        f"{what}: the returned ids must start with the prompt unchanged",
    )
    if not torch.equal(got.long(), want):
        first = int((got.long() != want).any(dim=0).nonzero()[0].item()) - T
        raise CheckFailed(
            f"{what}: new token {first} differs from greedy decoding without a cache; pick "
            "argmax over the vocabulary (dim=-1) of the logits at the last position, "
            "logits[:, -1, :]"
        )


def generate_visible(fn: Any) -> None:
    model = _tiny_model(0)
    _generate_case(fn, model, B=1, T=4, N=5, seed=1)
    print("visible tests passed")


def generate_hidden(fn: Any) -> None:
    model = _tiny_model(1)
    _generate_case(fn, model, B=2, T=7, N=9, seed=2)
    _generate_case(fn, model, B=1, T=1, N=6, seed=3)
    _generate_case(fn, model, B=1, T=5, N=1, seed=4)
    _generate_case(fn, _tiny_model(2, n_kv_heads=2), B=3, T=3, N=8, seed=5)
    print("hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 4: cached and uncached generation agree
# --------------------------------------------------------------------------------------------


class _BuggyCachedModel(_ModelWrapper):
    """A model whose *cached decode path* is broken in a controlled way (to see if a checker notices).

    `bump` is added to the logits of cached decode call number `at` (1-based; None: every decode
    call); with `shift=True` it lands on one token only, which changes the greedy choice.
    """

    def __init__(self, model: Any, bump: float, at: int | None, shift: bool) -> None:
        super().__init__(model)
        self.bump, self.at, self.shift = bump, at, shift
        self.decode_calls = 0

    def __call__(self, input_ids: torch.Tensor, positions: Any = None, cache: Any = None) -> torch.Tensor:
        logits = self.model(input_ids, positions=positions, cache=cache)
        if cache is not None and cache.seq_len > input_ids.shape[1]:  # a cached decode call
            self.decode_calls += 1
            if self.at is None or self.decode_calls == self.at:
                if self.shift:
                    target = (logits[:, -1].argmax(dim=-1) + 1) % logits.shape[-1]  # [B]
                    logits = logits.clone()
                    logits[torch.arange(logits.shape[0]), -1, target] += self.bump
                else:
                    logits = logits + self.bump
        return logits

    forward = __call__


def _reference_agreement(model: Any, prompt: torch.Tensor, N: int) -> tuple[float, bool]:
    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate, generate_uncached

    ids_c, logits_c = generate(model, prompt, N, NaiveKVCache(model.config.n_layers), return_logits=True)
    ids_u, logits_u = generate_uncached(model, prompt, N, return_logits=True)
    return (logits_c - logits_u).abs().max().item(), bool(torch.equal(ids_c, ids_u))


def _agreement_case(fn: Any, make_model: Any, B: int, T: int, N: int, seed: int, label: str) -> None:
    from kvlib.cache.dense import NaiveKVCache

    gen = torch.Generator().manual_seed(seed)
    model = make_model()
    prompt = torch.randint(0, model.config.vocab_size, (B, T), generator=gen)
    want_diff, want_same = _reference_agreement(make_model(), prompt, N)
    with torch.no_grad():
        out = call(
            fn, model, prompt.clone(), N, NaiveKVCache(model.config.n_layers), what="compare_cached_uncached"
        )
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2,
        "compare_cached_uncached must return a pair (max_abs_logit_diff, tokens_equal)",
    )
    diff, same = out
    try:
        diff = float(diff)
    except (TypeError, ValueError):
        raise CheckFailed(f"the first returned value must be a number, got {type(diff).__name__}") from None
    expect(
        isinstance(same, (bool, int)) or (isinstance(same, torch.Tensor) and same.numel() == 1),
        f"tokens_equal must be a bool, got {type(same).__name__}",
    )
    same = bool(same)
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
        if diff < 1e-9:
            raise CheckFailed(
                f"{where} your check reports identical logits, but the cached path is broken "
                f"(true max difference {want_diff:.3g}): are both runs using the cache, do "
                "you compare only tokens, or not every generated step?"
            )
        if abs(diff - want_diff) > 1e-3 * max(1.0, want_diff):
            raise CheckFailed(
                f"{where} you report a max |logit difference| of {diff:.4g}, expected "
                f"{want_diff:.4g}: compare the raw logits (not probabilities) of every generated "
                "step (not only the first or last), each run greedy on its own"
            )
    if same != want_same:
        raise CheckFailed(
            f"{where} the generated tokens are {'identical' if want_same else 'different'}, you "
            f"report tokens_equal={same}: every token must match (torch.equal, or (a == b).all(), "
            "not .any())"
        )


def compare_visible(fn: Any) -> None:
    _agreement_case(fn, lambda: _tiny_model(0), B=1, T=4, N=5, seed=1, label="a healthy model")
    _agreement_case(
        fn,
        lambda: _BuggyCachedModel(_tiny_model(0), 0.25, None, False),
        B=1,
        T=4,
        N=5,
        seed=1,
        label="a model whose cached logits are shifted by 0.25",
    )
    print("visible tests passed")


def compare_hidden(fn: Any) -> None:
    _agreement_case(fn, lambda: _tiny_model(3), B=2, T=6, N=8, seed=2, label="a healthy model (batch 2)")
    _agreement_case(
        fn,
        lambda: _BuggyCachedModel(_tiny_model(3), 0.01, None, False),
        B=1,
        T=5,
        N=6,
        seed=3,
        label="a model whose cached logits drift by 0.01 (same tokens)",
    )
    _agreement_case(
        fn,
        lambda: _BuggyCachedModel(_tiny_model(3), 3.0, 2, False),
        B=1,
        T=5,
        N=6,
        seed=4,
        label="a model whose cached logits are off at one middle step",
    )
    _agreement_case(
        fn,
        lambda: _BuggyCachedModel(_tiny_model(3), 50.0, 3, True),
        B=2,
        T=4,
        N=7,
        seed=5,
        label="a model whose cached path picks a different token at step 3",
    )
    print("hidden tests passed")
