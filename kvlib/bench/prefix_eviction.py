"""Prefix-cache eviction cost: a shared-prefix trace through the block manager, with and without eviction.

The trace: ``--requests`` requests (256) in ``--groups`` groups; a prompt is its group's shared
``--prefix-len``-token prefix plus a ``--question-len``-token question of its own, and a request then
generates ``--output-len`` tokens. Requests come in a random order of groups and run ``--concurrency``
at a time (continuous batching: each step appends one token to every running request; a finished
one is freed and the next admitted). Every full block is registered in the prefix cache, so a
finished request leaves its blocks idle there: reusable by its group, evictable when room is short.

Each prefix cache (hash chain, radix tree) replays the trace on two pools: a large one that holds
every block the trace ever allocates (nothing is evicted) and a small one (``--small-pool``, by
default just enough for the running requests) where admissions must evict idle cached blocks. The
table gives requests/s (best of ``--repeats``), blocks evicted and prompt tokens found cached, and
the speed on the small pool against the large one: eviction pops a heap (O(log n) per block), so
the ratio stays near 1 instead of falling with the size of the cache.

Example: ``python -m kvlib.bench prefix-eviction --requests 256 --repeats 3``.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from dataclasses import dataclass

from kvlib.paged.workload import Trace, shared_prefix_trace
from kvlib.validate import nonnegative_int_arg, positive_int_arg

CACHES = ("hash", "radix")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=positive_int_arg, default=256, help="requests in the trace")
    parser.add_argument("--groups", type=positive_int_arg, default=8, help="shared prefixes (<= --requests)")
    parser.add_argument("--prefix-len", type=positive_int_arg, default=512, help="shared prefix, tokens")
    parser.add_argument("--question-len", type=positive_int_arg, default=96, help="own question, tokens")
    parser.add_argument(
        "--output-len", type=positive_int_arg, default=64, help="generated tokens per request"
    )
    parser.add_argument("--block-size", type=positive_int_arg, default=16, help="tokens per block")
    parser.add_argument("--concurrency", type=positive_int_arg, default=16, help="requests running at once")
    parser.add_argument(
        "--small-pool", type=positive_int_arg, default=None,
        help="blocks in the pool that forces eviction (default and minimum: --concurrency requests at "
        "their full length, so the replay never runs out of blocks)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=positive_int_arg, default=3, help="best of this many replays")
    parser.add_argument("--seed", type=nonnegative_int_arg, default=0)


def _blocks_per_request(args: argparse.Namespace) -> int:
    return -(-(args.prefix_len + args.question_len + args.output_len) // args.block_size)


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks across options, run by ``python -m kvlib.bench`` before :func:`main`."""
    if args.groups > args.requests:
        parser.error(f"argument --groups: must be <= --requests ({args.requests}), got {args.groups}")
    minimum = args.concurrency * _blocks_per_request(args)
    if args.small_pool is not None and args.small_pool < minimum:
        parser.error(
            f"argument --small-pool: must hold --concurrency ({args.concurrency}) requests of "
            f"{_blocks_per_request(args)} blocks each, >= {minimum} blocks (the replay does not preempt), "
            f"got {args.small_pool}"
        )


@dataclass(frozen=True)
class Replay:
    """One replay of a trace: wall time of the block-manager calls, blocks evicted, cached prompt tokens."""

    seconds: float
    evicted: int
    hit_tokens: int


def replay(trace: Trace, num_blocks: int, block_size: int, cache: str, concurrency: int) -> Replay:
    """Serve ``trace`` through a fresh BlockManager, ``concurrency`` requests at a time (see the
    module docstring); only the manager's calls run inside the timed loop."""
    from kvlib.paged import BlockManager

    mgr = BlockManager(num_blocks, block_size, prefix_cache=cache)
    prefix_cache = mgr.cache
    assert prefix_cache is not None
    waiting = deque(enumerate(trace))
    running: list[tuple[int, list[int]]] = []  # (sequence id, output tokens still to append)
    hit_tokens = 0
    start = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < concurrency:
            seq_id, (prompt, output) = waiting.popleft()
            hit_tokens += mgr.allocate(seq_id, prompt).num_cached_tokens
            running.append((seq_id, output[::-1]))  # reversed: pop() hands out the next token
        for seq_id, todo in running:
            mgr.append(seq_id, todo.pop())
            if not todo:
                mgr.free(seq_id)
        running = [r for r in running if r[1]]
    seconds = time.perf_counter() - start
    return Replay(seconds, prefix_cache.num_evicted, hit_tokens)


def main(args: argparse.Namespace) -> int:
    per_request = _blocks_per_request(args)
    trace = shared_prefix_trace(
        args.requests, args.groups, args.prefix_len, args.question_len, args.output_len, args.seed
    )
    pools = {
        "large": args.requests * per_request + 1,  # every block the trace allocates: nothing is evicted
        "small": args.small_pool or args.concurrency * per_request,
    }
    print(
        f"Shared-prefix trace: {args.requests} requests in {args.groups} groups, prompt = "
        f"{args.prefix_len}-token shared prefix + {args.question_len}-token question, {args.output_len} "
        f"output tokens, block {args.block_size}, {args.concurrency} running at once; best of {args.repeats}"
    )
    print(f"\n{'cache':<8}{'pool':<7}{'blocks':>8}{'requests/s':>12}{'evicted':>9}{'hit tokens':>12}")
    rates: dict[tuple[str, str], float] = {}
    for cache in CACHES:
        for pool, num_blocks in pools.items():
            runs = [
                replay(trace, num_blocks, args.block_size, cache, args.concurrency)
                for _ in range(args.repeats)
            ]
            best = min(runs, key=lambda r: r.seconds)
            rates[cache, pool] = args.requests / best.seconds
            print(
                f"{cache:<8}{pool:<7}{num_blocks:>8}{rates[cache, pool]:>12.0f}{best.evicted:>9}"
                f"{best.hit_tokens:>12}"
            )
    ratios = ", ".join(f"{cache} {rates[cache, 'small'] / rates[cache, 'large']:.2f}x" for cache in CACHES)
    print(f"\nrequests/s with eviction (small pool) / without (large pool): {ratios}")
    return 0
