"""Exercise `convert_to_gqa`: an MHA TinyDecoder turned into a GQA one by mean-pooling K/V heads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, assert_close, assert_shape, call, diagnose, expect
from ..delegation import graded
from ..fixtures import generator, tiny_model

# Never TinyDecoder itself: a correct solution builds one.
REFERENCES = ("kvlib.cache.gqa.convert_mha_to_gqa", "kvlib.cache.gqa.mean_pool_heads")

_POOLED = ("k_proj", "v_proj")


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


def _expected_pooled(w: Tensor, h: int, kv: int) -> Tensor:
    rows, c = w.shape
    d = rows // h
    return w.double().reshape(kv, h // kv, d, c).mean(1).reshape(kv * d, c)


def _mha(num_heads: int, head_dim: int, seed: int) -> Any:
    return tiny_model(seed, num_heads=num_heads, num_kv_heads=num_heads, dim=num_heads * head_dim,
                      max_seq_len=32, sharpen=1.0)  # fmt: skip


def _convert_case(fn: Callable[..., Any], model: Any, kv: int, seed: int) -> None:
    from kvlib.cache.gqa import convert_mha_to_gqa

    num_heads = model.config.num_heads
    before = {k: t.detach().clone() for k, t in model.state_dict().items()}
    cfg_before = dataclasses.replace(model.config)
    label = f"{num_heads} heads -> {kv} KV heads"
    try:
        new = call(fn, model, kv, what="convert_to_gqa")
    except CheckFailed as exc:
        if "size mismatch" in str(exc):
            raise CheckFailed(
                f"{exc}\n({label}) The GQA model expects k_proj/v_proj weights of "
                "[num_kv_heads * head_dim, dim] and every other weight (q_proj included) unchanged."
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
        getattr(cfg, "num_kv_heads", None) == kv,
        f"the returned model's config.num_kv_heads must be {kv} ({label}), "
        f"got {getattr(cfg, 'num_kv_heads', None)}",
    )
    expect(
        cfg is not model.config,
        f"the returned model shares its config object with the input model ({label}): build it from a "
        "copy, dataclasses.replace(model.config, num_kv_heads=KV)",
    )
    expect(
        dataclasses.replace(cfg, num_kv_heads=cfg_before.num_kv_heads) == cfg_before,
        f"the returned model's config differs from the input's in more than num_kv_heads ({label}): copy "
        "every other field (dataclasses.replace(model.config, num_kv_heads=KV))",
    )
    training = [name or "the model" for name, m in new.named_modules() if m.training]
    expect(
        not training,
        f"the returned model is in training mode ({label}; {training[0] if training else ''}): the "
        "docstring promises eval mode, call .eval() on it (a new nn.Module starts in training mode)",
    )
    ref_model = convert_mha_to_gqa(model, kv)
    mine, ref = new.state_dict(), ref_model.state_dict()
    missing = sorted(set(ref) - set(mine))
    expect(not missing, f"the returned model has no {missing[:3]} ({label}): return a TinyDecoder")
    for key, want in ref.items():
        got = mine[key]
        layer, proj = key.split(".")[1] if key.startswith("layers.") else "", key.split(".")[-2]
        what = f"layer {layer} {proj}.weight ({label})" if layer else f"{key} ({label})"
        if proj in _POOLED and key.endswith(".weight"):
            old = before[key]
            if tuple(got.shape) == tuple(old.shape) and kv != num_heads:
                raise CheckFailed(
                    f"{what} still has all {num_heads} heads, shape {tuple(got.shape)}: pool the "
                    f"{'value' if proj == 'v_proj' else 'key'} projection too, to {kv} heads"
                )
            assert_shape(got, tuple(want.shape), what, "[num_kv_heads * head_dim, dim]")
            if not torch.allclose(got.double(), _expected_pooled(old, num_heads, kv), atol=1e-6):
                want_pooled = _expected_pooled(old, num_heads, kv)
                mistake = diagnose(got, _pool_variants(old, num_heads, kv), atol=1e-6)
                err = (got.double() - want_pooled).abs().max().item()
                if not mistake and err < 1e-2 * max(1.0, want_pooled.abs().max().item()):
                    mistake = (
                        f"close (max error {err:.2g}) but not the mean: did the pooling go through float16 "
                        "or bfloat16? average in the weights' own dtype and keep it"
                    )
                raise CheckFailed(f"{what} is wrong" + (f": {mistake}" if mistake else ""))
        elif proj in ("q_proj", "o_proj"):
            expect(
                tuple(got.shape) == tuple(want.shape) and torch.equal(got, want),
                f"{what} changed: only the key and value projections are pooled; GQA keeps every query head",
            )
        else:
            expect(
                tuple(got.shape) == tuple(want.shape) and torch.equal(got, want),
                f"{what} was not copied from the input model: every weight other than k_proj/v_proj (the "
                "embeddings, norms, MLPs, q_proj, o_proj) must be copied unchanged, e.g. load the whole "
                "state_dict with only the k_proj/v_proj entries replaced",
            )
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=generator(seed))
    with torch.no_grad():
        logits = call(new, ids, what="the converted model")
        want_logits = ref_model(ids)
    assert_close(logits, want_logits, f"logits of the converted model ({label})",
                 "every weight other than k_proj/v_proj must be copied unchanged", atol=1e-4)  # fmt: skip
    # "copied": the new model's weights are its own. Change them all; the input must not move.
    with torch.no_grad():
        for p in new.parameters():
            p.add_(0.5)
    shared = [k for k, t in model.state_dict().items() if not torch.equal(t, before[k])]
    if shared:
        with torch.no_grad():  # undo, so the caller may keep converting this model
            for p in new.parameters():
                p.sub_(0.5)
        raise CheckFailed(
            f"the returned model shares weights with the input model ({label}; e.g. {shared[0]}): changing "
            "one changes the other. Copy the weights (load_state_dict copies into the new model's own "
            "tensors); do not reuse the input's modules or parameters, nor load_state_dict(..., assign=True)"
        )


@graded("convert_to_gqa", *REFERENCES)
def convert_to_gqa_visible(fn: Callable[..., Any]) -> None:
    """4 heads -> 2 KV heads on a tiny random model: config, eval mode, pooled weights, batch of 2."""
    _convert_case(fn, _mha(4, 8, seed=0), 2, seed=0)
    print("convert_to_gqa: visible tests passed")


@graded("convert_to_gqa", *REFERENCES)
def convert_to_gqa_hidden(fn: Callable[..., Any]) -> None:
    """Groups of 2, 3, 4, 6 (MQA) and 1 (identity); one model converted several times in a row."""
    _convert_case(fn, _mha(4, 8, seed=1), 2, seed=1)
    _convert_case(fn, _mha(6, 4, seed=2), 2, seed=2)
    _convert_case(fn, _mha(6, 4, seed=3), 1, seed=3)
    _convert_case(fn, _mha(4, 4, seed=4), 4, seed=4)
    _convert_case(fn, _mha(6, 4, seed=5), 3, seed=5)
    model = _mha(8, 4, seed=6)  # as the notebook does: the same MHA model converted to 4, 2, then 1 KV heads
    for kv in (4, 2, 1):
        _convert_case(fn, model, kv, seed=6 + kv)
    print("convert_to_gqa: hidden tests passed")
