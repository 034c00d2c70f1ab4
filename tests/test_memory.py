"""kvlib.memory: the KV-size formula, the model table, and measuring what a cache holds."""

from __future__ import annotations

import math
import os
import re

import pytest
import torch

from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.static import StaticKVCache
from kvlib.memory import (
    _BYTES_BY_NAME,
    MODEL_CONFIGS,
    GiB,
    MiB,
    ModelShape,
    bytes_per_element,
    cache_nbytes,
    cuda_memory_delta,
    float_kv_cache_bytes,
    format_bytes,
    kv_cache_bytes,
    measure_allocations,
    model_shape,
    quantized_kv_cache_bytes,
)

pytestmark = pytest.mark.ch02
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_llama2_7b_at_4096_tokens_fp16_is_two_gib():
    assert kv_cache_bytes(32, 32, 128, 4096, 1, torch.float16) == 2 * GiB
    assert MODEL_CONFIGS["Llama-2-7B"].kv_bytes(4096) == 2 * GiB


def test_gqa_model_uses_kv_heads_not_model_width():
    l70 = MODEL_CONFIGS["Llama-2-70B"]
    assert l70.kv_width == 1024 and l70.hidden_size == 8192
    assert l70.kv_bytes(4096) == 80 * 1024 * 4096 * 2 * 2  # 1.25 GiB
    assert l70.kv_bytes(4096) * 8 == kv_cache_bytes(80, 64, 128, 4096, 1, "fp16")


@pytest.mark.parametrize(
    "dtype,size",
    [(torch.float32, 4), (torch.float16, 2), (torch.bfloat16, 2), (torch.int8, 1), ("fp32", 4), ("bf16", 2),
     ("float16", 2), ("torch.float16", 2), ("int8", 1), ("int4", 0.5), ("FP16", 2)],
)  # fmt: skip
def test_bytes_per_element(dtype, size):
    assert bytes_per_element(dtype) == size


# Every dtype name kvlib.memory accepts, with the torch dtype it stands for; packed formats (no torch dtype)
# with their bits per element. A name added to the module must be added here (the first test says so).
TORCH_DTYPE_OF_NAME = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp8": torch.float8_e4m3fn, "float8": torch.float8_e4m3fn,
    "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
    "int8": torch.int8, "uint8": torch.uint8,
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64,
}  # fmt: skip
PACKED_BITS_OF_NAME = {"int4": 4, "int2": 2}


def test_every_dtype_name_is_covered_by_these_tests():
    assert set(_BYTES_BY_NAME) == set(TORCH_DTYPE_OF_NAME) | set(PACKED_BITS_OF_NAME), (
        "kvlib.memory accepts a dtype name these tests do not size-check: add it to TORCH_DTYPE_OF_NAME"
    )


@pytest.mark.parametrize("name", sorted(TORCH_DTYPE_OF_NAME))
def test_every_dtype_name_has_its_torch_element_size(name):
    """Guards against one spelling drifting from the others ("bfloat16" sized 4 while "bf16" stays 2)."""
    dtype = TORCH_DTYPE_OF_NAME[name]
    size = torch.empty((), dtype=dtype).element_size()
    for spelling in (name, name.upper(), f"torch.{name}", f" {name} "):
        assert bytes_per_element(spelling) == size, f"{spelling!r} should be {size} bytes like {dtype}"
    assert bytes_per_element(dtype) == size
    expected = 2 * 2 * 3 * 5 * 7 * size
    assert kv_cache_bytes(2, 3, 5, 7, 1, name) == expected == kv_cache_bytes(2, 3, 5, 7, 1, dtype)


