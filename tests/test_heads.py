"""kvlib.cache.heads: head importance (gradient, variance), plans, and DuoAttention's split cache.

Every reference here is written out in the test: the gradient score against the identity
``dL/dxi_h = <W_v[h], dL/dW_v[h]>`` (scaling a head's value rows by xi is the gate), the variance
score against a hook on ``o_proj``'s input, the split cache against attention with an explicit
per-head mask in float64 over the whole stream. Tiny random GQA model (8 query heads, 2 KV heads).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kvlib.cache.base import ForwardBatch
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.heads import (
    HeadSplitKVCache,
    distant_attention,
    head_importance,
    plan_from_scores,
    pruned_kv_fraction,
    random_plan,
)
from kvlib.model import ModelConfig, TinyDecoder

pytestmark = pytest.mark.ch05

L, H, KV, D = 2, 8, 2, 8  # layers, query heads, KV heads, head_dim of the tiny model
N_REP = H // KV


@pytest.fixture(scope="module")
def model() -> TinyDecoder:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=64, dim=H * D, num_layers=L, num_heads=H, num_kv_heads=KV, ffn_dim=96, max_seq_len=64
    )
    m = TinyDecoder(cfg)
    with torch.no_grad():  # larger weights than the init's 0.02: heads that differ, gradients far from 0
        for p in m.parameters():
            p.mul_(3.0)
    return m.eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------------------
# head_importance
# ---------------------------------------------------------------------------------------------------------


def reference_gradient_scores(model: TinyDecoder, tokens: torch.Tensor) -> torch.Tensor:
    """mean_b |dL_b/dxi| with xi scaling the value rows of one KV head: dL/dxi = sum W * dL/dW over them."""
    m = copy.deepcopy(model)
    out = torch.zeros(L, KV)
    for row in tokens:
        m.zero_grad()
        logits = m(row[None], positions=torch.arange(len(row)))
        F.cross_entropy(logits[0, :-1], row[1:]).backward()
        for layer, block in enumerate(m.layers):
            w = block.self_attn.v_proj.weight  # (KV * D, C): rows h*D .. (h+1)*D - 1 make KV head h
            per_head = (w * w.grad).view(KV, D, -1).sum(dim=(1, 2))
            out[layer] += per_head.abs() / len(tokens)
    return out


def test_gradient_scores_match_the_weight_identity(model, tokens):
    got = head_importance(model, tokens, method="gradient")
    want = reference_gradient_scores(model, tokens)
    assert got.shape == (L, KV) and got.dtype == torch.float32
    assert want.min() > 1e-4, "the tiny model's heads should matter a little"
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_gradient_is_mean_of_absolute_row_gradients_not_absolute_of_mean(model, tokens):
    per_row = [reference_gradient_scores(model, tokens[i : i + 1]) for i in range(len(tokens))]
    torch.testing.assert_close(
        head_importance(model, tokens), sum(per_row) / len(per_row), rtol=1e-4, atol=1e-7
    )


def test_importance_leaves_model_and_inputs_untouched(model, tokens):
    m = copy.deepcopy(model)
    m.train()
    m.layers[1].eval()  # a mixed mode must come back as it was
    modes = [mod.training for mod in m.modules()]
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    tokens_before = tokens.clone()
    with torch.no_grad():  # the caller's no_grad must not stop the gradient method
        head_importance(m, tokens, "gradient")
    head_importance(m, tokens, "variance")
    assert [mod.training for mod in m.modules()] == modes
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())
    assert torch.equal(tokens, tokens_before)


def test_variance_scores_match_a_hook_on_o_proj(model, tokens):
    captured = []
    hooks = [
        block.self_attn.o_proj.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
        for block in model.layers
    ]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    B, T = tokens.shape
    want = torch.stack(
        [
            x.view(B, T, KV, N_REP * D).double().var(dim=1, unbiased=False).mean(dim=2).mean(dim=0)
            for x in captured  # o_proj input (B, T, H*D): KV head h owns columns h*N_REP*D ..
        ]
    ).float()
    torch.testing.assert_close(head_importance(model, tokens, "variance"), want, rtol=1e-5, atol=1e-8)


def test_distant_attention_matches_weights_recomputed_from_captured_q_k(model, tokens):
    captured = []  # (q, k) of every layer, through a cache that attends like no cache at all

    class Capture:
        num_layers = L

        def attend(self, layer, q, k, v, batch):
            captured.append((q, k))
            return ReferenceSplitCache(torch.ones(L, KV, dtype=torch.bool), 0, 1).attend(
                layer, q, k, v, batch
            )

        def reset(self):
            pass

    with torch.no_grad():
        model(tokens, positions=torch.arange(tokens.shape[1]), cache=Capture())
    S, W = 2, 5
    B, T = tokens.shape
    want = torch.zeros(L, KV)
    for layer, (q, k) in enumerate(captured):
        for h in range(H):
            lost = []
            for p in range(S + W + 1, T):  # queries with at least one key outside sinks + window
                scores = torch.einsum("bd,bnd->bn", q[:, h, p].double(), k[:, h // N_REP, : p + 1].double())
                weights = torch.softmax(scores / math.sqrt(D), dim=-1)  # (B, p + 1)
                lost.append(weights[:, S : p - W].sum(-1))  # keys S .. p-W-1
            want[layer, h // N_REP] += torch.stack(lost).mean() / N_REP
    got = head_importance(model, tokens, "distant_attention", num_sinks=S, window=W)
    assert got.shape == (L, KV) and got.dtype == torch.float32 and (got > 0.01).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    wider = head_importance(model, tokens, "distant_attention", num_sinks=S, window=W + 4)
    assert (wider < got).all(), "a wider window leaves less attention outside it"
    with pytest.raises(ValueError, match="T > num_sinks"):
        head_importance(model, tokens[:, : S + W + 1], "distant_attention", num_sinks=S, window=W)
    with pytest.raises(ValueError, match="window"):
        head_importance(model, tokens, "distant_attention", window=0)


def test_normalize_gives_unit_rows_and_keeps_the_order_within_layers(model, tokens):
    for method in ("gradient", "variance", "distant_attention"):
        raw = head_importance(model, tokens, method, window=8)
        normed = head_importance(model, tokens, method, normalize=True, window=8)
        torch.testing.assert_close(normed.norm(dim=1), torch.ones(L))
        torch.testing.assert_close(normed, raw / raw.norm(dim=1, keepdim=True))


def test_fp16_model_gives_float32_scores_close_to_fp32(model, tokens):
    half = copy.deepcopy(model).half()
    for method in ("gradient", "variance", "distant_attention"):
        got = head_importance(half, tokens, method, window=8)
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        want = head_importance(model, tokens, method, window=8)
        torch.testing.assert_close(got, want, rtol=0.01, atol=1e-6)
    assert all(p.dtype == torch.float16 for p in half.parameters())


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.zeros(24, dtype=torch.long), ValueError, "[B, T]"),
        (torch.zeros(2, 24), TypeError, "integer token ids"),
        (torch.zeros(2, 1, dtype=torch.long), ValueError, "2 <= T <= 64"),
        (torch.zeros(2, 65, dtype=torch.long), ValueError, "2 <= T <= 64"),
        (torch.full((2, 8), 64), ValueError, "[0, 64)"),
        ([[1, 2, 3]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_tokens(model, bad, error, words):
    with pytest.raises(error, match=None) as info:
        head_importance(model, bad)
    assert words in str(info.value)


def test_bad_method_model_and_normalize(model, tokens):
    with pytest.raises(ValueError, match="method must be one of"):
        head_importance(model, tokens, method="taylor")
    with pytest.raises(TypeError, match="TinyDecoder"):
        head_importance(torch.nn.Linear(2, 2), tokens)
    with pytest.raises(TypeError, match="normalize"):
        head_importance(model, tokens, normalize="yes")


# ---------------------------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------------------------


def test_plan_takes_the_top_scores_across_layers():
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.7], [0.2, 0.05]])
    assert plan_from_scores(scores, 3).tolist() == [[False, True], [True, True], [False, False]]
    assert plan_from_scores(scores, 0).sum() == 0 and plan_from_scores(scores, 6).all()
    assert plan_from_scores(scores, 2).dtype == torch.bool


def test_plan_ties_go_to_lower_layer_then_lower_head():
    assert plan_from_scores(torch.ones(3, 2), 3).tolist() == [[True, True], [True, False], [False, False]]
    scores = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    assert plan_from_scores(scores, 2).tolist() == [[False, True], [True, False]]
    assert plan_from_scores(torch.tensor([[1, 3], [3, 0]]), 1).tolist() == [[False, True], [False, False]]
    many = torch.ones(16, 4)  # large enough that an unstable sort reorders ties
    many[::3] = 2.0
    plan = plan_from_scores(many, 30)
    order = [i for i in range(64) if many.flatten()[i] == 2] + [
        i for i in range(64) if many.flatten()[i] == 1
    ]
    assert plan.flatten().nonzero().flatten().tolist() == sorted(order[:30])


def test_random_plan_is_deterministic_and_leaves_the_global_rng():
    state = torch.get_rng_state()
    a, b = random_plan(6, 2, 6, seed=3), random_plan(6, 2, 6, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (6, 2) and a.dtype == torch.bool and int(a.sum()) == 6
    plans = {tuple(random_plan(6, 2, 6, seed=s).flatten().tolist()) for s in range(5)}
    assert len(plans) > 1, "different seeds should give different plans"


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: plan_from_scores(torch.ones(4), 1), ValueError, "[num_layers, num_kv_heads]"),
        (lambda: plan_from_scores([[1.0]], 1), TypeError, "torch.Tensor"),
        (lambda: plan_from_scores(torch.ones(2, 2), 5), ValueError, "[0, 4]"),
        (lambda: plan_from_scores(torch.ones(2, 2), -1), ValueError, "[0, 4]"),
        (lambda: plan_from_scores(torch.ones(2, 2), 1.0), TypeError, "num_full"),
        (lambda: plan_from_scores(torch.tensor([[1.0, math.nan]]), 1), ValueError, "NaN"),
        (lambda: plan_from_scores(torch.ones(2, 2, dtype=torch.bool), 1), TypeError, "real tensor"),
        (lambda: random_plan(6, 2, 13, seed=0), ValueError, "[0, 12]"),
        (lambda: random_plan(0, 2, 0, seed=0), ValueError, "num_layers"),
        (lambda: random_plan(6, 2, 3, seed=-1), ValueError, "seed"),
    ],
)
def test_bad_plan_arguments(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# HeadSplitKVCache: an explicit-mask reference over the whole stream
# ---------------------------------------------------------------------------------------------------------


def allowed_keys(p: int, chunk_start: int, n_keys: int, full: bool, sinks: int, window: int) -> torch.Tensor:
    """Keys j a query at position p (of a call that began at chunk_start) sees: j <= p, and for a streaming
    head only sinks and the window kept before the call, plus the call's own tokens."""
    j = torch.arange(n_keys)
    visible = j <= p
    if not full:
        visible &= (j < sinks) | (j >= chunk_start - window)
    return visible


