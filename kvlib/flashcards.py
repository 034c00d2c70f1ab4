"""Flash cards for interview preparation (chapter 09): a question bank on chapters 01-08 and a deck.

Every card names its chapter and topic, asks one question and carries a one-line explanation. A
*numeric* card's answer is computed from kvlib when it is asked for (the model shapes of
`kvlib.memory.MODEL_CONFIGS` with `kv_cache_bytes`, the paging and serving formulas, ...), never typed
in, so the bank cannot drift from the library the chapters teach; an answer within the card's relative
tolerance counts as right. A *written* card has a model answer in our own words, revealed on demand;
the learner then marks themselves right or wrong.

`FlashCards` is the deck: a seeded shuffle drawn without repeats until every card has come up,
`answer(value)` for numeric cards, `reveal()` for any card, `mark(correct)` for written ones, and a
score kept per deck (each card scores once). Displayed in a notebook it is an ipywidgets front; where
widgets do not render, its text says how to use the same deck from code.
"""

from __future__ import annotations

import html
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from kvlib.validate import describe, require_bool, require_int, require_number

__all__ = ["Card", "FlashCards", "Result", "question_bank"]

CHAPTERS = range(1, 9)  # the chapters the bank covers: 01 .. 08


@dataclass(frozen=True)
class Card:
    """One question. Numeric: `compute` returns the answer (from kvlib) in `unit`, right within
    `rel_tol`. Written: `model_answer` is revealed and the learner marks themselves."""

    key: str
    chapter: int
    topic: str
    question: str
    explanation: str
    compute: Callable[[], float] | None = None
    unit: str = ""
    rel_tol: float = 0.0
    model_answer: str = ""

    def __post_init__(self) -> None:
        require_int("Card.chapter", self.chapter, minimum=CHAPTERS.start, maximum=CHAPTERS.stop - 1)
        for name in ("key", "topic", "question", "explanation"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(
                    f"Card.{name} must be a non-empty string, got {describe(getattr(self, name))}"
                )
        if "\n" in self.explanation:
            raise ValueError(f"card {self.key!r}: the explanation is one line, got {self.explanation!r}")
        if (self.compute is None) == (not self.model_answer):
            raise ValueError(
                f"card {self.key!r} needs exactly one answer: compute (numeric) or model_answer (written)"
            )
        if self.compute is not None:
            if not callable(self.compute):
                raise TypeError(f"card {self.key!r}: compute must be callable, got {describe(self.compute)}")
            if not self.unit:
                raise ValueError(f"card {self.key!r}: a numeric card names its unit")
            require_number(f"card {self.key!r}: rel_tol", self.rel_tol, maximum=0.5)

    @property
    def numeric(self) -> bool:
        return self.compute is not None

    def expected(self) -> float:
        """The numeric answer, computed from kvlib now (ValueError for a written card)."""
        if self.compute is None:
            raise ValueError(f"card {self.key!r} is a written card: it has a model answer, not a number")
        return float(self.compute())

    def answer_text(self) -> str:
        """The answer as shown on reveal: the number with its unit ('2 GiB', '8x', '15 (position)'), or
        the model answer."""
        if not self.numeric:
            return self.model_answer
        number = format_number(self.expected())
        if self.unit == "x":
            return f"{number}x"
        return f"{number} {self.unit}" if self.unit in _SYMBOL_UNITS else f"{number} ({self.unit})"


# Units written after a number as they are; any other unit names what the number counts, in brackets.
_SYMBOL_UNITS = frozenset({"GiB", "GB", "MiB", "KiB", "%", "ms", "s", "bits", "FLOP/byte"})


def format_number(value: float) -> str:
    """2.0 -> '2', 131328.0 -> '131,328', 0.0099999 -> '0.01', 56.888 -> '56.89'."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


# --------------------------------------------------------------------------------------------
# The bank
# --------------------------------------------------------------------------------------------


def _numeric(
    key: str,
    chapter: int,
    topic: str,
    question: str,
    compute: Callable[[], float],
    unit: str,
    explanation: str,
    rel_tol: float = 0.01,
) -> Card:
    return Card(key, chapter, topic, f"{question} [{unit}]", explanation, compute, unit, rel_tol)


def _written(key: str, chapter: int, topic: str, question: str, model_answer: str, explanation: str) -> Card:
    return Card(key, chapter, topic, question, explanation, model_answer=" ".join(model_answer.split()))


def _chapter_01() -> list[Card]:
    from kvlib.generate import new_token_positions

    prompt, k, n = 12, 4, 512
    return [
        _numeric(
            "ch01-decode-position",
            1,
            "prefill vs decode",
            f"A {prompt}-token prompt is prefilled at positions 0..{prompt - 1}; the token picked from its "
            f"last logits is the first new token. At which position is the {k}th new token fed to the model?",
            lambda: int(new_token_positions(prompt, k)[-1]),
            "position",
            "The k-th new token sits at position P + k - 1; an off-by-one rotates its key by the wrong RoPE "
            "angle and nothing crashes.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch01-recomputed-rows",
            1,
            "why cache",
            "Without a cache every step runs the model on the whole sequence. Running it on lengths 1, 2, "
            f"..., {n}, how many key rows does one layer compute in all? (A cache computes {n}.)",
            lambda: sum(range(1, n + 1)),
            "rows",
            "1 + 2 + ... + n = n(n+1)/2 rows, quadratic in n; a cache computes each row once.",
        ),
        _written(
            "ch01-why-reuse",
            1,
            "why cache",
            "Why can a decoder reuse the keys and values of earlier tokens instead of recomputing them?",
            """Attention is causal: a token only looks at itself and earlier tokens, so its hidden states in
            every layer, and with them its keys and values, never change when later tokens arrive. Computing
            them once and keeping them gives exactly what recomputing would.""",
            "Causality makes old keys and values immutable: the cache is exact, not an approximation.",
        ),
        _written(
            "ch01-mask-offset",
            1,
            "prefill vs decode",
            "Tq new queries attend over Tk cached keys. Why is torch.tril(torch.ones(Tq, Tk)) the wrong "
            "causal mask, and what is right?",
            """Query i is the token at absolute position q_start + i (usually q_start = Tk - Tq), so it may
            see keys j <= q_start + i. tril lines the mask up at the top-left, as if the queries started at
            position 0: right for a prefill (Tq = Tk), silently wrong afterwards, where query 0 would see
            only key 0.""",
            "Offset the causal mask by the number of tokens before the new queries.",
        ),
        _written(
            "ch01-prefill-decode",
            1,
            "prefill vs decode",
            "What differs between prefill and decode, and why do servers report time to first token and "
            "time per output token separately?",
            """Prefill runs the whole prompt in one call: matrix-matrix products that keep the hardware busy;
            its time (plus queueing) is the time to first token. Decode runs one token per sequence per call:
            matrix-vector products that read every weight and the whole cache for little arithmetic, so it is
            bound by memory bandwidth; its step time is the time per output token. Different bottlenecks, so
            one number would hide one of them.""",
            "Prefill is compute-bound and sets TTFT; decode is bandwidth-bound and sets TPOT.",
        ),
        _written(
            "ch01-prove-exact",
            1,
            "testing a cache",
            "How do you test that a KV cache computes exactly what the model computes without it?",
            """Generate greedily from the same prompt with and without the cache and compare, at every step,
            the next-token logits to float tolerance and the chosen tokens exactly. Tokens alone are not
            enough: a broken cache can keep picking the same tokens while its logits drift.""",
            "Compare logits at every step, not only the tokens.",
        ),
    ]


def _chapter_02() -> list[Card]:
    from kvlib.memory import MODEL_CONFIGS, GiB, kv_cache_bytes

    l7, l70, l3 = MODEL_CONFIGS["Llama-2-7B"], MODEL_CONFIGS["Llama-2-70B"], MODEL_CONFIGS["Llama-3-8B"]
    users, prompt, requests, length, budget_gib = 1000, 1000, 100, 2048, 80

    def shape(s: Any) -> str:
        return f"{s.name} ({s.num_layers} layers, {s.num_kv_heads} KV heads of {s.head_dim})"

    return [
        _numeric(
            "ch02-llama2-7b-4096",
            2,
            "KV formula",
            f"KV cache of {shape(l7)} for one sequence of 4096 tokens in fp16?",
            lambda: l7.kv_bytes(4096, 1, "fp16") / GiB,
            "GiB",
            "2 (K and V) x 32 layers x 32 heads x 128 x 4096 tokens x 2 bytes = 2 GiB.",
        ),
        _numeric(
            "ch02-llama2-70b-if-mha",
            2,
            "KV formula",
            f"{l70.name} has {l70.num_layers} layers and {l70.num_heads} heads of {l70.head_dim}. Its KV "
            "cache for 4096 tokens in fp16 if every head had its own keys and values (no GQA)?",
            lambda: kv_cache_bytes(l70.num_layers, l70.num_heads, l70.head_dim, 4096, 1, "fp16") / GiB,
            "GiB",
            "64 KV heads instead of 8: eight times the real cache.",
        ),
        _numeric(
            "ch02-llama2-70b-gqa",
            2,
            "KV formula",
            f"KV cache of the real {shape(l70)} for 4096 tokens in fp16?",
            lambda: l70.kv_bytes(4096, 1, "fp16") / GiB,
            "GiB",
            "Ten times the parameters of Llama-2-7B, yet less cache per token: only 8 KV heads.",
        ),
        _numeric(
            "ch02-server-100-requests",
            2,
            "KV formula",
            f"A server holds {requests} requests of {length} tokens each on {shape(l70)} in fp16. Total KV "
            "cache?",
            lambda: l70.kv_bytes(length, requests, "fp16") / GiB,
            "GiB",
            "Linear in batch and length: 100 x 2048 tokens x 320 KiB per token.",
        ),
        _numeric(
            "ch02-gb-claim",
            2,
            "units",
            "A table claims 'Llama-2-7B, 4096 tokens, fp16: 1 GB' of KV cache. What is the true size in GB "
            "(10^9 bytes)?",
            lambda: l7.kv_bytes(4096, 1, "fp16") / 1e9,
            "GB",
            "2 GiB = 2.147 GB: the claim dropped the factor 2 for keys and values.",
        ),
        _numeric(
            "ch02-unshared-system-prompt",
            2,
            "KV formula",
            f"{users} users each send the same {prompt}-token system prompt to {shape(l7)}, fp16, and every "
            "request stores its own copy. KV cache of the prompts?",
            lambda: l7.kv_bytes(prompt, users, "fp16") / GiB,
            "GiB",
            "512 KiB per token x 10^6 tokens; prefix caching (chapter 06) stores it once.",
        ),
        _numeric(
            "ch02-sequences-that-fit",
            2,
            "capacity",
            f"How many sequences of 4096 tokens of {shape(l3)} in fp16 fit in {budget_gib} GiB of KV-cache "
            "memory (nothing else counted)?",
            lambda: budget_gib * GiB // l3.kv_bytes(4096, 1, "fp16"),
            "sequences",
            "128 KiB per token with 8 KV heads: 0.5 GiB per sequence, so 160 of them.",
            rel_tol=0.0,
        ),
        _written(
            "ch02-classic-mistakes",
            2,
            "KV formula",
            "Name the classic ways to get a KV-cache size wrong.",
            """Dropping the factor 2 (keys and values); using hidden_size where a GQA model caches only
            num_kv_heads x head_dim; the wrong bytes per element (fp32's 4 for an fp16 cache, or bits for
            bytes); and reading GB (10^9 bytes) for GiB (2^30).""",
            "Check the 2, the KV width, the bytes per element and the unit.",
        ),
        _written(
            "ch02-linear",
            2,
            "KV formula",
            "Someone says KV-cache memory grows quadratically with the sequence length. True?",
            """No: bytes = 2 x L x H_kv x d x T x B x bytes per element is linear in T. What is quadratic is
            the attention scores of one forward pass over n tokens (n x n), and the work of generating
            without a cache.""",
            "Memory is linear in tokens; attention compute over a full sequence is quadratic.",
        ),
        _written(
            "ch02-preallocate",
            2,
            "static cache",
            "Why do production engines preallocate the KV cache instead of growing it with torch.cat?",
            """torch.cat allocates a tensor one token longer and copies everything at every step: O(t) bytes
            at step t, O(n^2) per generation, and briefly two copies. A preallocated buffer writes each new
            token in place, and its fixed shapes and addresses are what CUDA graphs need. Its price is memory
            reserved for tokens that may never come, which paging removes.""",
            "Growing copies quadratically; preallocating reserves memory, which paging fixes.",
        ),
    ]


def _chapter_03() -> list[Card]:
    from kvlib.cache.gqa import config_kv_bytes_per_token, kv_saving_factor
    from kvlib.cache.mla import DEEPSEEK_V2_MLA as V2
    from kvlib.cache.mla import mla_kv_bytes_per_token
    from kvlib.memory import MODEL_CONFIGS, kv_cache_bytes

    l70, l3, qwen = MODEL_CONFIGS["Llama-2-70B"], MODEL_CONFIGS["Llama-3-8B"], MODEL_CONFIGS["Qwen2-7B"]
    head = 13
    return [
        _numeric(
            "ch03-saving-factor",
            3,
            "GQA",
            f"{l70.name} has {l70.num_heads} query heads and {l70.num_kv_heads} KV heads. By what factor is "
            "its KV cache smaller than that of its MHA twin (same layers, heads, head_dim and dtype)?",
            lambda: kv_saving_factor(l70),
            "x",
            "num_heads / num_kv_heads: layers, head_dim and dtype cancel.",
        ),
        _numeric(
            "ch03-qwen2-per-token",
            3,
            "GQA",
            f"{qwen.name}: {qwen.num_layers} layers, {qwen.num_heads} query heads, {qwen.num_kv_heads} KV "
            f"heads of {qwen.head_dim}, hidden size {qwen.hidden_size}. Bytes one token adds to an fp16 "
            "cache?",
            lambda: config_kv_bytes_per_token(qwen, "fp16") / 1024,
            "KiB",
            "2 x 28 x 4 x 128 x 2 bytes: the KV width is 4 x 128, not the hidden size 3584.",
        ),
        _numeric(
            "ch03-which-kv-head",
            3,
            "GQA",
            f"{l3.name} has {l3.num_heads} query heads and {l3.num_kv_heads} KV heads. Which KV head does "
            f"query head {head} read (counting from 0)?",
            lambda: head // (l3.num_heads // l3.num_kv_heads),
            "KV head index",
            "Query head h reads KV head h // G with G = H / KV = 4 consecutive query heads per group.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch03-mla-per-token",
            3,
            "MLA",
            f"DeepSeek-V2's MLA caches a latent of {V2.kv_latent_dim} plus a RoPE key of {V2.rope_dim} per "
            f"token and layer, {V2.num_layers} layers. Bytes per token in fp16?",
            lambda: mla_kv_bytes_per_token(V2.num_layers, V2.kv_latent_dim, V2.rope_dim, "fp16") / 1024,
            "KiB",
            "60 x (512 + 64) x 2 bytes: one latent replaces both keys and values, so no factor 2.",
        ),
        _numeric(
            "ch03-mla-vs-mha",
            3,
            "MLA",
            f"How many times larger is the fp16 cache of DeepSeek-V2's MHA twin ({V2.num_heads} heads of "
            f"{V2.head_dim} per layer) than its MLA cache ({V2.kv_latent_dim} + {V2.rope_dim} per layer)?",
            lambda: (
                kv_cache_bytes(V2.num_layers, V2.num_heads, V2.head_dim, 1, 1, "fp16")
                / mla_kv_bytes_per_token(V2.num_layers, V2.kv_latent_dim, V2.rope_dim, "fp16")
            ),
            "x",
            "2 x 128 x 128 = 32768 numbers against 576 per token and layer.",
            rel_tol=0.02,
        ),
        _written(
            "ch03-repeat-kv-order",
            3,
            "GQA",
            "repeat_kv with G = 2 must give k0, k0, k1, k1. What does x.repeat(1, G, 1, 1) give, and why "
            "does it matter?",
            """It gives k0, k1, k0, k1, so query head 1 reads KV head 1 instead of 0 and the model is silently
            wrong with every shape right. Query head h reads KV head h // G, so copies of one head must be
            adjacent: expand a new axis after the head axis, then reshape.""",
            "Query head h reads KV head h // G: copies of a KV head sit next to each other.",
        ),
        _written(
            "ch03-cache-before-repeat",
            3,
            "GQA",
            "Should a GQA model cache its keys before or after repeat_kv, and what does calling repeat_kv "
            "after the cache cost at decode time?",
            """Before: the cache must hold only the KV heads, which is the whole memory saving. Repeating them
            after the cache keeps that saving but copies the KV heads out to every query head at each step,
            which throws the bandwidth saving away. Fused kernels (FlashAttention, SDPA with enable_gqa, a GQA
            paged kernel) read each KV head in place for its whole group.""",
            "Cache KV heads only, and read them in place: GQA saves memory and bandwidth.",
        ),
        _written(
            "ch03-decoupled-rope",
            3,
            "MLA",
            "Why does MLA cache a separate, decoupled RoPE key beside its latent?",
            """At decode MLA absorbs the key up-projection into the query, q . (W_UK c) = (W_UK^T q) . c, so
            attention runs on the cached latents. RoPE would put a rotation that depends on each key's
            position between W_UK and c, so no single absorbed matrix would serve every cached token.
            DeepSeek-V2 keeps the latent free of positions and caches a small RoPE key shared by all
            heads.""",
            "A position-dependent rotation would block absorbing W_UK into the query.",
        ),
        _written(
            "ch03-mha-to-gqa",
            3,
            "GQA",
            "How do you turn a trained MHA checkpoint into a GQA one?",
            """Mean-pool the key and value projection heads of each group into one head (Ainslie et al.,
            2023), build the model with fewer KV heads and load the pooled weights, then uptrain for about 5%
            of the original steps to recover the quality pooling loses. The memory saving is exact at
            once.""",
            "Mean-pooling initialises; uptraining recovers the quality.",
        ),
    ]


def _chapter_04() -> list[Card]:
    import torch

    from kvlib.memory import MODEL_CONFIGS, kv_cache_bytes, quantized_kv_cache_bytes
    from kvlib.quant import pack_int4, quantize_groups, quantize_int8

    l7 = MODEL_CONFIGS["Llama-2-7B"]
    top, low, high, codes, group = 2.54, -1.0, 3.0, (3, 10), 32
    return [
        _numeric(
            "ch04-int8-error-bound",
            4,
            "quantization basics",
            "Symmetric int8, one scale per token, scale = max|x| / 127. A token's largest magnitude is "
            f"{top}. What is the largest error rounding can leave on any of its numbers?",
            lambda: float(quantize_int8(torch.tensor([[top, -1.0, 0.3]]))[1].item()) / 2,
            "units of x",
            "Round-to-nearest moves a number by at most half a step: scale / 2.",
        ),
        _numeric(
            "ch04-zero-point",
            4,
            "quantization basics",
            f"Asymmetric 4-bit quantization of a group whose values span [{low}, {high}]: scale = (hi - lo) "
            "/ 15 and zero_point = round(-lo / scale). What is the zero-point?",
            lambda: int(quantize_groups(torch.tensor([[low, high, 0.5, 2.0]]), 4, 4)[2].item()),
            "code",
            "scale = 4/15, so 0.0 maps to code round(3.75) = 4, and 0.0 comes back exactly.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch04-pack-nibbles",
            4,
            "quantization basics",
            f"Two 4-bit codes {list(codes)} are packed into one byte, element 2j in the low nibble. Value of "
            "the byte?",
            lambda: int(pack_int4(torch.tensor(codes, dtype=torch.uint8)).item()),
            "decimal",
            "10 << 4 | 3 = 0xA3 = 163; a reader must use the writer's nibble order.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch04-bits-per-number",
            4,
            "KIVI",
            f"int4 codes with an fp16 scale and an fp16 minimum per group of {group} numbers (KIVI's layout, "
            "no full-precision window). Bits per cached number on average?",
            lambda: (
                16  # bits of one fp16 number: the fp16 cache's bytes count the numbers
                * quantized_kv_cache_bytes(1, 1, 128, 64 * group, 1, 4, group, residual=0, dtype="fp16")
                / kv_cache_bytes(1, 1, 128, 64 * group, 1, "fp16")
            ),
            "bits",
            "4 bits of code plus 32 bits of scale and minimum shared by 32 numbers: 5 bits.",
        ),
        _numeric(
            "ch04-kivi-share",
            4,
            "KIVI",
            f"{l7.name}, one sequence of 4096 tokens: a KIVI cache at 2 bits, groups of {group}, the 128 "
            "newest tokens kept in fp16, scales and minimums in fp16. Its size as a share of the fp16 "
            "cache?",
            lambda: (
                100
                * quantized_kv_cache_bytes(32, 32, 128, 4096, 1, 2, group, residual=128, dtype="fp16")
                / l7.kv_bytes(4096, 1, "fp16")
            ),
            "%",
            "2-bit codes and group scales for 3968 tokens, plus 128 fp16 tokens: about a fifth, not an "
            "eighth.",
            rel_tol=0.02,
        ),
        _written(
            "ch04-kivi-axes",
            4,
            "KIVI",
            "Why does KIVI quantize keys per channel and values per token?",
            """In large models a few key channels are far larger than the rest at every token. Grouped per
            token, those channels set every token's scale and the small channels lose their precision;
            grouped per channel, each outlier channel gets its own scale. Values have no such channels, and
            attention mixes them row by row (a weighted sum of value rows), so per-token groups keep each
            row's error contained.""",
            "Outlier key channels want their own scales; values are consumed per token.",
        ),
        _written(
            "ch04-residual-window",
            4,
            "KIVI",
            "Why does a KIVI cache keep its newest tokens in full precision?",
            """A per-channel key group needs G tokens before it can be quantized, so the newest tokens wait
            in full precision anyway, and they are the tokens attention looks at most. Tokens are quantized G
            at a time as they leave the window; at long contexts the window is a small share of the bytes.""",
            "Groups need G tokens, and recent tokens matter most.",
        ),
        _written(
            "ch04-zero-token",
            4,
            "quantization basics",
            "What goes wrong when a symmetric quantizer meets a token of all zeros, and what is the fix?",
            """max|x| = 0 gives scale 0, and 0 / 0 = NaN; a NaN cast to int8 is undefined (it often comes out
            0, which hides the bug). Give such a token any positive scale: its codes are 0 and it comes back
            exactly.""",
            "Guard the zero scale before dividing.",
        ),
        _written(
            "ch04-slower-or-faster",
            4,
            "quantization basics",
            "Your int4 KV cache decodes more slowly than fp16 on your test machine. Why can that happen, "
            "and when does a quantized cache decode faster?",
            """A cache that dequantizes its whole store at every step does work proportional to the context
            and writes a full-precision copy each time. Production kernels dequantize tile by tile inside
            attention. Decoding gets faster only when reading KV bytes dominates the step (long contexts,
            large batches, on a GPU): then reading a quarter of the bytes is what pays.""",
            "Quantization saves time only when KV reads dominate and dequantization is fused.",
        ),
    ]


