"""Checks for chapter 03 (MQA and GQA): repeat_kv, grouped attention with a KV-heads-only cache,
MHA -> GQA conversion by mean-pooling, KV bytes per token of real models, and the MLA bonus.

Every check builds its own inputs and compares the learner's function with kvlib's reference.
When the output is wrong it recomputes the classic wrong variants (tiled heads instead of
grouped, missing or misplaced causal mask, sum instead of mean, ...) and names the one matched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from autograder.checks.common import CheckFailed, assert_close, assert_shape, call, diagnose, expect

# --------------------------------------------------------------------------------------------
# Exercise 1: repeat_kv
# --------------------------------------------------------------------------------------------

_REPEAT_HINT = "query head h must read key/value head h // n_rep"


def _repeat_variants(x: Tensor, n_rep: int) -> dict[str, Tensor]:
    b, kv, t, d = x.shape
    return {
        "heads are paired with the wrong group: x.repeat / expand on a new leading axis tiles the heads "
        "(kv0, kv1, kv0, kv1, ...); query head h must use kv head h // n_rep, i.e. repeat_interleave "
        "(kv0, kv0, kv1, kv1, ...)": x.repeat(1, n_rep, 1, 1),
        "the copies are made along the wrong axis: the expand axis must sit right after the head axis "
        "(x[:, :, None] -> [B, KV, n_rep, T, D]) before reshaping to [B, KV*n_rep, T, D]; you expanded "
        "after the sequence axis, which interleaves positions across heads": x[:, :, :, None]
        .expand(b, kv, t, n_rep, d)
        .reshape(b, kv * n_rep, t, d),
    }


def _check_repeat_case(fn: Callable[..., Any], x: Tensor, n_rep: int, what: str) -> None:
    from kvlib.attention import repeat_kv as reference

    b, kv, t, d = x.shape
    try:
        out = call(fn, x.clone(), n_rep, what="repeat_kv")
    except CheckFailed as exc:
        if "view" in str(exc):
            raise CheckFailed(
                f"{exc} (for {what}); `.view` cannot merge an expanded axis or work on a non-contiguous "
                "tensor: use `.reshape`"
            ) from None
        raise
    expect(
        isinstance(out, torch.Tensor),
        f"repeat_kv must return a torch.Tensor for {what}, got {type(out).__name__}",
    )
    if out.dim() == 5:
        raise CheckFailed(
            f"repeat_kv returned a 5-D tensor {tuple(out.shape)} for {what}: after expand you must reshape "
            "[B, KV, n_rep, T, D] to [B, KV * n_rep, T, D]"
        )
    shape = (b, kv * n_rep, t, d)
    if tuple(out.shape) != shape:
        wrong_axis = {
            (b * n_rep, kv, t, d): "the batch axis (dim 0)",
            (b, kv, t * n_rep, d): "the sequence axis (dim 2)",
            (b, kv, t, d * n_rep): "the head_dim axis (dim -1)",
        }.get(tuple(out.shape))
        hint = (
            f"you repeated along {wrong_axis}; repeat along the head axis, dim=1"
            if wrong_axis
            else "repeat along the head axis (dim 1) only, n_rep copies of each key/value head"
        )
        assert_shape(out, shape, f"repeat_kv(x, n_rep={n_rep}) for {what}", hint)
    expected = reference(x, n_rep)
    if n_rep > 1 and kv > 1:
        mistake = diagnose(out, _repeat_variants(x, n_rep))
        if mistake:
            raise CheckFailed(f"repeat_kv is wrong for {what}: {mistake}")
    expect(out.dtype == x.dtype, f"repeat_kv must keep the dtype ({x.dtype}), got {out.dtype}")
    assert_close(out, expected, f"repeat_kv(x, n_rep={n_rep}) for {what}", _REPEAT_HINT, atol=0, rtol=0)


def repeat_kv_visible(fn: Callable[..., Any]) -> None:
    """Shape and head order on a tiny input: two KV heads repeated twice."""
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(1, 2, 3, 2)  # kv head 0: 0..5, kv head 1: 6..11
    _check_repeat_case(fn, x, 2, "x of shape [1, 2, 3, 2] (2 KV heads, n_rep=2)")
    print("repeat_kv: visible tests passed")


def repeat_kv_hidden(fn: Callable[..., Any]) -> None:
    """Seeded random inputs, several n_rep, n_rep = 1, bf16, and a non-contiguous input."""
    g = torch.Generator().manual_seed(303)
    for b, kv, t, d, n_rep in [(2, 3, 5, 4, 2), (1, 2, 7, 8, 4), (3, 4, 2, 2, 3), (2, 1, 4, 4, 8)]:
        x = torch.randn(b, kv, t, d, generator=g)
        _check_repeat_case(fn, x, n_rep, f"x of shape {(b, kv, t, d)} with n_rep={n_rep}")
    x = torch.randn(2, 4, 3, 8, generator=g)
    _check_repeat_case(fn, x, 1, "n_rep=1 (MHA: nothing to repeat, return the same values)")
    xb = torch.randn(1, 2, 3, 4, generator=g).to(torch.bfloat16)
    _check_repeat_case(fn, xb, 2, "a bfloat16 input")
    # Keys as a model produces them: [B, T, KV, D] transposed to [B, KV, T, D] (not contiguous).
    xt = torch.randn(2, 5, 3, 4, generator=g).transpose(1, 2)
    _check_repeat_case(fn, xt, 2, "a non-contiguous input (k.transpose(1, 2), as a model produces it)")
    print("repeat_kv: hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 2: grouped attention with a cache that stores only the KV heads
# --------------------------------------------------------------------------------------------


def _attention(
    q: Tensor, k: Tensor, v: Tensor, *, tile: bool = False, mask: str = "causal", scale: float | None = None
) -> Tensor:
    """Attention with `KV <= H` heads and deliberate mistakes, for diagnosis (float64)."""
    h, kv = q.shape[1], k.shape[1]
    g = h // kv
    if tile:
        k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)
    else:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    q, k, v = q.double(), k.double(), v.double()
    tq, tk = q.shape[-2], k.shape[-2]
    s = q @ k.transpose(-1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask != "none":
        start = tk - tq if mask == "causal" else 0
        qp = torch.arange(start, start + tq).unsqueeze(1)
        s = s.masked_fill(torch.arange(tk).unsqueeze(0) > qp, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _step_case(fn: Callable[..., Any], h: int, kv: int, steps: list[int], seed: int, what: str) -> None:
    from kvlib.cache.gqa import gqa_attention_step

    g = torch.Generator().manual_seed(seed)
    b, d = 2, 8
    past = None
    ref_past = None
    pos = 0
    for t in steps:
        q = torch.randn(b, h, t, d, generator=g)
        k_new = torch.randn(b, kv, t, d, generator=g)
        v_new = torch.randn(b, kv, t, d, generator=g)
        label = f"{what}, step of {t} token(s) after {pos} cached"
        result = call(fn, q.clone(), k_new.clone(), v_new.clone(), past, what="grouped_attention_step")
        expect(
            isinstance(result, (tuple, list))
            and len(result) == 2
            and isinstance(result[1], (tuple, list))
            and len(result[1]) == 2,
            "grouped_attention_step must return (out, (k_all, v_all))",
        )
        out, (k_all, v_all) = result
        ref_out, (ref_k, ref_v) = gqa_attention_step(q, k_new, v_new, ref_past)
        expect(
            isinstance(k_all, torch.Tensor) and isinstance(v_all, torch.Tensor),
            "the returned cache must be a pair of tensors (k_all, v_all)",
        )
        if k_all.dim() == 4 and k_all.shape[1] == h and h != kv:
            raise CheckFailed(
                f"{label}: your cache holds {h} heads, the repeated keys; it must store only the "
                f"{kv} key/value heads (repeat after caching, inside attention), or GQA saves no memory"
            )
        if k_all.dim() == 4 and k_all.shape[-2] == t and pos > 0:
            raise CheckFailed(
                f"{label}: the returned cache has only the {t} new token(s); concatenate the past "
                "keys/values with the new ones on the sequence axis (dim=-2)"
            )
        assert_shape(
            k_all,
            tuple(ref_k.shape),
            f"cached keys ({label})",
            "concatenate past and new keys on the sequence axis, dim=-2: [B, KV, P + T, D]",
        )
        assert_shape(
            v_all,
            tuple(ref_v.shape),
            f"cached values ({label})",
            "concatenate past and new values on the sequence axis, dim=-2: [B, KV, P + T, D]",
        )
        if pos > 0 and torch.equal(k_all, torch.cat([k_new, past[0]], dim=-2)):
            raise CheckFailed(
                f"{label}: the new keys must go AFTER the cached ones: torch.cat([k_past, k_new], dim=-2)"
            )
        assert_close(
            k_all, ref_k, f"cached keys ({label})", "the cache must hold past then new keys, unchanged"
        )
        assert_close(
            v_all, ref_v, f"cached values ({label})", "the cache must hold past then new values, unchanged"
        )
        assert_shape(
            out,
            tuple(ref_out.shape),
            f"attention output ({label})",
            "one output per query head: [B, H, T, D]",
        )
        if not torch.allclose(out.double(), ref_out.double(), atol=1e-4, rtol=1e-4):
            variants = {
                "query heads read the wrong key/value head: head h must use kv head h // (H // KV) "
                "(repeat_interleave), not h % KV (repeat/tile)": _attention(q, ref_k, ref_v, tile=True),
                "no causal mask: a prefill query must not see later keys": _attention(
                    q, ref_k, ref_v, mask="none"
                ),
                "the causal mask ignores the cached tokens: new query i sits at position P + i and sees keys "
                "0..P+i (offset the mask by the number of cached tokens)": _attention(
                    q, ref_k, ref_v, mask="topleft"
                ),
                "the scores are not scaled by 1/sqrt(head_dim)": _attention(q, ref_k, ref_v, scale=1.0),
                "the scores are scaled by 1/head_dim instead of 1/sqrt(head_dim)": _attention(
                    q, ref_k, ref_v, scale=1.0 / d
                ),
                "the new queries attend only to the new keys; they must see the cached keys too": _attention(
                    q, k_new, v_new
                ),
            }
            mistake = diagnose(out, variants, atol=1e-4)
            raise CheckFailed(f"attention output is wrong ({label})" + (f": {mistake}" if mistake else ""))
        past = (k_all, v_all)
        ref_past = (ref_k, ref_v)
        pos += t


def grouped_attention_step_visible(fn: Callable[..., Any]) -> None:
    """MHA (KV == H) prefill then one decode step; output equals plain causal attention."""
    _step_case(fn, h=2, kv=2, steps=[3, 1], seed=1, what="MHA (H=2, KV=2)")
    print("grouped_attention_step: visible tests passed")


def grouped_attention_step_hidden(fn: Callable[..., Any]) -> None:
    """GQA with groups of 3 (prefill, decode, chunk), MQA, MHA, against kvlib's reference."""
    _step_case(fn, h=6, kv=2, steps=[4, 1, 3, 1], seed=2, what="GQA (H=6, KV=2)")
    _step_case(fn, h=4, kv=1, steps=[5, 1, 2], seed=3, what="MQA (H=4, KV=1)")
    _step_case(fn, h=4, kv=4, steps=[2, 3, 1], seed=4, what="MHA (H=4, KV=4)")
    _step_case(fn, h=8, kv=4, steps=[1, 1, 1], seed=5, what="GQA (H=8, KV=4), token by token")
    print("grouped_attention_step: hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 3: MHA -> GQA conversion by mean-pooling the key/value projection heads
# --------------------------------------------------------------------------------------------


def _tiny_mha(n_heads: int, head_dim: int, seed: int) -> Any:
    from kvlib.model import ModelConfig, TinyDecoder

    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=48, dim=n_heads * head_dim, n_layers=2, n_heads=n_heads, n_kv_heads=n_heads,
        ffn_dim=40, max_seq_len=32,
    )  # fmt: skip
    return TinyDecoder(cfg).eval()


