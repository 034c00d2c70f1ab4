"""Exercise `ex1_causal_attention`: attention of a block of new queries that starts at q_start."""

from __future__ import annotations

from typing import Any

import torch

from ..common import CheckFailed, assert_shape, diagnose, matches
from ..delegation import graded
from ..fixtures import attention_variant, generator, randn
from ..properties import PAST_VISIBLE_LENGTHS, assert_dtype, call_pure, large_scores, with_fill_hint

# kvlib's implementation first (its signature is the exercise's), then every kvlib attention that
# computes the same thing for equal head counts.
REFERENCES = (
    "kvlib.attention.causal_attention",
    "kvlib.attention",
    "kvlib.cache.gqa.repeated_attention",
    "kvlib.cache.gqa.grouped_attention",
    "kvlib.cache.gqa.gqa_attention_step",
)

# Max abs error allowed against the float64 truth, per dtype (outputs are weighted means of N(0, 1)
# values, so of order 1). float32 is 1e-4: a float16 or bfloat16 detour (errors ~1e-3) fails it.
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 1.5e-2, torch.bfloat16: 6e-2}

_OMIT = object()  # q_start not passed at all (the default)


def _truth(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, **mistake: Any) -> torch.Tensor:
    """Attention computed in float64 (with one chosen mistake, if any), kept in float64."""
    return attention_variant(q.double(), k.double(), v.double(), start, **mistake)


def _mistakes(q_start: Any, Tq: int, Tk: int, D: int) -> list[tuple[str, dict]]:
    mistakes = [
        ("the mask ignores q_start: query i sits at absolute position q_start + i, so it may attend keys "
         "j <= q_start + i (a plain lower-triangular mask j <= i is only right for a prefill)",
         {"mask": "no_offset"}),
        ("the mask uses Tk - Tq instead of the q_start argument (keys after the query block must stay "
         "masked)",
         {"mask": "end_aligned"}),
        ("the causal mask is on the wrong axis (it lets queries see the future and hides the past); mask "
         "scores[..., i, j] where key j > q_start + i", {"mask": "wrong_axis"}),
        ("the lower-triangular mask is built on the wrong axis (tril of shape [Tk, Tq] transposed); mask "
         "scores[..., i, j] where key j > q_start + i", {"mask": "transposed_tril"}),
        ("no causal mask: queries attend to keys after their own position", {"mask": "none"}),
        ("the mask excludes the diagonal: a query must attend to its own key (mask j > q_start + i)",
         {"mask": "strict"}),
        ("scores are not scaled by 1/sqrt(head_dim)", {"scale": 1.0}),
        ("scores are scaled by 1/head_dim instead of 1/sqrt(head_dim)", {"scale": 1.0 / D}),
        ("softmax is taken over the query axis; it must normalise over the keys (dim=-1)",
         {"softmax_dim": -2}),
        ("masked scores were set to 0 (or multiplied by the mask) instead of -inf, so masked keys still "
         "get weight after softmax", {"fill": 0.0}),
    ]  # fmt: skip
    if q_start == 0 and Tq < Tk:  # reproduces "end_aligned" too, but the cause is more specific
        mistakes.insert(0, (
            "q_start=0 was treated like None (`if not q_start` is also true for 0): test `q_start is None`",
            {"mask": "end_aligned"},
        ))  # fmt: skip
    return mistakes


def _describe(B: int, H: int, Tq: int, Tk: int, D: int, q_start: Any, dtype: torch.dtype) -> str:
    shown = "not passed" if q_start is _OMIT else repr(q_start)
    kind = "" if dtype == torch.float32 else f" in {str(dtype).replace('torch.', '')}"
    return f"causal_attention with q [{B},{H},{Tq},{D}], k/v [{B},{H},{Tk},{D}]{kind}, q_start={shown}"


