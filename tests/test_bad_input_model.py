"""Bad input to the model, its loading and generation (kvlib.model, kvlib.generate, kvlib.data, kvlib.train).

Each row is a mistake a course user can make; it must end in one line naming the argument (the file,
the tensor) and what was expected. Checkpoints are small random TinyDecoders written to a temporary
folder, except where the issue's own repro (a copy of the shipped shakespeare-mha) is the point.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input import Case, CliCase, assert_clear_error, assert_cli_error, params
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kvlib import data, train
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.static import StaticKVCache
from kvlib.generate import (
    compare_cached_uncached,
    generate,
    generate_uncached,
    new_token_positions,
    time_next_token,
    timed_generate,
)
from kvlib.model import ASSETS, ModelConfig, TinyDecoder, apply_rope, load_model, rope_cos_sin

pytestmark = pytest.mark.model

SMALL = dict(vocab_size=97, dim=32, num_layers=2, num_heads=4, num_kv_heads=4, ffn_dim=48, max_seq_len=64)


@functools.cache
def _tmp_root() -> Path:
    # kept alive (and removed at exit) by the cache holding the TemporaryDirectory object
    return Path(_tmp_holder().name)


@functools.cache
def _tmp_holder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="kvlib-bad-model-")


@functools.cache
def tiny(allow_long_context: bool = False) -> TinyDecoder:
    torch.manual_seed(0)
    return TinyDecoder(ModelConfig(**SMALL), allow_long_context=allow_long_context).eval()


@functools.cache
def shipped() -> TinyDecoder:
    return load_model("shakespeare-mha")


@functools.cache
def _saved_tiny() -> Path:
    folder = _tmp_root() / "tiny-saved"
    tiny().save_pretrained(folder)
    return folder


def checkpoint(edit_config=None, edit_tensors=None, source: Path | None = None) -> Path:
    """A fresh copy of a checkpoint folder (the tiny model by default) with config/tensors edited."""
    folder = Path(tempfile.mkdtemp(dir=_tmp_root()))
    shutil.copytree(source or _saved_tiny(), folder, dirs_exist_ok=True)
    if edit_config is not None:
        cfg = json.loads((folder / "config.json").read_text())
        edit_config(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    if edit_tensors is not None:
        weights = str(folder / "model.safetensors")
        with safe_open(weights, "pt") as f:
            metadata = f.metadata()  # keep the recorded layout: only the tensors change
        tensors = load_file(weights)
        edit_tensors(tensors)
        save_file(tensors, weights, metadata=metadata)
    return folder


def load(edit_config=None, edit_tensors=None, source=None) -> TinyDecoder:
    return TinyDecoder.from_pretrained(checkpoint(edit_config, edit_tensors, source))


def _set(**values):
    return lambda cfg: cfg.update(values)


def _drop(*keys):
    return lambda cfg: [cfg.pop(k) for k in keys]


def _poke(name: str, value: float):
    def edit(tensors):
        tensors[name][0, 0] = value

    return edit


def _sixteen_heads_no_head_dim(cfg):
    """The issue's repro: the shipped MHA config edited to 16 heads / 16 KV heads, head_dim removed."""
    cfg.update(num_attention_heads=16, num_key_value_heads=16)
    cfg.pop("head_dim")


def _write(name: str, text: str):
    def make() -> Path:
        folder = checkpoint()
        (folder / name).write_text(text)
        return folder

    return make


def _remove(name: str) -> Path:
    folder = checkpoint()
    (folder / name).unlink()
    return folder


