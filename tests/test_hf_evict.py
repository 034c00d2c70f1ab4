"""kvlib.hf seam mode: chapter 05's evicting caches inside transformers' generate give kvlib's tokens.

The reference is kvlib's own run: :func:`kvlib.generate.generate` on TinyDecoder (an independent
implementation of the same checkpoint) with a fresh cache of the same kind. What transformers must add
nothing to: the window, the sinks (keys un-rotated from transformers' RoPE, re-rotated at their places in
the cache, also past the trained 512 positions), H2O (attention weights that sdpa never computes) and a
cache that attends by itself (heads of different lengths).
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from kvlib import data
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.evict import H2OKVCache, SinkKVCache, SlidingWindowKVCache
from kvlib.generate import generate
from kvlib.hf import KVLIB_ATTENTION, as_hf_cache
from kvlib.model import checkpoint_path, load_model

pytestmark = [pytest.mark.ch05, pytest.mark.model, pytest.mark.usefixtures("one_torch_thread")]

LAYERS, KV_HEADS, HEAD_DIM = 6, 2, 32  # shakespeare-gqa: 8 query heads share 2 KV heads
PROMPT_LEN, NEW_TOKENS, BATCH = 40, 60, 2
SINKS, WINDOW = 4, 28  # the sink cache keeps 32 tokens of the 99 it sees
CACHES = {
    "window": lambda: SlidingWindowKVCache(LAYERS, window=32),
    "sink": lambda: SinkKVCache(LAYERS, num_sinks=SINKS, window=WINDOW),
    "h2o": lambda: H2OKVCache(LAYERS, heavy=12, recent=16, num_sinks=4),
}


def _hf(dtype: torch.dtype = torch.float32):
    path = checkpoint_path("shakespeare-gqa")
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).eval()


@pytest.fixture(scope="module")
def hf_model():
    """One transformers model for the tests that switch it to kvlib's attention and leave it so."""
    return _hf()


@pytest.fixture(scope="module")
def tiny():
    model = load_model("shakespeare-gqa")
    model.allow_long_context = True  # the window and H2O caches keep absolute positions past 512
    return model


def _prompts(length: int, batch: int = BATCH) -> torch.Tensor:
    """``batch`` equal-length passages of the validation plays, [batch, length]: no padding."""
    ids = data.token_ids("val")
    return torch.stack([ids[3000 * row : 3000 * row + length] for row in range(batch)])


def _hf_generate(model, ids: torch.Tensor, cache, new_tokens: int = NEW_TOKENS, **kwargs):
    """Greedy ids [B, T + new_tokens] and step logits [B, new_tokens, V] of transformers' generate."""
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            past_key_values=cache,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # eos is token 0: never stop early
            do_sample=False,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
            **kwargs,
        )
    return out.sequences, torch.stack(out.logits, dim=1)


def _assert_same_run(got: tuple, expected: tuple, what: str, prompt_len: int = PROMPT_LEN) -> None:
    (ids, logits), (ref_ids, ref_logits) = got, expected
    diverged = (ids != ref_ids).any(0).nonzero()
    assert not len(diverged), f"{what}: greedy tokens diverge from kvlib's at position {diverged[0].item()}"
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=0)
    assert len(set(ids[0, prompt_len:].tolist())) > 10, f"{what}: not a real continuation"


def _pre_rope_keys(model, layer0_tokens: torch.Tensor) -> torch.Tensor:
    """Layer 0's keys before RoPE, straight from the weights: [B, KV, T, D]. A layer-0 key depends on its
    token only, so this is what a sink cache must hold, whatever position transformers rotated it at."""
    B, T = layer0_tokens.shape
    block = model.model.layers[0]
    with torch.no_grad():
        x = block.input_layernorm(model.model.embed_tokens(layer0_tokens))
        return block.self_attn.k_proj(x).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)


def _sink_cache_keys(cache: SinkKVCache, layer: int) -> torch.Tensor:
    seen = cache.seen[layer]
    parts = [cache.sinks.keys[layer][:, :, : min(seen, cache.num_sinks)]]
    parts.append(cache.ring.read(layer, seen - cache.num_sinks)[0])
    return torch.cat(parts, dim=2)  # (B, KV, kept, D) in stream order


