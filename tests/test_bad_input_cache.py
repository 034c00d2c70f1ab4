"""Bad input to the KV caches, attention helpers, memory accounting, plots and notebook glue.

Every row is a mistake a course user can make; each must end in one line naming the argument,
what was expected and what was given (issue 11). The tests after the table check that failed
calls leave caches unchanged, that the fp16 overflow warning fires once, and the cases whose fix
was to compute the right thing.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib import course, viz
from kvlib.attention import causal_attention, repeat_kv
from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.gqa import (
    KVHeadsCache,
    convert_mha_to_gqa,
    gqa_attention_step,
    grouped_attention,
    kv_bytes_per_token,
    kv_saving_factor,
    mean_pool_heads,
)
from kvlib.cache.mla import (
    LatentAttention,
    LatentKVCache,
    MLAConfig,
    absorbed_attention,
    expand_latent,
    mla_kv_bytes_per_token,
)
from kvlib.cache.quantized import FloatKVCache, QuantizedKVCache
from kvlib.cache.static import StaticKVCache
from kvlib.memory import (
    MAX_DEPTH,
    ModelShape,
    bytes_per_element,
    cache_nbytes,
    cuda_memory_delta,
    float_kv_cache_bytes,
    format_bytes,
    kv_bytes_per_gpu,
    kv_cache_bytes,
    kv_heads_per_gpu,
    measure_allocations,
    model_shape,
    quantized_kv_cache_bytes,
)

pytestmark = pytest.mark.ch01


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


def naive_after(first: tuple[int, ...], dtype: torch.dtype = torch.float32) -> NaiveKVCache:
    cache = NaiveKVCache(2)
    cache.update(0, t(*first, dtype=dtype), t(*first, dtype=dtype))
    return cache


def static(**kw) -> StaticKVCache:
    return StaticKVCache(
        **{"num_layers": 2, "batch": 1, "num_kv_heads": 2, "head_dim": 4, "max_seq_len": 8, **kw}
    )


def latent_after() -> LatentKVCache:
    cache = LatentKVCache(1)
    cache.update(0, t(1, 3, 4), t(1, 3, 2))
    return cache


def float_after(storage_dtype: torch.dtype, first: tuple[int, ...] = (1, 2, 3, 4)) -> FloatKVCache:
    cache = FloatKVCache(2, storage_dtype)
    cache.update(1, t(*first), t(*first))
    return cache


def with_value(value: float, at: tuple[int, int, int, int], shape=(1, 2, 2, 4)) -> torch.Tensor:
    x = t(*shape)
    x[at] = value
    return x


def nested(depth: int) -> list:
    x: list = [torch.zeros(10)]
    for _ in range(depth):
        x = [x]
    return x


MLA = MLAConfig(dim=8, num_heads=2, head_dim=4, kv_latent_dim=4, rope_dim=2)
LLAMA = model_shape("Llama-2-7B")
W = t(8, 4)  # an up-projection [2 heads * 4, d_c = 4]

CASES = [
    # --- NaiveKVCache (issue: dtype change upcast silently, heads/batch failed inside torch.cat) -------
    Case(
        "naive-dtype-change",
        lambda: naive_after((1, 2, 3, 4)).update(
            0, t(1, 2, 1, 4, dtype=torch.float64), t(1, 2, 1, 4, dtype=torch.float64)
        ),
        ValueError,
        ("layer 0", "float32", "float64", "same dtype"),
    ),
    Case(
        "naive-heads-change",
        lambda: naive_after((1, 2, 3, 4)).update(0, t(1, 3, 1, 4), t(1, 3, 1, 4)),
        ValueError,
        ("num_kv_heads", "dim 1", "[1, 2, 3, 4]", "[1, 3, 1, 4]"),
    ),
    Case(
        "naive-batch-change",
        lambda: naive_after((1, 2, 3, 4)).update(0, t(2, 2, 1, 4), t(2, 2, 1, 4)),
        ValueError,
        ("batch", "dim 0", "is 2", "holds 1"),
    ),
    Case(
        "naive-head-dim-change",
        lambda: naive_after((1, 2, 3, 4)).update(0, t(1, 2, 1, 5), t(1, 2, 1, 5)),
        ValueError,
        ("head_dim", "dim 3"),
    ),
    Case(
        "naive-k-v-dtypes",
        lambda: NaiveKVCache(1).update(0, t(1, 2, 3, 4), t(1, 2, 3, 4, dtype=torch.float16)),
        ValueError,
        ("k and v", "dtype", "float16"),
    ),
    Case(
        "naive-k-v-shapes",
        lambda: NaiveKVCache(1).update(0, t(1, 2, 3, 4), t(1, 2, 3, 5)),
        ValueError,
        ("k and v", "same shape"),
    ),
    Case("naive-3d", lambda: NaiveKVCache(1).update(0, t(2, 3, 4), t(2, 3, 4)), ValueError, ("k", "4 dims")),
    Case(
        "naive-k-list",
        lambda: NaiveKVCache(1).update(0, [[1.0]], t(1, 2, 3, 4)),
        TypeError,
        ("k", "torch.Tensor"),
    ),
    Case(
        "naive-layer-out-of-range",
        lambda: NaiveKVCache(2).update(2, t(1, 2, 3, 4), t(1, 2, 3, 4)),
        IndexError,
        ("layer", "[0, 2)", "got 2"),
    ),
    Case(
        "naive-layer-negative",
        lambda: NaiveKVCache(2).update(-1, t(1, 2, 3, 4), t(1, 2, 3, 4)),
        IndexError,
        ("layer", "got -1"),
    ),
    Case(
        "naive-layer-float",
        lambda: NaiveKVCache(2).update(1.0, t(1, 2, 3, 4), t(1, 2, 3, 4)),
        TypeError,
        ("layer", "integer", "float"),
    ),
    Case("naive-num-layers-0", lambda: NaiveKVCache(0), ValueError, ("num_layers", ">= 1", "got 0")),
    Case("naive-num-layers-float", lambda: NaiveKVCache(2.5), TypeError, ("num_layers", "integer", "2.5")),
    Case("naive-num-layers-str", lambda: NaiveKVCache("2"), TypeError, ("num_layers", "str")),
    Case("kvheads-cache-float", lambda: KVHeadsCache(2, 1.5), TypeError, ("num_kv_heads", "integer", "1.5")),
    Case(
        "kvheads-cache-repeated",
        lambda: KVHeadsCache(2, 2).update(0, t(1, 4, 1, 8), t(1, 4, 1, 8)),
        ValueError,
        ("2 key/value heads", "got 4", "repeat_kv"),
    ),
    # --- StaticKVCache ---------------------------------------------------------------------------------
    Case(
        "static-full",
        lambda: static().update(0, t(1, 2, 9, 4), t(1, 2, 9, 4)),
        RuntimeError,
        ("full", "max_seq_len=8"),
    ),
    Case(
        "static-wrong-heads",
        lambda: static().update(0, t(1, 3, 1, 4), t(1, 3, 1, 4)),
        ValueError,
        ("k", "[1, 2, T_new, 4]", "[1, 3, 1, 4]"),
    ),
    Case(
        "static-wrong-batch",
        lambda: static().update(0, t(2, 2, 1, 4), t(2, 2, 1, 4)),
        ValueError,
        ("k", "batch", "[2, 2, 1, 4]"),
    ),
    Case("static-3d", lambda: static().update(0, t(2, 1, 4), t(2, 1, 4)), ValueError, ("k", "4 dims")),
    Case(
        "static-int-tensor",
        lambda: static().update(
            0, torch.ones(1, 2, 1, 4, dtype=torch.long), torch.ones(1, 2, 1, 4, dtype=torch.long)
        ),
        ValueError,
        ("k", "floating-point", "int64"),
    ),
    Case(
        "static-k-v-dtypes",
        lambda: static().update(0, t(1, 2, 1, 4), t(1, 2, 1, 4, dtype=torch.float64)),
        ValueError,
        ("k and v", "dtype"),
    ),
    Case(
        "static-k-v-lengths",
        lambda: static().update(0, t(1, 2, 1, 4), t(1, 2, 2, 4)),
        ValueError,
        ("k and v", "same shape"),
    ),
    Case(
        "static-wrong-device",
        lambda: static().update(0, t(1, 2, 1, 4).to("meta"), t(1, 2, 1, 4).to("meta")),
        ValueError,
        ("k", "meta", "cpu"),
    ),
    Case(
        "static-numpy-k",
        lambda: static().update(0, np.zeros((1, 2, 1, 4)), t(1, 2, 1, 4)),
        TypeError,
        ("k", "torch.Tensor", "numpy.ndarray", "(1, 2, 1, 4)"),
    ),
    Case(
        "static-layer-out-of-range",
        lambda: static().update(2, t(1, 2, 1, 4), t(1, 2, 1, 4)),
        IndexError,
        ("layer", "[0, 2)", "got 2"),
    ),
    Case(
        "static-layer-float",
        lambda: static().update(0.0, t(1, 2, 1, 4), t(1, 2, 1, 4)),
        TypeError,
        ("layer", "integer", "0.0"),
    ),
    Case("static-batch-0", lambda: static(batch=0), ValueError, ("batch", ">= 1", "got 0")),
    Case("static-batch-float", lambda: static(batch=2.0), TypeError, ("batch", "integer", "2.0")),
    Case("static-max-seq-len-0", lambda: static(max_seq_len=0), ValueError, ("max_seq_len", ">= 1")),
    Case("static-dtype-str", lambda: static(dtype="fp16"), TypeError, ("dtype", "torch.dtype", "'fp16'")),
    Case(
        "static-dtype-int", lambda: static(dtype=torch.int8), TypeError, ("dtype", "floating-point", "int8")
    ),
    Case("static-device-unknown", lambda: static(device="tpu"), ValueError, ("device", "'cpu'", "'tpu'")),
    Case("static-device-gpu", lambda: static(device="gpu"), ValueError, ("device", "'cuda:0'", "'gpu'")),
    Case("static-device-int-list", lambda: static(device=[0]), ValueError, ("device", "[0] (list)")),
    Case(
        "static-too-big",
        lambda: static(max_seq_len=10**12),
        RuntimeError,
        ("could not allocate", "max_seq_len=1000000000000", "bytes"),
    ),
    # --- attention -------------------------------------------------------------------------------------
    Case(
        "attn-q-start-float",
        lambda: causal_attention(t(1, 2, 1, 8), t(1, 2, 3, 8), t(1, 2, 3, 8), q_start=1.5),
        TypeError,
        ("q_start", "integer", "1.5"),
    ),
    Case(
        "attn-q-start-bool",
        lambda: causal_attention(t(1, 2, 1, 8), t(1, 2, 3, 8), t(1, 2, 3, 8), q_start=True),
        TypeError,
        ("q_start", "bool"),
    ),
    Case(
        "attn-q-start-range",
        lambda: causal_attention(t(1, 2, 1, 8), t(1, 2, 3, 8), t(1, 2, 3, 8), q_start=3),
        ValueError,
        ("q_start=3", "Tk - Tq = 2"),
    ),
    Case(
        "attn-more-queries-than-keys",
        lambda: causal_attention(t(1, 2, 5, 8), t(1, 2, 2, 8), t(1, 2, 2, 8)),
        ValueError,
        ("Tq=5", "Tk=2", "q_start"),
    ),
    Case(
        "attn-heads-mismatch",
        lambda: causal_attention(t(1, 4, 2, 8), t(1, 2, 2, 8), t(1, 2, 2, 8)),
        ValueError,
        ("heads", "repeat_kv"),
    ),
    Case(
        "attn-3d", lambda: causal_attention(t(2, 3, 4), t(2, 3, 4), t(2, 3, 4)), ValueError, ("[B, H, T, D]",)
    ),
    Case(
        "attn-q-list",
        lambda: causal_attention([[1.0]], t(1, 2, 3, 8), t(1, 2, 3, 8)),
        TypeError,
        ("q", "torch.Tensor", "list"),
    ),
    Case(
        "attn-int-q",
        lambda: causal_attention(torch.ones(1, 2, 1, 8, dtype=torch.long), t(1, 2, 3, 8), t(1, 2, 3, 8)),
        ValueError,
        ("q", "floating-point", "int64"),
    ),
    Case(
        "attn-devices",
        lambda: causal_attention(t(1, 2, 1, 8), t(1, 2, 3, 8).to("meta"), t(1, 2, 3, 8)),
        ValueError,
        ("one device", "k on meta"),
    ),
    Case("repeat-kv-0", lambda: repeat_kv(t(1, 2, 3, 4), 0), ValueError, ("n_rep", ">= 1", "got 0")),
    Case("repeat-kv-float", lambda: repeat_kv(t(1, 2, 3, 4), 2.0), TypeError, ("n_rep", "integer", "2.0")),
    Case(
        "repeat-kv-3d",
        lambda: repeat_kv(t(2, 3, 4), 2),
        ValueError,
        ("x", "[B, num_kv_heads, T, D]", "(2, 3, 4)"),
    ),
    Case("repeat-kv-list", lambda: repeat_kv([1.0], 2), TypeError, ("x", "torch.Tensor", "list")),
    # --- GQA -------------------------------------------------------------------------------------------
    Case(
        "gqa-not-dividing",
        lambda: grouped_attention(t(1, 4, 1, 8), t(1, 3, 2, 8), t(1, 3, 2, 8)),
        ValueError,
        ("num_heads (4)", "multiple of num_kv_heads (3)"),
    ),
    Case(
        "gqa-q-start-float",
        lambda: grouped_attention(t(1, 4, 1, 8), t(1, 2, 3, 8), t(1, 2, 3, 8), q_start=1.5),
        TypeError,
        ("q_start", "1.5"),
    ),
    Case(
        "gqa-step-past-tensor",
        lambda: gqa_attention_step(t(1, 4, 1, 8), t(1, 2, 1, 8), t(1, 2, 1, 8), t(1, 2, 3, 8)),
        TypeError,
        ("past", "(k_past, v_past)", "Tensor"),
    ),
    Case(
        "gqa-step-past-lengths",
        lambda: gqa_attention_step(
            t(1, 4, 1, 8), t(1, 2, 1, 8), t(1, 2, 1, 8), (t(1, 2, 3, 8), t(1, 2, 2, 8))
        ),
        ValueError,
        ("k_past and v_past", "same shape"),
    ),
    Case(
        "gqa-step-past-dtype",
        lambda: gqa_attention_step(
            t(1, 4, 1, 8), t(1, 2, 1, 8), t(1, 2, 1, 8), (t(1, 2, 3, 8, dtype=torch.float64),) * 2
        ),
        ValueError,
        ("past", "float64", "float32"),
    ),
    Case(
        "gqa-step-past-heads",
        lambda: gqa_attention_step(t(1, 4, 1, 8), t(1, 2, 1, 8), t(1, 2, 1, 8), (t(1, 1, 3, 8),) * 2),
        ValueError,
        ("num_kv_heads", "dim 1"),
    ),
    Case("mean-pool-float-kv", lambda: mean_pool_heads(t(32, 8), 4, 1.5), TypeError, ("num_kv_heads", "1.5")),
    Case(
        "mean-pool-int-weight",
        lambda: mean_pool_heads(torch.ones(32, 8, dtype=torch.int64), 4, 2),
        ValueError,
        ("weight", "floating-point", "int64"),
    ),
    Case(
        "mean-pool-rows",
        lambda: mean_pool_heads(t(30, 8), 4, 2),
        ValueError,
        ("weight rows (30)", "num_heads (4)"),
    ),
    Case(
        "convert-not-a-model",
        lambda: convert_mha_to_gqa("model", 2),
        TypeError,
        ("model", "TinyDecoder", "str"),
    ),
    Case(
        "kv-bytes-per-token-negative",
        lambda: kv_bytes_per_token(-1, 2, 3),
        ValueError,
        ("num_layers", ">= 0"),
    ),
    Case("saving-factor-dict", lambda: kv_saving_factor({}), TypeError, ("ModelShape", "dict")),
    Case(
        "saving-factor-zero-kv",
        lambda: kv_saving_factor(ModelShape("x", 2, 4, 0, 8, 32, 64, 0.1, "t")),
        ValueError,
        ("num_kv_heads", ">= 1", "got 0"),
    ),
    # --- MLA -------------------------------------------------------------------------------------------
    Case(
        "mla-config-float",
        lambda: MLAConfig(dim=8.5, num_heads=2, head_dim=4, kv_latent_dim=4, rope_dim=0),
        TypeError,
        ("MLAConfig.dim", "integer", "8.5"),
    ),
    Case(
        "mla-config-zero",
        lambda: MLAConfig(dim=8, num_heads=2, head_dim=4, kv_latent_dim=0, rope_dim=0),
        ValueError,
        ("kv_latent_dim", ">= 1"),
    ),
    Case("mla-bytes-float", lambda: mla_kv_bytes_per_token(1.5, 4, 0), TypeError, ("num_layers", "1.5")),
    Case("expand-n-heads-0", lambda: expand_latent(t(1, 3, 4), W, W, 0), ValueError, ("num_heads", ">= 1")),
    Case(
        "expand-n-heads-float", lambda: expand_latent(t(1, 3, 4), W, W, 2.0), TypeError, ("num_heads", "2.0")
    ),
    Case("expand-2d-latent", lambda: expand_latent(t(3, 4), W, W, 2), ValueError, ("c_kv", "[B, T, d_c]")),
    Case(
        "absorbed-3d-q", lambda: absorbed_attention(t(2, 1, 4), t(1, 3, 4), W, W), ValueError, ("q", "4 dims")
    ),
    Case(
        "absorbed-int-q",
        lambda: absorbed_attention(torch.ones(1, 2, 1, 4, dtype=torch.int64), t(1, 3, 4), W, W),
        ValueError,
        ("q", "floating-point", "int64"),
    ),
    Case(
        "absorbed-int-c-kv",
        lambda: absorbed_attention(t(1, 2, 1, 4), torch.ones(1, 3, 4, dtype=torch.int32), W, W),
        ValueError,
        ("c_kv", "floating-point", "int32"),
    ),
    Case(
        "absorbed-batch",
        lambda: absorbed_attention(t(2, 2, 1, 4), t(1, 3, 4), W, W),
        ValueError,
        ("batch 2", "c_kv", "batch 1"),
    ),
    Case(
        "absorbed-more-queries",
        lambda: absorbed_attention(t(1, 2, 5, 4), t(1, 3, 4), W, W),
        ValueError,
        ("Tq=5", "Tk=3"),
    ),
    Case(
        "absorbed-q-start-range",
        lambda: absorbed_attention(t(1, 2, 1, 4), t(1, 3, 4), W, W, q_start=5),
        ValueError,
        ("q_start", "[0, 2]"),
    ),
    Case(
        "absorbed-q-rope-alone",
        lambda: absorbed_attention(t(1, 2, 1, 4), t(1, 3, 4), W, W, q_rope=t(1, 2, 1, 2)),
        ValueError,
        ("q_rope", "k_rope", "only q_rope"),
    ),
    Case(
        "absorbed-rope-length",
        lambda: absorbed_attention(t(1, 2, 1, 4), t(1, 3, 4), W, W, q_rope=t(1, 2, 1, 2), k_rope=t(1, 2, 2)),
        ValueError,
        ("k_rope", "[1, 3]", "[1, 2, 2]"),
    ),
    Case(
        "latent-cache-d-c-change",
        lambda: latent_after().update(0, t(1, 1, 5), t(1, 1, 2)),
        ValueError,
        ("c_kv", "d_c", "dim 2"),
    ),
    Case(
        "latent-cache-dtype-change",
        lambda: latent_after().update(0, t(1, 1, 4, dtype=torch.float64), t(1, 1, 2, dtype=torch.float64)),
        ValueError,
        ("c_kv", "float32", "float64"),
    ),
    Case(
        "latent-cache-batch-change",
        lambda: latent_after().update(0, t(2, 1, 4), t(2, 1, 2)),
        ValueError,
        ("batch", "dim 0"),
    ),
    Case(
        "latent-cache-layer",
        lambda: LatentKVCache(1).update(5, t(1, 3, 4), t(1, 3, 2)),
        IndexError,
        ("layer", "5"),
    ),
    Case(
        "latent-attention-x-width",
        lambda: LatentAttention(MLA)(t(1, 3, 7)),
        ValueError,
        ("x", "dim = 8", "7"),
    ),
    Case("latent-attention-x-2d", lambda: LatentAttention(MLA)(t(3, 8)), ValueError, ("x", "[B, T, C]")),
    # --- memory ----------------------------------------------------------------------------------------
    Case(
        "cache-nbytes-too-deep",
        lambda: cache_nbytes(nested(MAX_DEPTH + 4)),
        ValueError,
        (f"MAX_DEPTH={MAX_DEPTH}", "cache[0][0]", "list"),
    ),
    Case(
        "cache-nbytes-str",
        lambda: cache_nbytes("cache"),
        TypeError,
        ("cache must be a cache object, a container of tensors or a tensor", "'cache' (str)"),
    ),
    Case("cache-nbytes-int", lambda: cache_nbytes(5), TypeError, ("cache", "5 (int)")),
    Case("cache-nbytes-numpy-int", lambda: cache_nbytes(np.int64(5)), TypeError, ("cache", "5) (int64)")),
    Case(
        "cache-nbytes-numpy",
        lambda: cache_nbytes(np.zeros((2, 3))),
        TypeError,
        ("cache", "numpy.ndarray of shape (2, 3)", "not torch memory", "pass the tensors"),
    ),
    Case(
        "cache-nbytes-generator",
        lambda: cache_nbytes(torch.zeros(4) for _ in range(2)),
        TypeError,
        ("cache", "generator", "consumed", "pass a list"),
    ),
    Case(
        "cache-nbytes-iterator",
        lambda: cache_nbytes(iter([torch.zeros(4)])),
        TypeError,
        ("cache", "list_iterator", "pass a list"),
    ),
    Case("format-bytes-nan", lambda: format_bytes(float("nan")), ValueError, ("n", "finite", "nan")),
    Case("format-bytes-inf", lambda: format_bytes(float("inf")), ValueError, ("n", "finite", "inf")),
    Case("format-bytes-str", lambda: format_bytes("1024"), TypeError, ("n", "number", "'1024' (str)")),
    Case("format-bytes-none", lambda: format_bytes(None), TypeError, ("n", "None")),
    Case("format-bytes-bool", lambda: format_bytes(True), TypeError, ("n", "bool")),
    Case(
        "kv-cache-bytes-float",
        lambda: kv_cache_bytes(2.0, 2, 2, 2),
        TypeError,
        ("num_layers", "integer", "2.0"),
    ),
    Case(
        "kv-cache-bytes-negative", lambda: kv_cache_bytes(1, 1, 1, -1), ValueError, ("seq_len", ">= 0", "-1")
    ),
    Case(
        "kv-cache-bytes-dtype",
        lambda: kv_cache_bytes(1, 1, 1, 1, dtype="fp12"),
        ValueError,
        ("unknown dtype", "'fp12'", "fp16"),
    ),
    Case(
        "kv-cache-bytes-dtype-int",
        lambda: kv_cache_bytes(1, 1, 1, 1, dtype=16),
        TypeError,
        ("dtype", "16 (int)"),
    ),
    # tensor parallelism (chapter 08): tp must split the query heads and split or copy the KV heads evenly
    Case(
        "kv-heads-per-gpu-name",
        lambda: kv_heads_per_gpu("Llama-2-70B", 8),
        TypeError,
        ("shape", "ModelShape", "'Llama-2-70B' (str)"),
    ),
    Case("kv-heads-per-gpu-tp-zero", lambda: kv_heads_per_gpu(LLAMA, 0), ValueError, ("tp", ">= 1", "0")),
    Case("kv-heads-per-gpu-tp-float", lambda: kv_heads_per_gpu(LLAMA, 8.0), TypeError, ("tp", "8.0 (float)")),
    Case("kv-heads-per-gpu-tp-str", lambda: kv_heads_per_gpu(LLAMA, "8"), TypeError, ("tp", "'8' (str)")),
    Case("kv-heads-per-gpu-tp-bool", lambda: kv_heads_per_gpu(LLAMA, True), TypeError, ("tp", "bool")),
    Case(
        "kv-heads-per-gpu-query-heads",
        lambda: kv_heads_per_gpu(LLAMA, 3),
        ValueError,
        (LLAMA.name, "tp=3", f"{LLAMA.num_heads} query heads"),
    ),
    Case(
        "kv-heads-per-gpu-kv-heads",
        lambda: kv_heads_per_gpu(ModelShape("12q/6kv", 2, 12, 6, 8, 96, 64, 0.1, "t"), 4),
        ValueError,
        ("12q/6kv", "tp=4", "does not divide", "6 KV heads"),
    ),
    Case(
        "kv-heads-per-gpu-not-a-multiple",
        lambda: kv_heads_per_gpu(ModelShape("12q/4kv", 2, 12, 4, 8, 96, 64, 0.1, "t"), 6),
        ValueError,
        ("12q/4kv", "tp=6", "not a multiple", "4 KV heads"),
    ),
    Case(
        "kv-bytes-per-gpu-shape-swapped",
        lambda: kv_bytes_per_gpu(8, LLAMA, 4096),
        TypeError,
        ("shape", "8 (int)"),
    ),
    Case(
        "kv-bytes-per-gpu-tp-negative",
        lambda: kv_bytes_per_gpu(LLAMA, -2, 4096),
        ValueError,
        ("tp", ">= 1", "-2"),
    ),
    Case(
        "kv-bytes-per-gpu-seq-len-float",
        lambda: kv_bytes_per_gpu(LLAMA, 2, 4096.0),
        TypeError,
        ("seq_len", "4096.0 (float)"),
    ),
    Case(
        "kv-bytes-per-gpu-batch-negative",
        lambda: kv_bytes_per_gpu(LLAMA, 2, 16, -1),
        ValueError,
        ("batch", ">= 0", "-1"),
    ),
    Case(
        "kv-bytes-per-gpu-dtype",
        lambda: kv_bytes_per_gpu(LLAMA, 2, 16, 1, "fp12"),
        ValueError,
        ("unknown dtype", "'fp12'", "fp16"),
    ),
    Case("bytes-per-element-unknown", lambda: bytes_per_element("fp12"), ValueError, ("'fp12'", "bf16")),
    Case("bytes-per-element-none", lambda: bytes_per_element(None), TypeError, ("dtype", "None")),
    Case("model-shape-unknown", lambda: model_shape("llama"), KeyError, ("'llama'", "Llama-2-7B")),
    Case("model-shape-list", lambda: model_shape([]), TypeError, ("name", "str", "list")),
    Case("model-shape-kv-bytes-float", lambda: LLAMA.kv_bytes(4096.0), TypeError, ("seq_len", "4096.0")),
    Case(
        "model-shape-negative",
        lambda: ModelShape("x", -1, 2, 2, 2, 2, 2, 1.0, "t"),
        ValueError,
        ("ModelShape.num_layers", ">= 1"),
    ),
    Case("measure-not-callable", lambda: measure_allocations(5), TypeError, ("fn", "callable", "5 (int)")),
    Case(
        "measure-device-unknown",
        lambda: measure_allocations(lambda: 1, device="tpu"),
        ValueError,
        ("device", "cpu, cuda", "'tpu'"),
    ),
    Case(
        "measure-device-gpu",
        lambda: measure_allocations(lambda: 1, device="gpu"),
        ValueError,
        ("measure_allocations: device", "cpu, cuda", "'gpu'"),
    ),
    Case(
        "cuda-delta-gpu",
        lambda: cuda_memory_delta(lambda: 1, device="gpu"),
        ValueError,
        ("cuda_memory_delta: device", "cuda", "'gpu'"),
    ),
    Case(
        "measure-device-mps",
        lambda: measure_allocations(lambda: 1, device="mps"),
        ValueError,
        ("device", "'mps'"),
    ),
    Case("cuda-delta-not-callable", lambda: cuda_memory_delta(5), TypeError, ("fn", "callable")),
    Case(
        "cuda-delta-cpu",
        lambda: cuda_memory_delta(lambda: 1, device="cpu"),
        ValueError,
        ("device", "cuda", "'cpu'"),
    ),
    # --- viz and course ------------------------------------------------------------------------------------
    Case(
        "plot-time-nan",
        lambda: viz.plot_time_per_token([1, 2], [math.nan, 1.0], [1.0, 2.0]),
        ValueError,
        ("cached_s[0]", "finite", "nan"),
    ),
    Case(
        "plot-time-unequal",
        lambda: viz.plot_time_per_token([1, 2], [1.0], [1.0, 2.0]),
        ValueError,
        ("equal length", "2, 1 and 2"),
    ),
    Case(
        "plot-time-empty",
        lambda: viz.plot_time_per_token([], [], []),
        ValueError,
        ("lengths", "at least one"),
    ),
    Case(
        "plot-time-str", lambda: viz.plot_time_per_token("ab", "cd", "ef"), TypeError, ("lengths", "sequence")
    ),
    Case("plot-prefill-str", lambda: viz.plot_prefill_decode("1", [1.0]), TypeError, ("prefill_s", "number")),
    Case(
        "plot-prefill-empty-array",
        lambda: viz.plot_prefill_decode(1.0, np.array([])),
        ValueError,
        ("decode_s", "at least one"),
    ),
    Case(
        "plot-prefill-scalar", lambda: viz.plot_prefill_decode(1.0, 0.5), TypeError, ("decode_s", "sequence")
    ),
    Case(
        "plot-bytes-unit",
        lambda: viz.plot_bytes([1], {"a": [1]}, "x", "t", unit="TB"),
        ValueError,
        ("unit", "MiB", "'TB'"),
    ),
    Case(
        "plot-bytes-series-list",
        lambda: viz.plot_bytes([1, 2], [[1, 2]], "x", "t"),
        TypeError,
        ("series", "dict", "list"),
    ),
    Case(
        "plot-bytes-series-empty",
        lambda: viz.plot_bytes([1, 2], {}, "x", "t"),
        ValueError,
        ("series", "empty"),
    ),
    Case(
        "plot-bytes-unit-list",
        lambda: viz.plot_bytes([1], {"a": [1]}, "x", "t", unit=["MiB"]),
        ValueError,
        ("unit", "MiB", "list"),
    ),
    Case(
        "plot-bytes-ax-str",
        lambda: viz.plot_bytes([1], {"a": [1]}, "x", "t", ax="left"),
        TypeError,
        ("ax", "matplotlib Axes", "'left' (str)"),
    ),
    Case(
        "plot-time-ax-int",
        lambda: viz.plot_time_per_token([1], [1.0], [1.0], ax=0),
        TypeError,
        ("ax", "Axes", "0 (int)"),
    ),
    Case("plot-model-table-seq-0", lambda: viz.plot_model_table(seq_len=0), ValueError, ("seq_len", ">= 1")),
    Case(
        "calculator-seq-negative",
        lambda: viz.MemoryCalculator(seq_len=-5),
        ValueError,
        ("seq_len", "[0, 131072]", "-5"),
    ),
    Case(
        "calculator-batch-0",
        lambda: viz.MemoryCalculator(batch=0),
        ValueError,
        ("batch", "[1, 256]", "got 0"),
    ),
    Case(
        "calculator-seq-float", lambda: viz.MemoryCalculator(seq_len=4096.5), TypeError, ("seq_len", "4096.5")
    ),
    Case(
        "calculator-dtype",
        lambda: viz.MemoryCalculator(dtype="fp12"),
        ValueError,
        ("dtype", "fp16", "'fp12'"),
    ),
    Case("calculator-budget", lambda: viz.MemoryCalculator(budget="80GB"), ValueError, ("budget", "'80GB'")),
    Case(
        "calculator-set-label", lambda: viz.MemoryCalculator().set(label="x"), KeyError, ("label", "seq_len")
    ),
    Case(
        "calculator-set-too-big",
        lambda: viz.MemoryCalculator().set(batch=1000),
        ValueError,
        ("batch", "1000"),
    ),
    Case(
        "calculator-set-dtype",
        lambda: viz.MemoryCalculator().set(dtype="fp12"),
        ValueError,
        ("dtype", "'fp12'"),
    ),
    Case(
        "yours-or-reference-try-it",
        lambda: course.yours_or_reference("cache", 1, 2, None),
        TypeError,
        ("try_it", "callable", "None"),
    ),
    # --- chapter 04: QuantizedKVCache's key_granularity, FloatKVCache and their byte formulas -----------
    Case(
        "quantized-key-granularity-typo",
        lambda: QuantizedKVCache(2, key_granularity="per-token"),
        ValueError,
        ("key_granularity", "'per_channel'", "'per_token'", "'per-token'"),
    ),
    Case(
        "quantized-key-granularity-not-str",
        lambda: QuantizedKVCache(2, key_granularity=None),
        TypeError,
        ("key_granularity", "'per_channel'", "None"),
    ),
    Case(
        "quantized-key-granularity-per-tensor",
        lambda: QuantizedKVCache(2, key_granularity="per_tensor"),
        ValueError,
        ("key_granularity", "per_tensor"),
    ),
    Case(
        "quantized-bytes-key-granularity",
        lambda: quantized_kv_cache_bytes(6, 2, 32, 100, key_granularity="channel"),
        ValueError,
        ("key_granularity", "'channel'"),
    ),
    Case(
        "float-storage-int8",
        lambda: FloatKVCache(2, torch.int8),
        ValueError,
        ("storage_dtype", "torch.float8_e4m3fn", "int8"),
    ),
    Case(
        "float-storage-string",
        lambda: FloatKVCache(2, "bf16"),
        TypeError,
        ("storage_dtype", "torch.dtype", "'bf16'"),
    ),
    Case(
        "float-storage-fp8-e5m2",
        lambda: FloatKVCache(2, torch.float8_e5m2),
        ValueError,
        ("storage_dtype", "float8_e5m2"),
    ),
    Case("float-zero-layers", lambda: FloatKVCache(0), ValueError, ("num_layers", "got 0")),
    Case(
        "float-layer-range",
        lambda: float_after(torch.bfloat16).update(2, t(1, 2, 1, 4), t(1, 2, 1, 4)),
        IndexError,
        ("layer", "[0, 2)", "got 2"),
    ),
    Case(
        "float-int-keys",
        lambda: FloatKVCache(2).update(0, t(1, 2, 1, 4).long(), t(1, 2, 1, 4).long()),
        ValueError,
        ("layer 0", "int64", "float32"),
    ),
    Case(
        "float-k-3d",
        lambda: FloatKVCache(2).update(0, t(2, 1, 4), t(2, 1, 4)),
        ValueError,
        ("k", "4 dims"),
    ),
    Case(
        "float-heads-change",
        lambda: float_after(torch.float16).update(1, t(1, 3, 1, 4), t(1, 3, 1, 4)),
        ValueError,
        ("layer 1", "num_kv_heads", "reset"),
    ),
    Case(
        "float-dtype-change",
        lambda: float_after(torch.float8_e4m3fn).update(
            1, t(1, 2, 1, 4, dtype=torch.float16), t(1, 2, 1, 4, dtype=torch.float16)
        ),
        ValueError,
        ("layer 1", "float32", "float16"),
    ),
    Case(
        "float-nan-key",
        lambda: float_after(torch.bfloat16).update(1, with_value(float("nan"), (0, 1, 1, 2)), t(1, 2, 2, 4)),
        ValueError,
        ("layer 1 keys", "position 4", "kv head 1", "nan"),
    ),
    Case(
        "float-fp8-inf-value",
        lambda: FloatKVCache(2, torch.float8_e4m3fn).update(
            0, t(1, 2, 2, 4), with_value(float("-inf"), (0, 0, 1, 3))
        ),
        ValueError,
        ("layer 0 values", "position 1", "inf"),
    ),
    Case(
        "float-fp16-overflow",
        lambda: float_after(torch.float16).update(1, t(1, 2, 2, 4), with_value(1e5, (0, 1, 0, 0))),
        ValueError,
        ("layer 1 values", "overflow", "torch.float16", "65504", "position 3", "1e+05"),
    ),
    Case(
        "float-bytes-storage",
        lambda: float_kv_cache_bytes(6, 2, 32, 100, storage_dtype=torch.float32),
        ValueError,
        ("storage_dtype", "float32"),
    ),
]

if not torch.cuda.is_available():  # on a CUDA machine these calls are legal
    CASES += [
        Case(
            "static-device-cuda-missing",
            lambda: static(device="cuda"),
            ValueError,
            ("device='cuda'", "CUDA is not available", "'cpu'"),
        ),
        Case(
            "measure-device-cuda-missing",
            lambda: measure_allocations(lambda: 1, device="cuda:0"),
            ValueError,
            ("measure_allocations: device='cuda:0'", "not available"),
        ),
    ]


@pytest.mark.parametrize("case", params(CASES))
def test_clear_error(case: Case) -> None:
    assert_clear_error(case)


# --- a failed call changes nothing ---------------------------------------------------------------------


def _naive_state(cache: NaiveKVCache) -> list:
    return [None if x is None else x.clone() for x in cache.keys + cache.values]


@pytest.mark.parametrize(
    "k",
    [t(1, 3, 1, 4), t(2, 2, 1, 4), t(1, 2, 1, 5), t(1, 2, 1, 4, dtype=torch.float64)],
    ids=["heads", "batch", "head_dim", "dtype"],
)
def test_naive_cache_unchanged_after_a_bad_update(k: torch.Tensor) -> None:
    cache = naive_after((1, 2, 3, 4))
    before = _naive_state(cache)
    with pytest.raises(ValueError):
        cache.update(0, k, k.clone())
    after = _naive_state(cache)
    assert cache.seq_len == 3
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.ch04
@pytest.mark.parametrize("storage", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_float_cache_unchanged_after_a_bad_update(storage: torch.dtype) -> None:
    cache = float_after(storage)
    before, nbytes, scales = cache.update(1, t(1, 2, 0, 4), t(1, 2, 0, 4)), cache.nbytes(), cache.scales(1)
    bad_updates = [
        (with_value(float("nan"), (0, 0, 0, 0)), t(1, 2, 1, 4)),  # the keys are fine up to the NaN
        (t(1, 2, 1, 4), with_value(float("inf"), (0, 0, 0, 0), (1, 2, 1, 4))),  # keys fine, values not
        (t(1, 2, 1, 4, dtype=torch.float16), t(1, 2, 1, 4, dtype=torch.float16)),
        (t(2, 2, 1, 4), t(2, 2, 1, 4)),
    ]
    for k, v in bad_updates:
        with pytest.raises(ValueError):
            cache.update(1, k, v)
    after = cache.update(1, t(1, 2, 0, 4), t(1, 2, 0, 4))
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert cache.nbytes() == nbytes and cache.scales(1) == scales and cache.seq_len == 0
    assert cache.update(1, t(1, 2, 1, 4), t(1, 2, 1, 4))[0].shape == (1, 2, 4, 4)


def test_static_cache_unchanged_after_a_bad_update() -> None:
    cache = static()
    cache.update(0, t(1, 2, 7, 4), t(1, 2, 7, 4))
    keys, values, lengths = (
        [k.clone() for k in cache.keys],
        [v.clone() for v in cache.values],
        list(cache.lengths),
    )
    for bad in (
        lambda: cache.update(0, t(1, 2, 2, 4), t(1, 2, 2, 4)),  # past max_seq_len
        lambda: cache.update(0, t(1, 2, 1, 4), t(1, 2, 2, 4)),  # k, v lengths differ
        lambda: cache.update(0, t(1, 2, 1, 4), t(1, 2, 1, 4, dtype=torch.float64)),
        lambda: cache.update(0, t(1, 2, 1, 4).to("meta"), t(1, 2, 1, 4).to("meta")),
    ):
        with pytest.raises((ValueError, RuntimeError)):
            bad()
    assert cache.lengths == lengths
    assert all(torch.equal(a, b) for a, b in zip(keys + values, cache.keys + cache.values))


def test_latent_cache_unchanged_when_only_k_rope_mismatches() -> None:
    cache = latent_after()
    latents, ropes = cache.latents[0].clone(), cache.rope_keys[0].clone()
    with pytest.raises(ValueError, match="k_rope"):
        cache.update(0, t(1, 1, 4), t(1, 1, 6))  # c_kv fits, k_rope's d_R changed
    assert torch.equal(cache.latents[0], latents) and torch.equal(cache.rope_keys[0], ropes)


def test_calculator_set_moves_nothing_when_one_value_is_bad() -> None:
    calc = viz.MemoryCalculator()
    before = (calc.seq_len.value, calc.batch.value, calc.bytes)
    with pytest.raises(ValueError):
        calc.set(seq_len=8192, batch=0)
    assert (calc.seq_len.value, calc.batch.value, calc.bytes) == before


# --- the fp16 overflow warning ----------------------------------------------------------------------------


def test_static_fp16_overflow_warns_once_per_cache() -> None:
    cache = static(dtype=torch.float16)
    big = torch.full((1, 2, 1, 4), 1e6)
    with pytest.warns(RuntimeWarning, match=r"k of layer 0 has values up to 1e\+06.*float16.*inf") as record:
        k, _ = cache.update(0, big, torch.zeros(1, 2, 1, 4))
        cache.update(1, big, big)  # the same cache warns only once
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert torch.isinf(k).all()  # documented behaviour: stored as inf, with the warning
    with pytest.warns(RuntimeWarning, match="v of layer 0"):
        static(dtype=torch.float16).update(0, torch.zeros(1, 2, 1, 4), big)  # a new cache warns again


def test_static_in_range_conversion_is_silent() -> None:
    cache = static(dtype=torch.bfloat16)  # the chapter 02 grader's fp32 -> bf16 case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.update(0, t(1, 2, 3, 4), t(1, 2, 3, 4))
        static(dtype=torch.float16).update(0, t(1, 2, 3, 4) * 100, t(1, 2, 3, 4))
        cache.update(0, torch.full((1, 2, 1, 4), math.inf), torch.zeros(1, 2, 1, 4))  # inf in, not overflow


# --- correct results where the fix was to accept or compute the right thing ---------------------------------


def test_numpy_and_tensor_integers_are_accepted() -> None:
    assert StaticKVCache(np.int64(1), 1, 1, 2, np.int32(4)).shape == (1, 1, 4, 2)
    assert kv_cache_bytes(np.int64(2), 2, 2, torch.tensor(2)) == kv_cache_bytes(2, 2, 2, 2)
    x = t(1, 2, 3, 4)
    assert torch.equal(repeat_kv(x, np.int64(2)), repeat_kv(x, 2))
    q, k = t(1, 2, 1, 8), t(1, 2, 3, 8)
    assert torch.equal(causal_attention(q, k, k, q_start=np.int64(2)), causal_attention(q, k, k, q_start=2))
    cache = NaiveKVCache(np.int64(2))
    cache.update(np.int64(1), x, x)
    assert cache.keys[1] is x


def test_cache_nbytes_counts_real_caches_and_deep_but_legal_nesting() -> None:
    from transformers import DynamicCache

    dyn = DynamicCache()
    for layer in range(2):
        dyn.update(t(1, 3, 6, 4), t(1, 3, 6, 4), layer)
    assert cache_nbytes(dyn) == 2 * 2 * 3 * 6 * 4 * 4
    assert cache_nbytes(nested(MAX_DEPTH - 1)) == 40  # the old cap of 12 returned 0 here
    assert cache_nbytes(None) == 0
    shared = [t(1, 2, 3, 4)] * 3
    assert cache_nbytes({"a": shared, "b": (shared,)}) == 96
    cyclic: list = [torch.zeros(4)]
    cyclic.append(cyclic)
    assert cache_nbytes(cyclic) == 16


def test_format_bytes_keeps_deltas_and_numbers() -> None:
    assert format_bytes(-2048) == "-2.00 KiB"  # a memory delta may be negative
    assert format_bytes(np.int64(2**31)) == "2.00 GiB"
    assert format_bytes(torch.tensor(2048)) == "2.00 KiB"
    assert format_bytes(0) == "0 B"


def test_mixed_precision_attention_still_works() -> None:
    out = causal_attention(t(1, 2, 1, 8, dtype=torch.float16), t(1, 2, 3, 8), t(1, 2, 3, 8))
    assert out.dtype == torch.float16 and out.shape == (1, 2, 1, 8)
    assert causal_attention(t(1, 2, 0, 8), t(1, 2, 0, 8), t(1, 2, 0, 8)).shape == (1, 2, 0, 8)


# --- round 2: an independent probe's cases ---------------------------------------------------------------


def test_plot_bytes_draws_nothing_when_a_later_series_is_bad() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    open_before = plt.get_fignums()
    try:
        for call in (
            lambda: viz.plot_bytes([1, 2], {"a": [1, 2], "b": [1]}, "x", "t", ax=ax),
            lambda: viz.plot_bytes([1, 2], {"a": [1, 2], "b": [1]}, "x", "t"),  # no empty figure left open
        ):
            with pytest.raises(ValueError, match="series 'b' has 1 values for 2"):
                call()
        assert not ax.lines and plt.get_fignums() == open_before
    finally:
        plt.close(fig)


def test_static_cache_stores_values_not_autograd_history() -> None:
    cache = static()
    k = t(1, 2, 3, 4).requires_grad_()
    k_all, v_all = cache.update(0, k, k * 2)
    for tensor in (cache.keys[0], cache.values[0], k_all, v_all):
        assert not tensor.requires_grad and tensor.grad_fn is None
    assert torch.equal(k_all, k.detach()) and torch.equal(v_all, 2 * k.detach())


def test_naive_cache_keeps_the_callers_first_tensor() -> None:
    # documented, like transformers' DynamicCache: the first update stores k itself, not a copy
    cache, k = NaiveKVCache(1), t(1, 2, 3, 4)
    cache.update(0, k, k.clone())
    k.zero_()
    assert not cache.keys[0].any()


class _ModuleCache(torch.nn.Module):
    """A cache written as an nn.Module: buffers for state, plus a reference to its model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(2, 8))  # 64 bytes
        self.register_buffer("unset", None)
        self.scale = torch.nn.Parameter(torch.ones(100))  # a parameter: not cache memory
        self.lengths = [torch.zeros(4, dtype=torch.int64)]  # 32 bytes in a plain attribute
        self.model = model  # a submodule: its weights and buffers are not cache memory


def test_cache_nbytes_counts_a_module_cache_but_not_its_model() -> None:
    model = torch.nn.Linear(16, 16)
    model.register_buffer("mask", torch.ones(1000))
    cache = _ModuleCache(model)
    assert cache_nbytes(cache) == 64 + 32
    assert cache_nbytes([cache.keys, model]) == 64  # a module inside a container is still skipped
    assert cache_nbytes({"a": t(4)}.values()) == 16  # a view is re-iterable: counted, not refused