def _chapter_05() -> list[Card]:
    import torch

    from kvlib.cache.evict import ring_order, sink_positions
    from kvlib.cache.heads import pruned_kv_fraction

    window, token = 256, 1000
    sinks, recent, seen = 4, 252, 2000
    heads, full, streaming_window, length = 12, 6, 16, 2048

    def plan() -> torch.Tensor:
        mask = torch.zeros(1, heads, dtype=torch.bool)
        mask[0, :full] = True
        return mask

    return [
        _numeric(
            "ch05-ring-slot",
            5,
            "sliding window",
            f"A sliding-window cache is a ring buffer of {window} slots; token p lives in slot p % {window}. "
            f"Which slot holds token {token}?",
            lambda: int(ring_order(token + 1, window)[-1]),
            "slot",
            "A decode step overwrites exactly one slot: that of the token that just left the window.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch05-sink-position",
            5,
            "positions after eviction",
            f"A StreamingLLM cache keeps {sinks} sinks and the {recent} most recent earlier tokens, and "
            f"rotates keys at their index inside the cache. After {seen} tokens one more arrives (it attends "
            "to the cache and to itself). At which RoPE position is its query rotated?",
            lambda: int(sink_positions(seen, 1, sinks, recent)[1][-1]),
            "position",
            "Sinks take 0..3, the window 4..255, the new token 256: the position never grows past the "
            "cache's size, whatever the stream's length.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch05-head-pruning",
            5,
            "head pruning",
            f"{full} of {heads} KV heads keep the whole history; the others keep {sinks} sinks + "
            f"{streaming_window} recent tokens. At {length} tokens, what share of the dense cache is kept?",
            lambda: 100 * pruned_kv_fraction(plan(), length, sinks, streaming_window),
            "%",
            "(6 x 2048 + 6 x 20) / (12 x 2048): head pruning tends to the share of full heads.",
        ),
        _written(
            "ch05-sinks",
            5,
            "attention sinks",
            "What is an attention sink, and why does evicting the first tokens hurt some models?",
            """Large models put a big share of their attention on the first few tokens whatever they say:
            with nothing useful to attend to, the softmax still has to put its mass somewhere. Evict them and
            that mass spreads over the other tokens, and perplexity jumps. StreamingLLM keeps the first few
            tokens plus a recent window.""",
            "Keep a few sink tokens beside the window (StreamingLLM).",
        ),
        _written(
            "ch05-rope-after-eviction",
            5,
            "positions after eviction",
            "A cache evicts from the middle of a long stream but stores keys rotated at their stream "
            "positions. What goes wrong, and what is the fix?",
            """The newest query sees the kept early tokens thousands of positions away, at distances and
            angles the model never trained on, and the angles grow without bound. Store keys before RoPE and
            rotate each at its index inside the cache (sinks first, then the window, new tokens last), so
            every position stays below sinks + window + new tokens.""",
            "Number positions inside the cache, not in the stream.",
        ),
        _written(
            "ch05-h2o",
            5,
            "H2O",
            "How does H2O choose which tokens to keep, and what does GQA change in its score?",
            """Per batch row and KV head it keeps a recent window plus the tokens with the largest attention
            received so far (heavy hitters), adding each step's attention to their scores. Under GQA one KV
            head serves G query heads, so a token's score sums the attention of all G; evicting it evicts it
            for the whole group.""",
            "Accumulated attention picks the heavy hitters, summed over a KV head's query group.",
        ),
        _written(
            "ch05-tokens-or-heads",
            5,
            "head pruning",
            "Token eviction or head pruning (DuoAttention): what does each save as the context grows?",
            """A token budget keeps memory flat, so its saving grows with the context. Head pruning keeps the
            whole history in retrieval heads and only sinks + a window in streaming heads: a constant factor,
            the share of streaming heads. It pays where some heads must retrieve distant tokens.""",
            "Eviction saves a growing share; head pruning a constant one.",
        ),
    ]