@pytest.mark.parametrize("kind", list(CACHES))
def test_evicting_cache_in_generate_matches_kvlib(hf_model, tiny, kind):
    ids = _prompts(PROMPT_LEN)
    ours, theirs = CACHES[kind](), CACHES[kind]()
    expected = generate(tiny, ids, NEW_TOKENS, ours, return_logits=True)
    hf_cache = as_hf_cache(theirs, hf_model.config, model=hf_model)
    _assert_same_run(_hf_generate(hf_model, ids, hf_cache), expected, kind)
    seen = PROMPT_LEN + NEW_TOKENS - 1  # the last token is never fed back
    assert theirs.seq_len == hf_cache.get_seq_length() == seen
    if kind == "h2o":
        # the same tokens survived in every layer, row and KV head: eviction saw the same weights
        for layer in range(LAYERS):
            assert torch.equal(theirs.kept_positions(layer), ours.kept_positions(layer))
        kept = theirs.kept_positions(0)
        assert kept.shape == (BATCH, KV_HEADS, 32)
        heavy = kept[(kept >= 4) & (kept < seen - 16)]  # neither sink nor recent: kept for its score
        assert heavy.numel() == BATCH * KV_HEADS * 12 and heavy.min() < seen - 32  # not a window
    else:
        assert theirs.nbytes() == ours.nbytes() == 2 * LAYERS * BATCH * KV_HEADS * 32 * HEAD_DIM * 4
    if kind == "sink":  # kept keys are the model's pre-RoPE keys: the un-rotation is exact
        fed = torch.cat([ids, expected[0][:, PROMPT_LEN:-1]], dim=1)  # tokens at positions 0 .. seen-1
        kept = torch.cat([fed[:, :SINKS], fed[:, seen - WINDOW : seen]], dim=1)
        torch.testing.assert_close(
            _sink_cache_keys(theirs, 0), _pre_rope_keys(hf_model, kept), atol=1e-5, rtol=0
        )


def test_sliding_window_needs_no_model(hf_model, tiny):
    """Storage mode (no model=): transformers' own attention over what update returns, sized by
    kv_length_after; the window keeps keys rotated at absolute positions, so that is already exact."""
    ids = _prompts(PROMPT_LEN)
    expected = generate(tiny, ids, NEW_TOKENS, CACHES["window"](), return_logits=True)
    cache = CACHES["window"]()
    hf_cache = as_hf_cache(cache, hf_model.config)
    assert not hf_cache.seam
    _assert_same_run(_hf_generate(hf_model, ids, hf_cache), expected, "window without model=")


def test_sink_cache_past_the_trained_context(hf_model, tiny):
    """A 480-token prompt and 60 steps: transformers rotates at positions up to 538 (its RoPE has no limit,
    it only warns), the sink cache shows the model positions 0 .. 32 only."""
    prompt_len = 480
    ids = _prompts(prompt_len)
    expected = generate(tiny, ids, NEW_TOKENS, CACHES["sink"](), return_logits=True)
    cache = CACHES["sink"]()
    got = _hf_generate(hf_model, ids, as_hf_cache(cache, hf_model.config, model=hf_model))
    _assert_same_run(got, expected, "sink past 512", prompt_len)
    seen = prompt_len + NEW_TOKENS - 1
    assert cache.seq_len == seen > hf_model.config.max_position_embeddings
    fed = got[0][:, :seen]
    kept = torch.cat([fed[:, :SINKS], fed[:, seen - WINDOW :]], dim=1)  # rotated at 4 .. 3 and 511 .. 538
    torch.testing.assert_close(_sink_cache_keys(cache, 0), _pre_rope_keys(hf_model, kept), atol=1e-5, rtol=0)


def test_sink_cache_decodes_step_by_step_past_the_trained_context(hf_model, tiny):
    """500 decode steps on each side, every one past 16 tokens through the seam: 7.5 s on an idle 2-core
    machine (28 s measured while other jobs shared the cores)."""
    prompt_len, new_tokens = 16, 500
    ids = _prompts(prompt_len)
    expected = generate(tiny, ids, new_tokens, CACHES["sink"](), return_logits=True)
    cache = CACHES["sink"]()
    got = _hf_generate(hf_model, ids, as_hf_cache(cache, hf_model.config, model=hf_model), new_tokens)
    (got_ids, got_logits), (ref_ids, ref_logits) = got, expected
    assert torch.equal(got_ids, ref_ids)
    torch.testing.assert_close(got_logits, ref_logits, atol=1e-4, rtol=0)
    assert cache.seq_len == prompt_len + new_tokens - 1 > 512


def test_chunked_prefill_then_decode(hf_model, tiny):
    """Two prompt chunks (transformers builds a real causal mask for the second) then one decode step."""
    ids = _prompts(PROMPT_LEN + 1)
    ours, theirs = CACHES["sink"](), CACHES["sink"]()
    hf_cache = as_hf_cache(theirs, hf_model.config, model=hf_model)
    with torch.no_grad():
        for chunk in (ids[:, :20], ids[:, 20:PROMPT_LEN], ids[:, PROMPT_LEN:]):
            torch.testing.assert_close(
                hf_model(chunk, past_key_values=hf_cache).logits, tiny(chunk, cache=ours), atol=1e-4, rtol=0
            )
    assert theirs.seq_len == hf_cache.get_seq_length() == PROMPT_LEN + 1


