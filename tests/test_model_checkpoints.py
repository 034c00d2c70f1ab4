"""The shipped checkpoints: offline loading, TinyDecoder == transformers, positions, model cards."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from kvlib import data
from kvlib.cache.dense import NaiveKVCache
from kvlib.model import MODEL_NAMES, TinyDecoder, checkpoint_path, load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.model

PROMPT = "MACBETH:\nIs this a dagger which I see before me,\nThe handle toward my hand?"


@pytest.fixture(scope="module", params=MODEL_NAMES)
def pair(request):
    """(name, TinyDecoder, transformers model), both fp32, loaded offline from the shipped folder."""
    from transformers import AutoModelForCausalLM

    path = checkpoint_path(request.param)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    return request.param, load_model(request.param), hf


def test_shipped_files_and_shape(pair):
    name, model, _ = pair
    path = checkpoint_path(name)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md"):
        assert (path / f).is_file(), f
    assert (path / "model.safetensors").stat().st_size <= 16 * 2**20
    # transformers' save_pretrained re-serialises tokenizer.json (it adds an empty post-processor), so
    # compare what decides the token ids: the BPE vocabulary and merges, and the byte-level pre-tokenizer.
    shipped, canonical = (json.loads(p.read_text()) for p in (path / "tokenizer.json", data.TOKENIZER_PATH))
    for section in ("model", "pre_tokenizer", "decoder", "added_tokens"):
        assert shipped[section] == canonical[section], f"tokenizer.json: {section} differs from kvlib/assets"
    assert json.loads((path / "config.json").read_text())["dtype"] in ("float16", "bfloat16")
    c = model.config
    assert 4_000_000 <= model.num_parameters() <= 8_000_000
    assert c.max_seq_len >= 512 and c.num_heads == 8 and c.num_kv_heads == (8 if name.endswith("mha") else 2)
    assert not model.training


def test_checkpoint_tokenizer_is_a_fast_hf_tokenizer(pair):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(checkpoint_path(pair[0]), local_files_only=True)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok(PROMPT)["input_ids"] == data.encode(PROMPT) and tok.eos_token == data.EOS_TOKEN


def test_logits_match_transformers_without_and_with_cache(pair):
    _, model, hf = pair
    ids = data.token_ids("val")[1000:1160].reshape(2, 80)
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        # cached: prefill 50 tokens, then 30 decode steps, both libraries with their own cache
        cache = NaiveKVCache(model.config.num_layers)
        out = hf(ids[:, :50], use_cache=True)
        ours_steps, hf_steps = [model(ids[:, :50], cache=cache)], [out.logits]
        for t in range(50, 80):
            ours_steps.append(model(ids[:, t : t + 1], positions=torch.tensor([t]), cache=cache))
            out = hf(ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
            hf_steps.append(out.logits)
    torch.testing.assert_close(torch.cat(ours_steps, 1), torch.cat(hf_steps, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(ours_steps, 1), ours, atol=1e-5, rtol=1e-5)


def _greedy_with_cache(model: TinyDecoder, prompt: torch.Tensor, n: int) -> torch.Tensor:
    cache = NaiveKVCache(model.config.num_layers)
    ids, logits = prompt, model(prompt, cache=cache)
    for _ in range(n):
        next_id = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)
        logits = model(next_id, cache=cache)  # position defaults to cache.seq_len
    return ids


def test_greedy_256_tokens_identical_to_transformers_generate(pair):
    _, model, hf = pair
    prompt = torch.tensor([data.encode(PROMPT)])
    with torch.no_grad():
        ours = _greedy_with_cache(model, prompt, 256)
        theirs = hf.generate(
            prompt, max_new_tokens=256, min_new_tokens=256, do_sample=False, pad_token_id=0, use_cache=True
        )
    assert theirs.shape == ours.shape == (1, prompt.shape[1] + 256)
    assert torch.equal(ours, theirs), "greedy continuations diverge"
    assert len(set(ours[0, -256:].tolist())) > 20  # a real continuation, not one token repeated


def test_wrong_rope_position_changes_logits(pair):
    _, model, _ = pair
    ids = torch.tensor([data.encode(PROMPT)])
    T = ids.shape[1]
    with torch.no_grad():
        full = model(ids)[:, -1]
        cache = NaiveKVCache(model.config.num_layers)
        model(ids[:, :-1], positions=torch.arange(T - 1), cache=cache)  # prefill at offset 0
        right = model(ids[:, -1:], positions=torch.tensor([T - 1]), cache=cache)[:, -1]
        cache.reset()
        model(ids[:, :-1], positions=torch.arange(T - 1), cache=cache)
        wrong = model(ids[:, -1:], positions=torch.tensor([T + 40]), cache=cache)[:, -1]  # decode at t+41
    torch.testing.assert_close(right, full, atol=1e-5, rtol=1e-5)
    assert (wrong - full).abs().max() > 0.05, "the decode position must reach RoPE"
    assert wrong.argmax() != full.argmax() or (wrong - full).abs().mean() > 0.01


def _card_perplexity(name: str) -> float:
    card = (checkpoint_path(name) / "MODEL_CARD.md").read_text()
    match = re.search(r"validation perplexity: ([0-9.]+)", card)
    assert match, "MODEL_CARD.md must state 'validation perplexity: <number>'"
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_card_perplexity_is_reproduced(name):
    stated = _card_perplexity(name)
    result = data.perplexity(load_model(name), "val", progress=False)  # the defaults the card states
    assert result.ppl == pytest.approx(stated, rel=0.005)
    assert stated < 76  # clearly better than the 5-minute baseline (ppl ~76, 1k BPE, 3 M params)