def _call(fn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: Any, keyword: bool, what: str):
    dtype, Tk = q.dtype, k.shape[-2]
    try:
        if q_start is _OMIT:
            return call_pure(fn, q, k, v, what="causal_attention")
        if keyword:
            return call_pure(fn, q, k, v, q_start=q_start, what="causal_attention")
        return call_pure(fn, q, k, v, q_start, what="causal_attention")
    except CheckFailed as exc:
        text = str(exc)
        hinted = with_fill_hint(exc)
        if dtype in (torch.float16, torch.bfloat16) and hinted is not exc:
            raise CheckFailed(f"{what}: {hinted}") from None
        if "raised" in text and Tk > 16:
            raise CheckFailed(
                f"{what}: {text} (this case has Tk={Tk} keys, longer than any visible test: is a mask "
                "or buffer sized for a maximum length? build the mask from Tq, Tk and q_start at every call)"
            ) from None
        if "raised" in text and q.shape[0] > 1:
            raise CheckFailed(
                f"{what}: {text} (this case has batch {q.shape[0]}: do not assume batch 1)"
            ) from None
        raise


def _attention_case(
    fn: Any,
    B: int,
    H: int,
    Tq: int,
    Tk: int,
    D: int,
    q_start: Any,
    seed: int,
    dtype: torch.dtype = torch.float32,
    magnitude: float | None = None,
    keyword: bool = False,
    earlier: list | None = None,
) -> torch.Tensor:
    """One call checked against the float64 truth; `earlier`: ((Tq, Tk), q_start) of earlier calls."""
    gen = generator(seed)
    if magnitude is None:
        q, k = randn(gen, B, H, Tq, D, dtype=dtype), randn(gen, B, H, Tk, D, dtype=dtype)
    else:
        q = large_scores(B, H, Tq, D, generator=gen, magnitude=magnitude).to(dtype)
        k = large_scores(B, H, Tk, D, generator=gen, magnitude=magnitude).to(dtype)
    v = randn(gen, B, H, Tk, D, dtype=dtype)
    start = Tk - Tq if q_start is _OMIT or q_start is None else q_start
    what = _describe(B, H, Tq, Tk, D, q_start, dtype)
    got = _call(fn, q, k, v, q_start, keyword, what)
    want = _truth(q, k, v, start)
    assert_shape(
        got, tuple(want.shape), f"the output of {what}", "one output vector per query: [B, H, Tq, D]"
    )
    assert_dtype(got, dtype, f"the output of {what}")
    if not bool(torch.isfinite(got).all()):
        if magnitude is not None:
            raise CheckFailed(
                f"{what} returned NaN or inf for large scores (|q.k|/sqrt(D) in the thousands): exp "
                "overflowed. Subtract each row's max score before exp (softmax(x) = softmax(x - max)), as "
                "torch.softmax does"
            )
        raise CheckFailed(
            f"{what} returned NaN: a query row is fully masked; query i must always see its own key at "
            "position q_start + i, the diagonal of the mask (mask j > q_start + i, not j >= ...)"
        )
    atol = TOLERANCE.get(dtype, 1e-4) * (10 if magnitude is not None else 1)
    if earlier is not None:
        earlier.append(((Tq, Tk), start))
    if matches(got, want, atol=atol):
        return got
    if magnitude is not None and magnitude > 100:  # every ordinary case passed before this one
        raise CheckFailed(
            f"{what}: with scores in the hundreds of thousands, masked keys leak into the result: a finite "
            "mask (an additive bias such as -65504 or -1e4, or a fill of that size) is not enough; fill "
            "masked scores with float('-inf') or torch.finfo(scores.dtype).min"
        )
    mistakes = _mistakes(None if q_start is _OMIT else q_start, Tq, Tk, D)
    variants = {message: _truth(q, k, v, start, **kw) for message, kw in mistakes}
    found = diagnose(got, variants, atol=atol)
    if found:
        raise CheckFailed(f"{what}: {found}")
    for shape, previous_start in earlier if earlier is not None else []:
        if (
            shape == (Tq, Tk)
            and previous_start != start
            and matches(got, _truth(q, k, v, previous_start), atol)
        ):
            raise CheckFailed(
                f"{what}: the result uses the mask of an earlier call with the same Tq, Tk but "
                f"q_start={previous_start}: a mask memoised by shape (a dict or module-level buffer "
                "keyed on Tq, Tk) is wrong, the mask depends on q_start too; build it at every call"
            )
    err = (got.double() - want).abs().max().item()
    precision = ""
    if dtype in (torch.float32, torch.float64) and err < 5e-2:
        precision = (
            f"; the error is small but above float32 accuracy ({atol:g}): did the computation go "
            "through float16/bfloat16? compute in the input's dtype"
        )
    if Tk > 64 and not precision:  # the cases with fewer keys all passed before this one
        raise CheckFailed(
            f"{what} is wrong (max abs error {err:.3g}), while every case with fewer keys passed: is "
            "something limited to a fixed length (a window of recent keys, a mask or buffer sized for a "
            "maximum)? Every query attends to all keys 0 .. q_start + i, however many there are"
        )
    raise CheckFailed(
        f"{what} is wrong (max abs error {err:.3g}); check the mask offset, the 1/sqrt(D) scale and that "
        f"softmax runs over the key axis{precision}"
    )