@pytest.mark.parametrize("kind", ["sink", "h2o"])
def test_fp16_logits_match_kvlib(kind):
    """Teacher-forced (same tokens fed to both), so a near-tie cannot make greedy paths part. Measured: h2o
    identical, sink 0.016 (un-rotating fp16 keys in float32 cannot undo the rounding of transformers'
    fp16 rotation; logits are about 11)."""
    model, tiny16 = _hf(torch.float16), load_model("shakespeare-gqa", dtype=torch.float16)
    ids = _prompts(PROMPT_LEN + 20)
    ours, theirs = CACHES[kind](), CACHES[kind]()
    hf_cache = as_hf_cache(theirs, model.config, model=model)
    with torch.no_grad():
        for chunk in [ids[:, :PROMPT_LEN]] + list(ids[:, PROMPT_LEN:].split(1, dim=1)):
            got = model(chunk, past_key_values=hf_cache).logits
            assert got.dtype == torch.float16
            torch.testing.assert_close(got.float(), tiny16(chunk, cache=ours), atol=0.05, rtol=0)
    stored = theirs.keys[0] if kind == "h2o" else theirs.ring.keys[0]
    assert stored.dtype == torch.float16


class SplitHeadsStandIn:
    """KV head 0 keeps every token, the others only the last ``window``: heads of different lengths, so it
    attends by itself (what kvlib.cache.heads.HeadSplitKVCache does), with the attention written out."""

    def __init__(self, num_layers: int, window: int) -> None:
        self.num_layers, self.window = num_layers, window
        self.reset()

    def reset(self) -> None:
        self.keys: list[list[torch.Tensor] | None] = [None] * self.num_layers  # per KV head: [B, n_h, D]
        self.values: list[list[torch.Tensor] | None] = [None] * self.num_layers
        self.seen, self.calls = [0] * self.num_layers, 0

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def attend(self, layer, q, k, v, batch):
        B, H, T, D = q.shape
        KV = k.shape[1]
        group = H // KV
        outs, old_keys, old_values = [], self.keys[layer], self.values[layer]
        self.keys[layer], self.values[layer] = [None] * KV, [None] * KV
        for h in range(KV):
            keys, values = k[:, h], v[:, h]  # (B, T, D)
            if old_keys is not None:
                keys = torch.cat([old_keys[h], keys], dim=1)
                values = torch.cat([old_values[h], values], dim=1)
            n = keys.shape[1]
            scores = q[:, h * group : (h + 1) * group].float() @ keys.float()[:, None].transpose(-1, -2)
            visible = torch.arange(n)[None, :] <= torch.arange(n - T, n)[:, None]  # query i is key n-T+i
            weights = torch.softmax((scores / math.sqrt(D)).masked_fill(~visible, -math.inf), dim=-1)
            outs.append((weights @ values.float()[:, None]).to(q.dtype))  # (B, group, T, D)
            keep = n if h == 0 else self.window
            self.keys[layer][h], self.values[layer][h] = keys[:, -keep:], values[:, -keep:]
        self.seen[layer] += T
        self.calls += 1
        return torch.cat(outs, dim=1)  # (B, H, T, D)


def test_cache_with_its_own_attend(hf_model, tiny):
    ids = _prompts(PROMPT_LEN)
    ours, theirs = SplitHeadsStandIn(LAYERS, window=8), SplitHeadsStandIn(LAYERS, window=8)
    expected = generate(tiny, ids, NEW_TOKENS, ours, return_logits=True)
    hf_cache = as_hf_cache(theirs, hf_model.config, model=hf_model)
    _assert_same_run(_hf_generate(hf_model, ids, hf_cache), expected, "own attend")
    assert theirs.calls == LAYERS * NEW_TOKENS  # every layer of every forward went through it
    lengths = [t.shape[1] for t in theirs.keys[LAYERS - 1]]
    assert lengths == [PROMPT_LEN + NEW_TOKENS - 1, 8] == [t.shape[1] for t in ours.keys[LAYERS - 1]]


def test_head_split_cache_in_generate(hf_model, tiny):
    heads = pytest.importorskip("kvlib.cache.heads")
    plan = torch.tensor(
        [[True, False], [False, True], [False, False], [True, True], [True, False], [False, True]]
    )
    make = lambda: heads.HeadSplitKVCache(LAYERS, plan, num_sinks=4, window=12)  # noqa: E731
    ids = _prompts(PROMPT_LEN)
    expected = generate(tiny, ids, NEW_TOKENS, make(), return_logits=True)
    cache = make()
    _assert_same_run(
        _hf_generate(hf_model, ids, as_hf_cache(cache, hf_model.config, model=hf_model)), expected, "heads"
    )
    assert cache.seq_len == PROMPT_LEN + NEW_TOKENS - 1


