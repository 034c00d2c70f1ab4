"""kvlib.hf: kvlib caches inside transformers' generate give the tokens of its own DynamicCache."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import Cache, DynamicSlidingWindowLayer

from kvlib import data
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.gqa import KVHeadsCache
from kvlib.cache.mla import LatentKVCache
from kvlib.cache.static import StaticKVCache
from kvlib.hf import as_hf_cache
from kvlib.model import MODEL_NAMES, checkpoint_path
from kvlib.paged.cache import PagedKVCache

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("one_torch_thread")]

PROMPT_LEN, NEW_TOKENS = 48, 256  # 304 positions: within the checkpoints' 512
WINDOW = 64  # the evicting test cache keeps this many tokens: eviction starts 16 tokens in


def _load(name: str):
    path = checkpoint_path(name)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model(request):
    return _load(request.param)


@pytest.fixture(scope="module")
def gqa_model():
    return _load("shakespeare-gqa")


def _prompts(batch: int) -> torch.Tensor:
    """``batch`` equal-length passages of the validation plays, [batch, PROMPT_LEN]: no padding."""
    ids = data.token_ids("val")
    return torch.stack([ids[2000 * row : 2000 * row + PROMPT_LEN] for row in range(batch)])


def _generate(model, ids: torch.Tensor, cache) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            ids,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,  # eos is token 0: never stop early, compare all 256
            do_sample=False,
            pad_token_id=0,
            past_key_values=cache,
        )


@pytest.fixture(scope="module")
def reference(model):
    """Greedy tokens and final cache length of transformers' own DynamicCache, per batch size."""
    runs = {}

    def run(batch: int) -> tuple[torch.Tensor, int]:
        if batch not in runs:
            cache = DynamicCache(config=model.config)
            runs[batch] = _generate(model, _prompts(batch), cache), cache.get_seq_length()
        return runs[batch]

    return run