@pytest.mark.parametrize("name", sorted(PACKED_BITS_OF_NAME))
def test_packed_formats_are_their_bits_over_eight_and_totals_round_up(name):
    """int4 is half a byte and int2 a quarter (not half); a total that is a fraction of a byte takes the
    whole last byte (rounding down would under-count the cache)."""
    bits = PACKED_BITS_OF_NAME[name]
    assert bytes_per_element(name) == bits / 8
    for tokens in range(1, 9):  # 2 * tokens elements: int2 leaves half a byte over for odd token counts
        assert kv_cache_bytes(1, 1, 1, tokens, 1, name) == math.ceil(2 * tokens * bits / 8), (name, tokens)
    assert kv_cache_bytes(1, 1, 1, 3, 1, "int2") == 2  # 6 elements * 2 bits = 1.5 bytes -> 2
    assert kv_cache_bytes(1, 1, 1, 1, 1, "int2") == 1  # half a byte still takes one


def test_measure_allocations_peak_counts_frees():
    """Allocating and freeing 1 MiB eight times holds 1 MiB at a time: the peak is one allocation, not the
    8 MiB allocated in total (a replay that ignored the free events would report 8 MiB)."""
    mib = 1024 * 1024

    def churn():
        for _ in range(8):
            x = torch.ones(mib // 4)  # 1 MiB of float32
            del x

    _, stats = measure_allocations(churn)
    assert stats.num_allocs >= 8 and stats.allocated_bytes >= 8 * mib
    assert mib <= stats.peak_bytes < 2 * mib, f"peak {stats.peak_bytes} bytes: frees not subtracted?"


def test_formula_is_linear_in_every_factor():
    base = kv_cache_bytes(3, 5, 7, 11, 13, "fp32")
    assert base == 2 * 3 * 5 * 7 * 11 * 13 * 4
    assert kv_cache_bytes(3, 5, 7, 22, 13, "fp32") == 2 * base
    assert kv_cache_bytes(3, 5, 7, 11, 26, "fp32") == 2 * base
    assert kv_cache_bytes(3, 5, 7, 11, 13, "fp16") * 2 == base
    assert kv_cache_bytes(1, 1, 1, 3, 1, "int4") == 3  # 6 half-bytes, exact


def test_formula_rejects_bad_input():
    with pytest.raises(ValueError, match="seq_len"):
        kv_cache_bytes(1, 1, 1, -1, 1, "fp16")
    with pytest.raises(ValueError, match="unknown dtype"):
        kv_cache_bytes(1, 1, 1, 1, 1, "fp12")
    with pytest.raises(TypeError):
        kv_cache_bytes(1, 1, 1, 1, 1, 16)


def test_model_table_is_consistent():
    for name, m in MODEL_CONFIGS.items():
        assert m.name == name and m.source
        assert m.num_heads % m.num_kv_heads == 0, name
        if name != "Gemma-7B":  # Gemma-7B: 16 heads of 256 = 4096 > hidden 3072
            assert m.num_heads * m.head_dim == m.hidden_size, name
    assert model_shape("Mistral-7B").num_kv_heads == 8
    with pytest.raises(KeyError, match="known"):
        model_shape("Llama-9")


@pytest.mark.parametrize(
    "n, text",
    [
        (512, "512 B"),
        (1023, "1023 B"),  # every unit starts at exactly 1024 of the one below
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (MiB - 1, "1024.00 KiB"),
        (MiB, "1.00 MiB"),
        (GiB - 1, "1024.00 MiB"),
        (2 * GiB, "2.00 GiB"),
        (1024**4, "1.00 TiB"),
        (3 * 1024**5, "3072.00 TiB"),  # no unit above TiB
        (-1536, "-1.50 KiB"),  # a memory delta keeps its sign
        (0, "0 B"),
        (torch.tensor(2048), "2.00 KiB"),  # a 0-d tensor from a measurement
    ],
)
def test_format_bytes(n, text):
    # every unit label and boundary: a mutation run found only GiB and B checked here
    assert format_bytes(n) == text


def test_cache_nbytes_matches_formula_for_naive_and_static_caches():
    naive = NaiveKVCache(3)
    for n in (5, 1, 1):
        for layer in range(3):
            naive.update(layer, torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8))
    assert cache_nbytes(naive) == kv_cache_bytes(3, 4, 8, 7, 2, torch.float32) == naive.nbytes()
    static = StaticKVCache(2, 1, 2, 8, 32, dtype=torch.bfloat16)
    static.update(0, torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8))
    assert cache_nbytes(static) == kv_cache_bytes(2, 2, 8, 32, 1, "bf16")  # the whole reserved buffer


