"""Corpus extraction, play-level split, tokenizer and the perplexity function."""

from __future__ import annotations

import math

import pytest
import torch

from kvlib import data
from kvlib.cache.dense import NaiveKVCache
from kvlib.model import ModelConfig, TinyDecoder

pytestmark = pytest.mark.model


def test_play_to_text_rules():
    md = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A heath.\n\n_Thunder. Enter three\nWitches_\n\n"
        "**FIRST WITCH**  \nWhen shall we three meet again  \n_\\[Aside]_  \nIn thunder\\--or rain?\n\n"
        "**ALL**  \n*[They vanish.]*\n\n**SECOND WITCH**  \n__\\[Awaking]_ Anon.\n\n_Exeunt_\n"
    )
    assert data.play_to_text(md) == (
        "FIRST WITCH:\nWhen shall we three meet again\nIn thunder--or rain?\n\nSECOND WITCH:\nAnon.\n"
    )


def test_split_is_by_whole_play_and_disjoint():
    train, val = data.split_plays("train"), data.split_plays("val")
    assert set(val) == set(data.VAL_PLAYS) and len(val) >= 2
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(data.play_paths()) and len(train) + len(val) == 38
    train_text = data.load_corpus("train")
    texts = data._play_texts()
    for play in data.VAL_PLAYS:  # distinctive long lines of every val play never occur in train
        long_lines = [line for line in texts[play].splitlines() if len(line) > 55][:20]
        assert long_lines and not any(line in train_text for line in long_lines), play
    with pytest.raises(ValueError, match="split"):
        data.load_corpus("test")


@pytest.mark.parametrize("split", ["train", "val"])
def test_corpus_is_plain_dialogue(split):
    text = data.load_corpus(split)
    assert len(text) > (200_000 if split == "val" else 3_000_000)
    for markup in ("**", "#", "_", "[", "]", "\\"):
        assert markup not in text.replace(data.EOS_TOKEN, ""), f"markdown {markup!r} left in the {split} text"
    assert text.count(data.EOS_TOKEN) == len(data.split_plays(split)) - 1
    assert "\n\nMACBETH:\n" in data.load_corpus("val")


def test_tokenizer_round_trip_and_hf_wrapper():
    from transformers import PreTrainedTokenizerFast

    tok = data.load_tokenizer()
    assert tok.get_vocab_size() == data.VOCAB_SIZE and tok.token_to_id(data.EOS_TOKEN) == 0
    text = data.load_corpus("val")[:2000]
    ids = data.encode(text)
    assert data.decode(ids) == text and data.decode(torch.tensor(ids)) == text
    assert len(text) / len(ids) > 2.0  # BPE merges: over 2 characters per token on Shakespeare
    hf = data.load_hf_tokenizer()
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert hf(text)["input_ids"] == ids and hf.eos_token_id == 0


def test_token_ids_cached_long_tensor():
    ids = data.token_ids("val")
    assert ids.dtype == torch.long and ids.dim() == 1 and data.token_ids("val") is ids
    assert int(ids.max()) < data.VOCAB_SIZE and (ids == 0).sum() == len(data.VAL_PLAYS) - 1


class _Uniform:
    """A 'model' with constant logits: perplexity must be exactly the vocabulary size."""

    def __init__(self):
        self.calls: list[tuple[int, list[int]]] = []

    def __call__(self, ids, positions=None, cache=None):
        self.calls.append((ids.shape[1], positions.tolist()))
        return torch.zeros(*ids.shape, data.VOCAB_SIZE)


@pytest.mark.parametrize(
    "n_tokens, window, stride, expected",
    [
        (5, 4, 1, [0]),  # exactly one window of 4 inputs + 1 target
        (6, 4, 1, [0, 1]),
        (8, 4, 4, [0]),  # a window at 4 would need token 8 as its last target
        (9, 4, 4, [0, 4]),  # ... and with one more token it fits
        (10, 4, 6, [0]),
        (11, 4, 6, [0, 6]),
        (19, 3, 5, [0, 5, 10, 15]),  # 15 + 3 + 1 = 19 tokens: the last window ends on the last token
        (18, 3, 5, [0, 5, 10]),  # a window at 15 would need token 18
    ],
)
def test_window_starts_exact_small_cases(n_tokens, window, stride, expected):
    """Guards against counting a window that needs one token past the end of the split."""
    assert data.window_starts(n_tokens, window, stride, None) == expected


