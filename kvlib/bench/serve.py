"""Serving throughput and latency: our engine vs Hugging Face static and continuous batching, side by side.

One shipped checkpoint, one request stream (:func:`kvlib.serve.workload.serving_workload`: real prompts,
log-normal lengths, Poisson arrivals at ``--rate``, default inf = every request at t = 0), served side by
side in one run by:

- ``ours``: :class:`kvlib.serve.engine.Engine` (paged KV cache, radix prefix cache, iteration-level
  scheduling) on a :class:`~kvlib.serve.engine.VirtualClock` (idle time before an arrival is skipped);
- ``HF static``: ``transformers`` ``generate`` on batches of ``--batch-size`` requests in arrival order,
  left padded, each batch run for its largest ``max_tokens`` (:func:`kvlib.serve.baselines.static_batching`,
  same VirtualClock rule);
- ``HF continuous``: transformers' own ``ContinuousBatchingManager`` (paged cache, sdpa attention on
  the CPU), requests added at their arrival times in real time
  (:func:`kvlib.serve.baselines.continuous_batching`); if it cannot run, the table says why instead of a row.

The table gives output tokens/s and requests/s (from the first arrival to the last token), and p50/p99
of TTFT, TPOT and inter-token latency (:mod:`kvlib.serve.metrics`), then the ratio of ours to each
baseline in tokens/s and how many requests' greedy outputs equal ours. A mismatch is reported with its
first differing token and the gap between the two best logits of our model there: left padding changes
HF's float sums, which may flip a near-tie (the exit status is 1 only for a mismatch that is not one).
``--rates 1,2,4`` adds a latency-throughput curve (ours and HF static at each Poisson rate: throughput
vs p99 TTFT and TPOT), saved as a figure with ``--plot``. Every system runs with ``--threads`` torch threads.

Measured on a shared 2-core CPU (other jobs running, so +-15% between runs), defaults (64 chat
requests, offline, shakespeare-mha, ``--threads 1``), two runs: ours 423-465 output tokens/s, HF static
(batches of 16) 99-100, HF continuous 407-428 (transformers 5.23 runs it on the CPU with sdpa: no flash
attention, no CUDA graphs): ours 4.3-4.7x HF static and 0.99-1.14x HF continuous, with p99 TTFT 0.9-1.0 s
against 43-45 s and 2.5-2.9 s; every greedy output of both baselines equal to ours. ``--mix
shared-prefix``: ours 374, HF static 95, HF continuous 225 tokens/s (3.95x, 1.67x). The engine got there
from 113-207 tokens/s with fused attention (``F.scaled_dot_product_attention`` in
:func:`kvlib.attention.ragged_attention`), an ``index_select`` gather of blocks, and rows grouped by
length into forwards with little padding; cProfile then puts the time in the gather and the attention
kernel, about a third each, the linear layers most of the rest.
Latency-throughput (``--requests 48 --rates 1,2,4,8``): ours 70/131/219/322 tokens/s at p99 TTFT
56-126 ms; HF static 50/73/89/91 tokens/s at p99 TTFT 20-24 s (a batch waits for its 16th arrival).
HF static's ratio depends on ``--batch-size``: 8 and 16 are its best on this workload (32: 0.7x of 16,
64: 0.3x), since each batch runs for its longest request (72% of its decode work is discarded at 16).
Example: ``python -m kvlib.bench serve --requests 64 --rates 1,2,4,8 --plot serve.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kvlib.validate import auto_or_positive_int_arg, nonnegative_int_arg, positive_float_arg, positive_int_arg

NEAR_TIE = 1e-3  # a top-2 logit gap below this is a tie that float rounding may break either way
MAX_MISMATCHES_SHOWN = 5
SYSTEM_LEN = 128  # the shared-prefix mix's system prompt (serving_workload's default)


def rate_arg(text: str) -> float:
    """argparse type for ``--rate``: requests per second, a finite number > 0 or ``inf`` (offline)."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        return positive_float_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected requests per second > 0 or 'inf', got {text!r}") from None