class ReferenceSplitCache:
    """Keeps every token; attends in float64 with the per-head mask of :func:`allowed_keys`."""

    def __init__(self, plan: torch.Tensor, sinks: int, window: int) -> None:
        self.plan, self.sinks, self.window = plan, sinks, window
        self.num_layers = plan.shape[0]
        self.k = [None] * self.num_layers
        self.v = [None] * self.num_layers

    @property
    def seq_len(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def reset(self) -> None:
        self.k = [None] * self.num_layers
        self.v = [None] * self.num_layers

    def attend(self, layer, q, k, v, batch):
        start = 0 if self.k[layer] is None else self.k[layer].shape[2]
        self.k[layer] = k if self.k[layer] is None else torch.cat([self.k[layer], k], 2)
        self.v[layer] = v if self.v[layer] is None else torch.cat([self.v[layer], v], 2)
        return reference_attention(
            q, self.k[layer], self.v[layer], start, self.plan[layer], self.sinks, self.window
        )


def reference_attention(q, k_all, v_all, start, plan_row, sinks, window):
    """q [B, H, T, D] at positions start .. start+T-1; k_all, v_all [B, KV, n, D] every token so far."""
    B, Hq, T, _ = q.shape
    n_rep = Hq // k_all.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for h in range(Hq):
        kv = h // n_rep
        full = bool(plan_row[kv])
        mask = torch.stack(
            [allowed_keys(start + t, start, k_all.shape[2], full, sinks, window) for t in range(T)]
        )
        scores = torch.einsum("btd,bnd->btn", q[:, h].double(), k_all[:, kv].double()) / math.sqrt(D)
        weights = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)  # (B, T, n)
        out[:, h] = torch.einsum("btn,bnd->btd", weights, v_all[:, kv].double())
    return out.to(q.dtype)