def test_cache_nbytes_counts_each_storage_once_and_whole_buffers():
    k = torch.randn(1, 2, 4, 8)
    assert cache_nbytes([(k, k), (k, k)]) == k.numel() * 4
    buffer = torch.zeros(64)
    assert cache_nbytes({"a": buffer[:5], "b": buffer[10:20]}) == 64 * 4


def test_cache_nbytes_reads_a_transformers_dynamic_cache():
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer in range(2):
        cache.update(torch.randn(1, 3, 6, 4), torch.randn(1, 3, 6, 4), layer)
    cache.update(torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4), 0)
    assert cache_nbytes(cache) == (7 + 6) * 3 * 4 * 4 * 2


def test_measure_allocations_growing_cache_allocates_more_than_static():
    def grow():
        cache = NaiveKVCache(1)
        for _ in range(16):
            cache.update(0, torch.ones(1, 2, 1, 32), torch.ones(1, 2, 1, 32))
        return cache

    def static():
        cache = StaticKVCache(1, 1, 2, 32, 16)
        for _ in range(16):
            cache.update(0, torch.ones(1, 2, 1, 32), torch.ones(1, 2, 1, 32))
        return cache

    _, g = measure_allocations(grow)
    _, s = measure_allocations(static)
    row = 2 * 32 * 4  # bytes of one token's keys in one layer
    # growing: step t allocates a t-token K and V (sum of 1..16 tokens, twice); static: 16 tokens, twice
    assert g.allocated_bytes >= 2 * row * sum(range(1, 17))
    assert s.allocated_bytes < g.allocated_bytes / 3
    assert g.num_allocs > s.num_allocs
    assert "allocations" in str(g)


def test_cuda_helpers_skip_cleanly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by test_cuda_memory_delta")
    assert cuda_memory_delta(lambda: torch.ones(4)) is None
    with pytest.raises(ValueError):
        measure_allocations(lambda: None, device="meta")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_memory_delta():
    out = cuda_memory_delta(lambda: torch.ones(1024, 1024, device="cuda"))
    assert out["allocated"] == 4 * 1024 * 1024 and out["peak"] >= out["allocated"]
    _, stats = measure_allocations(lambda: torch.ones(256, device="cuda"), device="cuda")
    assert stats.num_allocs >= 1 and stats.allocated_bytes >= 1024


# --- what `make mutation` found untested in kvlib.memory -------------------------------------------

SHAPE_FIELDS = ("num_layers", "num_heads", "num_kv_heads", "head_dim", "hidden_size", "max_seq_len")


def hand_made_shape(**changes) -> ModelShape:
    fields = dict(zip(SHAPE_FIELDS, (2, 4, 2, 8, 32, 64))) | changes
    return ModelShape("toy", **fields, params_b=0.001, source="test")


@pytest.mark.parametrize("field", SHAPE_FIELDS)
def test_model_shape_checks_every_size_field_by_name(field):
    assert getattr(hand_made_shape(), field) >= 1  # a valid shape builds (every field is read)
    with pytest.raises(ValueError, match=f"ModelShape.{field}"):
        hand_made_shape(**{field: 0})
    assert getattr(hand_made_shape(**{field: 1}), field) == 1  # 1 is the smallest valid size