def _chapter_06() -> list[Card]:
    from kvlib.memory import MODEL_CONFIGS, GiB
    from kvlib.paged.manager import BlockTable
    from kvlib.paged.sharing import analytic_prefix_saving, block_waste
    from kvlib.paged.tables import slot_of

    block, table, position = 16, [5, 2, 9], 37
    users, system, question = 1000, 1000, 100
    lengths, shares = [37, 1000], [0.3, 0.7]
    l7 = MODEL_CONFIGS["Llama-2-7B"]

    def slot() -> int:
        return slot_of(BlockTable(0, list(range(position + 1)), list(table)), position, block)

    return [
        _numeric(
            "ch06-slot",
            6,
            "block tables",
            f"Blocks of {block} tokens; a sequence's block table is {table}. In which slot of the pool are "
            f"the keys of its token at position {position}?",
            slot,
            "slot",
            "block_ids[p // B] * B + p % B = 9 * 16 + 5.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch06-prefix-saving",
            6,
            "prefix caching",
            f"{users} users share a {system}-token system prompt and add {question}-token questions; blocks "
            f"of {block}, prefix caching on. What share of the KV memory of all the prompts (system prompt "
            "plus question, counted per token) is saved?",
            lambda: 100 * analytic_prefix_saving(users, system, question, block),
            "%",
            "Only the 62 full blocks (992 tokens) of the prompt are shared; the partial block is per "
            "request.",
        ),
        _numeric(
            "ch06-shared-prompt",
            6,
            "prefix caching",
            f"The same {system}-token system prompt on {l7.name} in fp16, stored once for all {users} users. "
            "KV cache of the prompt?",
            lambda: l7.kv_bytes(system, 1, "fp16") / GiB,
            "GiB",
            "Stored once instead of 1000 times: 0.49 GiB instead of 488 GiB.",
        ),
        _numeric(
            "ch06-block-waste",
            6,
            "paging waste",
            f"30% of sequences hold {lengths[0]} tokens, 70% hold {lengths[1]}; each holds whole blocks of "
            f"{block}. What share of the allocated slots holds no token?",
            lambda: 100 * block_waste(lengths, shares, block),
            "%",
            "Only each sequence's last block is partly empty: at most B - 1 slots per sequence.",
            rel_tol=0.02,
        ),
        _written(
            "ch06-copy-on-write",
            6,
            "beams and copy-on-write",
            "A forked sequence and its parent share a partly filled last block. What happens when one of "
            "them appends a token?",
            """Copy-on-write: the block's reference count is above 1, so the writer takes a fresh block, asks
            the engine to copy the shared block's K/V into it (a (src, dst) copy done before the forward pass
            writes), drops its share of the old block and writes into the copy. Full blocks stay shared:
            nobody writes them again.""",
            "Share until someone writes; copy only the partly filled shared block.",
        ),
        _written(
            "ch06-beam-search",
            6,
            "beams and copy-on-write",
            "How does a paged block manager keep beam search's memory down as beams are picked and dropped?",
            """A beam picked c times is forked c - 1 times (its block table copied, one more owner per
            block); a beam not picked is freed (one owner less per block, blocks at zero go back to the pool).
            The common history is stored once, and only partly filled last blocks are copied, on write.""",
            "Fork is a reference count, not a copy.",
        ),
        _written(
            "ch06-chain-hash",
            6,
            "prefix caching",
            "Why does vLLM's prefix cache key each block by a hash of its parent's key and its own tokens, "
            "and which rules keep it correct?",
            """Chained keys make equal keys mean equal prefixes, not just equal blocks: the same 16 tokens at
            position 0 and at 512 hold different K/V, since attention mixed in everything before them. Only
            full blocks are cached; the last prompt token is always computed, for its logits; a hit compares
            the stored tokens, because hashes collide; idle blocks are evicted least recently used, leaves
            first.""",
            "Keys identify prefixes; full blocks only; verify tokens on a hit.",
        ),
        _written(
            "ch06-failed-allocation",
            6,
            "block allocator",
            "Why must a block allocation that cannot be met raise and change nothing?",
            """The scheduler catches the out-of-blocks error, preempts a request and retries. A half-done
            allocation would leave blocks that nobody owns, leaking one per failed request until the server
            can no longer admit anything.""",
            "All or nothing, or blocks leak.",
        ),
    ]


