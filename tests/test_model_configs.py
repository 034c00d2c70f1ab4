"""kvlib.memory.MODEL_CONFIGS against each model's published Hugging Face ``config.json`` (issue 20).

A wrong layer or head count in the table would silently change every byte count that chapters 02, 03
and 09 print, and no other test would notice. Below, for every entry, the numbers of its ``config.json``
are written down with the config's own key names, the Hugging Face repository and the page they were
read from. Where the official file was not in the stored copy we searched, the numbers come from a
verbatim copy of it on the Hub whose ``_name_or_path`` names the official repository; the comment says so.
The tests translate these keys into ``ModelShape`` fields and compare every one of them.

To add a model to MODEL_CONFIGS, add its config.json numbers here with the page they come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kvlib.memory import MODEL_CONFIGS

pytestmark = pytest.mark.ch02


@dataclass(frozen=True)
class PublishedConfig:
    repo: str  # Hugging Face repository id; the numbers are from its config.json
    config: dict[str, int]  # the config.json keys the KV cache depends on, copied verbatim
    read_from: str  # the page the numbers were read from


PUBLISHED: dict[str, PublishedConfig] = {
    "GPT-2 124M": PublishedConfig(
        "openai-community/gpt2",
        {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024},
        "https://huggingface.co/openai-community/gpt2/blob/b57efa2c4b00d481a02466eccc3e48f7c3f4d86c/config.json",
    ),
    "GPT-2 XL 1.5B": PublishedConfig(
        "openai-community/gpt2-xl",
        {"n_layer": 48, "n_head": 25, "n_embd": 1600, "n_positions": 1024},
        "https://huggingface.co/openai-community/gpt2-xl/blob/main/config.json",
    ),
    # Copies of meta-llama/Llama-2-7b-hf's config.json (gated repo): north/llama2-7b-exporttest1 and
    # TheBloke/Vigogne-2-7B-Chat-GPTQ, both with "_name_or_path": "meta-llama/Llama-2-7b-hf".
    "Llama-2-7B": PublishedConfig(
        "meta-llama/Llama-2-7b-hf",
        {
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "hidden_size": 4096,
            "max_position_embeddings": 4096,
        },
        "https://huggingface.co/north/llama2-7b-exporttest1/blob/56dcaff1795adb409dc9756e86617ee237c166a2/config.json",
    ),
    # Copy in LoftQ/Llama-2-13b-hf-4bit-64rank ("_name_or_path": "meta-llama/Llama-2-13b-hf").
    "Llama-2-13B": PublishedConfig(
        "meta-llama/Llama-2-13b-hf",
        {
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 40,
            "hidden_size": 5120,
            "max_position_embeddings": 4096,
        },
        "https://huggingface.co/LoftQ/Llama-2-13b-hf-4bit-64rank/blame/main/config.json",
    ),
    # Copies in TheBloke/Llama-2-70B-fp16 and jphme/em_german_70b_v01
    # ("_name_or_path": "meta-llama/Llama-2-70b-hf").
    "Llama-2-70B": PublishedConfig(
        "meta-llama/Llama-2-70b-hf",
        {
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "hidden_size": 8192,
            "max_position_embeddings": 4096,
        },
        "https://huggingface.co/jphme/em_german_70b_v01/blame/main/config.json",
    ),
    # Copy in pandyamarut/Meta-Llama-3-8B ("_name_or_path": "meta-llama/Meta-Llama-3-8B"; it also lists
    # "head_dim": 128, which newer transformers versions write out).
    "Llama-3-8B": PublishedConfig(
        "meta-llama/Meta-Llama-3-8B",
        {
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "hidden_size": 4096,
            "head_dim": 128,
            "max_position_embeddings": 8192,
        },
        "https://huggingface.co/pandyamarut/Meta-Llama-3-8B/blob/3689724debf35846edda50e9442887aa41c7157c/config.json",
    ),
    # Copy in kittn/Meta-Llama-3-70B-quant ("_name_or_path": "meta-llama/Meta-Llama-3-70B").
    "Llama-3-70B": PublishedConfig(
        "meta-llama/Meta-Llama-3-70B",
        {
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "hidden_size": 8192,
            "max_position_embeddings": 8192,
        },
        "https://huggingface.co/kittn/Meta-Llama-3-70B-quant/blob/main/config.json",
    ),
    # The first release (July 2024) said "num_key_value_heads": 16 (copies such as
    # migtissera/Meta-Llama-3.1-405B still do); Meta's August 2024 update of the 405B checkpoints went to the
    # 8 KV heads of the Llama 3 paper, Table 3 (ollama/ollama issue 6303: "changed from 16 to 8"). 8 is read
    # from a copy of the updated Instruct config ("_name_or_path": "meta-llama/Meta-Llama-3.1-405B-Instruct",
    # same attention shape as the base model).
    "Llama-3.1-405B": PublishedConfig(
        "meta-llama/Llama-3.1-405B",
        {
            "num_hidden_layers": 126,
            "num_attention_heads": 128,
            "num_key_value_heads": 8,
            "hidden_size": 16384,
            "head_dim": 128,
            "max_position_embeddings": 131072,
        },
        "https://huggingface.co/relaxml/Llama-3.1-405B-Instruct-QTIP-4Bit-TP8/blame/main/config.json",
    ),
    # Copies in Pplus/mistral-health-faq and Undi95/Mistral-RP-0.1-7B ("_name_or_path":
    # "mistralai/Mistral-7B-v0.1"); the file also says "sliding_window": 4096.
    "Mistral-7B": PublishedConfig(
        "mistralai/Mistral-7B-v0.1",
        {
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "hidden_size": 4096,
            "max_position_embeddings": 32768,
        },
        "https://huggingface.co/Pplus/mistral-health-faq/blob/0846f4b694d3cd129af7216bf743c56a3e8bb549/config.json",
    ),
    # The official Instruct config (same architecture as the base model) and a copy of the base one,
    # YeungNLP/firefly-mixtral-8x7b ("_name_or_path": "mistralai/Mixtral-8x7B-v0.1"), agree.
    "Mixtral-8x7B": PublishedConfig(
        "mistralai/Mixtral-8x7B-v0.1",
        {
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "hidden_size": 4096,
            "max_position_embeddings": 32768,
        },
        "https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/eba92302a2861cdc0098cc54bc9f17cb2c47eb61/config.json",
    ),
    # Copies in PrunaAI/google-gemma-7b-HQQ-4bit-smashed and moficodes/gemma-7b-sql-context ("_name_or_path":
    # "google/gemma-7b"). head_dim is explicit: 16 heads * 256 = 4096 != hidden_size 3072.
    "Gemma-7B": PublishedConfig(
        "google/gemma-7b",
        {
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "hidden_size": 3072,
            "head_dim": 256,
            "max_position_embeddings": 8192,
        },
        "https://huggingface.co/PrunaAI/google-gemma-7b-HQQ-4bit-smashed/blob/d2a683ebe09c712fb463def390a1e122aeb06ec5/config.json",
    ),
    "Qwen2-7B": PublishedConfig(
        "Qwen/Qwen2-7B",
        {
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "hidden_size": 3584,
            "max_position_embeddings": 131072,
        },
        "https://huggingface.co/Qwen/Qwen2-7B/blob/main/config.json",
    ),
}

# MODEL_CONFIGS keeps the context length the model was trained for where its paper gives one that differs
# from config.json's max_position_embeddings (the size of the RoPE position table, not a promise):
CONTEXT_FROM_PAPER = {
    # Mistral 7B paper (Jiang et al. 2023), Table 1: context_len 8192, window_size 4096 (the table as
    # reproduced in github.com/sumitdotml/transformers, mistral-7b-v0.1/README.md); config.json: 32768.
    "Mistral-7B": 8192,
    # Qwen2 technical report, long-context training: context window 4,096 -> 32,768 tokens, YARN and Dual
    # Chunk Attention beyond that (summary read at jaeminson.github.io/docs/Language Model/Foundation
    # Model/qwen2); Qwen/Qwen2-7B-Instruct's config.json says 32768 (copy in unsloth/Qwen2-7B-Instruct),
    # the base model's 131072.
    "Qwen2-7B": 32768,
}


def _shape_fields(config: dict[str, int]) -> dict[str, int]:
    """The ModelShape fields a config.json implies (GPT-2 keys or Llama-style keys)."""
    get: Any = config.get
    heads = get("num_attention_heads", get("n_head"))
    hidden = get("hidden_size", get("n_embd"))
    return {
        "num_layers": get("num_hidden_layers", get("n_layer")),
        "num_heads": heads,
        "num_kv_heads": get("num_key_value_heads", heads),  # absent (GPT-2): every head has its own K/V
        "hidden_size": hidden,
        "head_dim": get("head_dim", hidden // heads),
        "max_seq_len": get("max_position_embeddings", get("n_positions")),
    }


def test_every_model_in_the_table_has_a_published_config_here():
    assert set(MODEL_CONFIGS) == set(PUBLISHED), (
        "every MODEL_CONFIGS entry needs its config.json numbers (and their source) in PUBLISHED"
    )
    assert set(CONTEXT_FROM_PAPER) <= set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_model_shape_matches_its_published_config(name):
    """Guards against a wrong layer, head, KV-head, width or head_dim count in a real model's shape."""
    shape, published = MODEL_CONFIGS[name], PUBLISHED[name]
    expected = _shape_fields(published.config)
    expected["max_seq_len"] = CONTEXT_FROM_PAPER.get(name, expected["max_seq_len"])
    actual = {field: getattr(shape, field) for field in expected}
    assert actual == expected, f"{name} differs from {published.repo} config.json ({published.read_from})"
    assert published.repo.split("/")[1].lower() in shape.source.lower(), (
        f"{name}: source {shape.source!r} should name {published.repo}"
    )


@pytest.mark.parametrize("name", sorted(CONTEXT_FROM_PAPER))
def test_context_lengths_taken_from_the_paper_really_differ_from_the_config(name):
    """An exception above is only needed while the config disagrees with the paper."""
    assert CONTEXT_FROM_PAPER[name] != _shape_fields(PUBLISHED[name].config)["max_seq_len"]