def test_model_shape_byte_helpers_pass_the_dtype_on():
    shape = hand_made_shape()  # 2 layers, 2 KV heads of 8
    assert shape.kv_bytes(3, 2, "fp32") == 2 * 2 * 2 * 8 * 3 * 2 * 4
    assert shape.kv_bytes(3, 2) == shape.kv_bytes(3, 2, "fp32") // 2  # fp16 by default
    assert shape.kv_bytes_per_token("int8") == 2 * 2 * 2 * 8
    assert shape.kv_bytes_per_token() == 2 * 2 * 2 * 8 * 2


def test_unknown_model_lists_the_known_names_comma_separated():
    with pytest.raises(KeyError) as info:
        model_shape("Llama-9")
    assert f"known: {', '.join(MODEL_CONFIGS)}" in str(info.value)


def nested_dicts(keys: str) -> dict:
    """{'a': {'b': {...: [tensor]}}}, one level per key, so a path names every step."""
    value: object = [torch.zeros(1)]
    for key in reversed(keys):
        value = {key: value}
    return value


@pytest.mark.parametrize(
    "depth, path",
    [
        (8, "cache['a']['b']['c']['d']['e']['f']['g']['h']"),  # 8 steps are shown whole
        (9, "cache['a']['b']['c']['d']...['g']['h']['i']"),  # from 9 on: the first 4, ..., the last 3
        (12, "cache['a']['b']['c']['d']...['j']['k']['l']"),
    ],
)
def test_too_deep_error_names_the_path_shortened_past_eight_steps(monkeypatch, depth, path):
    import kvlib.memory

    monkeypatch.setattr(kvlib.memory, "MAX_DEPTH", depth)
    with pytest.raises(ValueError) as info:
        cache_nbytes(nested_dicts("abcdefghijklmnop"))
    assert f" at {path} (dict)" in str(info.value)


class FakeCuda:
    """torch.cuda's memory counters, scripted: each read returns the next value, and every call is logged,
    so a test can check what kvlib.memory subtracts from what and in which order it reads."""

    def __init__(self, monkeypatch, allocated, peak, stats=({}, {})):
        self.calls: list[str] = []
        self.allocated, self.stats = list(allocated), list(stats)
        fakes = {
            "is_available": lambda: True,
            "device_count": lambda: 1,
            "synchronize": lambda device=None: self.log("synchronize", device),
            "memory_allocated": lambda device=None: self.log("memory_allocated", device, self.allocated),
            "memory_stats": lambda device=None: self.log("memory_stats", device, self.stats),
            "reset_peak_memory_stats": lambda device=None: self.log("reset_peak", device),
            "max_memory_allocated": lambda device=None: self.log("max_memory_allocated", device, [peak]),
        }
        for name, fake in fakes.items():
            monkeypatch.setattr(torch.cuda, name, fake)

    def log(self, name, device, values=None):
        self.calls.append(f"{name}({device})")
        return values.pop(0) if values else None

    def fn(self):
        self.calls.append("fn")
        return "result"


def test_cuda_memory_delta_subtracts_the_start_read_before_fn(monkeypatch):
    cuda = FakeCuda(monkeypatch, allocated=[1000, 1600], peak=5000)
    assert cuda_memory_delta(cuda.fn, device="cuda:0") == {"allocated": 600, "peak": 4000}
    assert cuda.calls == [
        "synchronize(cuda:0)", "memory_allocated(cuda:0)", "reset_peak(cuda:0)", "fn",
        "synchronize(cuda:0)", "memory_allocated(cuda:0)", "max_memory_allocated(cuda:0)",
    ]  # fmt: skip