def _chapter_07() -> list[Card]:
    from kvlib.cache.gqa import kv_saving_factor
    from kvlib.memory import MODEL_CONFIGS, bytes_per_element

    l3_70 = MODEL_CONFIGS["Llama-3-70B"]
    group, sms, batch, kv_heads, length = 4, 132, 1, 8, 4096

    def splits() -> int:
        from kvlib.kernels import choose_num_splits  # imports Triton: only when this card is answered

        return choose_num_splits(batch, kv_heads, length, "cpu", num_sms=sms)

    return [
        _numeric(
            "ch07-intensity",
            7,
            "paged decode kernel",
            f"Decode attention, {group} query heads per KV head, fp16, each key and value loaded once for "
            "the whole group. FLOPs per byte loaded?",
            lambda: 2 * group / bytes_per_element("fp16"),
            "FLOP/byte",
            "One multiply-add per query head and element: far below a GPU's ridge point of hundreds.",
        ),
        _numeric(
            "ch07-group-bytes",
            7,
            "paged decode kernel",
            f"{l3_70.name} ({l3_70.num_heads} query heads, {l3_70.num_kv_heads} KV heads): a decode kernel "
            "that loads keys once per query head moves how many times the bytes of one that loads them once "
            "per KV head?",
            lambda: kv_saving_factor(l3_70),
            "x",
            "The group size: GQA saves bandwidth only if the kernel reads each KV head once for its group.",
        ),
        _numeric(
            "ch07-split-k",
            7,
            "split-K",
            f"kvlib's split-K heuristic on a {sms}-SM GPU: batch {batch}, {kv_heads} KV heads, {length} "
            "tokens. How many splits does it choose?",
            splits,
            "splits",
            "Enough programs for about two waves, but no split shorter than 512 tokens: 4096 / 512 = 8.",
            rel_tol=0.0,
        ),
        _written(
            "ch07-online-softmax",
            7,
            "paged decode kernel",
            "Give the online-softmax update for a new tile of scores s with values v.",
            """m' = max(m, max(s)); alpha = exp(m - m'); l' = l * alpha + sum(exp(s - m')); acc' = acc * alpha
            + sum(exp(s - m') v); at the end o = acc / l. Start from m = -inf, l = 0, acc = 0.""",
            "Rescale what was summed so far whenever the maximum grows.",
        ),
        _written(
            "ch07-masked-score",
            7,
            "paged decode kernel",
            "In a decode kernel, what value must a masked score take, and what else must be masked?",
            """-inf, so exp gives 0 and it never wins the maximum; 0 is a real score. The loads must be
            masked too (tokens past the sequence, lanes past head_dim, block-table entries past the last
            block): an unmasked load silently reads another sequence's keys or a freed block.""",
            "Masked scores are -inf, and every out-of-range load is masked.",
        ),
        _written(
            "ch07-prefill-shape",
            7,
            "split-K",
            "Why is a FlashAttention-style prefill kernel the wrong shape for decode?",
            """It gives each program a tile of 64 or 128 query rows; at decode there is one query row per
            sequence and head, so most of the tile is padding and the grid shrinks to (batch, heads)
            programs, too few to fill a GPU at small batch. Decode kernels parallelise along the keys
            (split-K, flash-decoding) and merge the partial results with a log-sum-exp.""",
            "Parallelise decode along the keys, not the queries.",
        ),
        _written(
            "ch07-bandwidth",
            7,
            "paged decode kernel",
            "Why is decode attention bound by memory bandwidth whatever the kernel does, and how do you "
            "judge a decode kernel?",
            """Each loaded element feeds about 2 FLOPs per query head that reads it: a few FLOPs per byte,
            far left of a GPU's ridge point. Its time is set by bytes moved, so judge it by achieved bandwidth
            (bytes it must read / time) against the device's peak.""",
            "Low arithmetic intensity: measure bytes per second, not FLOPs.",
        ),
    ]


