"""Bad inputs to kvlib.kernels: each raises one line naming the argument, before any kernel or write.

The kernel does not bound-check its loads and Triton's interpreter reads out of bounds without a
word, so a bad block table or length must be stopped by the wrapper. Sizes are tiny (interpreter).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bad_input import Case, assert_clear_error, params

from kvlib.kernels import (
    MODE,
    build_paged_cache,
    choose_num_splits,
    contiguous_as_paged,
    copy_blocks,
    gather_kv,
    merge_splits,
    paged_attention_decode,
    paged_attention_partials,
    paged_attention_reference,
    softmax_rows,
    write_kv,
)
from kvlib.kernels.smoke import triton_smoke_test

pytestmark = pytest.mark.ch07
# no `import triton` above kvlib.kernels: it must set TRITON_INTERPRET before triton.language loads

DEVICE = "cuda" if MODE == "cuda" else "cpu"
LENS = (5, 9)  # blocks of 4: 2 and 3 blocks, the table is (2, 3); pool = 5 blocks + the null block


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 9, 2, 16, generator=g)
    v = torch.randn(2, 9, 2, 16, generator=g)
    lens = torch.tensor(LENS, dtype=torch.int32)
    kc, vc, table = build_paged_cache(k, v, lens, 4, generator=g, fill=0.0)
    q = torch.randn(2, 4, 16, generator=g)
    return [t.to(DEVICE) for t in (q.to(dtype), kc.to(dtype), vc.to(dtype), table, lens)]


Q, KC, VC, TABLE, LENS_T = _inputs()
PART, LSE = torch.zeros(2, 4, 3, 16, device=DEVICE), torch.zeros(2, 4, 3, device=DEVICE)


def with_table(row: int, col: int, value: int) -> torch.Tensor:
    table = TABLE.clone()
    table[row, col] = value
    return table


def lens(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32, device=DEVICE)


def both(name: str, change: dict, raises, mentions) -> list[Case]:
    """The same bad input to the reference and to the Triton wrapper: both must say the same."""
    args = {"q": Q, "k_cache": KC, "v_cache": VC, "block_table": TABLE, "seq_lens": LENS_T, **change}
    return [
        Case(f"reference-{name}", lambda: paged_attention_reference(**args), raises, mentions),
        Case(f"decode-{name}", lambda: paged_attention_decode(**args), raises, mentions),
    ]


def decode(**change):
    args = {"q": Q, "k_cache": KC, "v_cache": VC, "block_table": TABLE, "seq_lens": LENS_T, **change}
    return lambda: paged_attention_decode(**args)


K4 = torch.zeros(2, 8, 1, 4)


def strided(cache: torch.Tensor) -> torch.Tensor:
    """The same values with blocks and slots swapped in memory: no flat (slot, heads, dim) view."""
    return cache.transpose(0, 1).contiguous().transpose(0, 1)


CASES = [
    # shapes
    *both("q-2d", {"q": Q[0]}, ValueError, ("q must be", "(batch, num_heads, head_dim)", "(4, 16)")),
    *both("q-list", {"q": Q.tolist()}, TypeError, ("q must be a torch.Tensor", "list")),
    *both("q-kv-swapped", {"q": KC, "k_cache": Q}, ValueError, ("q must be", "(batch, num_heads, head_dim)")),
    *both("v-shape", {"v_cache": VC[:, :, :1]}, ValueError, ("k_cache and v_cache", "(6, 4, 1, 16)")),
    *both("head-dim", {"q": Q[..., :8]}, ValueError, ("head_dim", "q has 8", "16")),
    *both(
        "kv-heads-3-of-4",
        {"k_cache": KC[:, :, :1].expand(-1, -1, 3, -1), "v_cache": VC[:, :, :1].expand(-1, -1, 3, -1)},
        ValueError,
        ("num_heads (4)", "multiple of num_kv_heads (3)"),
    ),
    *both(
        "kv-heads-0", {"k_cache": KC[:, :, :0], "v_cache": VC[:, :, :0]}, ValueError, ("num_kv_heads", ">= 1")
    ),
    *both("q-heads-0", {"q": Q[:, :0]}, ValueError, ("num_heads", ">= 1")),
    *both(
        "table-1d", {"block_table": TABLE[0]}, ValueError, ("block_table", "(batch=2, max_blocks)", "(3,)")
    ),
    *both("table-rows", {"block_table": TABLE[:1]}, ValueError, ("block_table", "batch=2", "(1, 3)")),
    *both("lens-shape", {"seq_lens": LENS_T[:1]}, ValueError, ("seq_lens", "(batch=2,)", "(1,)")),
    # dtypes
    *both("table-int64", {"block_table": TABLE.long()}, ValueError, ("block_table must be int32", "int64")),
    *both("lens-int64", {"seq_lens": LENS_T.long()}, ValueError, ("seq_lens must be int32", "int64")),
    *both("lens-float", {"seq_lens": LENS_T.float()}, ValueError, ("seq_lens must be int32", "float32")),
    *both(
        "int-qkv",
        {"q": Q.int(), "k_cache": KC.int(), "v_cache": VC.int()},
        ValueError,
        ("float32, float16 or bfloat16", "int32"),
    ),
    *both("q-fp16-cache-fp32", {"q": Q.half()}, ValueError, ("share a dtype", "float16", "float32")),
    # devices
    *both("q-on-meta", {"q": Q.to("meta")}, ValueError, ("one device", "meta")),
    *both("table-on-meta", {"block_table": TABLE.to("meta")}, ValueError, ("one device", "meta")),
    # values: block ids and lengths the wrapper must catch, since the kernel would read garbage
    *both(
        "block-id-past-pool",
        {"block_table": with_table(1, 2, 99)},
        ValueError,
        ("block_table", "outside [0, 6)", "block_table[1, 2] = 99"),
    ),
    *both(
        "block-id-negative",
        {"block_table": with_table(0, 0, -1)},
        ValueError,
        ("block_table", "outside [0, 6)", "= -1"),
    ),
    *both(
        "lens-past-table",
        {"seq_lens": lens(5, 13)},
        ValueError,
        ("seq_lens", "[1, max_blocks * block_size = 12]", "13"),
    ),
    *both("lens-0", {"seq_lens": lens(0, 9)}, ValueError, ("seq_lens", "[1,", "min 0")),
    *both("lens-negative", {"seq_lens": lens(-3, 9)}, ValueError, ("seq_lens", "min -3")),
    # options
    *both("scale-nan", {"scale": float("nan")}, ValueError, ("scale", "finite", "nan")),
    *both("scale-inf", {"scale": float("inf")}, ValueError, ("scale", "finite")),
    *both("scale-str", {"scale": "0.5"}, TypeError, ("scale", "'0.5' (str)")),
    Case("splits-0", decode(num_splits=0), ValueError, ("num_splits", "'auto'", "got 0")),
    Case("splits-bool", decode(num_splits=True), TypeError, ("num_splits", "True (bool)")),
    Case("splits-float", decode(num_splits=2.0), TypeError, ("num_splits", "2.0 (float)")),
    Case("splits-word", decode(num_splits="many"), ValueError, ("num_splits", "'auto'", "'many'")),
    Case(
        "max-seq-len-below-longest",
        decode(num_splits=2, max_seq_len=4),
        ValueError,
        ("max_seq_len=4", "(9 tokens)"),
    ),
    Case("max-seq-len-0", decode(max_seq_len=0), ValueError, ("max_seq_len", ">= 1", "got 0")),
    Case(
        "max-seq-len-float", decode(num_splits=2, max_seq_len=9.5), TypeError, ("max_seq_len", "9.5 (float)")
    ),
    Case("block-n-24", decode(block_n=24), ValueError, ("block_n", "power of two >= 16", "24")),
    Case("block-n-float", decode(block_n=32.0), TypeError, ("block_n", "32.0 (float)")),
    Case("num-warps-0", decode(num_warps=0), ValueError, ("num_warps", ">= 1")),
    # check=False skips only the value checks (one sync); shapes and dtypes are still checked
    Case(
        "no-check-q-2d",
        decode(q=Q[0], check=False),
        ValueError,
        ("q must be", "(batch, num_heads, head_dim)"),
    ),
    Case(
        "no-check-table-int64",
        decode(block_table=TABLE.long(), check=False),
        ValueError,
        ("block_table", "int32"),
    ),
    # gather_kv: a negative id used to index from the end of the pool
    Case("gather-row-past-batch", lambda: gather_kv(KC, VC, TABLE, 3, 5), ValueError, ("row", "[0, 1]", "5")),
    Case(
        "gather-seq-len-past-table",
        lambda: gather_kv(KC, VC, TABLE, 100, 0),
        ValueError,
        ("seq_len", "[1, 12]"),
    ),
    Case("gather-seq-len-0", lambda: gather_kv(KC, VC, TABLE, 0, 0), ValueError, ("seq_len", "got 0")),
    Case(
        "gather-seq-len-float",
        lambda: gather_kv(KC, VC, TABLE, 4.0, 0),
        TypeError,
        ("seq_len", "4.0 (float)"),
    ),
    Case(
        "gather-negative-id",
        lambda: gather_kv(KC, VC, with_table(0, 0, -1), 5, 0),
        ValueError,
        ("block_table[0]", "outside [0, 6)", "-1"),
    ),
    # build_paged_cache / contiguous_as_paged
    Case(
        "build-block-size-0", lambda: build_paged_cache(K4, K4, [3, 8], 0), ValueError, ("block_size", ">= 1")
    ),
    Case(
        "build-block-size-float",
        lambda: build_paged_cache(K4, K4, [3, 8], 2.5),
        TypeError,
        ("block_size", "2.5"),
    ),
    Case(
        "build-lens-past-row",
        lambda: build_paged_cache(K4, K4, torch.tensor([3, 9]), 4),
        ValueError,
        ("seq_lens", "max_len = 8", "max 9"),
    ),
    Case("build-lens-0", lambda: build_paged_cache(K4, K4, [0, 8], 4), ValueError, ("seq_lens", "min 0")),
    Case(
        "build-lens-shape", lambda: build_paged_cache(K4, K4, [3], 4), ValueError, ("seq_lens", "(batch=2,)")
    ),
    Case(
        "build-lens-float",
        lambda: build_paged_cache(K4, K4, torch.tensor([3.5, 8.0]), 4),
        ValueError,
        ("seq_lens", "integers", "float32"),
    ),
    Case(
        "build-num-blocks-float",
        lambda: build_paged_cache(K4, K4, [3, 8], 4, num_blocks=10.5),
        TypeError,
        ("num_blocks", "10.5"),
    ),
    Case(
        "build-num-blocks-small",
        lambda: build_paged_cache(K4, K4, [3, 8], 4, num_blocks=3),
        ValueError,
        ("num_blocks=3", "plus 1 null block"),
    ),
    Case(
        "build-k-list",
        lambda: build_paged_cache([[1.0]], K4, [3, 8], 4),
        TypeError,
        ("k must be a torch.Tensor",),
    ),
    Case(
        "contiguous-lens-0",
        lambda: contiguous_as_paged(K4, K4, torch.tensor([0, 8])),
        ValueError,
        ("seq_lens", "[1, max_len = 8]"),
    ),
    Case(
        "contiguous-v-shape",
        lambda: contiguous_as_paged(K4, K4[:1], torch.tensor([1, 8])),
        ValueError,
        ("k and v", "(1, 8, 1, 4)"),
    ),
    # write_kv / copy_blocks (state: see test_rejected_writes_and_copies_change_nothing)
    Case(
        "write-float-slots",
        lambda: write_kv(KC.clone(), VC.clone(), torch.tensor([1.7]), KC[0, :1], KC[0, :1]),
        ValueError,
        ("slots", "integer tensor", "float32"),
    ),
    Case(
        "write-duplicate-slots",
        lambda: write_kv(KC.clone(), VC.clone(), torch.tensor([1, 1]), KC[0, :2], KC[0, :2]),
        ValueError,
        ("slots", "distinct", "[1, 1]"),
    ),
    Case(
        "write-slot-past-pool",
        lambda: write_kv(KC.clone(), VC.clone(), torch.tensor([24]), KC[0, :1], KC[0, :1]),
        ValueError,
        ("slots", "[0, 24)", "24"),
    ),
    Case(
        "write-int-k",
        lambda: write_kv(KC.clone(), VC.clone(), torch.tensor([1]), KC[0, :1].long(), KC[0, :1]),
        ValueError,
        ("k, v", "floating point", "int64"),
    ),
    Case(
        "write-k-heads",
        lambda: write_kv(KC.clone(), VC.clone(), torch.tensor([1]), KC[0, :1, :1], KC[0, :1, :1]),
        ValueError,
        ("k, v", "(T, 2, 16)"),
    ),
    Case(
        "write-k-on-meta",
        lambda: write_kv(
            KC.clone(), VC.clone(), torch.tensor([1]), KC[0, :1].to("meta"), KC[0, :1].to("meta")
        ),
        ValueError,
        ("k, v", "device", "meta"),
    ),
    Case(
        "write-v-cache-shape",
        lambda: write_kv(KC.clone(), VC[:, :2].clone(), torch.tensor([1]), KC[0, :1], KC[0, :1]),
        ValueError,
        ("k_cache and v_cache",),
    ),
    Case(
        "copy-negative",
        lambda: copy_blocks(KC.clone(), VC.clone(), [(-1, 2)]),
        ValueError,
        ("copies[0][0]", "[0, 5]", "-1"),
    ),
    Case(
        "copy-past-pool",
        lambda: copy_blocks(KC.clone(), VC.clone(), [(1, 2), (1, 99)]),
        ValueError,
        ("copies[1][1]", "99"),
    ),
    Case(
        "copy-float",
        lambda: copy_blocks(KC.clone(), VC.clone(), [(1.5, 2)]),
        TypeError,
        ("copies[0][0]", "1.5"),
    ),
    Case("copy-not-pair", lambda: copy_blocks(KC.clone(), VC.clone(), [3]), TypeError, ("copies[0]", "pair")),
    Case(
        "copy-v-cache-shape",
        lambda: copy_blocks(KC.clone(), VC[:, :2].clone(), [(1, 2)]),
        ValueError,
        ("k_cache and v_cache",),
    ),
    Case(
        "build-lens-float-list",
        lambda: build_paged_cache(K4, K4, [5, 3.7], 4),
        TypeError,
        ("seq_lens[1]", "integer", "3.7"),
    ),
    Case(
        "build-lens-float-numpy",
        lambda: build_paged_cache(K4, K4, np.array([5.0, 3.7]), 4),
        TypeError,
        ("seq_lens[0]", "integer", "5.0"),
    ),
    Case(
        "build-lens-int",
        lambda: build_paged_cache(K4, K4, 5, 4),
        TypeError,
        ("seq_lens", "(batch=2,)", "5 (int)"),
    ),
    Case("build-lens-str", lambda: build_paged_cache(K4, K4, "53", 4), TypeError, ("seq_lens", "'53' (str)")),
    Case(
        "build-fill-none",
        lambda: build_paged_cache(K4, K4, [5, 3], 4, fill=None),
        TypeError,
        ("fill", "None"),
    ),
    Case(
        "build-fill-str",
        lambda: build_paged_cache(K4, K4, [5, 3], 4, fill="nan"),
        TypeError,
        ("fill", "'nan' (str)"),
    ),
    Case(
        "build-int-k",
        lambda: build_paged_cache(K4.long(), K4.long(), [5, 3], 4),
        ValueError,
        ("k and v", "floating point", "int64"),
    ),
    Case(
        "build-kv-dtypes-differ",
        lambda: build_paged_cache(K4, K4.half(), [5, 3], 4),
        ValueError,
        ("k and v", "dtype", "float16"),
    ),
    Case(
        "build-generator-int",
        lambda: build_paged_cache(K4, K4, [5, 3], 4, generator=0),
        TypeError,
        ("generator", "torch.Generator", "0 (int)"),
    ),
    Case(
        "build-shuffle-str",
        lambda: build_paged_cache(K4, K4, [5, 3], 4, shuffle="no"),
        TypeError,
        ("shuffle", "True or False", "'no'"),
    ),
    Case(
        "write-noncontiguous-v-cache",
        lambda: write_kv(KC.clone(), strided(VC), torch.tensor([1]), KC[0, :1], KC[0, :1]),
        ValueError,
        ("v_cache", "contiguous"),
    ),
    Case(
        "write-cache-dtypes-differ",
        lambda: write_kv(KC.clone(), VC.half(), torch.tensor([1]), KC[0, :1], KC[0, :1]),
        ValueError,
        ("k_cache and v_cache", "dtype", "float16"),
    ),
    Case(
        "copy-cache-dtypes-differ",
        lambda: copy_blocks(KC.clone(), VC.half(), [(1, 2)]),
        ValueError,
        ("k_cache and v_cache", "dtype", "float16"),
    ),
    # choose_num_splits / smoke test
    Case("splits-device-gpu", lambda: choose_num_splits(1, 1, 10, "gpu"), ValueError, ("device", "'gpu'")),
    Case("splits-device-int-list", lambda: choose_num_splits(1, 1, 10, [0]), ValueError, ("device", "[0]")),
    *(
        []
        if torch.cuda.is_available()
        else [
            Case(
                "splits-cuda-on-cpu-build",
                lambda: choose_num_splits(1, 1, 10, "cuda"),
                ValueError,
                ("device", "CUDA is not available"),
            )
        ]
    ),
    Case(
        "splits-sms-0", lambda: choose_num_splits(1, 1, 10, "cpu", num_sms=0), ValueError, ("num_sms", ">= 1")
    ),
    Case("splits-batch-0", lambda: choose_num_splits(0, 2, 100, "cpu"), ValueError, ("batch", ">= 1")),
    Case(
        "splits-max-len-float", lambda: choose_num_splits(2, 2, 1.5, "cpu"), TypeError, ("max_seq_len", "1.5")
    ),
    Case("smoke-n-0", lambda: triton_smoke_test(0), ValueError, ("n must be", ">= 1", "got 0")),
    Case("smoke-n-negative", lambda: triton_smoke_test(-5), ValueError, ("n must be", "-5")),
    Case("smoke-n-float", lambda: triton_smoke_test(2.5), TypeError, ("n must be", "2.5 (float)")),
    Case("smoke-alpha-nan", lambda: triton_smoke_test(10, float("nan")), ValueError, ("alpha", "finite")),
    Case("smoke-alpha-str", lambda: triton_smoke_test(10, "3"), TypeError, ("alpha", "'3' (str)")),
    # split-K's passes and the row softmax (chapter 07's references)
    Case(
        "partials-splits-auto",
        lambda: paged_attention_partials(Q, KC, VC, TABLE, LENS_T, "auto"),
        ValueError,
        ("num_splits", "positive int", "'auto'"),
    ),
    Case(
        "partials-splits-0",
        lambda: paged_attention_partials(Q, KC, VC, TABLE, LENS_T, 0),
        ValueError,
        ("num_splits", ">= 1"),
    ),
    Case(
        "merge-3d",
        lambda: merge_splits(PART[0], LSE),
        ValueError,
        ("partials", "(batch, num_heads, num_splits, head_dim)"),
    ),
    Case(
        "merge-lse-shape",
        lambda: merge_splits(PART, LSE[..., :1]),
        ValueError,
        ("lse must be", "(2, 4, 3)", "(2, 4, 1)"),
    ),
    Case(
        "merge-fp16",
        lambda: merge_splits(PART.half(), LSE),
        ValueError,
        ("partials must be float32", "float16"),
    ),
    Case(
        "merge-list",
        lambda: merge_splits(PART.tolist(), LSE),
        TypeError,
        ("partials must be a torch.Tensor", "list"),
    ),
    Case(
        "merge-dtype-int",
        lambda: merge_splits(PART, LSE, dtype=torch.int32),
        ValueError,
        ("dtype", "floating"),
    ),
    Case(
        "softmax-1d",
        lambda: softmax_rows(Q[0, 0]),
        ValueError,
        ("x must be", "(rows, cols)", "2 dims", "[16]"),
    ),
    Case("softmax-int", lambda: softmax_rows(TABLE), ValueError, ("x must be float32", "int32")),
    Case("softmax-no-cols", lambda: softmax_rows(Q[0, :, :0]), ValueError, ("at least one", "(4, 0)")),
    Case("softmax-transposed", lambda: softmax_rows(Q[0].t()), ValueError, ("contiguous", "stride 1")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_clear_error(case: Case):
    assert_clear_error(case)


def test_rejected_writes_and_copies_change_nothing():
    """Every check runs before the first write: a rejected call leaves both caches as they were."""
    k_cache, v_cache = KC.clone(), VC.clone()
    before = (k_cache.clone(), v_cache.clone())
    bad_calls = [
        lambda: write_kv(k_cache, v_cache, torch.tensor([1, 30]), KC[0, :2], KC[0, :2]),  # second slot bad
        lambda: write_kv(k_cache, v_cache, torch.tensor([1, 1]), KC[0, :2], KC[0, :2]),
        lambda: copy_blocks(k_cache, v_cache, [(1, 2), (3, -1)]),  # first pair fine, second not
        lambda: copy_blocks(k_cache, v_cache, [(1, 2), (3, 4.0)]),
        # v_cache cannot take the flat slot view: k_cache used to be written before that failed
        lambda: write_kv(k_cache, strided(v_cache), torch.tensor([1]), KC[0, :1] + 1, KC[0, :1] + 1),
        lambda: write_kv(k_cache, v_cache.half(), torch.tensor([1]), KC[0, :1] + 1, KC[0, :1] + 1),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
        torch.testing.assert_close(k_cache, before[0], equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(v_cache, before[1], equal_nan=True, rtol=0, atol=0)


def test_rejected_decode_leaves_inputs_untouched():
    table, lens_t = with_table(1, 2, 99), LENS_T.clone()
    snapshot = [t.clone() for t in (Q, KC, VC, table, lens_t)]
    with pytest.raises(ValueError, match="block_table"):
        paged_attention_decode(Q, KC, VC, table, lens_t)
    for now, then in zip((Q, KC, VC, table, lens_t), snapshot):
        assert torch.equal(now, then)


def test_unused_table_entries_may_hold_anything():
    """Only the blocks a sequence uses are checked: entries past its end are padding (vLLM uses -1)."""
    table = with_table(0, 2, -1)  # sequence 0 (5 tokens, blocks of 4) uses entries 0 and 1 only
    ref = paged_attention_reference(Q, KC, VC, table, LENS_T)
    torch.testing.assert_close(paged_attention_decode(Q, KC, VC, table, LENS_T), ref, rtol=2e-5, atol=2e-5)


def test_correct_results_for_edge_inputs_that_are_not_mistakes():
    ref = paged_attention_reference(Q, KC, VC, TABLE, LENS_T)
    # NumPy integers where ints are accepted
    out = paged_attention_decode(Q, KC, VC, TABLE, LENS_T, num_splits=np.int64(2), max_seq_len=np.int32(9))
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    # an empty batch is a valid (empty) answer, not an error
    empty = paged_attention_decode(Q[:0], KC, VC, TABLE[:0], LENS_T[:0])
    assert empty.shape == (0, 4, 16) and empty.dtype == Q.dtype
    assert paged_attention_reference(Q[:0], KC, VC, TABLE[:0], LENS_T[:0]).shape == (0, 4, 16)
    # choose_num_splits takes a device name too; off CUDA it is always 1
    assert choose_num_splits(2, 2, 100, "cpu") == 1
    k, v = gather_kv(KC, VC, TABLE, np.int64(5), np.int64(0))
    assert k.shape == v.shape == (5, 2, 16)
    assert choose_num_splits(2, 2, 100, torch.device("cpu")) == 1
    # a cache that is not contiguous but still has a flat slot view (heads and dims swapped in
    # memory) is written in place, as before
    v_cache = VC.clone().transpose(2, 3).contiguous().transpose(2, 3)
    write_kv(KC.clone(), v_cache, torch.tensor([5]), KC[0, :1] + 3, KC[0, :1] + 3)
    torch.testing.assert_close(v_cache[1, 1], KC[0, 0] + 3)


@pytest.mark.parametrize(
    "lens_given", [[5, 3], (5, 3), np.array([5, 3]), [np.int64(5), np.int32(3)], torch.tensor([5, 3])]
)
@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -1, np.float32(0.5)])
def test_build_paged_cache_takes_every_integer_length_form_and_any_real_fill(lens_given, fill):
    """Integer lengths in any container and any real fill (NaN, the default, on purpose) still build."""
    g = torch.Generator().manual_seed(0)
    kc, vc, table = build_paged_cache(K4 + 1, K4 + 2, lens_given, 4, generator=g, fill=fill)
    ref_kc, _, ref_table = build_paged_cache(
        K4 + 1, K4 + 2, [5, 3], 4, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(table, ref_table) and table.tolist() != [[0, 0], [0, 0]]
    torch.testing.assert_close(kc[kc == 1], ref_kc[ref_kc == 1])  # the written slots, same places
    assert (kc == 1).sum() == (vc == 2).sum() == 8 * 4  # 8 tokens of head_dim 4
    filled = kc[kc != 1]
    assert filled.isnan().all() if fill != fill else (filled == float(fill)).all()


def _identity(x):
    return x


@pytest.mark.skipif(MODE != "interpreter", reason="only the CPU interpreter depends on the import order")
def test_triton_imported_before_the_interpreter_is_named(monkeypatch):
    """If triton.language was loaded before TRITON_INTERPRET=1 (torch._dynamo imports triton), its
    helpers are compiled-mode functions and the launch failed deep inside Triton; now it says why."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    monkeypatch.setattr(tl, "zeros", JITFunction(_identity))
    case = Case("stale", decode(), RuntimeError, ("TRITON_INTERPRET=1", "imported", "kvlib.kernels first"))
    assert_clear_error(case)