def run_stream(model, cache, ids, steps):
    """Logits of ids [B, N] fed in calls of the given sizes (prefill, decode steps, chunks)."""
    logits, pos = [], 0
    for size in steps:
        logits.append(model(ids[:, pos : pos + size], cache=cache))
        pos += size
    return torch.cat(logits, dim=1)


STEPS = [10, 1, 1, 3, 1, 1, 1, 2, 1]  # 21 tokens: a prefill, decode steps and small chunks


def test_all_full_equals_the_dense_cache_exactly(model, tokens):
    ids = tokens[:2, :21]
    with torch.no_grad():
        dense = run_stream(model, NaiveKVCache(L), ids, STEPS)
        split = run_stream(model, HeadSplitKVCache(L, torch.ones(L, KV, dtype=torch.bool), 2, 3), ids, STEPS)
    assert torch.equal(split, dense)


@pytest.mark.parametrize("plan", [[[False, False], [False, False]], [[True, False], [False, True]]])
def test_split_cache_equals_the_masked_reference(model, tokens, plan):
    plan = torch.tensor(plan)
    ids = tokens[:2, :21]
    with torch.no_grad():
        want = run_stream(model, ReferenceSplitCache(plan, sinks=2, window=3), ids, STEPS)
        got = run_stream(model, HeadSplitKVCache(L, plan, num_sinks=2, window=3), ids, STEPS)
        dense = run_stream(model, NaiveKVCache(L), ids, STEPS)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert (got[:, 10:] - dense[:, 10:]).abs().max() > 1e-3, "eviction should change the logits"
    torch.testing.assert_close(got[:, :10], dense[:, :10], rtol=0, atol=1e-4)  # the prefill sees everything