def test_measure_allocations_on_cuda_reads_the_allocator_statistics(monkeypatch):
    stats0 = {"allocation.all.allocated": 10, "allocated_bytes.all.allocated": 4096}
    stats1 = {"allocation.all.allocated": 13, "allocated_bytes.all.allocated": 4096 + 3072}
    cuda = FakeCuda(monkeypatch, allocated=[1000], peak=3000, stats=[stats0, stats1])
    result, stats = measure_allocations(cuda.fn, device="cuda:0")
    assert result == "result"
    assert (stats.num_allocs, stats.allocated_bytes, stats.peak_bytes) == (3, 3072, 2000)
    assert stats.device == "cuda:0"
    assert cuda.calls == [
        "synchronize(cuda:0)", "memory_allocated(cuda:0)", "memory_stats(cuda:0)", "reset_peak(cuda:0)", "fn",
        "synchronize(cuda:0)", "memory_stats(cuda:0)", "max_memory_allocated(cuda:0)",
    ]  # fmt: skip


def test_measure_allocations_on_cuda_counts_missing_statistics_as_zero(monkeypatch):
    # a fresh allocator has no 'allocation.all.allocated' key until something is allocated
    stats1 = {"allocation.all.allocated": 2, "allocated_bytes.all.allocated": 512}
    FakeCuda(monkeypatch, allocated=[0], peak=512, stats=[{}, stats1])
    _, stats = measure_allocations(lambda: None, device="cuda")
    assert (stats.num_allocs, stats.allocated_bytes, stats.peak_bytes, stats.device) == (2, 512, 512, "cuda")


def test_measure_allocations_on_cuda_counts_zero_when_the_allocator_never_allocated(monkeypatch):
    FakeCuda(monkeypatch, allocated=[0], peak=0, stats=[{}, {}])  # no key before or after: nothing ran
    _, stats = measure_allocations(lambda: None, device="cuda")
    assert (stats.num_allocs, stats.allocated_bytes, stats.peak_bytes) == (0, 0, 0)


def test_cache_nbytes_sizes_a_cache_built_on_the_meta_device_without_allocating_it():
    # every meta storage sits at address 0: keyed by address alone, two layers would count as one
    cache = StaticKVCache(3, 2, 4, 8, 16, dtype=torch.float16, device="meta")
    assert cache_nbytes(cache) == kv_cache_bytes(3, 4, 8, 16, 2, "fp16")
    k = torch.empty(2, 4, 8, 8, device="meta")
    assert cache_nbytes([k, k[:, :, :3], k[0]]) == k.numel() * 4  # views of one storage count once
    assert cache_nbytes([torch.empty(0), torch.empty(0, 4)]) == 0  # an empty tensor holds nothing


class SlottedCache:
    """A cache written with __slots__ (no __dict__); one slot never set."""

    __slots__ = ("keys", "values", "unset")

    def __init__(self, keys, values):
        self.keys, self.values = keys, values


def test_cache_nbytes_reads_the_slots_of_a_cache_without_a_dict():
    cache = SlottedCache([torch.zeros(2, 8)], [torch.zeros(2, 8, dtype=torch.float16)])
    assert cache_nbytes(cache) == 2 * 8 * 4 + 2 * 8 * 2


def test_too_deep_error_marks_a_step_through_a_set(monkeypatch):
    import kvlib.memory

    monkeypatch.setattr(kvlib.memory, "MAX_DEPTH", 3)
    with pytest.raises(ValueError, match=re.escape(" at cache[0]{...}[1] (tuple)")):
        cache_nbytes([frozenset({("k", ((torch.zeros(1),),))})])


def test_cache_nbytes_counts_two_storages_over_one_buffer_once():
    # torch.frombuffer twice over one bytearray: two storage objects, one block of memory
    buffer = bytearray(64)
    first, second = (torch.frombuffer(buffer, dtype=torch.uint8) for _ in range(2))
    assert first.untyped_storage()._cdata != second.untyped_storage()._cdata
    assert cache_nbytes([first, second]) == 64