@graded("causal_attention", *REFERENCES)
def causal_attention_visible(fn: Any) -> None:
    _attention_case(fn, 1, 2, 4, 4, 8, 0, seed=1)  # prefill: Tq == Tk
    _attention_case(fn, 1, 2, 1, 5, 8, 4, seed=2)  # one decode step after 4 cached tokens
    _attention_case(fn, 2, 2, 3, 7, 8, 4, seed=3)  # batch 2: a chunk of 3 new tokens after 4 cached ones
    print("visible tests passed")


@graded("causal_attention", *REFERENCES)
def causal_attention_hidden(fn: Any) -> None:
    # first, with shapes no other case uses: one function called with the same shapes and different
    # q_start in sequence (a mask memoised by shape fails), then other shapes
    earlier: list = []
    for seed, (Tq, Tk, q_start) in enumerate(
        [(2, 8, 3), (2, 8, 6), (2, 8, 0), (2, 10, 5), (2, 8, None), (2, 8, 3)]
    ):
        _attention_case(fn, 1, 2, Tq, Tk, 4, q_start, seed=160 + seed, earlier=earlier)
    cases = [
        (2, 3, 3, 7, 8, 4),  # a chunk of 3 new tokens after 4 cached ones
        (1, 2, 2, 9, 4, 3),  # a block in the middle: keys after it (a preallocated tail) stay masked
        (2, 2, 5, 5, 16, 0),  # prefill
        (1, 1, 1, 6, 8, 5),  # decode
        (2, 2, 1, 9, 8, 3),  # one query in the middle of a buffer: a single query still needs its mask
        (1, 2, 4, 10, 8, _OMIT),  # default q_start = Tk - Tq
        (3, 2, 4, 10, 8, None),  # q_start=None passed explicitly, batch 3
        (1, 1, 1, 1, 4, 0),  # a single token
        (2, 4, 6, 12, 32, 2),  # block near the start of a long buffer
        (1, 2, 3, 8, 4, 0),  # q_start=0 but fewer queries than keys: 0 is not None
    ]
    for seed, case in enumerate(cases):
        _attention_case(fn, *case, seed=100 + seed, earlier=earlier)
    _attention_case(fn, 2, 2, 2, 11, 8, 6, seed=120, keyword=True)  # q_start given by keyword
    # lengths past every visible one (a mask sized for a maximum length fails here)
    for seed, Tk in enumerate(PAST_VISIBLE_LENGTHS):
        Tq = 1 + seed % 3
        q_start = _OMIT if seed % 2 else Tk - Tq - seed
        _attention_case(fn, 2 if Tk < 300 else 1, 2, Tq, Tk, 8, q_start, seed=130 + seed)
    # dtype kept, and a fill value that fits: float16/bfloat16 in, the same out
    _attention_case(fn, 2, 2, 3, 9, 16, 4, seed=140, dtype=torch.float16)
    _attention_case(fn, 1, 2, 6, 6, 16, 0, seed=141, dtype=torch.float16)
    _attention_case(fn, 2, 2, 4, 12, 8, 6, seed=142, dtype=torch.bfloat16)
    _attention_case(fn, 1, 2, 3, 7, 8, 2, seed=143, dtype=torch.float64)
    # large scores: a softmax without the max subtraction overflows
    _attention_case(fn, 2, 2, 3, 10, 16, 5, seed=150, magnitude=60.0)
    _attention_case(fn, 1, 2, 4, 4, 16, 0, seed=151, magnitude=60.0)
    # scores in the tens of thousands: an additive mask of -65504 (fp16's minimum) no longer hides keys
    _attention_case(fn, 2, 2, 3, 10, 16, 5, seed=152, magnitude=600.0)
    print("hidden tests passed")
