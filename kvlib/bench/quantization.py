"""Quantized KV caches on the shipped model: perplexity, KV bytes per token and decode time against fp32.

Chapter 04's table (issue 13), on ``shakespeare-gqa`` (6 layers, 2 KV heads, head_dim 32, context 512)
and the validation plays. One row per cache of :data:`QUANT_CONFIGS`:

- ``fp32``: :class:`~kvlib.cache.dense.NaiveKVCache`, the baseline every ratio is taken against;
- ``bf16``, ``fp8``: :class:`~kvlib.cache.quantized.FloatKVCache` (fp8 e4m3 with vLLM's static per-layer
  ``k_scale``/``v_scale``, fixed by the first update; later values saturate);
- ``int8-token``: symmetric int8, one scale per token per head (the whole head_dim), no residual window;
- ``int4-token-g8/16/32``: asymmetric (zero-point) int4 per token in groups of 8/16/32 channels, no window.
  head_dim is 32, so the issue's "groups of 32/64/128" of a 128-dim head become 8/16/32 of our 32-dim
  head: the same fraction of a head;
- ``int4-kivi``, ``int2-kivi`` (+ ``-r128``): KIVI, per-channel keys in groups of G=32 tokens and per-token
  values, without a residual window or with the R=128 most recent tokens in full precision;
- ``int2-kivi-s4`` (+ ``-r128``): the same with the first 4 tokens kept in full precision (attention sinks).

Perplexity (:func:`measure_perplexity`) runs :func:`kvlib.data.perplexity` with each cache: windows of
``--window`` tokens (default 512, the model's context), the first ``--prefill`` tokens in one call and the
rest one decode step at a time, so every scored token reads its history back from the cache. The default
prefill is 448: the scored tokens are the last 64 of each window (65 targets, about 15,000 over the split),
each attending over at least 448 cached tokens, of which KIVI with R=128 holds at least 320 quantized (and
without the window, all of them). That is the long-history regime where the residual window matters.
Decoding is the cost (this reference cache dequantizes its whole store at every step): measured with one
thread on a loaded 2-core machine, 64 windows took 491 s for all 13 caches, so the whole validation split
(234 windows) takes about 28 minutes; a prefill of 384 would decode twice as many steps. KV bytes per
token are measured from a cache holding one full window (``cache.nbytes()`` / window) and printed beside
the formula of :mod:`kvlib.memory` at that length.

Decode time (:func:`measure_decode_time`): greedy decoding of ``--new-tokens`` tokens after a prompt of
``--prompt-len`` tokens, each cache timed side by side in one run (repeats interleaved across caches, the
fastest kept), with the share of that time spent inside ``cache.update`` (quantize + dequantize + copies).

Example: ``python -m kvlib.bench quantization --max-windows 16 --rows fp32,int8-token,int4-kivi-r128``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from kvlib.cache.dense import NaiveKVCache
from kvlib.cache.quantized import FloatKVCache, QuantizedKVCache
from kvlib.memory import float_kv_cache_bytes, kv_cache_bytes, quantized_kv_cache_bytes
from kvlib.validate import nonnegative_int_arg, positive_int_arg, require_bool, require_int

__all__ = [
    "QUANT_CONFIGS",
    "QuantConfig",
    "as_table",
    "config_names",
    "measure_decode_time",
    "measure_perplexity",
    "select_configs",
]

BASELINE = "fp32"
DEFAULT_WINDOW, DEFAULT_PREFILL = 512, 448


@dataclass(frozen=True, eq=False)
class QuantConfig:
    """One row of the table: a cache class and its options, used for both the cache and its byte formula.

    ``make_cache(num_layers)`` builds a fresh cache; ``kv_bytes(num_layers, num_kv_heads, head_dim,
    seq_len, dtype)`` is the :mod:`kvlib.memory` formula for one sequence of ``seq_len`` tokens.
    """

    name: str
    bits: str  # what one stored element costs, before scales
    description: str
    cache: type
    options: dict[str, Any] = field(default_factory=dict)

    def make_cache(self, num_layers: int) -> Any:
        return self.cache(num_layers, **self.options)

    def kv_bytes(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        seq_len: int,
        dtype: torch.dtype = torch.float32,
    ) -> int:
        shape = (num_layers, num_kv_heads, head_dim, seq_len, 1)
        if self.cache is NaiveKVCache:
            return kv_cache_bytes(*shape, dtype=dtype)
        if self.cache is FloatKVCache:
            return float_kv_cache_bytes(*shape, **self.options)
        return quantized_kv_cache_bytes(*shape, dtype=dtype, **self.options)


def _per_token(bits: int, group: int) -> dict[str, Any]:
    """Keys and values per token, no window: int8 symmetric (one scale), int4 with a zero-point."""
    scheme = "symmetric" if bits == 8 else "asymmetric"
    return dict(bits=bits, group_size=group, residual=0, scheme=scheme, key_granularity="per_token")


def _kivi(bits: int, residual: int, sinks: int = 0) -> dict[str, Any]:
    return dict(bits=bits, group_size=32, residual=residual, sinks=sinks)


Q = QuantizedKVCache
BF16, FP8 = {"storage_dtype": torch.bfloat16}, {"storage_dtype": torch.float8_e4m3fn}
QUANT_CONFIGS: tuple[QuantConfig, ...] = (
    QuantConfig("fp32", "32", "NaiveKVCache: the model's own dtype (baseline)", NaiveKVCache),
    QuantConfig("bf16", "16", "stored in bf16, returned in fp32", FloatKVCache, BF16),
    QuantConfig("fp8", "8", "e4m3, static per-layer k/v scale (first update), saturating", FloatKVCache, FP8),
    QuantConfig("int8-token", "8", "symmetric, a scale per token per head", Q, _per_token(8, 32)),
    QuantConfig("int4-token-g8", "4", "zero-point, per token, 8-channel groups", Q, _per_token(4, 8)),
    QuantConfig("int4-token-g16", "4", "zero-point, per token, 16-channel groups", Q, _per_token(4, 16)),
    QuantConfig("int4-token-g32", "4", "zero-point, per token, 32-channel groups", Q, _per_token(4, 32)),
    QuantConfig("int4-kivi", "4", "KIVI: per-channel keys (G=32 tokens), per-token values", Q, _kivi(4, 0)),
    QuantConfig("int4-kivi-r128", "4", "KIVI + the 128 most recent tokens in fp32", Q, _kivi(4, 128)),
    QuantConfig("int2-kivi", "2", "KIVI at 2 bits", Q, _kivi(2, 0)),
    QuantConfig("int2-kivi-r128", "2", "KIVI at 2 bits + 128-token fp32 window", Q, _kivi(2, 128)),
    QuantConfig("int2-kivi-s4", "2", "KIVI at 2 bits + 4 fp32 sink tokens", Q, _kivi(2, 0, 4)),
    QuantConfig("int2-kivi-s4-r128", "2", "KIVI at 2 bits + 4 sinks + 128-token window", Q, _kivi(2, 128, 4)),
)  # fmt: skip


def config_names() -> list[str]:
    """Names of :data:`QUANT_CONFIGS`, in table order."""
    return [c.name for c in QUANT_CONFIGS]


def select_configs(names: Iterable[str] | None = None) -> list[QuantConfig]:
    """The rows named (table order kept, the fp32 baseline always first), or all of them for None."""
    if names is None:
        return list(QUANT_CONFIGS)
    if isinstance(names, str):
        raise TypeError(
            f"names must be a list of row names such as ['fp32', 'int8-token'], got the string {names!r}"
        )
    wanted = list(names)
    unknown = [n for n in wanted if n not in config_names()]
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}; known: {', '.join(config_names())}")
    return [c for c in QUANT_CONFIGS if c.name in wanted or c.name == BASELINE]


def _check_configs(configs: Any) -> list[QuantConfig]:
    configs = list(configs) if isinstance(configs, (list, tuple)) else configs
    if not isinstance(configs, list) or not configs or not all(isinstance(c, QuantConfig) for c in configs):
        raise TypeError(
            "configs must be a non-empty list of QuantConfig rows (QUANT_CONFIGS or select_configs(...))"
        )
    if BASELINE not in [c.name for c in configs]:
        raise ValueError(
            f"configs must include the {BASELINE!r} baseline row: every ratio is taken against it"
        )
    return configs


def _model_shape(model: Any) -> tuple[int, int, int, torch.dtype, torch.device]:
    cfg = model.config
    param = next(model.parameters())
    return cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, param.dtype, param.device


def _progress(items: list, progress: bool, desc: str) -> Iterable:
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="cache")


# --- perplexity and bytes -----------------------------------------------------------------------------------


@torch.no_grad()
def measure_perplexity(
    model: Any,
    configs: Iterable[QuantConfig] = QUANT_CONFIGS,
    *,
    max_windows: int | None = None,
    window: int = DEFAULT_WINDOW,
    prefill: int = DEFAULT_PREFILL,
    batch_size: int = 8,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Perplexity on split ``"val"`` and KV bytes per token of every cache in ``configs``.

    Each row: ``name``, ``bits``, ``perplexity``, ``ppl_vs_fp32`` (ratio), ``tokens`` (scored),
    ``bytes_per_token`` (measured: ``cache.nbytes()`` of a cache holding one full window of ``window``
    tokens, divided by ``window``), ``formula_bytes_per_token`` (:meth:`QuantConfig.kv_bytes` at that
    length, / window) and ``bytes_vs_fp32``. Perplexity comes from
    ``kvlib.data.perplexity(model, "val", window=window, prefill=prefill, make_cache=...)``; the defaults
    (window 512, prefill 448) and why are in the module docstring. ``max_windows`` subsamples windows evenly
    (None: the whole split).
    """
    from kvlib.data import perplexity, token_ids

    configs = _check_configs(configs)
    num_layers, num_kv_heads, head_dim, dtype, device = _model_shape(model)
    window = require_int("window", window, minimum=2, maximum=model.config.max_seq_len)
    prefill = require_int("prefill", prefill, minimum=1, maximum=window - 1)
    progress = require_bool("progress", progress)
    first = token_ids("val")[:window].unsqueeze(0).to(device)  # [1, window]
    rows = []
    for config in _progress(configs, progress, "caches"):
        result = perplexity(
            model, "val", window=window, batch_size=batch_size, max_windows=max_windows, prefill=prefill,
            make_cache=lambda config=config: config.make_cache(num_layers), progress=progress,
        )  # fmt: skip
        cache = config.make_cache(num_layers)
        model(first, positions=torch.arange(window, device=device), cache=cache)  # one full window stored
        rows.append(
            {
                "name": config.name,
                "bits": config.bits,
                "perplexity": result.ppl,
                "tokens": result.tokens,
                "bytes_per_token": cache.nbytes() / window,
                "formula_bytes_per_token": config.kv_bytes(num_layers, num_kv_heads, head_dim, window, dtype)
                / window,
            }
        )
    base = next(r for r in rows if r["name"] == BASELINE)
    for row in rows:
        row["ppl_vs_fp32"] = row["perplexity"] / base["perplexity"]
        row["bytes_vs_fp32"] = row["bytes_per_token"] / base["bytes_per_token"]
    return rows


