"""KV memory utilization: contiguous vs paged allocators, prefix sharing, parallel sampling and beams.

Prints four tables (see kvlib.paged.workload, kvlib.paged.simulate and kvlib.paged.sharing for the
workloads and definitions):

1. the mixed chat stream served under a fixed KV budget by contiguous (max reservation, oracle)
   and paged (block sizes 1..256) allocators: token-state utilization and where the rest of the
   reserved memory goes, internal fragmentation per sequence vs its bound B-1, concurrency;
2. the shared-system-prompt workload: measured saving with the hash-chain and radix prefix
   caches vs the analytic (K-1)*floor(L/B)*B / (K*(L+Q)), checked to within one block per group;
3. parallel sampling and beam search savings on ShareGPT-like and Alpaca-like lengths, next to
   the ranges the vLLM paper reports, each row marked in range / below / above (our workloads are
   synthetic, so some rows fall outside; the table says which and whether each sweep overlaps).
"""

from __future__ import annotations

import argparse
import statistics
import time

from kvlib.validate import int_list_arg, positive_int_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=positive_int_arg, default=1000, help="requests in the stream")
    parser.add_argument("--budget", type=positive_int_arg, default=65536, help="KV budget in token slots")
    parser.add_argument(
        "--max-len", type=positive_int_arg, default=2048, help="context window (>= 2, <= --budget)"
    )
    parser.add_argument(
        "--block-sizes", type=int_list_arg, default=[1, 8, 16, 32, 128, 256], help="comma-separated"
    )
    parser.add_argument(
        "--sharing-requests", type=positive_int_arg, default=40, help="requests per sharing experiment"
    )
    parser.add_argument(
        "--beam-requests", type=positive_int_arg, default=15,
        help="requests per beam-search run (<= --sharing-requests, of which they are the first)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save the utilization figure to this path (png/svg)")


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks across options, run by ``python -m kvlib.bench`` before :func:`main`: every request of
    the stream (at most ``--max-len`` tokens) must fit the budget under every allocator, or the
    simulation stops half-way with a traceback."""
    if args.max_len < 2:
        parser.error(f"argument --max-len: expected an integer >= 2 (prompt + output), got {args.max_len}")
    if args.max_len > args.budget:
        parser.error(
            f"argument --max-len: must be <= --budget ({args.budget}): the max-reservation allocator "
            f"reserves max_len slots per request, got {args.max_len}"
        )
    for size in args.block_sizes:
        if -(-args.max_len // size) > args.budget // size:
            parser.error(
                f"argument --block-sizes: block size {size} leaves {args.budget // size} whole blocks in "
                f"--budget {args.budget}, too few for a request of --max-len {args.max_len} tokens"
            )
    if args.beam_requests > args.sharing_requests:
        parser.error(
            f"argument --beam-requests: must be <= --sharing-requests ({args.sharing_requests}), "
            f"got {args.beam_requests}"
        )
    if args.plot is not None:
        _check_plot_path(args.plot, parser)


def _check_plot_path(path: str, parser: argparse.ArgumentParser) -> None:
    """The figure is saved after minutes of simulation: check its folder and format up front."""
    from pathlib import Path

    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    folder, suffix = Path(path).parent, Path(path).suffix.lstrip(".").lower()
    if suffix not in formats:
        parser.error(
            f"argument --plot: expected a file name ending in one of {', '.join(sorted(formats))}, "
            f"got {path!r}"
        )
    if not folder.is_dir():
        parser.error(f"argument --plot: folder {str(folder)!r} does not exist (got {path!r})")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(args: argparse.Namespace) -> int:
    from kvlib.paged.sharing import (
        PAPER_RANGES,
        beam_search_savings,
        paper_range_verdict,
        parallel_sampling_savings,
        shared_prefix_savings,
    )
    from kvlib.paged.simulate import compare_allocators
    from kvlib.paged.workload import WORKLOADS, chat_workload

    t0 = time.perf_counter()
    reqs = chat_workload(args.requests, seed=args.seed, max_len=args.max_len)
    prompts = sorted(r.prompt_len for r in reqs)
    outputs = sorted(r.output_len for r in reqs)

    def q(xs: list[int], p: float) -> int:
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    print(f"Mixed chat stream: {len(reqs)} requests, log-normal lengths (kvlib.paged.workload), "
          f"budget {args.budget} token slots, max_len {args.max_len}")  # fmt: skip
    for label, xs in (("prompt", prompts), ("output", outputs)):
        print(
            f"  {label}: mean {statistics.mean(xs):.0f}  median {q(xs, 0.5)}  p90 {q(xs, 0.9)}  "
            f"p99 {q(xs, 0.99)}  max {xs[-1]}"
        )
    block_sizes = tuple(args.block_sizes)  # ints >= 1, parsed by int_list_arg
    results = compare_allocators(reqs, args.budget, args.max_len, block_sizes)
    print()
    print(f"{'allocator':<30}{'tokens':>8}{'reserv.':>9}{'int.frag':>9}{'ext.frag':>9}"
          f"{'frag/seq':>10}{'bound':>7}{'running':>9}{'max':>6}{'steps':>7}{'preempt':>8}")  # fmt: skip
    for r in results:
        frag = f"{r.internal_per_seq:.1f}" if r.block_size else "-"
        bound = str(r.internal_bound) if r.block_size else "-"
        print(
            f"{r.name:<30}{_pct(r.token_share):>8}{_pct(r.reservation_share):>9}{_pct(r.internal_share):>9}"
            f"{_pct(r.external_share):>9}{frag:>10}{bound:>7}{r.mean_running:>9.1f}{r.max_running:>6}"
            f"{r.steps:>7}{r.preemptions:>8}"
        )
    print("  tokens = live tokens / reserved slots (token-state utilization); reserv. = held for the same")
    print("  requests' future tokens; int.frag = reserved, never used; ext.frag = free but unusable share of")
    print("  the budget while a request waited; frag/seq = mean unused slots per live sequence (bound B-1);")
    print("  running = mean concurrent sequences; preempt = paged requests preempted (readmitted later,")
    print("  re-prefilling prompt + the tokens they had generated: vLLM's recompute).")
    by_name = {r.name: r for r in results}
    paged16 = next((r for r in results if r.block_size == 16), None)
    if paged16:
        verdict = "ok" if paged16.token_share >= 0.96 else "BELOW TARGET"
        print(f"  vLLM paper, in kind: paged block 16 keeps {_pct(paged16.token_share)} (>= 96%: {verdict});")
    # only the max-reservation row is set against the paper's 20-40%: our oracle knows every output
    # length exactly, which no serving system does, so it keeps far more
    max_res = by_name.get("contiguous (max reservation)")
    oracle = by_name.get("contiguous (oracle)")
    if max_res:
        print(f"  contiguous with max reservation keeps {_pct(max_res.token_share)} (paper: about 20-40%);")
    if oracle:
        print(f"  contiguous oracle keeps {_pct(oracle.token_share)} (exact lengths known in advance: the")
        print("  best a contiguous reservation can do; no real system knows them).")

    print(
        "\nShared system prompt (prefix caching, block 16): saving = 1 - blocks with sharing / blocks without"
    )
    print(f"{'N':>3}{'K':>4}{'L':>6}{'Q':>5}  {'cache':<6}{'blocks':>8}{'shared':>8}{'saving':>9}"
          f"{'tokens saved':>14}{'analytic':>10}{'|diff|':>8}{'<= N*B':>8}")  # fmt: skip
    ok_prefix = True
    for n_groups, k, length, qlen in ((10, 8, 1000, 50), (4, 16, 500, 37), (20, 4, 37, 100), (8, 2, 15, 20)):
        for cache in ("hash", "radix"):
            s = shared_prefix_savings(n_groups, k, length, qlen, 16, cache, seed=args.seed)
            d = s.detail
            diff = abs(d["saved_tokens"] - d["analytic_saved_tokens"])
            ok = diff <= d["tolerance_tokens"]
            ok_prefix &= ok
            print(
                f"{n_groups:>3}{k:>4}{length:>6}{qlen:>5}  {cache:<6}"
                f"{s.blocks_unshared:>8}{s.blocks_shared:>8}"
                f"{_pct(s.saving):>9}{_pct(d['measured_token_saving']):>14}{_pct(s.analytic):>10}"
                f"{diff:>8.0f}{'yes' if ok else 'NO':>8}"
            )
    print(
        "  tokens saved = (blocks without - with) * B / (N*K*(L+Q)); analytic = (K-1)*floor(L/B)*B/(K*(L+Q))"
    )

    print("\nParallel sampling and beam search (block 16; memory summed over generation steps)")
    header = f"{'workload':<10}{'decoding':<22}{'saving':>9}{'CoW copies':>12}   {'vLLM paper range':<18}"
    print(header + "vs paper")
    sweeps: dict[str, list[float]] = {}
    for wl in ("sharegpt", "alpaca"):
        wreqs = chat_workload(
            args.sharing_requests, seed=args.seed + 1, max_len=args.max_len, **WORKLOADS[wl]
        )
        for kind, widths in (("parallel", (2, 4, 6)), ("beam", (2, 4, 6))):
            key = f"{kind}_{wl}"
            lo, hi = PAPER_RANGES[key]
            for w in widths:
                if kind == "parallel":
                    s = parallel_sampling_savings(wreqs, w, seed=args.seed)
                else:
                    s = beam_search_savings(wreqs[: args.beam_requests], w, seed=args.seed)
                sweeps.setdefault(key, []).append(s.saving)
                paper = f"{_pct(lo)}-{_pct(hi)}"
                print(
                    f"{wl:<10}{s.workload:<22}{_pct(s.saving):>9}{s.copies:>12}   {paper:<18}"
                    f"{paper_range_verdict(s.saving, key)}"
                )
    rows = [(key, x) for key, xs in sweeps.items() for x in xs]
    outside = sum(paper_range_verdict(x, key) != "in range" for key, x in rows)
    # a sweep overlaps the paper's range when its lowest saving is not above it nor its highest below
    overlap = [key for key, xs in sweeps.items() if min(xs) <= PAPER_RANGES[key][1]]
    overlap = [key for key in overlap if max(sweeps[key]) >= PAPER_RANGES[key][0]]
    print(f"  {outside} of {len(rows)} rows fall outside the paper's range; the sweep over n or k overlaps")
    print(f"  it for {len(overlap)} of {len(sweeps)} series ({', '.join(overlap) or 'none'}).")
    print("  The paper measured its engine on real traces; ours are synthetic, so we match it in kind, not")
    print("  row by row: parallel samples stop at their own lengths (log-normal spread 0.5 around the")
    print("  request's output), and beams run on a synthetic language model whose peakiness sets how")
    print("  long beams share their history.")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from kvlib.paged.plots import plot_utilization

        fig = plot_utilization(results)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"\nfigure saved to {args.plot}")
    print(f"\n(done in {time.perf_counter() - t0:.1f} s)")
    return 0 if ok_prefix else 1