def ids(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def prefilled(n: int) -> NaiveKVCache:
    cache = NaiveKVCache(SMALL["num_layers"])
    tiny()(torch.zeros(1, n, dtype=torch.long), cache=cache)
    return cache


LOADING = [
    Case("shipped_16_heads_no_head_dim",  # the shipped files record the layout they were saved with
         lambda: load(_sixteen_heads_no_head_dim, source=ASSETS / "shakespeare-mha"),
         ValueError, ("num_attention_heads=16", "saved with num_attention_heads=8", "config.json")),
    Case("tiny_8_heads_of_4_instead_of_4_of_8",
         lambda: load(lambda c: (c.update(num_attention_heads=8, num_key_value_heads=8), c.pop("head_dim"))),
         ValueError, ("num_attention_heads=8", "saved with num_attention_heads=4")),
    Case("nan_weight", lambda: load(edit_tensors=_poke("model.layers.1.mlp.up_proj.weight", float("nan"))),
         ValueError, ("model.layers.1.mlp.up_proj.weight", "NaN/inf", "model.safetensors")),
    Case("inf_weight", lambda: load(edit_tensors=_poke("model.embed_tokens.weight", float("inf"))),
         ValueError, ("model.embed_tokens.weight", "NaN/inf")),
    Case("integer_weights",
         lambda: load(edit_tensors=lambda t: t.update({"model.norm.weight": t["model.norm.weight"].long()})),
         ValueError, ("model.norm.weight", "dtype", "floating point")),
    Case("kv_heads_disagree_with_weights", lambda: load(_set(num_key_value_heads=2)),
         ValueError,
         ("model.layers.0.self_attn.k_proj.weight", "[32, 32]", "[16, 32]", "num_key_value_heads")),
    Case("ffn_disagrees_with_weights", lambda: load(_set(intermediate_size=64)),
         ValueError, ("mlp", "48]", "64]", "intermediate_size")),
    Case("vocab_disagrees_with_weights", lambda: load(_set(vocab_size=100)),
         ValueError, ("model.embed_tokens.weight", "[97, 32]", "[100, 32]", "vocab_size")),
    Case("fewer_layers_than_weights", lambda: load(_set(num_hidden_layers=1)),
         ValueError, ("num_hidden_layers=1", "holds 2 layers", "model.layers.1.")),
    Case("more_layers_than_weights", lambda: load(_set(num_hidden_layers=3)),
         ValueError, ("num_hidden_layers=3", "holds 2 layers", "model.layers.2.", "missing")),
    Case("missing_path_load_model", lambda: load_model("/no/such/checkpoint"),
         FileNotFoundError, ("/no/such/checkpoint", "does not exist", "shakespeare-mha", "shakespeare-gqa")),
    Case("missing_path_from_pretrained", lambda: TinyDecoder.from_pretrained(Path("/no/such/checkpoint")),
         FileNotFoundError, ("/no/such/checkpoint", "does not exist", "shakespeare-mha")),
    Case("unknown_name", lambda: load_model("shakespeare-xl"),
         FileNotFoundError, ("shakespeare-xl", "shakespeare-mha", "shakespeare-gqa")),
    Case("a_file_not_a_folder", lambda: load_model(_saved_tiny() / "config.json"),
         ValueError, ("config.json", "is a file", "folder")),
    Case("name_not_a_string", lambda: load_model(5), TypeError, ("path_or_name", "5 (int)")),
    Case("config_json_missing", lambda: TinyDecoder.from_pretrained(_remove("config.json")),
         FileNotFoundError, ("config.json", "is missing")),
    Case("config_json_not_json", lambda: TinyDecoder.from_pretrained(_write("config.json", "{not json")()),
         ValueError, ("config.json", "not valid JSON", "line 1")),
    Case("config_json_a_list", lambda: TinyDecoder.from_pretrained(_write("config.json", "[1, 2]")()),
         TypeError, ("config.json", "JSON object")),
    Case("config_lacks_hidden_size", lambda: load(_drop("hidden_size")),
         ValueError, ("config.json", "hidden_size", "missing")),
    Case("config_hidden_size_str", lambda: load(_set(hidden_size="32")),
         TypeError, ("config.json", "hidden_size", "'32' (str)")),
    Case("config_head_dim_inconsistent", lambda: load(_set(head_dim=16)),
         ValueError, ("head_dim", "hidden_size // num_attention_heads", "got head_dim=16")),
    Case("config_zero_kv_heads", lambda: load(_set(num_key_value_heads=0)),
         ValueError, ("num_key_value_heads", ">= 1", "got 0")),
    Case("config_other_rope", lambda: load(_set(rope_parameters={"rope_type": "yarn", "factor": 4.0})),
         ValueError, ("default RoPE", "yarn")),
    Case("weights_missing", lambda: TinyDecoder.from_pretrained(_remove("model.safetensors")),
         FileNotFoundError, ("model.safetensors", "is missing")),
    Case("weights_not_safetensors",
         lambda: TinyDecoder.from_pretrained(_write("model.safetensors", "junk")()),
         ValueError, ("model.safetensors", "not a readable safetensors file")),
    Case("untied_lm_head_with_tied_config",
         lambda: load(edit_tensors=lambda t: t.update({"lm_head.weight": torch.ones(97, 32, dtype=t[
             "model.embed_tokens.weight"].dtype)})),
         ValueError, ("lm_head.weight", "tie_word_embeddings")),
    Case("dtype_as_string", lambda: TinyDecoder.from_pretrained(_saved_tiny(), dtype="float16"),
         TypeError, ("dtype", "torch.float16", "'float16' (str)")),
    Case("dtype_integer", lambda: load_model(dtype=torch.int64),
         ValueError, ("dtype", "floating-point", "int64")),
    Case("save_dtype_as_string", lambda: tiny().save_pretrained(_tmp_root() / "x", dtype="float16"),
         TypeError, ("dtype", "'float16' (str)")),
]  # fmt: skip

CONFIG = [
    Case(f"config_{field}_{value!r}", lambda f=field, v=value: ModelConfig(**(SMALL | {f: v})),
         raises, (field, want))
    for field, value, raises, want in [
        ("vocab_size", 0, ValueError, ">= 1"),
        ("dim", 0, ValueError, ">= 1"),
        ("dim", 32.0, TypeError, "32.0 (float)"),
        ("num_layers", 0, ValueError, ">= 1"),
        ("num_layers", -1, ValueError, "got -1"),
        ("num_layers", True, TypeError, "(bool)"),
        ("num_heads", 0, ValueError, ">= 1"),
        ("num_heads", "4", TypeError, "'4' (str)"),
        ("num_kv_heads", 0, ValueError, ">= 1"),
        ("num_kv_heads", 3, ValueError, "divisible"),
        ("num_heads", 3, ValueError, "divisible"),
        ("ffn_dim", -5, ValueError, ">= 1"),
        ("max_seq_len", 0, ValueError, ">= 1"),
        ("rope_theta", 0, ValueError, "> 0"),
        ("rope_theta", float("nan"), ValueError, "finite"),
        ("rope_theta", "1e4", TypeError, "(str)"),
        ("norm_eps", -1e-5, ValueError, ">= 0"),
        ("norm_eps", float("inf"), ValueError, "finite"),
        ("tie_embeddings", "no", TypeError, "True or False"),
    ]
] + [
    Case("tinydecoder_of_a_dict", lambda: TinyDecoder(dict(SMALL)), TypeError, ("config", "ModelConfig")),
    Case("config_edited_after_construction", lambda: TinyDecoder(_edited(num_heads=3)),
         ValueError, ("dim=32", "divisible by num_heads=3")),
    Case("config_edited_kv_heads", lambda: TinyDecoder(_edited(num_kv_heads=3)),
         ValueError, ("num_heads=4", "divisible by num_kv_heads=3")),
    Case("config_edited_dim_float", lambda: TinyDecoder(_edited(dim=32.0)),
         TypeError, ("dim", "32.0 (float)")),
    Case("allow_long_context_a_str", lambda: TinyDecoder(ModelConfig(**SMALL), allow_long_context="no"),
         TypeError, ("allow_long_context", "True or False", "'no' (str)")),
    Case("allow_long_context_set_to_a_str", lambda: setattr(tiny(), "allow_long_context", "no"),
         TypeError, ("allow_long_context", "True or False", "'no' (str)")),
    Case("allow_long_context_set_to_1", lambda: setattr(tiny(), "allow_long_context", 1),
         TypeError, ("allow_long_context", "1 (int)")),
    Case("hf_rms_norm_eps_a_str", lambda: ModelConfig.from_hf_config(_hf(rms_norm_eps="1e-6")),
         TypeError, ("rms_norm_eps", "'1e-6' (str)")),
    Case("hf_rms_norm_eps_negative", lambda: ModelConfig.from_hf_config(_hf(rms_norm_eps=-1e-6)),
         ValueError, ("rms_norm_eps", ">= 0")),
    Case("hf_tie_word_embeddings_a_str", lambda: ModelConfig.from_hf_config(_hf(tie_word_embeddings="true")),
         TypeError, ("tie_word_embeddings", "True or False")),
    Case("hf_rope_theta_negative",
         lambda: ModelConfig.from_hf_config(_hf(rope_parameters={"rope_type": "default", "rope_theta": -1})),
         ValueError, ("rope_parameters.rope_theta", "> 0", "-1")),
    Case("hf_old_style_rope_theta_a_str",
         lambda: ModelConfig.from_hf_config(_hf(rope_parameters=None, rope_theta="10000")),
         TypeError, ("rope_theta", "'10000' (str)")),
    Case("hf_rms_norm_eps_in_a_file", lambda: load(_set(rms_norm_eps="1e-6")),
         TypeError, ("config.json", "rms_norm_eps")),
    Case("from_hf_config_of_a_str", lambda: ModelConfig.from_hf_config("config.json"),
         TypeError, ("JSON object", "(str)")),
]  # fmt: skip


def _edited(**fields) -> ModelConfig:
    """A valid config with fields changed afterwards (dataclass assignment is not re-checked)."""
    cfg = ModelConfig(**SMALL)
    for name, value in fields.items():
        setattr(cfg, name, value)
    return cfg


def _hf(**keys) -> dict:
    return ModelConfig(**SMALL).to_hf_config() | keys


def static(length: int = 64, layers: int = SMALL["num_layers"]) -> StaticKVCache:
    return StaticKVCache(layers, 1, SMALL["num_kv_heads"], SMALL["dim"] // SMALL["num_heads"], length)


COS, SIN = rope_cos_sin(torch.arange(3), 8, 10000.0, torch.float32)  # (1, 1, 3, 8)

ROPE = [
    Case("rope_integer_dtype", lambda: rope_cos_sin(torch.arange(3), 8, 10000.0, torch.long),
         TypeError, ("dtype", "floating-point", "torch.int64")),
    Case("rope_dtype_a_str", lambda: rope_cos_sin(torch.arange(3), 8, 10000.0, "float32"),
         TypeError, ("dtype", "'float32' (str)")),
    Case("rope_theta_zero", lambda: rope_cos_sin(torch.arange(3), 8, 0.0, torch.float32),
         ValueError, ("theta", "> 0")),
    Case("rope_theta_negative", lambda: rope_cos_sin(torch.arange(3), 8, -1.0, torch.float32),
         ValueError, ("theta", "> 0", "-1")),
    Case("rope_theta_nan", lambda: rope_cos_sin(torch.arange(3), 8, float("nan"), torch.float32),
         ValueError, ("theta", "finite")),
    Case("rope_odd_head_dim", lambda: rope_cos_sin(torch.arange(3), 7, 10000.0, torch.float32),
         ValueError, ("head_dim", "even", "7")),
    Case("rope_head_dim_float", lambda: rope_cos_sin(torch.arange(3), 8.0, 10000.0, torch.float32),
         TypeError, ("head_dim", "8.0 (float)")),
    Case("rope_positions_a_list", lambda: rope_cos_sin([0, 1, 2], 8, 10000.0, torch.float32),
         TypeError, ("positions", "torch.Tensor", "(list)")),
    Case("rope_args_swapped", lambda: rope_cos_sin(8, torch.arange(3), 10000.0, torch.float32),
         TypeError, ("positions", "8 (int)")),
    Case("rope_positions_3d", lambda: rope_cos_sin(torch.zeros(1, 1, 3), 8, 10000.0, torch.float32),
         ValueError, ("positions", "[T] or [B, T]", "[1, 1, 3]")),
    Case("rope_positions_bool", lambda: rope_cos_sin(torch.ones(3, dtype=torch.bool), 8, 1e4, torch.float32),
         ValueError, ("positions", "torch.bool")),
    Case("apply_rope_3d_x", lambda: apply_rope(torch.zeros(2, 3, 8), COS, SIN),
         ValueError, ("x", "[B, H, T, D]", "[2, 3, 8]")),
    Case("apply_rope_odd_last_dim", lambda: apply_rope(torch.zeros(1, 2, 3, 7), COS[..., :7], SIN[..., :7]),
         ValueError, ("x", "even", "[1, 2, 3, 7]")),
    Case("apply_rope_cos_for_other_length", lambda: apply_rope(torch.zeros(1, 2, 4, 8), COS, SIN),
         ValueError, ("cos", "(4, 8)", "[1, 1, 3, 8]")),
    Case("apply_rope_sin_for_other_head_dim", lambda: apply_rope(torch.zeros(1, 2, 3, 8), COS, SIN[..., :4]),
         ValueError, ("sin", "(3, 8)", "[1, 1, 3, 4]")),
    Case("apply_rope_numpy_x", lambda: apply_rope(np.zeros((1, 2, 3, 8)), COS, SIN),
         TypeError, ("x", "torch.Tensor", "numpy.ndarray")),
    Case("apply_rope_cos_a_list", lambda: apply_rope(torch.zeros(1, 2, 3, 8), [1.0], SIN),
         TypeError, ("cos", "(list)")),
]  # fmt: skip

FORWARD = [
    Case("1000_tokens_on_a_512_token_model", lambda: shipped()(torch.zeros(1, 1000, dtype=torch.long)),
         ValueError, ("max_seq_len=512", "context", "position 999", "allow_long_context")),
    Case("100_tokens_on_a_64_token_model", lambda: tiny()(torch.zeros(1, 100, dtype=torch.long)),
         ValueError, ("max_seq_len=64", "context")),
    Case("decode_past_context_through_a_cache", lambda: tiny()(ids([1]), cache=prefilled(64)),
         ValueError, ("max_seq_len=64", "position 64", "context")),
    Case("explicit_decode_position_past_context",
         lambda: tiny()(ids([1]), positions=torch.tensor([70]), cache=prefilled(3)),
         ValueError, ("max_seq_len=64", "position 70")),
    Case("token_id_equal_to_vocab", lambda: tiny()(ids([1, 97])), ValueError, ("vocab_size=97", "got id 97")),
    Case("token_id_huge", lambda: tiny()(ids([10**6])), ValueError, ("vocab_size=97", "1000000")),
    Case("token_id_negative", lambda: tiny()(ids([3, -1])), ValueError, ("vocab_size=97", "got id -1")),
    Case("float_input_ids", lambda: tiny()(torch.tensor([[1.0, 2.0]])),
         ValueError, ("input_ids", "dtype", "float32")),
    Case("bool_input_ids", lambda: tiny()(torch.tensor([[True]])), ValueError, ("input_ids", "bool")),
    Case("list_input_ids", lambda: tiny()([[1, 2]]), TypeError, ("input_ids", "torch.Tensor", "(list)")),
    Case("1d_input_ids", lambda: tiny()(torch.tensor([1, 2])), ValueError, ("input_ids", "[B, T]")),
    Case("float_positions", lambda: tiny()(ids([1, 2]), positions=torch.tensor([0.0, 1.0])),
         ValueError, ("positions", "dtype", "float32")),
    Case("negative_positions", lambda: tiny()(ids([1, 2]), positions=torch.tensor([-1, 0])),
         ValueError, ("positions", ">= 0", "-1")),
    Case("positions_as_list", lambda: tiny()(ids([1, 2]), positions=[0, 1]),
         TypeError, ("positions", "(list)")),
    Case("positions_wrong_length", lambda: tiny()(ids([1, 2]), positions=torch.arange(3)),
         ValueError, ("positions", "[T]=2")),
    Case("positions_on_another_device", lambda: tiny()(ids([1, 2]), positions=torch.arange(2, device="meta")),
         ValueError, ("positions", "meta", "model's device")),
    Case("cache_a_string", lambda: tiny()(ids([1]), cache="cache"), TypeError, ("cache", "str")),
    Case("cache_the_class", lambda: tiny()(ids([1]), cache=NaiveKVCache), TypeError, ("cache", "call it")),
    Case("cache_with_fewer_layers", lambda: tiny()(ids([1, 2]), cache=NaiveKVCache(1)),
         ValueError, ("num_layers=1", "2 layers", "model.config.num_layers")),
    Case("cache_with_more_layers", lambda: tiny()(ids([1, 2]), cache=NaiveKVCache(3)),
         ValueError, ("num_layers=3", "2 layers")),
    Case("static_cache_with_fewer_layers", lambda: tiny()(ids([1, 2]), cache=static(layers=1)),
         ValueError, ("num_layers=1", "2 layers")),
]  # fmt: skip

PROMPT = ids([1, 2, 3])


def cache() -> NaiveKVCache:
    return NaiveKVCache(SMALL["num_layers"])


GENERATE = [
    Case("max_new_tokens_negative", lambda: generate(tiny(), PROMPT, -1, cache()),
         ValueError, ("max_new_tokens", ">= 0", "-1")),
    Case("max_new_tokens_float", lambda: generate(tiny(), PROMPT, 2.0, cache()),
         TypeError, ("max_new_tokens", "2.0 (float)")),
    Case("max_new_tokens_bool", lambda: generate(tiny(), PROMPT, True, cache()),
         TypeError, ("max_new_tokens", "(bool)")),
    Case("temperature_is_not_an_argument", lambda: generate(tiny(), PROMPT, 2, cache(), temperature=0.7),
         TypeError, ("temperature",)),
    Case("cache_and_count_swapped", lambda: generate(tiny(), PROMPT, cache(), 2),
         TypeError, ("max_new_tokens", "NaiveKVCache")),
    Case("model_and_prompt_swapped", lambda: generate(PROMPT, tiny(), 2, cache()),
         TypeError, ("model", "callable", "Tensor")),
    Case("prompt_a_list", lambda: generate(tiny(), [[1, 2]], 2, cache()),
         TypeError, ("prompt_ids", "(list)")),
    Case("prompt_1d", lambda: generate(tiny(), torch.tensor([1, 2]), 2, cache()),
         ValueError, ("prompt_ids", "[batch, T]")),
    Case("prompt_int32", lambda: generate(tiny(), PROMPT.int(), 2, cache()),
         ValueError, ("prompt_ids", "LongTensor", "int32")),
    Case("prompt_empty", lambda: generate(tiny(), torch.zeros(1, 0, dtype=torch.long), 2, cache()),
         ValueError, ("prompt_ids", "at least one token")),
    Case("prompt_token_outside_vocab", lambda: generate(tiny(), ids([5, 500]), 2, cache()),
         ValueError, ("vocab_size=97", "500")),
    Case("cache_none", lambda: generate(tiny(), PROMPT, 2, None), TypeError, ("cache", "generate_uncached")),
    Case("cache_a_string", lambda: generate(tiny(), PROMPT, 2, "naive"), TypeError, ("cache", "str")),
    Case("cache_the_class", lambda: generate(tiny(), PROMPT, 2, NaiveKVCache),
         TypeError, ("cache", "NaiveKVCache", "call it")),
    Case("cache_with_too_few_layers", lambda: generate(tiny(), PROMPT, 2, NaiveKVCache(1)),
         ValueError, ("num_layers=1", "2 layers")),
    Case("cache_not_empty", lambda: generate(tiny(), PROMPT, 2, prefilled(3)),
         ValueError, ("empty cache", "3")),
    Case("generate_past_context", lambda: generate(tiny(), PROMPT, 70, cache()),
         ValueError, ("max_new_tokens=70", "max_seq_len=64", "context")),
    Case("generate_uncached_past_context",
         lambda: generate_uncached(tiny(), torch.zeros(1, 60, dtype=torch.long), 10),
         ValueError, ("max_new_tokens=10", "max_seq_len=64")),
    Case("timed_generate_zero_tokens", lambda: timed_generate(tiny(), PROMPT, 0, cache()),
         ValueError, ("max_new_tokens", ">= 1")),
    Case("timed_generate_past_context", lambda: timed_generate(tiny(), PROMPT, 63, cache()),
         ValueError, ("max_seq_len=64",)),
    Case("compare_args_swapped", lambda: compare_cached_uncached(tiny(), PROMPT, cache(), 3),
         TypeError, ("max_new_tokens",)),
    Case("time_next_token_repeats_zero", lambda: time_next_token(tiny(), PROMPT, repeats=0),
         ValueError, ("repeats", ">= 1")),
    Case("time_next_token_steps_zero", lambda: time_next_token(tiny(), PROMPT, steps=0),
         ValueError, ("steps", ">= 1")),
    Case("time_next_token_cache_not_factory", lambda: time_next_token(tiny(), PROMPT, make_cache=cache()),
         TypeError, ("make_cache", "factory", "NaiveKVCache")),
    Case("time_next_token_past_context",
         lambda: time_next_token(tiny(), torch.zeros(1, 62, dtype=torch.long)),
         ValueError, ("steps=4", "max_seq_len=64")),
    Case("new_token_positions_negative_start", lambda: new_token_positions(-1, 2),
         ValueError, ("start", ">= 0")),
    Case("new_token_positions_float_start", lambda: new_token_positions(1.5, 2),
         TypeError, ("start", "(float)")),
    Case("new_token_positions_negative_length", lambda: new_token_positions(0, -1),
         ValueError, ("length", ">= 0")),
    Case("new_token_positions_device_gpu", lambda: new_token_positions(0, 2, "gpu"),
         ValueError, ("device", "'gpu' (str)", "'cpu'")),
    Case("new_token_positions_device_an_int_list", lambda: new_token_positions(0, 2, [0]),
         ValueError, ("device", "(list)")),
    Case("static_cache_too_short", lambda: generate(tiny(), PROMPT, 10, static(length=8)),
         ValueError, ("max_new_tokens=10", "stores 12 tokens", "room for 8", "max_seq_len >= 12")),
    Case("timed_generate_static_cache_too_short",
         lambda: timed_generate(tiny(), PROMPT, 10, static(length=8)),
         ValueError, ("max_new_tokens=10", "room for 8")),
    Case("return_logits_a_str", lambda: generate(tiny(), PROMPT, 2, cache(), return_logits="no"),
         TypeError, ("return_logits", "True or False", "'no' (str)")),
    Case("generate_uncached_return_logits_an_int",
         lambda: generate_uncached(tiny(), PROMPT, 2, return_logits=1),
         TypeError, ("return_logits", "1 (int)")),
    Case("timed_generate_cache_not_empty", lambda: timed_generate(tiny(), PROMPT, 2, prefilled(3)),
         ValueError, ("empty cache", "3")),
    Case("time_next_token_cache_of_wrong_depth",
         lambda: time_next_token(tiny(), PROMPT, make_cache=lambda: NaiveKVCache(1)),
         ValueError, ("num_layers=1", "2 layers")),
    Case("time_next_token_static_cache_too_short",
         lambda: time_next_token(tiny(), PROMPT, make_cache=lambda: static(length=5)),
         ValueError, ("steps=4", "stores 7 tokens", "room for 5")),
]  # fmt: skip


class _Uniform:
    def __call__(self, ids, positions=None, cache=None):
        return torch.zeros(*ids.shape, data.VOCAB_SIZE)


def _ppl(model=None, **kwargs):
    kwargs.setdefault("progress", False)
    return lambda: data.perplexity(model() if model else _Uniform(), **kwargs)


DATA = [
    Case("encode_an_int", lambda: data.encode(5), TypeError, ("text", "str", "5 (int)")),
    Case("encode_bytes", lambda: data.encode(b"ROMEO"), TypeError, ("text", "(bytes)")),
    Case("encode_a_list", lambda: data.encode(["ROMEO"]), TypeError, ("text", "(list)")),
    Case("decode_a_str", lambda: data.decode("ROMEO"), TypeError, ("ids", "integer token ids", "(str)")),
    Case("decode_an_int", lambda: data.decode(5), TypeError, ("ids", "5 (int)")),
    Case("decode_id_outside_vocab", lambda: data.decode([1, 5000]),
         ValueError, ("ids[1]", "[0, 1023]", "5000")),
    Case("decode_negative_id", lambda: data.decode([-1]), ValueError, ("ids[0]", "[0, 1023]", "-1")),
    Case("decode_float_id", lambda: data.decode([1.5]), TypeError, ("ids[0]", "1.5 (float)")),
    Case("decode_float_tensor", lambda: data.decode(torch.tensor([1.0, 2.0])), TypeError, ("ids", "float32")),
    Case("decode_tensor_outside_vocab", lambda: data.decode(torch.tensor([[3, 1024]])),
         ValueError, ("ids", "[0, 1023]", "1024")),
    Case("token_ids_unknown_split", lambda: data.token_ids("test"),
         ValueError, ("split", "'train' or 'val'")),
    Case("window_starts_zero_stride", lambda: data.window_starts(100, 10, 0, None),
         ValueError, ("stride", ">= 1")),
    Case("window_starts_negative_window", lambda: data.window_starts(100, -1, 1, None),
         ValueError, ("window", ">= 1")),
    Case("window_starts_float_max_windows", lambda: data.window_starts(100, 10, 10, 2.5),
         TypeError, ("max_windows", "2.5 (float)")),
    Case("window_starts_negative_tokens", lambda: data.window_starts(-5, 10, 10, None),
         ValueError, ("n_tokens", ">= 0")),
    Case("perplexity_window_one", _ppl(window=1), ValueError, ("window", ">= 2")),
    Case("perplexity_window_float", _ppl(window=8.5), TypeError, ("window", "8.5 (float)")),
    Case("perplexity_stride_zero", _ppl(window=8, stride=0), ValueError, ("stride", "[1, 8]")),
    Case("perplexity_stride_above_window", _ppl(window=8, stride=9), ValueError, ("stride", "[1, 8]", "9")),
    Case("perplexity_prefill_zero", _ppl(window=8, prefill=0), ValueError, ("prefill", "[1, 8]")),
    Case("perplexity_batch_zero", _ppl(window=8, batch_size=0), ValueError, ("batch_size", ">= 1")),
    Case("perplexity_batch_float", _ppl(window=8, batch_size=2.5), TypeError, ("batch_size", "(float)")),
    Case("perplexity_max_windows_zero", _ppl(window=8, max_windows=0), ValueError, ("max_windows", ">= 1")),
    Case("perplexity_cache_not_factory", _ppl(window=8, make_cache=NaiveKVCache(2)),
         TypeError, ("make_cache", "factory")),
    Case("perplexity_model_not_callable", _ppl(model=lambda: "shakespeare-mha", window=8),
         TypeError, ("model", "str")),
    Case("perplexity_window_past_context", _ppl(model=shipped, window=600, max_windows=1),
         ValueError, ("max_seq_len=512", "context")),
    Case("train_tokenizer_on_a_str", lambda: data.train_tokenizer("to be or not to be"),
         TypeError, ("texts", "iterable of str", "(str)")),
    Case("train_tokenizer_tiny_vocab", lambda: data.train_tokenizer(["abc"], vocab_size=100),
         ValueError, ("vocab_size", ">= 257", "100")),
    Case("hf_tokenizer_missing_folder", lambda: data.load_hf_tokenizer("/no/such/folder"),
         FileNotFoundError, ("/no/such/folder", "does not exist")),
    Case("hf_tokenizer_folder_without_tokenizer", lambda: data.load_hf_tokenizer(_saved_tiny()),
         FileNotFoundError, ("tokenizer.json", "is missing", "save_pretrained")),
    Case("perplexity_cache_of_wrong_depth", _ppl(model=tiny, window=8, make_cache=lambda: NaiveKVCache(1)),
         ValueError, ("num_layers=1", "2 layers")),
    Case("perplexity_static_cache_too_short", _ppl(model=tiny, window=8, make_cache=lambda: static(length=4)),
         ValueError, ("window of 8", "room for 4")),
    Case("perplexity_progress_a_str", _ppl(window=8, progress="no"), TypeError, ("progress", "'no' (str)")),
    Case("play_to_text_a_path", lambda: data.play_to_text(next(iter(data.play_paths().values()))),
         TypeError, ("markdown", "(PosixPath)", "read_text")),
    Case("play_to_text_bytes", lambda: data.play_to_text(b"**ROMEO**\nhi"),
         TypeError, ("markdown", "(bytes)", "decode")),
    Case("play_to_text_none", lambda: data.play_to_text(None), TypeError, ("markdown", "None (NoneType)")),
    Case("token_ids_a_list", lambda: data.token_ids(["val"]),
         TypeError, ("split", "'train' or 'val'", "(list)")),
    Case("load_corpus_a_list", lambda: data.load_corpus(["val"]), TypeError, ("split", "(list)")),
    Case("split_plays_none", lambda: data.split_plays(None), TypeError, ("split", "None")),
    Case("train_tokenizer_on_ints", lambda: data.train_tokenizer([1, 2, 3], 300),
         TypeError, ("texts[0]", "str", "1 (int)")),
    Case("train_tokenizer_on_a_generator_with_bytes",
         lambda: data.train_tokenizer((t for t in ["to be", b"or not"]), 300),
         TypeError, ("texts[1]", "(bytes)")),
]  # fmt: skip


@pytest.mark.parametrize("case", params(LOADING + CONFIG + ROPE + FORWARD + GENERATE + DATA))
def test_clear_error(case):
    assert_clear_error(case)


# --- the training CLI: argparse errors, exit 2, before any data is loaded ---------------------------------

TRAIN_CLI = [
    CliCase("dim_zero", ["--dim", "0"], ("--dim", ">= 1", "0")),
    CliCase("dim_not_a_number", ["--dim", "wide"], ("--dim", "'wide'")),
    CliCase("negative_heads", ["--num-heads", "-8"], ("--num-heads", ">= 1")),
    CliCase("zero_steps", ["--steps", "0"], ("--steps", ">= 1")),
    CliCase("zero_threads", ["--threads", "0"], ("--threads", ">= 1")),
    CliCase("negative_warmup", ["--warmup", "-1"], ("--warmup", ">= 0")),
    CliCase("zero_lr", ["--lr", "0"], ("--lr", "> 0")),
    CliCase("nan_lr", ["--lr", "nan"], ("--lr", "finite")),
    CliCase("negative_min_lr", ["--min-lr", "-0.0001"], ("--min-lr", ">= 0")),
    CliCase("min_lr_above_lr", ["--lr", "1e-3", "--min-lr", "1e-2"], ("--min-lr", "<= --lr")),
    CliCase("long_frac_above_one", ["--long-frac", "1.5"], ("--long-frac", ">= 0 and <= 1", "1.5")),
    CliCase("negative_grad_clip", ["--grad-clip", "-1"], ("--grad-clip", ">= 0")),
    CliCase("zero_max_minutes", ["--max-minutes", "0"], ("--max-minutes", "> 0")),
    CliCase("seq_len_past_context", ["--seq-len", "600"], ("--seq-len", "--max-seq-len", "512", "600")),
    CliCase("dim_not_divisible_by_heads", ["--dim", "250"], ("divisible", "--dim", "--num-heads")),
    CliCase("kv_heads_not_dividing_heads", ["--num-kv-heads", "3"], ("num_kv_heads", "--num-kv-heads")),
    CliCase("name_empty", ["--name", ""], ("--name", "folder name", "''")),
    CliCase("name_climbs_out", ["--name", "../x"], ("--name", "path separator", "'../x'")),
    CliCase("name_dot_dot", ["--name", ".."], ("--name", "'..'")),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in TRAIN_CLI])
def test_train_cli_rejects(case, tmp_path):
    # a safe tail: were a check missing, the run would be one step into tmp_path, not over the shipped model
    case.argv = [*case.argv, "--out-dir", str(tmp_path), "--no-card", "--no-progress"]
    if "--steps" not in case.argv:
        case.argv += ["--steps", "1"]
    assert_cli_error(train.main, case)
    assert not any(tmp_path.iterdir()), "training ran despite the bad argument"


# --- nothing changed by a failed call ----------------------------------------------------------------------


def test_a_refused_forward_leaves_the_cache_as_it_was():
    cache = prefilled(5)
    before = [k.clone() for k in cache.keys]
    for bad in (ids([97]), ids([-3])):
        with pytest.raises(ValueError):
            tiny()(bad, cache=cache)
    with pytest.raises(ValueError):
        tiny()(ids([1]), positions=torch.tensor([64]), cache=cache)
    assert cache.seq_len == 5 and all(torch.equal(a, b) for a, b in zip(before, cache.keys))


def test_a_refused_generation_leaves_the_cache_empty():
    c = cache()
    for call in (lambda: generate(tiny(), PROMPT, 70, c), lambda: generate(tiny(), ids([1, 200]), 3, c)):
        with pytest.raises(ValueError):
            call()
        assert c.seq_len == 0


def test_a_refused_checkpoint_leaves_the_folder_as_it_was():
    folder = checkpoint(_set(num_key_value_heads=2))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError):
        TinyDecoder.from_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- correct results where the fix is to compute the right thing -------------------------------------------