def qkv(B, T, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, T, D, generator=g).to(dtype) for n in (H, KV, KV))


def forward_batch(T):
    return ForwardBatch(
        torch.zeros(1, T, dtype=torch.long), None, torch.ones(1, 1, T, D), torch.zeros(1, 1, T, D), 1e4
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_attend_directly_keeps_dtype_and_matches_reference(dtype):
    plan = torch.tensor([[False, True], [True, True], [False, False]])
    cache = HeadSplitKVCache(3, plan, num_sinks=1, window=4)
    layer, start = 2, 0
    k_all = v_all = None
    for i, T in enumerate([6, 1, 1, 2, 1, 1, 1, 1]):
        q, k, v = qkv(2, T, dtype, seed=i)
        copies = [t.clone() for t in (q, k, v)]
        out = cache.attend(layer, q, k, v, forward_batch(T))
        assert all(torch.equal(a, b) for a, b in zip((q, k, v), copies)), "inputs must not be mutated"
        k_all = k if k_all is None else torch.cat([k_all, k], 2)
        v_all = v if v_all is None else torch.cat([v_all, v], 2)
        want = reference_attention(q, k_all, v_all, start, plan[layer], 1, 4)
        assert out.dtype == dtype and out.shape == (2, H, T, D)
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        torch.testing.assert_close(out, want, rtol=tol, atol=tol)
        start += T
    assert cache.stream_k[layer].dtype == dtype and cache.stream_k[layer].shape == (2, 2, 5, D)
    assert cache.seen[layer] == 14 and cache.seq_len == 0  # layer 0 never called here
    kept = cache.kept_positions(layer)
    assert [p.tolist() for p in kept] == [[0, 10, 11, 12, 13]] * 2
    assert cache.kept_positions(1)[0].tolist() == []


def test_kept_positions_nbytes_and_fraction_against_a_dense_cache(model, tokens):
    plan = torch.tensor([[True, False], [False, False]])
    S, W = 2, 5
    cache, dense = HeadSplitKVCache(L, plan, S, W), NaiveKVCache(L)
    ids = tokens[:, :20]
    with torch.no_grad():
        for t in range(ids.shape[1]):
            model(ids[:, t : t + 1], cache=cache)
            model(ids[:, t : t + 1], cache=dense)
            n = t + 1
            assert cache.seq_len == n
            assert cache.nbytes() / dense.nbytes() == pytest.approx(
                pruned_kv_fraction(plan, n, S, W), abs=1e-12
            )
            stream = sorted(set(range(min(n, S))) | set(range(max(0, n - W), n)))
            assert [p.tolist() for p in cache.kept_positions(0)] == [list(range(n)), stream]
    # by hand at n = 20: 1 full head of 4 keeps 20 tokens, 3 streaming heads keep 7
    assert pruned_kv_fraction(plan, 20, S, W) == pytest.approx((20 + 3 * 7) / (4 * 20))
    assert pruned_kv_fraction(torch.ones(3, 2, dtype=torch.bool), 100, 4, 64) == 1.0
    assert pruned_kv_fraction(torch.zeros(6, 2, dtype=torch.bool), 512, 4, 64) == pytest.approx(68 / 512)


def test_fp16_nbytes_and_reset_and_state_per_object():
    plan = torch.tensor([[True, False]])
    a, b = HeadSplitKVCache(1, plan, 1, 2), HeadSplitKVCache(1, plan, 1, 2)
    q, k, v = qkv(2, 5, torch.float16, seed=0)
    a.attend(0, q, k, v, forward_batch(5))
    assert a.nbytes() == 2 * 2 * (5 + 3) * D * 2  # K and V, batch 2, (full 5 + stream 3) tokens, fp16
    assert b.seq_len == 0 and b.nbytes() == 0
    a.reset()
    assert a.seq_len == 0 and a.nbytes() == 0 and a.kept_positions(0)[0].numel() == 0


def test_bad_cache_construction():
    plan = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="num_layers=3"):
        HeadSplitKVCache(3, plan, 1, 2)
    with pytest.raises(TypeError, match="torch.bool"):
        HeadSplitKVCache(2, plan.float(), 1, 2)
    with pytest.raises(ValueError, match=r"2 dims"):
        HeadSplitKVCache(2, plan.flatten(), 1, 2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        HeadSplitKVCache(2, [[True, False], [True, True]], 1, 2)
    with pytest.raises(ValueError, match="window"):
        HeadSplitKVCache(2, plan, 1, 0)
    with pytest.raises(ValueError, match="num_sinks"):
        HeadSplitKVCache(2, plan, -1, 2)
    with pytest.raises(ValueError, match="seq_len"):
        pruned_kv_fraction(plan, 0, 1, 2)
    with pytest.raises(TypeError, match="torch.bool"):
        pruned_kv_fraction(plan.int(), 10, 1, 2)


def test_bad_attend_calls_leave_the_cache_unchanged():
    cache = HeadSplitKVCache(1, torch.tensor([[True, False]]), 1, 2)
    q, k, v = qkv(2, 3, torch.float32, seed=0)
    cache.attend(0, q, k, v, forward_batch(3))
    state = (cache.nbytes(), cache.seen[:], [p.tolist() for p in cache.kept_positions(0)])
    q1, k1, v1 = qkv(2, 1, torch.float32, seed=1)
    plain = forward_batch(1)
    ragged = ForwardBatch(plain.positions, torch.ones(2, dtype=torch.long), plain.cos, plain.sin, 1e4)
    with pytest.raises(ValueError, match="rows of different lengths"):
        cache.attend(0, q1, k1, v1, ragged)
    with pytest.raises(ValueError, match="k has 4 KV heads"):
        cache.attend(0, q1, torch.cat([k1, k1], 1), torch.cat([v1, v1], 1), forward_batch(1))
    with pytest.raises(ValueError, match="q must be"):
        cache.attend(0, q1[:, :7], k1, v1, forward_batch(1))
    with pytest.raises(ValueError, match="dtype"):
        cache.attend(0, q1.half(), k1.half(), v1.half(), forward_batch(1))
    with pytest.raises(ValueError, match="batch"):
        cache.attend(0, q1[:1], k1[:1], v1[:1], forward_batch(1))
    with pytest.raises(IndexError, match="layer"):
        cache.attend(1, q1, k1, v1, forward_batch(1))
    with pytest.raises(TypeError, match="ForwardBatch"):
        cache.attend(0, q1, k1, v1, None)
    assert state == (cache.nbytes(), cache.seen[:], [p.tolist() for p in cache.kept_positions(0)])


# ---------------------------------------------------------------------------------------------------------
# distant_attention: the per-layer score behind method="distant_attention" (chapter 05's exercise)
# ---------------------------------------------------------------------------------------------------------


def causal_weights(B: int, H: int, T: int, seed: int = 0) -> torch.Tensor:
    future = torch.arange(T)[None, :] > torch.arange(T)[:, None]
    logits = 3 * torch.randn(B, H, T, T, generator=torch.Generator().manual_seed(seed))
    return logits.masked_fill(future, float("-inf")).softmax(-1)


def distant_attention_by_loops(weights, num_kv_heads, num_sinks, window):
    """Written from the docstring one query at a time, independently of the vectorised version."""
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    out = []
    for g in range(num_kv_heads):
        values = []
        for b in range(B):
            for h in range(g * G, (g + 1) * G):
                for p in range(num_sinks + window + 1, T):
                    values.append(sum(float(weights[b, h, p, j]) for j in range(num_sinks, p - window)))
        out.append(sum(values) / len(values))
    return torch.tensor(out)


@pytest.mark.parametrize("B,H,KV,T,S,W", [(2, 4, 2, 12, 2, 3), (1, 6, 3, 9, 0, 2), (3, 2, 2, 7, 1, 1)])
def test_distant_attention_matches_the_loops_and_leaves_weights_alone(B, H, KV, T, S, W):
    weights = causal_weights(B, H, T)
    before = weights.clone()
    got = distant_attention(weights, KV, S, W)
    assert got.dtype == torch.float32 and got.shape == (KV,)
    torch.testing.assert_close(got, distant_attention_by_loops(weights, KV, S, W), atol=1e-6, rtol=1e-5)
    assert torch.equal(weights, before)
    half = distant_attention(weights.half(), KV, S, W)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, got, atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: distant_attention(causal_weights(1, 2, 8)[0], 1, 1, 2), ValueError, ["weights", "4"]),
        (
            lambda: distant_attention(causal_weights(1, 3, 8), 2, 1, 2),
            ValueError,
            ["multiple", "num_kv_heads=2"],
        ),
        (
            lambda: distant_attention(causal_weights(1, 2, 8)[..., :5], 1, 1, 2),
            ValueError,
            ["T, T", "[1, 2, 8, 5]"],
        ),
        (lambda: distant_attention(causal_weights(1, 2, 4), 1, 1, 2), ValueError, ["T > num_sinks", "T=4"]),
        (
            lambda: distant_attention(causal_weights(1, 2, 8).long(), 1, 1, 2),
            TypeError,
            ["floating", "int64"],
        ),
        (lambda: distant_attention(causal_weights(1, 2, 8), 1, 1, 0), ValueError, ["window"]),
        (lambda: distant_attention(causal_weights(1, 2, 8), 0, 1, 2), ValueError, ["num_kv_heads"]),
    ],
    ids=["3d", "heads", "not-square", "too-short", "ints", "window", "kv-heads"],
)
def test_bad_distant_attention_arguments(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word.lower() in str(info.value).lower(), (word, str(info.value))