def _chapter_08() -> list[Card]:
    from kvlib.memory import MODEL_CONFIGS, GiB, kv_bytes_per_gpu, kv_heads_per_gpu
    from kvlib.serve.block_count import BlockCountMemory
    from kvlib.serve.metrics import percentile, request_metrics

    times, ttfts, q = [0.50, 0.62, 0.70, 0.86], [0.2, 0.4, 0.1, 0.9, 0.3], 90
    l3_70, qwen = MODEL_CONFIGS["Llama-3-70B"], MODEL_CONFIGS["Qwen2-7B"]
    tp_big, tp_qwen, cached, drafted, accepted, block = 16, 4, 126, 4, 1, 16

    def released() -> int:
        memory = BlockCountMemory(num_blocks=64, block_size=block)
        return memory.blocks(cached + drafted) - memory.blocks(cached + accepted)

    return [
        _numeric(
            "ch08-tpot",
            8,
            "serving metrics",
            f"A request arrives at t = 0 s and receives its tokens at {times} s. Its time per output token?",
            lambda: 1000 * request_metrics(0.0, times)["tpot"],
            "ms",
            "(last - first) / (n - 1): the first token's wait is TTFT, not TPOT.",
        ),
        _numeric(
            "ch08-percentile",
            8,
            "serving metrics",
            f"Five requests' TTFTs are {ttfts} s. Their p{q} with linear interpolation (NumPy's default)?",
            lambda: percentile(ttfts, q),
            "s",
            "Sorted, rank (n - 1) x 0.9 = 3.6: 0.4 + 0.6 x (0.9 - 0.4).",
        ),
        _numeric(
            "ch08-tp-per-gpu",
            8,
            "tensor parallelism",
            f"{l3_70.name} ({l3_70.num_kv_heads} KV heads), 16 sequences of 8192 tokens in fp16, tensor "
            f"parallel over tp = {tp_big} GPUs. KV cache per GPU?",
            lambda: kv_bytes_per_gpu(l3_70, tp_big, 8192, 16, "fp16") / GiB,
            "GiB",
            "Past tp = 8 each GPU keeps a copy of one KV head, so tp = 16 holds as much as tp = 8.",
        ),
        _numeric(
            "ch08-tp-heads",
            8,
            "tensor parallelism",
            f"{qwen.name} ({qwen.num_heads} query heads, {qwen.num_kv_heads} KV heads) at tp = {tp_qwen}: KV "
            "heads per GPU?",
            lambda: kv_heads_per_gpu(qwen, tp_qwen),
            "heads",
            "max(1, num_kv_heads / tp); tp must also divide the 28 query heads.",
            rel_tol=0.0,
        ),
        _numeric(
            "ch08-speculative-blocks",
            8,
            "speculative decoding",
            f"A sequence has {cached} tokens cached in blocks of {block}. Verifying {drafted} draft tokens "
            f"writes their K/V; the target accepts {accepted}. How many blocks does rolling the cache back "
            "free?",
            released,
            "blocks",
            "130 tokens need 9 blocks, the 127 kept need 8: the block holding only rejected tokens goes.",
            rel_tol=0.0,
        ),
        _written(
            "ch08-speculative-rollback",
            8,
            "speculative decoding",
            "In speculative decoding the target model verifies k draft tokens in one forward pass, which "
            "writes their K/V into its cache. What must happen to the cache when some are rejected?",
            """Roll it back: the cache must end holding exactly the tokens that were kept (everything before
            plus the accepted drafts). A dense cache truncates its length (transformers calls it crop); a
            paged cache frees the blocks past the new last token and rewinds its computed count. Otherwise the
            rejected tokens' K/V would be attended to and every later position would shift. The draft
            model's cache is rolled back the same way.""",
            "Truncate both caches to the accepted tokens before the next step.",
        ),
        _written(
            "ch08-continuous-batching",
            8,
            "continuous batching",
            "What does continuous (iteration-level) batching change over static batching?",
            """The scheduler decides again at every step which requests run: a finished request leaves at
            once, and a waiting one joins as soon as there are blocks for it, instead of the batch running
            until its longest request is done. The batch stays full, later requests wait far less for their
            first token, and no slot idles on a finished request.""",
            "Schedule per iteration (Orca), not per batch.",
        ),
        _written(
            "ch08-preemption",
            8,
            "preemption",
            "The KV pool runs out mid-generation. Which request is preempted, and recompute or swap?",
            """The newest running request: it has done the least work and the oldest users keep going.
            Recompute drops its K/V and prefills prompt plus generated tokens again when it is readmitted
            (compute, no memory); swap copies its blocks to host memory and back (bytes over PCIe, host
            memory). vLLM V1 keeps only recompute, since a prefill on a GPU is fast next to a PCIe round
            trip; measure both on your hardware.""",
            "Preempt the newest; recompute costs compute, swap costs the host link.",
        ),
        _written(
            "ch08-chunked-prefill",
            8,
            "continuous batching",
            "Why chunk long prompts' prefill under a per-step token budget?",
            """A long prompt prefilled in one step stalls every running request's next token: a spike in
            inter-token latency that p99 ITL exposes. Chunks within the budget, decodes scheduled first, keep
            decoding smooth while the prompt is computed over several steps (Sarathi-Serve).""",
            "Chunked prefill trades a little TTFT for steady inter-token latency.",
        ),
        _written(
            "ch08-tpot-one-token",
            8,
            "serving metrics",
            "Why are one-token answers left out of TPOT rather than counted as 0?",
            """TPOT averages the gaps between a request's output tokens, and a one-token answer has no gap.
            Counting it as 0 would make the server's decode speed look better than any user saw it.""",
            "No gap, no TPOT: leave it out (NaN).",
        ),
        _written(
            "ch08-tp-floor",
            8,
            "tensor parallelism",
            "Why does tensor parallelism stop shrinking a GQA model's KV cache per GPU past tp = "
            "num_kv_heads, and what happens with MLA?",
            """Each GPU runs num_heads / tp query heads and keeps the KV heads they read. Past tp =
            num_kv_heads several GPUs need the same KV head and each keeps its own copy, so per-GPU KV stays
            at one head. MLA's latent is shared by all heads, so every GPU keeps all of it; SGLang's
            data-parallel attention avoids those copies.""",
            "Per GPU: max(1, num_kv_heads / tp) KV heads; MLA's latent is replicated.",
        ),
    ]