def test_every_window_and_its_target_fit_and_no_full_window_is_dropped():
    for n_tokens in range(2, 40):
        for window in range(1, n_tokens):
            for stride in range(1, window + 3):
                starts = data.window_starts(n_tokens, window, stride, None)
                case = (n_tokens, window, stride)
                assert starts == list(range(0, len(starts) * stride, stride)), case
                assert starts[-1] + window + 1 <= n_tokens, f"{case}: last window runs past the split"
                assert starts[-1] + stride + window + 1 > n_tokens, f"{case}: a full window was dropped"
    with pytest.raises(ValueError, match="fewer than one window"):
        data.window_starts(4, 4, 1, None)  # 4 tokens cannot hold 4 inputs and a target


def test_perplexity_of_uniform_model_and_stride_rule():
    n = len(data.token_ids("val"))
    starts = data.window_starts(n, window=128, stride=128, max_windows=None)
    assert starts == list(range(0, n - 128, 128))  # disjoint full windows of 128 + 1 tokens, tail dropped
    assert starts[-1] + 129 <= n < starts[-1] + 129 + 128
    sub = data.window_starts(n, window=128, stride=128, max_windows=5)
    assert len(sub) == 5 and sub[0] == 0 and sub[-1] == starts[-1] and sub == sorted(sub)
    res = data.perplexity(_Uniform(), window=128, max_windows=20, progress=False)
    assert res.tokens == 128 * 20  # every target of every window scored once
    assert res.ppl == pytest.approx(data.VOCAB_SIZE) and res.nll == pytest.approx(math.log(data.VOCAB_SIZE))
    res = data.perplexity(_Uniform(), window=128, stride=32, max_windows=10, progress=False)
    assert res.tokens == 128 + 9 * 32  # first window fully, the others their last `stride` targets
    res = data.perplexity(_Uniform(), window=128, prefill=100, max_windows=10, progress=False)
    assert res.tokens == 10 * 29


def test_perplexity_cache_mode_feeds_prefill_then_decode_steps():
    model = _Uniform()
    kw = dict(window=16, max_windows=2, batch_size=2, progress=False)
    res = data.perplexity(model, make_cache=lambda: None, **kw)
    assert model.calls[0] == (8, list(range(8)))  # default prefill = window // 2
    assert model.calls[1:8] == [(1, [t]) for t in range(8, 16)][:7] and len(model.calls) == 9
    assert res.tokens == 2 * 9


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=data.VOCAB_SIZE, dim=32, num_layers=2, num_heads=4, num_kv_heads=2, ffn_dim=64
    )
    return TinyDecoder(cfg).eval()


class _LastTokensCache(NaiveKVCache):
    """An evicting cache (new tokens see the last 4 kept ones) to show that cache mode uses the cache."""

    def update(self, layer, k, v):
        k_all, v_all = super().update(layer, k, v)
        self.keys[layer], self.values[layer] = k_all[:, :, -4:], v_all[:, :, -4:]  # evict after use
        return k_all, v_all


def test_dense_cache_equals_no_cache_and_eviction_changes_it(tiny_model):
    kw = dict(window=32, prefill=20, max_windows=6, batch_size=3, progress=False)
    ref = data.perplexity(tiny_model, **kw)
    dense = data.perplexity(tiny_model, make_cache=lambda: NaiveKVCache(2), **kw)
    assert dense.tokens == ref.tokens == 6 * 13
    assert dense.nll == pytest.approx(ref.nll, rel=1e-5)
    evicted = data.perplexity(tiny_model, make_cache=lambda: _LastTokensCache(2), **kw)
    assert abs(evicted.nll - ref.nll) > 1e-3
    again = data.perplexity(tiny_model, make_cache=lambda: NaiveKVCache(2), **kw)
    assert again == dense  # deterministic


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(window=1), "window"),
        (dict(stride=0), "stride"),
        (dict(window=16, stride=17), "stride"),
        (dict(window=16, prefill=17), "prefill"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_windows=0), "max_windows"),
        (dict(window=10**7), "fewer than one window"),
    ],
)
def test_perplexity_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.perplexity(_Uniform(), progress=False, **kwargs)
