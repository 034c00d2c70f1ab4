"""causal_attention and repeat_kv: the attention maths every cache in the course relies on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kvlib.attention import causal_attention, repeat_kv

pytestmark = pytest.mark.model


def _qkv(B=2, H=3, Tq=5, Tk=5, D=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, D, generator=g).to(dtype)
    k = torch.randn(B, H, Tk, D, generator=g).to(dtype)
    v = torch.randn(B, H, Tk, D, generator=g).to(dtype)
    return q, k, v


def test_prefill_matches_sdpa_causal():
    q, k, v = _qkv(Tq=7, Tk=7)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal_attention(q, k, v), expected, atol=1e-6, rtol=1e-5)


def test_decode_rows_equal_rows_of_full_attention():
    """Queries for the last Tq positions (default q_start) equal the last Tq rows of full attention."""
    q, k, v = _qkv(Tq=9, Tk=9)
    full = causal_attention(q, k, v)
    for tq in (1, 3):
        out = causal_attention(q[:, :, -tq:], k, v)
        torch.testing.assert_close(out, full[:, :, -tq:], atol=1e-6, rtol=1e-5)


def test_explicit_q_start_masks_future_keys():
    q, k, v = _qkv(Tq=2, Tk=6)
    out = causal_attention(q, k, v, q_start=1)  # queries at positions 1 and 2
    for i, pos in enumerate((1, 2)):
        scores = (q[:, :, i : i + 1] @ k[:, :, : pos + 1].transpose(-2, -1)) / math.sqrt(q.shape[-1])
        expected = torch.softmax(scores, -1) @ v[:, :, : pos + 1]
        torch.testing.assert_close(out[:, :, i : i + 1], expected, atol=1e-6, rtol=1e-5)
    # changing a key the queries must not see changes nothing
    k2 = k.clone()
    k2[:, :, 4] += 100.0
    torch.testing.assert_close(causal_attention(q, k2, v, q_start=1), out)


def test_low_precision_inputs_keep_dtype_and_accuracy():
    q, k, v = _qkv(Tq=4, Tk=6, dtype=torch.bfloat16)
    out = causal_attention(q, k, v)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 4, 8)
    ref = causal_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_low_precision_output_is_the_rounded_fp32_result(dtype):
    """Scores, softmax and the value matmul run in float32 and only the result is rounded, so each output
    element is within one unit of its precision (eps * |exact|) of the fp32 computation on the same
    inputs. Measured: at most 0.73 eps; casting the softmax weights to fp16/bf16 before `@ v` gives
    6.6 to 22 eps on the same kind of inputs (Tk 6 to 256, 20 seeds), which the 2e-2 test above misses."""
    q, k, v = _qkv(B=2, H=3, Tq=4, Tk=64, D=16, seed=3, dtype=dtype)
    out = causal_attention(q, k, v)
    exact = causal_attention(q.float(), k.float(), v.float())
    err = ((out.float() - exact).abs() / (exact.abs() * torch.finfo(dtype).eps)).max().item()
    assert err <= 1.0, f"{err:.1f} eps from the fp32 result: softmax weights cast to {dtype} before @ v?"


@pytest.mark.parametrize(
    "shapes, q_start, match",
    [
        (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), 3, "q_start"),
        (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), -1, "q_start"),
        (((2, 3, 7, 8), (2, 3, 6, 8), (2, 3, 6, 8)), None, "q_start"),
        (((2, 4, 4, 8), (2, 2, 6, 8), (2, 2, 6, 8)), None, "repeat_kv"),
        (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 5, 8)), None, "same shape"),
        (((3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 8)), None, r"\[B, H, T, D\]"),
    ],
)
def test_bad_inputs_raise_clear_errors(shapes, q_start, match):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        causal_attention(q, k, v, q_start=q_start)


def test_repeat_kv_is_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    out = repeat_kv(x, 4)
    assert out.shape == (2, 12, 5, 4)
    torch.testing.assert_close(out, x.repeat_interleave(4, dim=1))
    for h in range(12):  # query head h reads kv head h // n_rep
        torch.testing.assert_close(out[:, h], x[:, h // 4])
    assert repeat_kv(x, 1) is x
    with pytest.raises(ValueError):
        repeat_kv(x, 0)
    with pytest.raises(ValueError):
        repeat_kv(x[0], 2)