def test_allow_long_context_is_an_explicit_opt_in():
    strict, extended = tiny(), tiny(allow_long_context=True)
    assert strict.allow_long_context is False and extended.allow_long_context is True
    long_ids = torch.zeros(1, 100, dtype=torch.long)
    assert extended(long_ids).shape == (1, 100, SMALL["vocab_size"])
    assert generate(extended, PROMPT, 70, cache()).shape == (1, 73)  # generate honours the opt-in
    model = load_model()  # a loaded model opts in by setting the attribute
    model.allow_long_context = True
    assert model(torch.zeros(1, 513, dtype=torch.long)).shape[1] == 513


def test_the_last_position_of_the_context_is_allowed():
    c = prefilled(63)
    assert tiny()(ids([1]), cache=c).shape == (1, 1, SMALL["vocab_size"])  # position 63 of 0..63
    assert generate(tiny(), PROMPT, 62, cache()).shape == (1, 65)  # last call feeds position 63


def test_int32_ids_numpy_counts_and_numpy_config_fields_still_work():
    model = tiny()
    torch.testing.assert_close(model(PROMPT.int()), model(PROMPT))
    assert generate(model, PROMPT, np.int64(3), cache()).shape == (1, 6)
    cfg = ModelConfig(**(SMALL | {"dim": np.int64(32), "num_layers": np.int32(2)}))
    assert type(cfg.dim) is int and type(cfg.num_layers) is int
    json.dumps(cfg.to_hf_config())  # a numpy int would not serialise