# --- decode time --------------------------------------------------------------------------------------------


def _timed_decode(
    model: Any, config: QuantConfig, prompt: torch.Tensor, new_tokens: int
) -> tuple[float, float]:
    """(seconds for ``new_tokens`` greedy decode steps after the prompt, seconds of them inside update)."""
    num_layers, _, _, _, device = _model_shape(model)
    cache = config.make_cache(num_layers)
    inside = [0.0]
    update = cache.update

    def timed_update(layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        try:
            return update(layer, k, v)
        finally:
            inside[0] += time.perf_counter() - start

    cache.update = timed_update  # this instance only: the model calls cache.update
    P = prompt.shape[1]
    logits = model(prompt, positions=torch.arange(P, device=device), cache=cache)  # prefill, not timed
    token = logits[:, -1:].argmax(dim=-1)  # [1, 1]
    inside[0] = 0.0
    start = time.perf_counter()
    for i in range(new_tokens):
        logits = model(token, positions=torch.tensor([P + i], device=device), cache=cache)
        token = logits[:, -1:].argmax(dim=-1)
    return time.perf_counter() - start, inside[0]


@torch.no_grad()
def measure_decode_time(
    model: Any,
    configs: Iterable[QuantConfig] = QUANT_CONFIGS,
    *,
    prompt_len: int = 384,
    new_tokens: int = 64,
    repeats: int = 3,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Time per generated token of every cache against fp32, measured side by side in one run.

    A prompt of ``prompt_len`` tokens from the validation plays is prefilled (not timed), then
    ``new_tokens`` greedy decode steps are timed. Repeats are interleaved across the caches (each repeat
    runs every cache once, so a slow moment of the machine hits them all) and the fastest repeat is kept.
    Each row: ``name``, ``ms_per_token``, ``time_vs_fp32`` (ratio) and ``cache_share``: the fraction of
    that time spent inside ``cache.update`` (storing, quantizing, dequantizing the store, copies); the
    rest is the model's own work (projections, attention, MLP), the same for every cache.
    """
    from kvlib.data import token_ids

    configs = _check_configs(configs)
    _, _, _, _, device = _model_shape(model)
    prompt_len = require_int("prompt_len", prompt_len, minimum=1)
    new_tokens = require_int("new_tokens", new_tokens, minimum=1)
    repeats = require_int("repeats", repeats, minimum=1)
    progress = require_bool("progress", progress)
    if prompt_len + new_tokens > model.config.max_seq_len:
        raise ValueError(
            f"prompt_len + new_tokens must fit the model's context of {model.config.max_seq_len}, "
            f"got {prompt_len} + {new_tokens}"
        )
    prompt = token_ids("val")[:prompt_len].unsqueeze(0).to(device)  # [1, prompt_len]
    best: dict[str, tuple[float, float]] = {}
    runs = [(r, c) for r in range(repeats) for c in configs]  # interleaved: every cache once per repeat
    for _, config in _progress(runs, progress, "decode timing"):
        total, inside = _timed_decode(model, config, prompt, new_tokens)
        if config.name not in best or total < best[config.name][0]:
            best[config.name] = (total, inside)
    base = best[BASELINE][0]
    return [
        {
            "name": c.name,
            "ms_per_token": 1000 * best[c.name][0] / new_tokens,
            "time_vs_fp32": best[c.name][0] / base,
            "cache_share": best[c.name][1] / best[c.name][0],
        }
        for c in configs
    ]


def as_table(*row_lists: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows of several measurements merged by name: ``{name: {...every column...}}`` (the shape
    :func:`kvlib.quant.compare_rows` reads)."""
    table: dict[str, dict[str, Any]] = {}
    for rows in row_lists:
        for row in rows:
            table.setdefault(row["name"], {}).update(row)
    return table


# --- command line ------------------------------------------------------------------------------------------


def _rows_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated row names, got {text!r}")
    unknown = [n for n in names if n not in config_names()]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown row(s) {', '.join(unknown)}; known: {', '.join(config_names())}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kvlib.model import MODEL_NAMES

    parser.add_argument("--model", default="shakespeare-gqa", choices=MODEL_NAMES, help="shipped checkpoint")
    parser.add_argument(
        "--max-windows", type=positive_int_arg, default=None,
        help="perplexity on this many windows, spread evenly over the split (default: the whole split)",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=positive_int_arg, default=DEFAULT_WINDOW, help="tokens per window (<= the context)"
    )
    parser.add_argument(
        "--prefill", type=positive_int_arg, default=DEFAULT_PREFILL,
        help="tokens of each window fed in one call before decoding one at a time (< --window)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int_arg, default=8, help="windows per batch")
    parser.add_argument(
        "--prompt-len", type=positive_int_arg, default=384, help="decode timing: prompt tokens"
    )
    parser.add_argument("--new-tokens", type=positive_int_arg, default=64, help="decode timing: tokens timed")
    parser.add_argument(
        "--repeats", type=positive_int_arg, default=3, help="decode timing: best of this many"
    )
    parser.add_argument(
        "--threads", type=nonnegative_int_arg, default=1,
        help="torch threads (0: torch's default); 1 by default: a 5M-parameter model gains nothing from "
        "more, and on a loaded 2-core machine 2 threads ran 5-20x slower than 1",
    )  # fmt: skip
    parser.add_argument(
        "--rows", type=_rows_arg, default=None,
        help=f"comma-separated rows to run (fp32 always runs); default all: {','.join(config_names())}",
    )  # fmt: skip


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from kvlib.bench.cache_speed import _context_length

    context = _context_length(args.model)
    if args.window < 2 or args.window > context:
        parser.error(
            f"argument --window: must be in [2, {context}] (model {args.model}'s context), got {args.window}"
        )
    if args.prefill >= args.window:
        parser.error(
            f"argument --prefill: must be < --window ({args.window}) so that some tokens are decoded "
            f"through the cache, got {args.prefill}"
        )
    if args.prompt_len + args.new_tokens > context:
        parser.error(
            f"argument --new-tokens: --prompt-len ({args.prompt_len}) plus --new-tokens ({args.new_tokens}) "
            f"must fit model {args.model}'s context of {context}"
        )


def format_table(table: dict[str, dict[str, Any]]) -> str:
    """The printed table: one line per row of ``table`` (from :func:`as_table`), then a legend."""
    header = (
        f"{'row':18s} {'bits':>4s} {'KV B/token':>10s} {'vs fp32':>8s} {'ppl':>8s} {'vs fp32':>8s} "
        f"{'ms/token':>8s} {'vs fp32':>8s} {'in cache':>8s}"
    )
    lines = [header, "-" * len(header)]
    for name, r in table.items():
        lines.append(
            f"{name:18s} {r['bits']:>4s} {r['bytes_per_token']:10.1f} {r['bytes_vs_fp32']:8.3f} "
            f"{r['perplexity']:8.3f} {r['ppl_vs_fp32']:8.4f} {r['ms_per_token']:8.2f} "
            f"{r['time_vs_fp32']:7.2f}x {r['cache_share']:8.1%}"
        )
    described = {c.name: c.description for c in QUANT_CONFIGS}
    lines += ["", *(f"{name:18s} {described[name]}" for name in table)]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from kvlib.model import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    configs = select_configs(args.rows)
    cfg = model.config
    windows = "the whole split" if args.max_windows is None else f"at most {args.max_windows} windows"
    print(
        f"model {args.model} ({cfg.num_layers} layers, {cfg.num_kv_heads} KV heads, "
        f"head_dim {cfg.head_dim}), "
        f"val split, {windows} of {args.window} tokens, prefill {args.prefill}; decode timing: prompt "
        f"{args.prompt_len}, {args.new_tokens} new tokens, best of {args.repeats}; torch threads "
        f"{torch.get_num_threads()}"
    )
    start = time.perf_counter()
    ppl = measure_perplexity(
        model, configs, max_windows=args.max_windows, window=args.window, prefill=args.prefill,
        batch_size=args.batch_size,
    )  # fmt: skip
    timing = measure_decode_time(
        model, configs, prompt_len=args.prompt_len, new_tokens=args.new_tokens, repeats=args.repeats
    )
    print(f"\nscored {ppl[0]['tokens']} tokens per row; {time.perf_counter() - start:.0f} s in all\n")
    print(format_table(as_table(ppl, timing)))
    mismatched = [r["name"] for r in ppl if r["bytes_per_token"] != r["formula_bytes_per_token"]]
    if mismatched:
        print(f"\nmeasured bytes differ from kvlib.memory's formula for: {', '.join(mismatched)}")
    return 1 if mismatched else 0