@cache
def question_bank() -> tuple[Card, ...]:
    """Every card, chapter by chapter (01 .. 08). Built once; numeric answers are computed when asked."""
    cards = [
        *_chapter_01(),
        *_chapter_02(),
        *_chapter_03(),
        *_chapter_04(),
        *_chapter_05(),
        *_chapter_06(),
        *_chapter_07(),
        *_chapter_08(),
    ]
    return tuple(cards)


# --------------------------------------------------------------------------------------------
# The deck
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What an answer, a reveal or a self-mark did: right or not, and whether it changed the score."""

    card: Card
    correct: bool
    counted: bool
    message: str

    def __str__(self) -> str:
        return self.message


class FlashCards:
    """A deck over `cards` (the whole bank by default), shuffled by `seed`.

    `draw(chapter=None)` gives the next card of a shuffled pass over the deck (no card twice until every
    card has come up; a chapter restricts the draw). Each card scores once: the first `answer(value)`
    of a numeric card, `reveal()` of a numeric card not answered yet (a miss), or `mark(correct)` of a
    written card after its model answer was revealed. `right` and `answered` keep the score.
    """

    def __init__(self, cards: Sequence[Card] | None = None, seed: int = 0) -> None:
        cards = question_bank() if cards is None else cards
        if isinstance(cards, (str, bytes, Card)) or not isinstance(cards, Sequence) or not cards:
            raise TypeError(f"cards must be a non-empty sequence of Card, got {describe(cards)}")
        for i, card in enumerate(cards):
            if not isinstance(card, Card):
                raise TypeError(f"cards[{i}] must be a Card, got {describe(card)}")
        keys = [card.key for card in cards]
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"card keys must be unique, repeated: {sorted({k for k in keys if keys.count(k) > 1})}"
            )
        self.cards: tuple[Card, ...] = tuple(cards)
        self.seed = require_int("seed", seed)
        self._rng = random.Random(self.seed)
        self._pass: list[int] = []  # indices not drawn yet in this pass, in shuffled order
        self.current: Card | None = None
        self.right = 0
        self.answered = 0
        self._scored = self._revealed = False
        self._ui: Any = None

    # --- drawing and answering -----------------------------------------------------------------------

    @property
    def chapters(self) -> list[int]:
        return sorted({card.chapter for card in self.cards})

    def draw(self, chapter: int | None = None) -> Card:
        """The next card (of `chapter` if given) from the current shuffled pass; a new pass starts when
        no card of the kind asked for is left in this one."""
        if chapter is not None:
            chapter = require_int("chapter", chapter)
            if chapter not in self.chapters:
                raise ValueError(f"chapter must be None or one of {self.chapters}, got {chapter}")
        wanted = [i for i in self._pass if chapter is None or self.cards[i].chapter == chapter]
        if not wanted:  # this pass has none left: start a new one (it holds every card)
            self._pass = list(range(len(self.cards)))
            self._rng.shuffle(self._pass)
            wanted = [i for i in self._pass if chapter is None or self.cards[i].chapter == chapter]
        self._pass.remove(wanted[0])
        self.current = self.cards[wanted[0]]
        self._scored = self._revealed = False
        return self.current

    def _card(self) -> Card:
        if self.current is None:
            raise RuntimeError("no card drawn yet: call draw() first")
        return self.current

    def _score(self, correct: bool) -> bool:
        """Count the current card once; returns whether this call counted."""
        if self._scored:
            return False
        self._scored = True
        self.answered += 1
        self.right += int(correct)
        return True

    def answer(self, value: float) -> Result:
        """Check a number against the current numeric card (right within its relative tolerance)."""
        card = self._card()
        if not card.numeric:
            raise ValueError(
                f"card {card.key!r} is a written card: reveal() its model answer, then mark(True) or "
                "mark(False) yourself"
            )
        value = require_number("value", value, minimum=None)
        expected = card.expected()
        correct = math.isclose(value, expected, rel_tol=card.rel_tol, abs_tol=1e-12)
        counted = self._score(correct)
        said = f"you said {format_number(value)}"
        if correct:
            message = f"Right: {card.answer_text()}; {said}. {card.explanation}"
        else:
            off = f", off by {100 * (value - expected) / expected:+.0f}%" if expected else ""
            message = f"Not quite: {card.answer_text()}; {said}{off}. {card.explanation}"
        if not counted:
            message += " (Not scored again: each card counts once.)"
        return Result(card, correct, counted, message)

    def reveal(self) -> str:
        """The answer and its explanation. Revealing a numeric card before answering it scores a miss."""
        card = self._card()
        self._revealed = True
        missed = card.numeric and self._score(False)
        note = " (Revealed before an answer: scored as a miss.)" if missed else ""
        return f"Answer: {card.answer_text()}\nWhy: {card.explanation}{note}"

    def mark(self, correct: bool) -> Result:
        """Mark yourself on the current written card, after reveal()."""
        card = self._card()
        if card.numeric:
            raise ValueError(f"card {card.key!r} is a numeric card: answer(value) marks it")
        correct = require_bool("correct", correct)
        if not self._revealed:
            raise RuntimeError("reveal() the model answer first, then mark yourself against it")
        counted = self._score(correct)
        message = "Marked right." if correct else "Marked missed."
        if not counted:
            message += " (Not scored again: each card counts once.)"
        return Result(card, correct, counted, message)

    @property
    def score_text(self) -> str:
        return f"score: {self.right} of {self.answered} right"

    def text(self) -> str:
        """The deck as text: what shows where widgets do not render."""
        lines = [
            f"Flash cards: {len(self.cards)} cards on chapters "
            f"{', '.join(f'{c:02d}' for c in self.chapters)}; {self.score_text}."
        ]
        if self.current is not None:
            card = self.current
            lines.append(f"Chapter {card.chapter:02d}, {card.topic}: {card.question}")
        lines.append(
            "Widgets do not render here: use deck.draw(), deck.answer(number) for a numeric card, "
            "deck.reveal(), and deck.mark(True or False) for a written card."
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"FlashCards({len(self.cards)} cards, seed={self.seed}, {self.score_text})"

    # --- the widget ----------------------------------------------------------------------------------

    def widget(self) -> Any:
        """The ipywidgets front for this deck (built once): chapter filter, next card, an answer box or
        reveal and self-mark buttons, feedback and the score. It draws a first card if none is drawn."""
        if self._ui is None:
            self._ui = _CardsUI(self)
        return self._ui.box

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget; where widgets do not render, the deck's text at display time."""
        try:
            bundle = self.widget()._repr_mimebundle_(**kwargs)
        except ImportError:  # no ipywidgets: the text front is all there is
            return {"text/plain": self.text()}
        if bundle is not None:
            bundle["text/plain"] = self.text()
        return bundle