def test_a_config_without_head_dim_that_matches_still_loads():
    reference = shipped()
    model = load(_drop("head_dim"), source=ASSETS / "shakespeare-mha")
    torch.testing.assert_close(model(PROMPT), reference(PROMPT))


def test_save_pretrained_records_the_layout_and_transformers_still_loads_it(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    tiny().save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        layout = json.loads(f.metadata()["kvlib.weight_layout"])
    assert layout["num_attention_heads"] == 4 and layout["head_dim"] == 8
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path)).float().eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(PROMPT).logits, tiny()(PROMPT), atol=2e-2, rtol=0)  # fp16 on disk


def test_decode_accepts_numpy_and_tensor_ids():
    text = "ROMEO:\nWhat light"
    encoded = data.encode(text)
    assert data.decode(np.array(encoded)) == text
    assert data.decode(torch.tensor([encoded])) == text


# --- round 2: refused before anything is written; modes and attributes as the caller left them -----------


def test_a_cache_with_too_few_layers_is_refused_before_any_layer_writes():
    torch.manual_seed(0)
    deep = TinyDecoder(ModelConfig(**(SMALL | {"num_layers": 3}))).eval()
    for shallow in (NaiveKVCache(2), StaticKVCache(2, 1, 4, 8, 16)):
        for _ in range(2):  # the old code stored 5 tokens, then 10 on a retry
            with pytest.raises(ValueError, match="num_layers=2"):
                deep(torch.zeros(1, 5, dtype=torch.long), cache=shallow)
            assert shallow.seq_len == 0
    assert all(k is None for k in NaiveKVCache(2).keys)