def rates_arg(text: str) -> list[float]:
    """argparse type for ``--rates``: comma-separated finite rates > 0, e.g. ``1,2,4.5``."""
    try:
        return [positive_float_arg(item.strip()) for item in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite requests per second > 0 like 1,2,4, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kvlib.model import MODEL_NAMES
    from kvlib.serve.scheduler import PREEMPTION_MODES
    from kvlib.serve.workload import MIXES

    parser.add_argument("--model", default="shakespeare-mha", choices=MODEL_NAMES, help="shipped checkpoint")
    parser.add_argument("--requests", type=positive_int_arg, default=64, help="requests in the stream")
    parser.add_argument(
        "--rate", type=rate_arg, default=math.inf, help="Poisson arrivals per second, or inf (all at t = 0)"
    )
    parser.add_argument("--mix", default="chat", choices=MIXES, help="independent prompts or a system prompt")
    parser.add_argument(
        "--max-len", type=positive_int_arg, default=None,
        help="longest request, prompt + output tokens (default: the model's context)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int_arg, default=16, help="HF static batch size")
    parser.add_argument("--block-size", type=positive_int_arg, default=16, help="tokens per KV block")
    parser.add_argument(
        "--num-blocks", type=auto_or_positive_int_arg, default="auto",
        help="KV blocks of the engine and HF continuous ('auto': every request fits at once)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-size", type=positive_int_arg, default=None, help="chunked prefill: prompt tokens per step"
    )
    parser.add_argument("--preemption", default="recompute", choices=PREEMPTION_MODES, help="ours only")
    parser.add_argument("--rates", type=rates_arg, default=None, help="latency-throughput curve at these")
    parser.add_argument("--plot", default=None, help="save the curve of --rates to this path (png/svg)")
    parser.add_argument(
        "--threads", type=nonnegative_int_arg, default=1, help="torch threads for every system (0: default)"
    )
    parser.add_argument("--seed", type=nonnegative_int_arg, default=0, help="workload lengths and prompts")


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The workload must fit the model's context and the KV pool, and a plot needs a curve."""
    from kvlib.bench.cache_speed import _context_length
    from kvlib.bench.fragmentation import _check_plot_path

    context = _context_length(args.model)
    if args.max_len is None:
        args.max_len = context
    if args.max_len > context:
        parser.error(
            f"argument --max-len: requests of up to {args.max_len} tokens would not fit model {args.model}'s "
            f"context of {context} tokens; use at most {context}"
        )
    shortest = SYSTEM_LEN + 2 if args.mix == "shared-prefix" else 2
    if args.max_len < shortest:
        parser.error(
            f"argument --max-len: the {args.mix} mix needs at least {shortest} tokens per request "
            f"(a prompt and an output), got {args.max_len}"
        )
    if args.num_blocks != "auto":
        need = -(-args.max_len // args.block_size)  # the longest request the workload may hold
        if args.num_blocks < need:
            parser.error(
                f"argument --num-blocks: {args.num_blocks} blocks of {args.block_size} tokens cannot hold "
                f"one request of --max-len {args.max_len} tokens; use at least {need}"
            )
    if args.plot is not None:
        if not args.rates:
            parser.error("argument --plot: the figure is the latency-throughput curve; give --rates too")
        _check_plot_path(args.plot, parser)


@dataclass
class Run:
    """One system's run: its outputs in workload order and the metrics of its token times."""

    name: str
    outputs: list[list[int]]
    report: Any  # kvlib.serve.metrics.ServeReport
    wall_s: float


def _workload(args: argparse.Namespace, rate: float) -> list[Any]:
    from kvlib.serve.workload import serving_workload

    return serving_workload(args.requests, rate, mix=args.mix, context=args.max_len, seed=args.seed)


def _auto_blocks(workload: Sequence[Any], block_size: int) -> int:
    """Blocks for every request of ``workload`` at once, its whole output included: no preemption."""
    return sum(-(-(len(r.prompt) + r.max_tokens) // block_size) for r in workload)


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields a callback taking the number of requests finished."""
    from tqdm import tqdm

    with tqdm(total=total, desc=f"{label:<14}", unit="req", file=sys.stderr, leave=False) as bar:

        def update(finished: int) -> None:
            if finished > bar.n:  # called after every step: redraw only when a request finished
                bar.update(finished - bar.n)

        yield update


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings while we run it: a padded batch past the model's 512 positions
    (the padding, never a real token, goes there) and the CPU's missing flash-attention fast path."""
    import logging

    from transformers.utils import logging as hf_logging

    cb_logger = logging.getLogger("ContinuousBatchingLogger")
    verbosity, cb_level = hf_logging.get_verbosity(), cb_logger.level
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights": ours are the only bars on stderr
    cb_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        cb_logger.setLevel(cb_level)


def _run(name: str, serve: Callable[[Callable[[int], None]], list[Any]], total: int) -> Run:
    """Time ``serve(progress)`` (requests with ``.output`` and ``.times()``) and summarize its token times."""
    from kvlib.serve.metrics import summarize

    start = time.perf_counter()
    with _progress(name, total) as progress:
        served = serve(progress)
    wall = time.perf_counter() - start
    return Run(name, [list(r.output) for r in served], summarize([r.times() for r in served]), wall)


def _run_ours(model: Any, workload: list[Any], args: argparse.Namespace, num_blocks: int) -> tuple[Run, Any]:
    from kvlib.serve.engine import Engine, VirtualClock

    engine = Engine(
        model,
        num_blocks=num_blocks,
        block_size=args.block_size,
        chunk_size=args.chunk_size,
        preemption=args.preemption,
        clock=VirtualClock(),
    )
    run = _run("ours", lambda progress: engine.run(workload, progress), len(workload))
    return run, engine


def _run_static(hf_model: Any, workload: list[Any], batch_size: int) -> Run:
    from kvlib.serve.baselines import static_batching
    from kvlib.serve.engine import VirtualClock

    def serve(progress: Callable[[int], None]) -> list[Any]:
        return static_batching(hf_model, workload, batch_size, clock=VirtualClock(), progress=progress)

    return _run(f"HF static (batches of {batch_size})", serve, len(workload))


def _run_continuous(hf_model: Any, workload: list[Any], args: argparse.Namespace, num_blocks: int) -> Run:
    from kvlib.serve.baselines import continuous_batching

    def serve(progress: Callable[[int], None]) -> list[Any]:
        return continuous_batching(
            hf_model, workload, block_size=args.block_size, num_blocks=num_blocks, progress=progress
        )

    return _run("HF continuous (transformers)", serve, len(workload))


def _warm_up(model: Any, hf_model: Any) -> None:
    """One tiny request through each system: first-call costs (allocator, kernels) stay out of the timings."""
    import torch

    from kvlib.serve.engine import Engine

    Engine(model, num_blocks=4).generate([[1, 2, 3]])
    with torch.no_grad():
        hf_model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False, pad_token_id=0)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{1000 * seconds:.1f}"


HEADER = (
    f"{'system':<30}{'tok/s':>8}{'req/s':>7}{'TTFT p50':>10}{'p99':>9}{'TPOT p50':>10}{'p99':>7}"
    f"{'ITL p50':>9}{'p99':>7}  equal to ours"
)


def _row(run: Run, equal: str) -> str:
    r = run.report
    return (
        f"{run.name:<30}{r.output_tokens_per_s:>8.1f}{r.requests_per_s:>7.2f}{_ms(r.ttft['p50']):>10}"
        f"{_ms(r.ttft['p99']):>9}{_ms(r.tpot['p50']):>10}{_ms(r.tpot['p99']):>7}{_ms(r.itl['p50']):>9}"
        f"{_ms(r.itl['p99']):>7}  {equal}"
    )


@dataclass(frozen=True)
class Mismatch:
    """A request whose baseline output differs from ours: first differing output token and our model's
    gap between its two best logits there (small: a near-tie that float rounding may flip)."""

    request: int
    position: int
    ours: int
    theirs: int
    logit_gap: float


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def mismatches(model: Any, workload: Sequence[Any], ours: Run, theirs: Run) -> list[Mismatch]:
    """Every request whose output in ``theirs`` differs from ``ours``, with the logit gap at the first
    difference (our model, on the prompt and our tokens before it)."""
    import torch

    found = []
    for i, (a, b) in enumerate(zip(ours.outputs, theirs.outputs)):
        if a == b:
            continue
        pos = _first_difference(a, b)
        gap = math.nan
        if pos < min(len(a), len(b)):
            with torch.no_grad():
                logits = model(torch.tensor([list(workload[i].prompt) + a[:pos]]))[0, -1]  # (V,)
            top = logits.topk(2).values
            gap = float(top[0] - top[1])
        theirs_token = b[pos] if pos < len(b) else -1  # -1: their output ended early
        found.append(Mismatch(i, pos, a[pos] if pos < len(a) else -1, theirs_token, gap))
    return found


def _describe_workload(workload: Sequence[Any], args: argparse.Namespace) -> str:
    prompts = sorted(len(r.prompt) for r in workload)
    outputs = sorted(r.max_tokens for r in workload)
    rate = "offline: all at t = 0" if args.rate == math.inf else f"Poisson, {args.rate:g}/s"
    return (
        f"{len(workload)} {args.mix} requests ({rate}); prompts {prompts[0]}..{prompts[-1]} tokens "
        f"(median {statistics.median(prompts):g}), outputs {outputs[0]}..{outputs[-1]} "
        f"(median {statistics.median(outputs):g}), {sum(outputs)} output tokens"
    )


def static_waste(workload: Sequence[Any], batch_size: int) -> tuple[int, int]:
    """(token steps HF static batching computes, output tokens kept): each batch runs every row for
    its largest ``max_tokens``."""
    from kvlib.serve.baselines import arrival_batches

    batches = arrival_batches(workload, batch_size)
    computed = sum(len(b) * max(workload[i].max_tokens for i in b) for b in batches)
    return computed, sum(r.max_tokens for r in workload)


def main(args: argparse.Namespace) -> int:
    import torch

    from kvlib.model import load_model
    from kvlib.serve.baselines import load_hf_model

    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    with _quiet_transformers():
        hf_model = load_hf_model(args.model)
        workload = _workload(args, args.rate)
        num_blocks = _auto_blocks(workload, args.block_size) if args.num_blocks == "auto" else args.num_blocks
        threads = torch.get_num_threads()
        print(f"model {args.model}, torch threads {threads}: {_describe_workload(workload, args)}")
        print(
            f"engine and HF continuous: {num_blocks} KV blocks of {args.block_size} tokens; engine chunked "
            f"prefill {args.chunk_size or 'off'}, preemption {args.preemption}; HF static: batches of "
            f"{args.batch_size} in arrival order, left padded"
        )
        _warm_up(model, hf_model)
        ours, engine = _run_ours(model, workload, args, num_blocks)
        static = _run_static(hf_model, workload, args.batch_size)
        try:
            continuous: Run | str = _run_continuous(hf_model, workload, args, num_blocks)
        except Exception as exc:  # whatever transformers raises is the finding: print it, not a traceback
            continuous = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    ok = _print_table(model, workload, ours, static, continuous)
    computed, kept = static_waste(workload, args.batch_size)
    print(
        f"HF static computed {computed} token steps for {kept} output tokens: {1 - kept / computed:.0%} of "
        "its decode work went to rows already past their own max_tokens"
    )
    print(
        f"ours: {len(engine.step_log)} steps, {engine.scheduler.num_preemptions} preemptions, "
        f"peak {max(s['blocks_used'] for s in engine.step_log)} of {num_blocks} blocks in use"
    )
    if args.rates:
        curve = _latency_curve(model, hf_model, args)
        if args.plot:
            _save_plot(curve, args)
    print(f"\n(done in {time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


def _print_table(model: Any, workload: list[Any], ours: Run, static: Run, continuous: Run | str) -> bool:
    """The side-by-side table, the ratios and the output comparison; False if an output differs from
    ours where our model's top two logits are not a near-tie."""
    baselines = [static] + ([continuous] if isinstance(continuous, Run) else [])
    found = {run.name: mismatches(model, workload, ours, run) for run in baselines}
    n = len(workload)
    print("\nSide by side (TTFT, TPOT and ITL in ms):\n" + HEADER)
    print(_row(ours, "-"))
    for run in baselines:
        print(_row(run, f"{n - len(found[run.name])}/{n}"))
    if isinstance(continuous, str):
        print(f"{'HF continuous (transformers)':<30}did not run: {continuous}")
    print()
    for run, target in ((static, 2.0), (continuous, 1.0)):
        if isinstance(run, Run):
            ratio = ours.report.output_tokens_per_s / run.report.output_tokens_per_s
            verdict = "met" if ratio >= target else "NOT met"
            print(f"ours / {run.name}: {ratio:.2f}x output tokens/s (target >= {target:g}x: {verdict})")
    ok = True
    for name, misses in found.items():
        ties = sum(m.logit_gap < NEAR_TIE for m in misses)
        ok &= ties == len(misses)
        if misses:
            print(
                f"{name}: {len(misses)} outputs differ from ours, {ties} of them at a near-tie "
                f"(top-2 logit gap < {NEAR_TIE:g})"
            )
        for m in misses[:MAX_MISMATCHES_SHOWN]:
            print(
                f"  request {m.request}: first differs at output token {m.position} (ours {m.ours}, theirs "
                f"{m.theirs}); our top-2 logit gap there {m.logit_gap:.2g}"
            )
    if all(not misses for misses in found.values()):
        print(f"greedy outputs: every baseline that ran produced ours for all {n} requests")
    return ok


@dataclass(frozen=True)
class CurvePoint:
    rate: float
    system: str
    tokens_per_s: float
    ttft_p99: float
    tpot_p99: float


def _latency_curve(model: Any, hf_model: Any, args: argparse.Namespace) -> list[CurvePoint]:
    """Ours and HF static at each of ``--rates`` (a fresh workload per rate, same seed)."""
    curve = []
    print(
        f"\nLatency-throughput: ours vs HF static (batches of {args.batch_size}), "
        f"{args.requests} requests per rate"
    )
    print(f"{'rate/s':>7}  {'system':<30}{'tok/s':>8}{'p99 TTFT ms':>13}{'p99 TPOT ms':>13}")
    for rate in args.rates:
        workload = _workload(args, rate)
        num_blocks = _auto_blocks(workload, args.block_size) if args.num_blocks == "auto" else args.num_blocks
        with _quiet_transformers():
            ours = _run_ours(model, workload, args, num_blocks)[0]
            runs = [ours, _run_static(hf_model, workload, args.batch_size)]
        for run, system in zip(runs, ("ours", "HF static")):
            r = run.report
            point = CurvePoint(rate, system, r.output_tokens_per_s, r.ttft["p99"], r.tpot["p99"])
            curve.append(point)
            print(
                f"{rate:>7g}  {run.name:<30}{point.tokens_per_s:>8.1f}{_ms(point.ttft_p99):>13}"
                f"{_ms(point.tpot_p99):>13}"
            )
    return curve


def plot_curve(curve: Sequence[CurvePoint]) -> Any:
    """Throughput vs p99 TTFT (left) and p99 TPOT (right), one line per system, points labelled by rate."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, field, label in ((axes[0], "ttft_p99", "p99 TTFT (s)"), (axes[1], "tpot_p99", "p99 TPOT (ms)")):
        scale = 1.0 if field == "ttft_p99" else 1000.0
        for system, marker in (("ours", "o"), ("HF static", "s")):
            points = [p for p in curve if p.system == system]
            xs = [p.tokens_per_s for p in points]
            ys = [scale * getattr(p, field) for p in points]
            ax.plot(xs, ys, marker=marker, label=system)
            for p, x, y in zip(points, xs, ys):
                ax.annotate(f"{p.rate:g}/s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if field == "ttft_p99":
            ax.set_yscale("log")  # static batching waits for whole batches: orders of magnitude apart
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Latency vs throughput at increasing Poisson arrival rates (labels: requests/s)")
    return fig


def _save_plot(curve: list[CurvePoint], args: argparse.Namespace) -> None:
    fig = plot_curve(curve)
    fig.savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"figure saved to {args.plot}")