class _CardsUI:
    """The widgets of one deck; every button calls the deck's own methods, so code and clicks agree."""

    def __init__(self, deck: FlashCards) -> None:
        import ipywidgets as w

        self.deck = deck
        self.chapter = w.Dropdown(
            options=[("all chapters", None)] + [(f"chapter {c:02d}", c) for c in deck.chapters],
            value=None,
            description="draw from",
        )
        self.next = w.Button(description="next card", button_style="primary")
        self.question = w.HTML()
        self.value = w.Text(placeholder="your number", layout=w.Layout(width="160px"))
        self.check = w.Button(description="check")
        self.reveal = w.Button(description="reveal")
        self.got_it = w.Button(description="I had it", button_style="success")
        self.missed = w.Button(description="I missed it", button_style="warning")
        self.feedback = w.HTML()
        self.score = w.Label()
        self.next.on_click(lambda _: self.on_next())
        self.check.on_click(lambda _: self.on_check())
        self.reveal.on_click(lambda _: self.on_reveal())
        self.got_it.on_click(lambda _: self.on_mark(True))
        self.missed.on_click(lambda _: self.on_mark(False))
        self.box = w.VBox(
            [
                w.HBox([self.chapter, self.next]),
                self.question,
                w.HBox([self.value, self.check, self.reveal, self.got_it, self.missed]),
                self.feedback,
                self.score,
            ]
        )
        if deck.current is None:
            deck.draw()
        self.render()

    def render(self, feedback: str = "") -> None:
        card = self.deck.current
        if card is not None:
            kind = "numeric" if card.numeric else "written: think, reveal, then mark yourself"
            self.question.value = (
                f"<b>Chapter {card.chapter:02d} · {html.escape(card.topic)}</b> "
                f"<small>({kind})</small><p>{html.escape(card.question)}</p>"
            )
            numeric = card.numeric
            self.value.layout.display = self.check.layout.display = None if numeric else "none"
            shown = None if (not numeric and self.deck._revealed) else "none"
            self.got_it.layout.display = self.missed.layout.display = shown
        self.feedback.value = "<br>".join(html.escape(line) for line in feedback.split("\n"))
        self.score.value = self.deck.score_text

    def on_next(self) -> None:
        self.deck.draw(self.chapter.value)
        self.value.value = ""
        self.render()

    def on_check(self) -> None:
        text = self.value.value.strip().replace(",", "").replace("_", "")
        try:
            number = float(text)
        except ValueError:
            self.render(f"Type a number (got {text!r}); the unit is in the question.")
            return
        try:
            self.render(str(self.deck.answer(number)))
        except ValueError as error:  # NaN or infinity
            self.render(str(error))

    def on_reveal(self) -> None:
        self.render(self.deck.reveal())

    def on_mark(self, correct: bool) -> None:
        self.render(str(self.deck.mark(correct)))