def test_a_static_cache_too_short_is_refused_before_the_prefill():
    c = static(length=8)
    with pytest.raises(ValueError, match="room for 8"):
        generate(tiny(), PROMPT, 10, c)
    assert c.seq_len == 0 and c.lengths == [0, 0] and not any(k.any() for k in c.keys)
    # the exact fit still works: 3 prompt tokens + 5 decode tokens = 8 stored
    assert generate(tiny(), PROMPT, 6, c).shape == (1, 9) and c.seq_len == 8


def test_perplexity_restores_the_callers_mode():
    torch.manual_seed(0)
    model = TinyDecoder(ModelConfig(**(SMALL | {"vocab_size": data.VOCAB_SIZE}))).train()
    model.layers[0].eval()  # a submodule the caller froze stays frozen
    data.perplexity(model, window=8, max_windows=1, progress=False)
    assert model.training and not model.layers[0].training and model.layers[1].training
    with pytest.raises(ValueError, match="num_layers=1"):  # and after an error inside the loop
        data.perplexity(model, window=8, max_windows=1, make_cache=lambda: NaiveKVCache(1), progress=False)
    assert model.training and not model.layers[0].training
    model.eval()
    data.perplexity(model, window=8, max_windows=1, progress=False)
    assert not model.training


def test_a_refused_allow_long_context_keeps_the_old_value():
    model = TinyDecoder(ModelConfig(**SMALL), allow_long_context=True)
    with pytest.raises(TypeError):
        model.allow_long_context = "no"
    assert model.allow_long_context is True
    model.allow_long_context = np.bool_(False)  # numpy bools are fine, stored as bool
    assert model.allow_long_context is False
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 100, dtype=torch.long))