def test_measure_allocations_counts_each_allocation_and_the_live_peak_exactly():
    def churn():
        a = torch.empty(1024, dtype=torch.uint8)  # live 1024
        b = torch.empty(2048, dtype=torch.uint8)  # 3072
        del a  # 2048: a free, which the profiler reports outside any op
        c = torch.empty(1, dtype=torch.uint8)  # 2049: one byte is an allocation too
        d = torch.empty(2048, dtype=torch.uint8)  # 4097: the peak comes after the free
        return b, c, d, b.view(-1)  # a view allocates nothing and is no allocation

    result, stats = measure_allocations(churn)
    assert len(result) == 4
    assert (stats.num_allocs, stats.allocated_bytes, stats.peak_bytes, stats.device) == (4, 5121, 4097, "cpu")


def test_formula_defaults_to_one_sequence_in_fp16():
    assert kv_cache_bytes(2, 4, 8, 16) == 2 * 2 * 4 * 8 * 16 * 2


def test_unknown_dtype_name_lists_the_known_names_comma_separated():
    with pytest.raises(ValueError) as info:
        bytes_per_element("fp13")
    assert f"one of: {', '.join(sorted(_BYTES_BY_NAME))}" in str(info.value)


@pytest.mark.parametrize("field", ["num_layers", "num_kv_heads", "head_dim", "seq_len", "batch"])
def test_formula_takes_zero_and_refuses_a_negative_size_for_every_factor(field):
    sizes = dict(num_layers=2, num_kv_heads=4, head_dim=8, seq_len=16, batch=3)
    assert kv_cache_bytes(**(sizes | {field: 0})) == 0  # nothing cached yet is 0 bytes, not an error
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 0, got -1"):
        kv_cache_bytes(**(sizes | {field: -1}))


# --- chapter 04: the quantized and float-storage caches' formulas, by hand -------------------------------


@pytest.mark.ch04
def test_per_token_keys_formula_by_hand():
    # one layer and head, D=32, G=8 (value groups of 8 channels), R=4, S=2, 20 tokens at 4 bits, fp16,
    # asymmetric: q = 20 - 2 - 4 = 14 tokens quantized, keys like values: 14 * 16 code bytes
    # + 14 * (32 / 8) scales * (2 bytes + 1 zero-point); full precision: 2 * 6 * 32 * 2
    per_token = 2 * (14 * 16 + 14 * 4 * 3) + 2 * 6 * 32 * 2
    args = (1, 1, 32, 20, 1, 4, 8, 4, 2, torch.float16, "asymmetric")
    assert quantized_kv_cache_bytes(*args, key_granularity="per_token") == per_token
    # per-channel keys (KIVI): q = (20 - 2 - 4) // 8 * 8 = 8 tokens; key scales: 1 group * 32 channels
    kivi = 8 * 16 + 32 * 3 + 8 * 16 + 8 * 4 * 3 + 2 * 12 * 32 * 2
    assert (
        quantized_kv_cache_bytes(*args)
        == quantized_kv_cache_bytes(*args, key_granularity="per_channel")
        == kivi
    )
    # R=0, no sinks: every token quantized as it arrives; int8 symmetric per token over the whole head
    assert quantized_kv_cache_bytes(6, 2, 32, 1, 1, 8, 32, 0, 0, torch.float32, "symmetric", "per_token") == (
        6 * 2 * 2 * (32 + 4)
    )


@pytest.mark.ch04
def test_float_storage_formula_by_hand():
    assert float_kv_cache_bytes(6, 2, 32, 100, 1, torch.bfloat16) == kv_cache_bytes(6, 2, 32, 100, 1, "bf16")
    assert float_kv_cache_bytes(6, 2, 32, 100, 1, torch.float16) == 2 * 6 * 2 * 32 * 100 * 2
    # fp8: one byte an element, plus a float32 k_scale and v_scale per layer once anything is stored
    assert float_kv_cache_bytes(6, 2, 32, 100, 3, torch.float8_e4m3fn) == 2 * 6 * 2 * 32 * 100 * 3 + 6 * 8
    assert float_kv_cache_bytes(6, 2, 32, 0, 3, torch.float8_e4m3fn) == 0