def _pool_variants(w: Tensor, h: int, kv: int) -> dict[str, Tensor]:
    g, (rows, c) = h // kv, w.shape
    d = rows // h
    grouped = w.reshape(kv, g, d, c)  # (KV, G, D, C): the right grouping
    strided = w.reshape(g, kv, d, c).mean(0)  # heads j, j + KV, ... averaged
    return {
        "the groups are strided (heads j, j + KV, j + 2 KV, ...); group j must be the consecutive heads "
        "j*G .. j*G+G-1, the ones that share key/value head j (h // G)": strided.reshape(kv * d, c),
        "the heads of a group are summed, not averaged (divide by the group size G)": grouped.sum(1).reshape(
            kv * d, c
        ),
        "you kept the first head of each group instead of the group's mean (the GQA paper pools)": (
            grouped[:, 0].reshape(kv * d, c)
        ),
        "you averaged neighbouring rows within heads instead of whole heads: reshape the weight to "
        "[KV, G, head_dim, in] and average over G": w.reshape(kv * d, g, c).mean(1),
    }


def _convert_case(fn: Callable[..., Any], n_heads: int, head_dim: int, kv: int, seed: int) -> None:
    from kvlib.cache.gqa import convert_mha_to_gqa

    model = _tiny_mha(n_heads, head_dim, seed)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    cfg_before = dataclasses.replace(model.config)
    label = f"{n_heads} heads -> {kv} KV heads"
    try:
        new = call(fn, model, kv, what="convert_to_gqa")
    except CheckFailed as exc:
        if "size mismatch" in str(exc):
            raise CheckFailed(
                f"{exc}\n({label}) The GQA model expects k_proj/v_proj weights of "
                "[n_kv_heads * head_dim, dim] and every other weight (q_proj included) unchanged."
            ) from None
        raise
    expect(
        model.config == cfg_before and all(torch.equal(t, before[k]) for k, t in model.state_dict().items()),
        f"convert_to_gqa modified the input model ({label}): build a new model (e.g. with a new config from "
        "dataclasses.replace) and leave the MHA model untouched, the notebook converts it several times",
    )
    expect(isinstance(new, torch.nn.Module), f"convert_to_gqa must return a model, got {type(new).__name__}")
    expect(new is not model, f"convert_to_gqa returned the input model itself ({label}); return a new model")
    cfg = getattr(new, "config", None)
    expect(
        getattr(cfg, "n_kv_heads", None) == kv,
        f"the returned model's config.n_kv_heads must be {kv} ({label}), "
        f"got {getattr(cfg, 'n_kv_heads', None)}",
    )
    ref = convert_mha_to_gqa(model, kv)
    for i, (mine, theirs) in enumerate(zip(new.layers, ref.layers)):
        for proj in ("k_proj", "v_proj"):
            what = f"layer {i} {proj}.weight ({label})"
            w = getattr(mine.self_attn, proj).weight
            w_ref = getattr(theirs.self_attn, proj).weight
            old = before[f"layers.{i}.self_attn.{proj}.weight"]
            if tuple(w.shape) == tuple(old.shape) and kv != n_heads:
                raise CheckFailed(
                    f"{what} still has all {n_heads} heads, shape {tuple(w.shape)}: pool the "
                    f"{'value' if proj == 'v_proj' else 'key'} projection too, to {kv} heads"
                )
            assert_shape(w, tuple(w_ref.shape), what, "[n_kv_heads * head_dim, dim]")
            if not torch.allclose(w.double(), w_ref.double(), atol=1e-6):
                mistake = diagnose(w, _pool_variants(old, n_heads, kv), atol=1e-6)
                raise CheckFailed(f"{what} is wrong" + (f": {mistake}" if mistake else ""))
        for proj in ("q_proj", "o_proj"):
            w, w_ref = getattr(mine.self_attn, proj).weight, getattr(theirs.self_attn, proj).weight
            expect(
                tuple(w.shape) == tuple(w_ref.shape) and torch.allclose(w, w_ref),
                f"layer {i} {proj}.weight changed ({label}): only the key and value projections are pooled; "
                "GQA keeps every query head",
            )
    ids = torch.randint(0, 48, (2, 7), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = call(new, ids, what="the converted model")
        assert_close(logits, ref(ids), f"logits of the converted model ({label})",
                     "every weight other than k_proj/v_proj must be copied unchanged", atol=1e-4)  # fmt: skip


def convert_to_gqa_visible(fn: Callable[..., Any]) -> None:
    """4 heads -> 2 KV heads on a tiny random model: config, pooled shapes, logits."""
    _convert_case(fn, n_heads=4, head_dim=8, kv=2, seed=0)
    print("convert_to_gqa: visible tests passed")


def convert_to_gqa_hidden(fn: Callable[..., Any]) -> None:
    """Groups of 2, 3 and 6 (MQA), and KV == H (identity), against kvlib's conversion."""
    _convert_case(fn, n_heads=4, head_dim=8, kv=2, seed=1)
    _convert_case(fn, n_heads=6, head_dim=4, kv=2, seed=2)
    _convert_case(fn, n_heads=6, head_dim=4, kv=1, seed=3)
    _convert_case(fn, n_heads=4, head_dim=4, kv=4, seed=4)
    print("convert_to_gqa: hidden tests passed")


# --------------------------------------------------------------------------------------------
# Exercise 4: KV bytes per token of real models, and the saving factor of GQA
# --------------------------------------------------------------------------------------------


def _shapes() -> list[Any]:
    """The published configurations plus synthetic ones that separate the classic mistakes."""
    from kvlib.memory import MODEL_CONFIGS, ModelShape

    extra = [
        ModelShape("synthetic GQA, head_dim != hidden/heads", 3, 12, 4, 40, 256, 1024, 0.1, "check"),
        ModelShape("synthetic MQA", 5, 8, 1, 32, 256, 1024, 0.1, "check"),
    ]
    return list(MODEL_CONFIGS.values()) + extra


def _same(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and math.isclose(a, b, rel_tol=1e-9)


def _first_wrong(
    got: list[Any], right: list[float], variants: dict[str, list[float]]
) -> tuple[int, str | None]:
    """Index of the first wrong answer, and the mistake whose answers match ALL of `got` (if any)."""
    first = next(i for i, (g, r) in enumerate(zip(got, right)) if not _same(g, r))
    mistake = next((m for m, vals in variants.items() if all(_same(g, v) for g, v in zip(got, vals))), None)
    return first, mistake


def _check_bytes(fn: Callable[..., Any], shapes: list[Any], per_element: tuple[int, ...]) -> None:
    for bpe in per_element:
        dtype = {2: "fp16", 4: "fp32", 1: "int8"}[bpe]
        got = [call(fn, s, bpe, what="kv_bytes_per_token") for s in shapes]
        right = [s.kv_bytes_per_token(dtype=dtype) for s in shapes]
        if all(_same(g, r) for g, r in zip(got, right)):
            continue
        variants = {
            "you used the number of query heads; only the KV heads are cached (num_kv_heads)": [
                2 * s.num_layers * s.num_heads * s.head_dim * bpe for s in shapes
            ],
            "you used hidden_size as the width of the cached keys; under GQA it is num_kv_heads * head_dim": [
                2 * s.num_layers * s.hidden_size * bpe for s in shapes
            ],
            "the factor 2 is missing: keys AND values are cached": [
                s.num_layers * s.num_kv_heads * s.head_dim * bpe for s in shapes
            ],
            "you forgot the layers: every layer caches its own keys and values": [
                2 * s.num_kv_heads * s.head_dim * bpe for s in shapes
            ],
            "you counted bits, not bytes": [
                2 * s.num_layers * s.num_kv_heads * s.head_dim * bpe * 8 for s in shapes
            ],
        }
        i, mistake = _first_wrong(got, right, variants)
        raise CheckFailed(
            f"kv_bytes_per_token is wrong for {shapes[i].name} at {bpe} byte(s) per element: "
            f"expected {right[i]}, got {got[i]!r}" + (f"; {mistake}" if mistake else "")
        )


def _visible_shapes() -> list[Any]:
    from kvlib.memory import MODEL_CONFIGS

    return [MODEL_CONFIGS[n] for n in ("Llama-2-7B", "Llama-2-70B", "Gemma-7B")]


def kv_bytes_per_token_visible(fn: Callable[..., Any]) -> None:
    """Llama-2-7B (MHA), Llama-2-70B (GQA) and Gemma-7B (head_dim * heads != hidden) in fp16."""
    _check_bytes(fn, _visible_shapes(), (2,))
    print("kv_bytes_per_token: visible tests passed")


def kv_bytes_per_token_hidden(fn: Callable[..., Any]) -> None:
    """Every configuration of the table (GQA, MQA, head_dim != hidden/heads) at 2, 4 and 1 bytes."""
    _check_bytes(fn, _shapes(), (2, 4, 1))
    print("kv_bytes_per_token: hidden tests passed")


def _check_saving(fn: Callable[..., Any], shapes: list[Any]) -> None:
    """Raise with a diagnosis unless `fn` gives H / KV for every shape."""
    from kvlib.cache.gqa import kv_saving_factor

    got = [call(fn, s, what="gqa_saving_factor") for s in shapes]
    right = [kv_saving_factor(s) for s in shapes]
    if all(_same(g, r) for g, r in zip(got, right)):
        return
    variants = {
        "the ratio is upside down: MHA bytes divided by this model's bytes is >= 1": [
            s.num_kv_heads / s.num_heads for s in shapes
        ],
        "that is the fraction of memory saved (1 - KV/H), not the factor by which the cache shrinks": [
            1 - s.num_kv_heads / s.num_heads for s in shapes
        ],
        "that is the number of heads saved (H - KV), not a factor": [
            s.num_heads - s.num_kv_heads for s in shapes
        ],
        "you compared with MQA (1 KV head); the baseline is MHA with one KV head per query head": [
            s.num_kv_heads for s in shapes
        ],
        "the MHA twin caches num_heads * head_dim per layer and token, which is not always hidden_size": [
            s.hidden_size / (s.num_kv_heads * s.head_dim) for s in shapes
        ],
    }
    i, mistake = _first_wrong(got, right, variants)
    s = shapes[i]
    raise CheckFailed(
        f"gqa_saving_factor is wrong for {s.name} ({s.num_heads} query heads, {s.num_kv_heads} KV heads): "
        f"expected {right[i]:g}, got {got[i]!r}" + (f"; {mistake}" if mistake else "")
    )


def saving_factor_visible(fn: Callable[..., Any]) -> None:
    """Llama-2-70B keeps 8 KV heads for 64 query heads; MHA models give 1."""
    _check_saving(fn, _visible_shapes())
    print("gqa_saving_factor: visible tests passed")


def saving_factor_hidden(fn: Callable[..., Any]) -> None:
    """Every configuration (MHA gives 1), including head_dim != hidden / heads and MQA."""
    _check_saving(fn, _shapes())
    print("gqa_saving_factor: hidden tests passed")


# --------------------------------------------------------------------------------------------
# Bonus: multi-head latent attention, keys and values from the cached latent
# --------------------------------------------------------------------------------------------


def _latent_case(fn: Callable[..., Any], b: int, t: int, d_c: int, h: int, d: int, seed: int) -> None:
    from kvlib.cache.mla import expand_latent

    g = torch.Generator().manual_seed(seed)
    c = torch.randn(b, t, d_c, generator=g)
    w_uk, w_uv = torch.randn(h * d, d_c, generator=g), torch.randn(h * d, d_c, generator=g)
    label = f"c_kv {(b, t, d_c)}, {h} heads of {d}"
    try:
        result = call(fn, c.clone(), w_uk.clone(), w_uv.clone(), h, what="expand_latent")
    except CheckFailed as exc:
        if "cannot be multiplied" in str(exc) or "size mismatch" in str(exc):
            raise CheckFailed(
                f"{exc} ({label}); w_uk and w_uv are nn.Linear weights [H*D, d_c]: multiply by their "
                "transpose, c_kv @ w_uk.T"
            ) from None
        raise
    expect(isinstance(result, (tuple, list)) and len(result) == 2, "expand_latent must return (k, v)")
    k, v = result
    k_ref, v_ref = expand_latent(c, w_uk, w_uv, h)
    assert_shape(k, tuple(k_ref.shape), f"keys ({label})", "[B, H, T, D]")
    assert_shape(v, tuple(v_ref.shape), f"values ({label})", "[B, H, T, D]")
    for mine, ref, w, other, name in ((k, k_ref, w_uk, w_uv, "keys"), (v, v_ref, w_uv, w_uk, "values")):
        if torch.allclose(mine, ref, atol=1e-4, rtol=1e-4):
            continue
        flat = c @ w.T  # (B, T, H*D)
        variants = {
            "the heads are scrambled: (c_kv @ w.T) is [B, T, H*D]; view it as [B, T, H, D] and transpose to "
            "[B, H, T, D] (a direct reshape to [B, H, T, D] mixes tokens and heads)": flat.reshape(
                b, h, t, d
            ),
            "the head axis is split in the wrong order: rows h*D .. h*D+D-1 belong to head h, view as "
            "[B, T, H, D], not [B, T, D, H]": flat.view(b, t, d, h).permute(0, 3, 1, 2),
            f"the {name} use the other up-projection (keys come from w_uk, values from w_uv)": (c @ other.T)
            .view(b, t, h, d)
            .transpose(1, 2),
        }
        mistake = diagnose(mine, variants, atol=1e-4)
        raise CheckFailed(f"{name} are wrong ({label})" + (f": {mistake}" if mistake else ""))


def expand_latent_visible(fn: Callable[..., Any]) -> None:
    """One small case: shapes and values of k and v."""
    _latent_case(fn, b=1, t=3, d_c=4, h=2, d=3, seed=0)
    print("expand_latent: visible tests passed")


def expand_latent_hidden(fn: Callable[..., Any]) -> None:
    """Random latents and weights of several shapes, against kvlib.cache.mla.expand_latent."""
    _latent_case(fn, b=2, t=5, d_c=6, h=4, d=3, seed=1)
    _latent_case(fn, b=1, t=1, d_c=8, h=2, d=5, seed=2)
    _latent_case(fn, b=3, t=4, d_c=5, h=3, d=7, seed=3)
    print("expand_latent: hidden tests passed")