def test_rope_still_accepts_float_positions_and_batched_positions():
    cos, sin = rope_cos_sin(torch.arange(3).float(), 8, 10000, torch.float16)  # int theta is fine
    assert cos.shape == (1, 1, 3, 8) and cos.dtype == torch.float16
    torch.testing.assert_close(cos.float(), COS, atol=1e-3, rtol=0)
    cos_b, sin_b = rope_cos_sin(torch.arange(6).view(2, 3), 8, 10000.0, torch.float32)
    assert apply_rope(torch.ones(2, 4, 3, 8), cos_b, sin_b).shape == (2, 4, 3, 8)


def test_from_hf_config_reads_valid_eps_theta_and_tying():
    cfg = ModelConfig.from_hf_config(_hf(rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=500000))
    assert cfg.norm_eps == 1e-6 and cfg.tie_embeddings is False
    assert cfg.rope_theta == 10000.0  # rope_parameters wins over the older top-level key
    cfg = ModelConfig.from_hf_config(_hf(rope_parameters=None, rope_theta=500000))
    assert cfg.rope_theta == 500000.0


def test_train_tokenizer_still_takes_a_generator_of_documents():
    tok = data.train_tokenizer((t for t in ["to be or not to be", "that is the question"]), 300)
    assert tok.decode(tok.encode("to be").ids) == "to be"


def test_load_hf_tokenizer_reads_a_folder_with_tokenizer_files(tmp_path):
    data.load_hf_tokenizer().save_pretrained(str(tmp_path))
    assert data.load_hf_tokenizer(tmp_path).encode("ROMEO:") == data.encode("ROMEO:")


def test_new_token_positions_takes_a_device_name():
    assert new_token_positions(2, 3, "cpu").tolist() == [2, 3, 4]


def _no_training(args):
    raise AssertionError("argument checks let a bad output path through to training")


@pytest.mark.parametrize("where", ["out_dir_is_a_file", "out_dir_under_a_file", "name_is_a_file"])
def test_train_cli_rejects_an_output_path_it_cannot_write(where, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train", _no_training)  # training would take minutes before the write failed
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = {
        "out_dir_is_a_file": ["--out-dir", str(blocker)],
        "out_dir_under_a_file": ["--out-dir", str(blocker / "sub")],
        "name_is_a_file": ["--out-dir", str(tmp_path), "--name", "a_file"],
    }[where]
    err = assert_cli_error(train.main, CliCase(where, argv, ("a_file", "is a file")))
    assert ("--name" if where == "name_is_a_file" else "--out-dir") in err
