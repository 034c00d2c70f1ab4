"""Ragged-batch generation: a paged cache serving prompts of different lengths at once vs dense caches.

On one shipped checkpoint and one set of prompts from the validation plays (different lengths, the
first half sharing a long prefix), greedy generation of ``--new-tokens`` tokens per prompt through:

- ``paged ragged``: one :class:`~kvlib.paged.cache.PagedKVCache`, every prompt in one ragged batch
  per step (prefix caching on, so the shared prefix is computed once);
- ``dense, one at a time``: a NaiveKVCache per prompt, each generated alone (a cache with one length
  per batch cannot hold rows of different lengths without padding them);
- ``dense batch`` / ``paged batch``: every prompt cut to the shortest length, so a dense cache can
  batch them too: the same batch through both caches, which isolates what paging itself costs.

Each line gives generated tokens per second (prompt processing included) and the ratio to the dense
one-at-a-time run, measured side by side in one run; every paged run is checked to produce the
tokens of its dense counterpart. Example: ``python -m kvlib.bench ragged-decode --prompts 8``.
"""

from __future__ import annotations

import argparse
import time

from kvlib.validate import nonnegative_int_arg, positive_int_arg

SHARED_PREFIX = 96


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kvlib.model import MODEL_NAMES

    parser.add_argument("--model", default="shakespeare-gqa", choices=MODEL_NAMES, help="shipped checkpoint")
    parser.add_argument("--prompts", type=positive_int_arg, default=8, help="prompts in the batch")
    parser.add_argument(
        "--new-tokens", type=positive_int_arg, default=128, help="tokens generated per prompt"
    )
    parser.add_argument("--block-size", type=positive_int_arg, default=16, help="tokens per KV block")
    parser.add_argument(
        "--backend", default="gather", choices=("gather", "triton"),
        help="paged attention for decode steps (triton runs in its CPU interpreter without CUDA: slow)",
    )  # fmt: skip
    parser.add_argument("--threads", type=nonnegative_int_arg, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=nonnegative_int_arg, default=0, help="where the prompts are cut")


MAX_SUFFIX = 160  # longest prompt: SHARED_PREFIX + MAX_SUFFIX tokens


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from kvlib.bench.cache_speed import _context_length

    context = _context_length(args.model)
    if SHARED_PREFIX + MAX_SUFFIX + args.new_tokens > context:
        parser.error(
            f"argument --new-tokens: the longest prompt ({SHARED_PREFIX + MAX_SUFFIX} tokens) plus "
            f"--new-tokens must fit model {args.model}'s context of {context}; use at most "
            f"{context - SHARED_PREFIX - MAX_SUFFIX}"
        )


def make_prompts(count: int, seed: int) -> list[list[int]]:
    """``count`` prompts of different lengths (1 .. SHARED_PREFIX + MAX_SUFFIX tokens) from the
    validation plays; the first half start with the same SHARED_PREFIX tokens."""
    import torch

    from kvlib.data import token_ids

    text = token_ids("val").tolist()
    gen = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(count):
        start = int(torch.randint(SHARED_PREFIX, len(text) - MAX_SUFFIX, (1,), generator=gen))
        length = int(torch.randint(1, MAX_SUFFIX + 1, (1,), generator=gen))
        own = text[start : start + length]
        prompts.append(text[:SHARED_PREFIX] + own if i < (count + 1) // 2 else own)
    return prompts


def _timed(run) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main(args: argparse.Namespace) -> int:
    import torch

    from kvlib.cache.dense import NaiveKVCache
    from kvlib.generate import generate, generate_ragged
    from kvlib.model import load_model
    from kvlib.paged.cache import PagedKVCache

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    num_layers, new = model.config.num_layers, args.new_tokens
    prompts = make_prompts(args.prompts, args.seed)
    blocks = sum(-(-(len(p) + new) // args.block_size) for p in prompts) + 1

    def paged(batch: list[list[int]]) -> tuple[list[list[int]], PagedKVCache]:
        cache = PagedKVCache.for_model(
            model, blocks, args.block_size, prefix_cache="radix", backend=args.backend
        )
        return generate_ragged(model, cache, batch, new), cache

    def dense_alone() -> list[list[int]]:
        runs = [
            generate(model, torch.tensor([p]), new, NaiveKVCache(num_layers))[0, len(p) :] for p in prompts
        ]
        return [r.tolist() for r in runs]

    shortest = min(len(p) for p in prompts)
    cut = [p[:shortest] for p in prompts]

    def dense_batch() -> list[list[int]]:
        return generate(model, torch.tensor(cut), new, NaiveKVCache(num_layers))[:, shortest:].tolist()

    lengths = sorted(len(p) for p in prompts)
    print(
        f"model {args.model}, {len(prompts)} prompts of {lengths[0]}..{lengths[-1]} tokens "
        f"(first {(len(prompts) + 1) // 2} share {SHARED_PREFIX}), {new} new tokens each, block size "
        f"{args.block_size}, backend {args.backend}, torch threads {torch.get_num_threads()}"
    )
    generate_ragged(model, PagedKVCache.for_model(model, 8, 16), [[1, 2, 3]], 2)  # warm-up
    with torch.no_grad():
        alone, t_alone = _timed(dense_alone)
        (ragged, ragged_cache), t_ragged = _timed(lambda: paged(prompts))
        batched, t_batched = _timed(dense_batch)
        (paged_cut, _), t_paged_cut = _timed(lambda: paged(cut))
    computed, slots = ragged_cache.tokens_computed, ragged_cache.token_slots
    total = len(prompts) * new
    rows = [
        ("dense, one at a time", t_alone, True),
        ("paged ragged", t_ragged, ragged == alone),
        (f"dense batch (cut to {shortest})", t_batched, True),
        (f"paged batch (cut to {shortest})", t_paged_cut, paged_cut == batched),
    ]
    print(f"\n{'run':32s} {'seconds':>8s} {'tokens/s':>9s} {'vs alone':>9s}  same tokens")
    for name, seconds, same in rows:
        print(f"{name:32s} {seconds:8.2f} {total / seconds:9.1f} {t_alone / seconds:8.2f}x  {same}")
    prompt_tokens = sum(len(p) for p in prompts)
    print(
        f"\npaged ragged ran the model on {computed} tokens: {prompt_tokens} prompt tokens minus "
        f"{prompt_tokens + len(prompts) * (new - 1) - computed} held by prefix hits, plus "
        f"{len(prompts) * (new - 1)} decode tokens; with padding to the longest row, {slots} token slots"
    )
    return 0 if all(same for _, _, same in rows) else 1
