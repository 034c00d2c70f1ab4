"""Time per generated token with and without a KV cache, and growing vs static cache updates.

Two tables (chapters 01 and 02):

1. seconds per new token at several context lengths, cached (one-token decode step) and uncached
   (a full forward pass over the context), on the shipped model or a random model of its shape;
2. the cost of N decode steps of cache updates alone for a growing (torch.cat) and a static
   (preallocated) cache: allocations, bytes allocated, peak live bytes and time.

Example: ``python -m kvlib.bench cache-speed --lengths 64,256,500 --repeats 3``.
"""

from __future__ import annotations

import argparse
import time

from kvlib.validate import device_arg, int_list_arg, nonnegative_int_arg, positive_int_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kvlib.model import MODEL_NAMES

    parser.add_argument(
        "--model", default="shakespeare-mha", choices=[*MODEL_NAMES, "random"],
        help="shipped checkpoint name, or 'random' (a random model of the same shape, 4096-token context)",
    )  # fmt: skip
    parser.add_argument(
        "--lengths", type=int_list_arg, default=[16, 64, 128, 256, 500],
        help="context lengths, comma-separated (each plus --steps must fit the model's context)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=positive_int_arg, default=3, help="best of this many repeats")
    parser.add_argument("--steps", type=positive_int_arg, default=4, help="timed tokens per repeat")
    parser.add_argument(
        "--update-steps", type=positive_int_arg, default=1024, help="decode steps for the cache-update table"
    )
    parser.add_argument("--batch", type=positive_int_arg, default=1)
    parser.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=nonnegative_int_arg, default=0)


RANDOM_CONTEXT = 4096  # max_seq_len of the --model random decoder


def _context_length(name: str) -> int:
    """The model's context in tokens, read from its config without loading the weights."""
    import json

    from kvlib.model import ModelConfig, checkpoint_path

    if name == "random":
        return RANDOM_CONTEXT
    config = json.loads((checkpoint_path(name) / "config.json").read_text())
    return ModelConfig.from_hf_config(config).max_seq_len


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks across options, run by ``python -m kvlib.bench`` before :func:`main`."""
    try:
        context = _context_length(args.model)
    except (OSError, ValueError) as exc:  # a shipped checkpoint that is missing or unreadable
        parser.error(f"argument --model: {exc}")
    longest = max(args.lengths)
    # the timed steps extend the longest context by --steps tokens, all within the model's context
    if longest + args.steps > context:
        parser.error(
            f"argument --lengths: the longest context ({longest}) plus --steps ({args.steps}) must be <= "
            f"model {args.model}'s context of {context} tokens, got {longest + args.steps}"
        )


def _model(name: str, device: str):
    import torch

    from kvlib.model import ModelConfig, TinyDecoder, load_model

    if name == "random":
        torch.manual_seed(0)
        return TinyDecoder(ModelConfig(max_seq_len=RANDOM_CONTEXT)).eval().to(device)
    return load_model(name).to(device)


def main(args: argparse.Namespace) -> int:
    import torch

    from kvlib.cache.dense import NaiveKVCache
    from kvlib.cache.static import StaticKVCache
    from kvlib.generate import time_next_token
    from kvlib.memory import format_bytes, measure_allocations

    model = _model(args.model, args.device)
    cfg = model.config
    lengths = args.lengths  # a list of ints >= 1, parsed by int_list_arg
    gen = torch.Generator().manual_seed(args.seed)
    context = torch.randint(0, cfg.vocab_size, (args.batch, max(lengths)), generator=gen).to(args.device)
    print(
        f"model {args.model}: {cfg.num_layers} layers, {cfg.num_kv_heads} KV heads of {cfg.head_dim}; "
        f"device {args.device}, batch {args.batch}, torch threads {torch.get_num_threads()}"
    )
    make_cache = lambda: NaiveKVCache(cfg.num_layers)
    with torch.no_grad():
        time_next_token(model, context[:, :8], make_cache, repeats=1, steps=1)  # warm-up
        print(f"\n{'context':>8} {'cached ms/tok':>14} {'uncached ms/tok':>16} {'speed-up':>9}")
        for n in lengths:
            cached = time_next_token(model, context[:, :n], make_cache, args.repeats, args.steps)
            uncached = time_next_token(model, context[:, :n], None, args.repeats, args.steps)
            print(f"{n:8d} {1e3 * cached:14.3f} {1e3 * uncached:16.3f} {uncached / cached:8.1f}x")

    steps = args.update_steps
    new = torch.randn(args.batch, cfg.num_kv_heads, 1, cfg.head_dim, device=args.device)

    def fill(cache):
        for _ in range(steps):
            for layer in range(cfg.num_layers):
                cache.update(layer, new, new)
        return cache

    makers = {
        "growing (torch.cat)": lambda: NaiveKVCache(cfg.num_layers),
        "static (preallocated)": lambda: StaticKVCache(
            cfg.num_layers, args.batch, cfg.num_kv_heads, cfg.head_dim, steps, device=args.device
        ),
    }
    print(f"\n{steps} decode steps of cache updates ({cfg.num_layers} layers):")
    for name, make in makers.items():
        _, stats = measure_allocations(lambda make=make: fill(make()), device=args.device)
        start = time.perf_counter()
        fill(make())
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(
            f"  {name:22s} {stats.num_allocs:7d} allocations, {format_bytes(stats.allocated_bytes):>10s} "
            f"allocated, peak {format_bytes(stats.peak_bytes):>10s}, {1e6 * elapsed / steps:8.1f} us/step"
        )
    return 0