def _kvlib_cache(kind: str, config, batch: int):
    layers, num_kv_heads = config.num_hidden_layers, config.num_key_value_heads
    if kind == "naive":
        return NaiveKVCache(layers)
    if kind == "static":
        return StaticKVCache(layers, batch, num_kv_heads, config.head_dim, config.max_position_embeddings)
    if kind == "paged":  # block size 12: the prompt and most steps end mid-block
        blocks = batch * -(-(PROMPT_LEN + NEW_TOKENS) // 12)
        return PagedKVCache(layers, num_kv_heads, config.head_dim, blocks, 12)
    return KVHeadsCache(layers, num_kv_heads)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kind", ["naive", "static", "kv-heads", "paged"])
def test_generate_with_kvlib_cache_matches_dynamic_cache(model, reference, kind, batch):
    expected, expected_len = reference(batch)
    cache = _kvlib_cache(kind, model.config, batch)
    hf_cache = as_hf_cache(cache, model.config)
    out = _generate(model, _prompts(batch), hf_cache)
    assert out.shape == (batch, PROMPT_LEN + NEW_TOKENS)
    diverged = (out != expected).any(0).nonzero()
    assert not len(diverged), (
        f"{kind}: greedy tokens diverge from DynamicCache at position {diverged[0].item()}"
    )
    assert len(set(out[0, PROMPT_LEN:].tolist())) > 20  # a real continuation, not one token repeated
    # the last generated token is never fed back: the cache holds prompt + 255 tokens, like DynamicCache's
    kvlib_len = cache.num_computed(0) if kind == "paged" else cache.seq_len
    assert hf_cache.get_seq_length() == kvlib_len == expected_len == PROMPT_LEN + NEW_TOKENS - 1


def test_chunked_prefill_builds_the_mask_from_the_cache(gqa_model):
    """Two prompt chunks then a decode step: the second chunk needs a real (not skipped) causal mask."""
    ids = _prompts(2)
    cache, theirs = NaiveKVCache(gqa_model.config.num_hidden_layers), DynamicCache(config=gqa_model.config)
    ours = as_hf_cache(cache, gqa_model.config)
    with torch.no_grad():
        for chunk in (ids[:, :20], ids[:, 20:], ids[:, -1:]):
            torch.testing.assert_close(
                gqa_model(chunk, past_key_values=ours).logits,
                gqa_model(chunk, past_key_values=theirs).logits,
                atol=0,
                rtol=0,
            )
    assert ours.get_seq_length() == cache.seq_len == PROMPT_LEN + 1


class WindowCache(NaiveKVCache):
    """Keeps each layer's last ``window`` tokens (StreamingLLM without sinks): a cache that evicts.
    ``seq_len`` counts every token seen (the next position), as the kvlib contract asks."""

    def __init__(self, num_layers: int, window: int) -> None:
        super().__init__(num_layers)
        self.window, self.seen = window, [0] * num_layers

    def update(self, layer, k, v):
        keys, values = super().update(layer, k, v)
        self.seen[layer] += k.shape[-2]
        self.keys[layer], self.values[layer] = keys[:, :, -self.window :], values[:, :, -self.window :]
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        return self.seen[0]

    def reset(self) -> None:
        super().reset()
        self.seen = [0] * self.num_layers


class CountedWindowCache(WindowCache):
    """The window cache that tells the adapter how many keys its next update returns."""

    def kv_length_after(self, layer: int, new_tokens: int) -> int:
        return min(self.seen[layer] + new_tokens, self.window)


def test_evicting_cache_matches_transformers_sliding_window(gqa_model):
    """transformers' DynamicSlidingWindowLayer keeps window - 1 tokens and returns them plus the new one:
    in decode that is the same ``window`` keys the kvlib window cache returns."""
    layers = gqa_model.config.num_hidden_layers
    sliding = Cache(layers=[DynamicSlidingWindowLayer(sliding_window=WINDOW) for _ in range(layers)])
    expected = _generate(gqa_model, _prompts(1), sliding)
    cache = CountedWindowCache(layers, WINDOW)
    hf_cache = as_hf_cache(cache, gqa_model.config)
    out = _generate(gqa_model, _prompts(1), hf_cache)
    assert torch.equal(out, expected), (
        "window eviction through kvlib.hf diverges from transformers' sliding window"
    )
    assert cache.keys[0].shape[-2] == WINDOW  # it really evicted
    assert hf_cache.get_seq_length() == cache.seq_len == PROMPT_LEN + NEW_TOKENS - 1


def test_evicting_cache_without_kv_length_after_is_refused(gqa_model):
    """Without the hook the mask is sized for every token seen: the first eviction must stop generate."""
    cache = WindowCache(gqa_model.config.num_hidden_layers, WINDOW)
    with pytest.raises(
        RuntimeError, match=r"returned 64 keys for layer 0 .* sized for 65 .* kv_length_after"
    ):
        _generate(gqa_model, _prompts(1), as_hf_cache(cache, gqa_model.config))


def test_evicting_cache_that_drops_new_tokens_is_refused(gqa_model):
    cache = CountedWindowCache(gqa_model.config.num_hidden_layers, window=16)
    with pytest.raises(NotImplementedError, match="keep 16 of the 48 new tokens"), torch.no_grad():
        gqa_model(_prompts(1), past_key_values=as_hf_cache(cache, gqa_model.config))
    assert cache.seq_len == 0  # refused before any layer stored anything


def test_reset_empties_the_kvlib_cache_and_restarts_positions(gqa_model):
    cache = NaiveKVCache(gqa_model.config.num_hidden_layers)
    hf_cache = as_hf_cache(cache, gqa_model.config)
    with torch.no_grad():
        first = gqa_model(_prompts(1), past_key_values=hf_cache).logits
        hf_cache.reset()
        assert cache.seq_len == hf_cache.get_seq_length() == 0
        torch.testing.assert_close(
            gqa_model(_prompts(1), past_key_values=hf_cache).logits, first, atol=0, rtol=0
        )


def test_beam_search_is_refused_with_a_clear_error(gqa_model):
    hf_cache = as_hf_cache(NaiveKVCache(gqa_model.config.num_hidden_layers), gqa_model.config)
    with pytest.raises(NotImplementedError, match=r"beam search \(reorder_cache\)"), torch.no_grad():
        gqa_model.generate(
            _prompts(1), max_new_tokens=3, num_beams=2, pad_token_id=0, past_key_values=hf_cache
        )


class AttendOnlyCache:
    """The shape of kvlib.paged.PagedKVCache today: it computes attention itself and has no update."""

    def attend(self, layer, q, k, v, batch): ...

    def reset(self) -> None: ...


class PreRopeCache(NaiveKVCache):
    rotates_keys = True  # a StreamingLLM-style cache: wants keys before RoPE


class WeightWatchingCache(NaiveKVCache):
    def observe_attention(self, layer, weights):  # an H2O-style cache: wants the attention weights
        pass


@pytest.mark.parametrize(
    "make_cache, error, message",
    [
        (
            lambda c: "a cache",
            TypeError,
            r"KV cache instance \(update, seq_len, reset; or attend, reset\), got str",
        ),
        (lambda c: NaiveKVCache, TypeError, r"the class NaiveKVCache \(call it\)"),
        (lambda c: DynamicCache(config=c), TypeError, r"KV cache instance .* got DynamicCache"),
        (lambda c: LatentKVCache(c.num_hidden_layers), TypeError, "MLA latents"),
        (
            lambda c: AttendOnlyCache(),
            TypeError,
            r"AttendOnlyCache computes attention itself .* model=model\)",
        ),
        (
            lambda c: PreRopeCache(c.num_hidden_layers),
            TypeError,
            r"rotates_keys=True .* pass the model, as_hf_cache\(cache, model.config, model=model\)",
        ),
        (
            lambda c: WeightWatchingCache(c.num_hidden_layers),
            TypeError,
            r"needs observe_attention \(the attention weights, which sdpa never computes\).* model=model",
        ),
        (
            lambda c: PagedKVCache(c.num_hidden_layers, 2, 32, 8, 4, prefix_cache="radix"),
            ValueError,
            "transformers never hands the cache token ids",
        ),
        (
            lambda c: NaiveKVCache(c.num_hidden_layers + 1),
            ValueError,
            r"num_layers=7 but the model has 6 layers .* make the cache with num_layers=6",
        ),
        (
            lambda c: StaticKVCache(c.num_hidden_layers - 1, 1, 2, 32, 64),
            ValueError,
            r"StaticKVCache has num_layers=5 but the model has 6",
        ),
    ],
)
def test_bad_cache_is_refused(gqa_model, make_cache, error, message):
    with pytest.raises(error, match=message):
        as_hf_cache(make_cache(gqa_model.config), gqa_model.config)


def test_model_instead_of_config_is_refused(gqa_model):
    with pytest.raises(TypeError, match=r"model's config \(model.config\), got .*LlamaForCausalLM"):
        as_hf_cache(NaiveKVCache(6), gqa_model)