def test_switched_model_runs_other_caches_with_sdpa():
    """Switching to kvlib's attention changes nothing for calls without a seam-mode cache: transformers'
    sdpa with sdpa's mask, bit for bit (a chunked prefill needs a real mask, not just is_causal)."""
    model, ids = _hf(), _prompts(PROMPT_LEN)
    chunks = (ids[:, :20], ids[:, 20:], ids[:, -1:])

    def run(cache):
        with torch.no_grad():
            return [model(chunk, past_key_values=cache).logits for chunk in chunks]

    before = run(DynamicCache(config=model.config))
    assert model.config._attn_implementation == "sdpa"
    as_hf_cache(CACHES["sink"](), model.config, model=model)
    assert model.config._attn_implementation == KVLIB_ATTENTION
    for cache in (DynamicCache(config=model.config), as_hf_cache(NaiveKVCache(LAYERS), model.config)):
        for after, expected in zip(run(cache), before):
            torch.testing.assert_close(after, expected, atol=0, rtol=0)


@pytest.mark.parametrize("kind", list(CACHES))
def test_padded_batch_is_refused(hf_model, kind):
    ids = _prompts(PROMPT_LEN)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # row 1 left-padded
    cache = CACHES[kind]()
    with pytest.raises(NotImplementedError, match="a padded batch"), torch.no_grad():
        hf_model.generate(
            ids,
            attention_mask=mask,
            past_key_values=as_hf_cache(cache, hf_model.config, model=hf_model),
            max_new_tokens=2,
            pad_token_id=0,
        )
    assert cache.seq_len == 0  # refused before the cache stored anything


def test_beam_search_is_still_refused(hf_model):
    hf_cache = as_hf_cache(CACHES["h2o"](), hf_model.config, model=hf_model)
    with pytest.raises(NotImplementedError, match=r"beam search \(reorder_cache\)"), torch.no_grad():
        hf_model.generate(
            _prompts(8, 1), max_new_tokens=3, num_beams=2, pad_token_id=0, past_key_values=hf_cache
        )


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("sink", "rotates_keys=True"),
        ("h2o", "needs observe_attention"),
        ("attend", "computes attention itself"),
    ],
)
def test_cache_that_needs_the_seam_is_refused_without_model(hf_model, kind, reason):
    cache = SplitHeadsStandIn(LAYERS, 8) if kind == "attend" else CACHES[kind]()
    with pytest.raises(TypeError, match=rf"{reason}.*as_hf_cache\(cache, model.config, model=model\)"):
        as_hf_cache(cache, hf_model.config)


def test_bad_model_argument_is_refused(hf_model, tiny):
    with pytest.raises(TypeError, match=r"model must be a transformers model .*TinyDecoder"):
        as_hf_cache(CACHES["sink"](), hf_model.config, model=tiny)
    other = _hf()
    with pytest.raises(ValueError, match=r"config must be model.config"):
        as_hf_cache(CACHES["sink"](), hf_model.config, model=other)
    assert other.config._attn_implementation == "sdpa"  # refused before switching anything


def test_scaled_rope_is_refused_for_a_sink_cache(monkeypatch):
    model = _hf()
    scaled = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    monkeypatch.setattr(model.config, "rope_parameters", scaled)
    with pytest.raises(TypeError, match="needs plain RoPE, and this model's rope_type is 'linear'"):
        as_hf_cache(CACHES["sink"](), model.config, model=model)
    as_hf_cache(CACHES["h2o"](), model.config, model=model)  # keys stay rotated: any RoPE is fine


def test_seam_cache_run_without_kvlib_attention_raises():
    """Neither silent nor stuck: switched back to sdpa, the seam cache's update refuses; run by another
    model (its attention never takes the keys over), the next layer's update refuses, and the cache
    works again afterwards."""
    model, ids = _hf(), _prompts(8)
    cache = CACHES["h2o"]()
    hf_cache = as_hf_cache(cache, model.config, model=model)
    model.set_attn_implementation("sdpa")
    with pytest.raises(RuntimeError, match=r"attention implementation is now 'sdpa'"), torch.no_grad():
        model(ids, past_key_values=hf_cache)
    other = _hf()  # still sdpa
    model.set_attn_implementation(KVLIB_ATTENTION)
    with (
        pytest.raises(RuntimeError, match="the keys of layer 0 never reached kvlib's attention"),
        torch.no_grad(),
    ):
        other(ids, past_key_values=hf_cache)
    assert cache.seq_len == 0
    hf_cache.reset()
    with torch.no_grad():
        model(ids, past_key_values=hf_cache)
    assert cache.seq_len == hf_cache.get_seq_length() == 8
