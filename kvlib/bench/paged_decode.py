"""Paged decode attention: bandwidth vs peak on CUDA; an interpreter correctness sweep on CPU.

Decode attention reads every cached K/V byte once per step and does little arithmetic per byte,
so its speed is set by memory bandwidth. On CUDA this benchmark reports, for one decode step:

- ``bytes``: K and V bytes the step must read (``sum(seq_lens) * num_kv_heads * head_dim * 2 * elem``)
  plus q, output and block table;
- achieved bandwidth ``bytes / time``, as a share of (a) the device's spec HBM bandwidth and
  (b) a device-to-device copy measured in the same run (the practical ceiling);
- three variants: the Triton kernel on a paged cache (shuffled physical blocks), the same kernel
  on a contiguous cache (one block per sequence, see ``contiguous_as_paged``), and PyTorch's
  ``scaled_dot_product_attention`` on a contiguous ``(B, H, S, D)`` cache.

Each time is per call: ``--iters`` calls queued back to back between one pair of CUDA events,
median of 5 such rounds after warm-up, so host launch overhead overlaps the GPU work as in a
decode loop instead of being added to every call.

Targets from the course: >= 60% of peak on an H100 (stretch 75%), paged within 10% of contiguous.
Without CUDA the Triton kernel can only run in the CPU interpreter, whose timings mean nothing,
so the benchmark checks correctness there instead and says so: a small sweep, or the one shape the
options ask for (refused, with the minutes it would take, when too large for the interpreter).
Measured on an H200 with the defaults: 4.2 TB/s, 87-88% of the 4.8 TB/s spec, 1.5-2% slower
paged than contiguous.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from kvlib.validate import auto_or_positive_int_arg, nonnegative_int_arg, positive_int_arg, require_int

# spec HBM bandwidth in GB/s (1e9 bytes/s), from the vendors' data sheets; matched on device name
SPEC_BANDWIDTH_GBS: dict[str, float] = {
    "H200": 4800.0,
    "H100 NVL": 3900.0,
    "H100 80GB HBM3": 3350.0,  # SXM5
    "H100 PCIe": 2000.0,
    "H100": 3350.0,
    "GH200": 4000.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100": 1555.0,  # 40 GB
    "L40S": 864.0,
    "L4": 300.0,
    "A10G": 600.0,
    "A10": 600.0,
    "RTX 4090": 1008.0,
    "RTX 3090": 936.0,
    "V100": 900.0,
    "T4": 320.0,
}


def spec_bandwidth_gbs(device_name: str) -> float | None:
    """Spec bandwidth for a device name (longest matching key wins), or None if unknown."""
    hits = [k for k in SPEC_BANDWIDTH_GBS if k.lower() in device_name.lower()]
    return SPEC_BANDWIDTH_GBS[max(hits, key=len)] if hits else None


# the shape the course's targets are stated for (an H100-class decode step); the same on every machine
SHAPE_DEFAULTS = {"batch": 64, "seq_len": 4096, "num_heads": 32, "num_kv_heads": 8, "head_dim": 128,
                  "block_size": 16, "dtype": "bf16"}  # fmt: skip
INTERPRETER_MS_PER_TILE = 5.0  # one program's 32-token tile in Triton's CPU interpreter, measured here
INTERPRETER_MAX_TILES = 4096  # about 20 s: beyond that the CPU path refuses instead of running for minutes
TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SHAPE_DEFAULTS
    shape = " (on the CPU: runs one interpreter case at this shape instead of the sweep)"
    parser.add_argument("--batch", type=positive_int_arg, help=f"sequences (default {d['batch']}){shape}")
    parser.add_argument(
        "--seq-len",
        type=positive_int_arg,
        help=f"tokens per sequence, max if --ragged (default {d['seq_len']})",
    )
    parser.add_argument("--num-heads", type=positive_int_arg, help=f"query heads (default {d['num_heads']})")
    parser.add_argument(
        "--num-kv-heads", type=positive_int_arg, help=f"must divide --num-heads (default {d['num_kv_heads']})"
    )
    parser.add_argument("--head-dim", type=positive_int_arg, help=f"default {d['head_dim']}")
    parser.add_argument(
        "--block-size", type=positive_int_arg, help=f"tokens per page (default {d['block_size']})"
    )
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help=f"default {d['dtype']}")
    parser.add_argument(
        "--splits", type=auto_or_positive_int_arg, default="auto", help="split-K chunks per row, or 'auto'"
    )
    parser.add_argument(
        "--iters", type=positive_int_arg, default=50, help="back-to-back calls per timed round (CUDA only)"
    )
    parser.add_argument("--ragged", action="store_true", help="uniform random lengths in [1, seq-len]")
    parser.add_argument("--seed", type=nonnegative_int_arg, default=0)


def resolve_shape(args: argparse.Namespace) -> list[str]:
    """Fill the shape options left out with :data:`SHAPE_DEFAULTS`; return the flags that were given."""
    given = getattr(args, "shape_given", None)
    if given is None:
        given = [name for name in SHAPE_DEFAULTS if getattr(args, name, None) is not None]
        for name, value in SHAPE_DEFAULTS.items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
        args.shape_given = given
    return given


def interpreter_tiles(args: argparse.Namespace) -> int:
    """Programs x 32-token tiles the interpreter would walk for this shape (its run time is ~linear in it)."""
    return args.batch * args.num_kv_heads * math.ceil(args.seq_len / 32)


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks across options, run by ``python -m kvlib.bench`` before :func:`main`. They hold on every
    machine: a command that is wrong fails the same way everywhere. On the CPU a shape that is given is
    honoured (one interpreter case at that shape), so a shape too large for the interpreter is refused
    with the time it would take, rather than run for minutes or silently replaced."""
    given = resolve_shape(args)
    if args.num_heads % args.num_kv_heads:
        parser.error(
            f"argument --num-kv-heads: must divide --num-heads ({args.num_heads}) for grouped-query "
            f"attention, got {args.num_kv_heads}"
        )
    if torch.cuda.is_available():
        need, free = cuda_bytes_needed(args), torch.cuda.mem_get_info()[0]
        if need > free:
            parser.error(
                f"arguments --batch/--seq-len/--num-kv-heads/--head-dim: the caches need about "
                f"{need / 2**30:.1f} GiB of GPU memory, only {free / 2**30:.1f} GiB is free"
            )
    elif given and interpreter_tiles(args) > INTERPRETER_MAX_TILES:
        tiles = interpreter_tiles(args)
        parser.error(
            f"arguments --batch/--seq-len/--num-kv-heads: without CUDA the kernel runs in Triton's CPU "
            f"interpreter, and batch {args.batch} x {args.num_kv_heads} KV heads x {args.seq_len} tokens is "
            f"{tiles:,} tiles of 32 tokens, about {tiles * INTERPRETER_MS_PER_TILE / 60e3:.0f} min; give a "
            f"shape of at most {INTERPRETER_MAX_TILES:,} tiles (e.g. --batch 4 --seq-len 512 "
            f"--num-kv-heads 2), or run on a GPU"
        )


def cuda_bytes_needed(args: argparse.Namespace) -> int:
    """GPU bytes :func:`run_cuda_benchmark` allocates: K and V three times (paged pool, contiguous,
    SDPA layout), padded to whole blocks, plus the 1 GiB pair of the copy-bandwidth test."""
    elem = torch.finfo(DTYPES[args.dtype]).bits // 8
    tokens = args.batch * math.ceil(args.seq_len / args.block_size) * args.block_size
    return 3 * 2 * tokens * args.num_kv_heads * args.head_dim * elem + 2 * (1 << 30)


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def time_cuda(fn, iters: int, rounds: int = 5) -> float:
    """Milliseconds per call of ``fn`` on the GPU.

    After warm-up, each round times ``iters`` back-to-back calls between one pair of CUDA events
    and divides by ``iters``: the host queues the next launch while the GPU runs the current one,
    as in a decode loop, so its launch overhead is hidden as it would be in serving. (An event pair
    and a sync around every single call would count that overhead each time, and for short kernels
    measure the host, not the memory system.) Returns the median over ``rounds``."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / iters)
    per_call.sort()
    return per_call[len(per_call) // 2]


def measure_copy_bandwidth_gbs(nbytes: int = 1 << 30, iters: int = 20) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second / 1e9) on the current GPU."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src), iters)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def run_cuda_benchmark(
    batch: int = 64,
    seq_len: int = 4096,
    num_heads: int = 32,
    num_kv_heads: int = 8,
    head_dim: int = 128,
    block_size: int = 16,
    dtype: torch.dtype = torch.bfloat16,
    splits: int | str = "auto",
    iters: int = 50,
    ragged: bool = False,
    seed: int = 0,
) -> list[dict]:
    """Time paged / contiguous / SDPA decode on CUDA; one dict per variant (ms, GB/s, bytes, max_err)."""
    import torch.nn.functional as F

    sizes = dict(batch=batch, seq_len=seq_len, num_heads=num_heads, num_kv_heads=num_kv_heads,
                 head_dim=head_dim, block_size=block_size, iters=iters)  # fmt: skip
    for name, value in sizes.items():
        require_int(name, value, minimum=1)
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads must divide num_heads ({num_heads}) for grouped queries, got {num_kv_heads}"
        )
    if not torch.cuda.is_available():
        raise RuntimeError("run_cuda_benchmark needs a CUDA GPU: torch.cuda.is_available() is False")

    from kvlib.kernels import contiguous_as_paged, paged_attention_decode

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(seed)
    if ragged:
        lens = torch.randint(1, seq_len + 1, (batch,), device=dev, generator=g, dtype=torch.int32)
    else:
        lens = torch.full((batch,), seq_len, dtype=torch.int32, device=dev)
    blocks_per_seq = math.ceil(seq_len / block_size)
    num_blocks = batch * blocks_per_seq
    # paged cache: every sequence's blocks scattered over the pool
    k_cache = torch.randn(
        num_blocks, block_size, num_kv_heads, head_dim, device=dev, dtype=dtype, generator=g
    )
    v_cache = torch.randn(
        num_blocks, block_size, num_kv_heads, head_dim, device=dev, dtype=dtype, generator=g
    )
    perm = torch.randperm(num_blocks, device=dev, generator=g).to(torch.int32)
    table = perm.view(batch, blocks_per_seq)  # (B, blocks_per_seq)
    q = torch.randn(batch, num_heads, head_dim, device=dev, dtype=dtype, generator=g)
    # the same K/V laid out contiguously: (B, S, Hkv, D) for our kernel, (B, Hkv, S, D) for SDPA
    k_contig = k_cache[table.long()].flatten(1, 2)[:, :seq_len].contiguous()  # (B, S, Hkv, D)
    v_contig = v_cache[table.long()].flatten(1, 2)[:, :seq_len].contiguous()
    kc, vc, ctable = contiguous_as_paged(k_contig, v_contig, lens)
    k_sdpa = k_contig.transpose(1, 2).contiguous()  # (B, Hkv, S, D)
    v_sdpa = v_contig.transpose(1, 2).contiguous()
    mask = None
    if ragged:
        pos = torch.arange(seq_len, device=dev)
        mask = (pos[None, :] < lens[:, None]).view(batch, 1, 1, seq_len)  # (B, 1, 1, S)

    split_arg: int | str = splits if splits == "auto" else int(splits)
    paged_out = paged_attention_decode(
        q, k_cache, v_cache, table, lens, num_splits=split_arg, max_seq_len=seq_len
    )
    contig_out = paged_attention_decode(q, kc, vc, ctable, lens, num_splits=split_arg, max_seq_len=seq_len)

    group = num_heads // num_kv_heads
    try:  # torch >= 2.5 reads the KV heads once per group; older versions need them repeated
        F.scaled_dot_product_attention(q[:1, :, None], k_sdpa[:1, :, :1], v_sdpa[:1, :, :1], enable_gqa=True)
        gqa: dict = {"enable_gqa": True}
    except TypeError:
        k_sdpa, v_sdpa = k_sdpa.repeat_interleave(group, 1), v_sdpa.repeat_interleave(group, 1)
        gqa = {}

    def sdpa() -> torch.Tensor:
        out = F.scaled_dot_product_attention(q.unsqueeze(2), k_sdpa, v_sdpa, attn_mask=mask, **gqa)
        return out.squeeze(2)  # (B, Hq, 1, D) -> (B, Hq, D)

    sdpa_out = sdpa()
    elem = torch.finfo(dtype).bits // 8
    kv_bytes = int(lens.sum()) * num_kv_heads * head_dim * 2 * elem
    io_bytes = 2 * q.numel() * elem + table.numel() * 4
    rows = []
    variants = {
        "paged": lambda: paged_attention_decode(
            q, k_cache, v_cache, table, lens, num_splits=split_arg, max_seq_len=seq_len, check=False
        ),
        "contiguous": lambda: paged_attention_decode(
            q, kc, vc, ctable, lens, num_splits=split_arg, max_seq_len=seq_len, check=False
        ),
        "sdpa": sdpa,
    }
    outs = {"paged": paged_out, "contiguous": contig_out, "sdpa": sdpa_out}
    for name, fn in variants.items():
        ms = time_cuda(fn, iters)
        err = float((outs[name].float() - sdpa_out.float()).abs().max())
        rows.append(
            {"variant": name, "ms": ms, "bytes": kv_bytes + io_bytes,
             "gb_per_s": (kv_bytes + io_bytes) / (ms * 1e-3) / 1e9, "max_err_vs_sdpa": err}
        )  # fmt: skip
    return rows


SWEEP_CASES = [
    # (lens, num_heads, num_kv_heads, head_dim, block_size, dtype, num_splits)
    ((1, 16, 17, 100), 8, 2, 32, 16, torch.float32, 1),
    ((1, 16, 17, 100), 8, 2, 32, 16, torch.float16, 1),
    ((1, 16, 17, 100), 8, 2, 32, 16, torch.bfloat16, 1),
    ((256, 33), 4, 1, 64, 16, torch.float32, 4),
    ((200, 7, 64), 4, 4, 16, 8, torch.float16, 2),
]


def interpreter_cases(args: argparse.Namespace) -> list[tuple]:
    """The sweep, or the one case the shape options ask for (``--splits auto`` is 1 in the interpreter)."""
    if not resolve_shape(args):
        return SWEEP_CASES
    g = torch.Generator().manual_seed(args.seed)
    if args.ragged:
        lens = tuple(torch.randint(1, args.seq_len + 1, (args.batch,), generator=g).tolist())
    else:
        lens = (args.seq_len,) * args.batch
    splits = 1 if args.splits == "auto" else args.splits
    return [
        (lens, args.num_heads, args.num_kv_heads, args.head_dim, args.block_size, DTYPES[args.dtype], splits)
    ]


def run_interpreter_case(lens_t, hq, hkv, d, bs, dtype, splits, g: torch.Generator) -> dict:  # noqa: ANN001
    """One interpreter run of the Triton kernel against the fp32 PyTorch gather reference."""
    from kvlib.kernels import build_paged_cache, paged_attention_decode, paged_attention_reference

    lens = torch.tensor(lens_t, dtype=torch.int32)
    k = torch.randn(len(lens_t), max(lens_t), hkv, d, generator=g)
    v = torch.randn(len(lens_t), max(lens_t), hkv, d, generator=g)
    q = torch.randn(len(lens_t), hq, d, generator=g)
    kc, vc, table = build_paged_cache(k, v, lens, bs, generator=g)
    q, kc, vc = q.to(dtype), kc.to(dtype), vc.to(dtype)
    t0 = time.perf_counter()
    out = paged_attention_decode(q, kc, vc, table, lens, num_splits=splits)
    secs = time.perf_counter() - t0
    ref = paged_attention_reference(q.float(), kc.float(), vc.float(), table, lens)
    err = float((out.float() - ref).abs().max())
    tol = TOLERANCE[dtype] * (1 + float(ref.abs().max()))
    ok = err <= tol and float(out.float().abs().mean()) > 0.01
    shown = str(lens_t) if len(lens_t) <= 4 else f"{len(lens_t)} x {max(lens_t)}"
    return {"lens": shown, "heads": f"{hq}/{hkv}", "head_dim": d, "block": bs,
            "dtype": str(dtype).split(".")[-1], "splits": splits, "max_err": err, "tol": tol,
            "seconds": secs, "ok": ok}  # fmt: skip


def run_interpreter_sweep(seed: int = 0, cases: list[tuple] | None = None) -> list[dict]:
    """Correctness of the Triton kernel in the CPU interpreter over ``cases`` (default the sweep)."""
    g = torch.Generator().manual_seed(seed)
    return [run_interpreter_case(*case, g) for case in (SWEEP_CASES if cases is None else cases)]


def main(args: argparse.Namespace) -> int:
    from kvlib.kernels import MODE

    resolve_shape(args)
    if MODE != "cuda" or not torch.cuda.is_available():
        print("No CUDA device: Triton runs in its CPU interpreter, where timings say nothing about GPU")
        if args.shape_given:
            print("bandwidth. Checking the kernel at the shape you gave against the PyTorch gather reference")
        else:
            print("bandwidth. Running a small correctness sweep instead (Triton kernel vs the PyTorch gather")
            print("reference); give --batch/--seq-len/... to check one shape of your own.")
        if args.iters != 50:
            print("(--iters sets the number of timed GPU calls: nothing is timed here.)")
        print(
            "A case passes when max |kernel - fp32 reference| <= tol x (1 + max |reference|), tol = "
            + ", ".join(f"{t:g} for {str(d).split('.')[-1]}" for d, t in TOLERANCE.items())
            + " (the dtype's rounding over a softmax-weighted sum), and the output is not all near zero.\n"
        )
        rows = run_interpreter_sweep(args.seed, interpreter_cases(args))
        header = f"{'lens':<18}{'heads':>7}{'D':>5}{'block':>6}{'dtype':>10}{'splits':>7}"
        print(header + f"{'max err':>11}{'allowed':>10}{'s':>7}")
        for r in rows:
            print(
                f"{r['lens']:<18}{r['heads']:>7}{r['head_dim']:>5}{r['block']:>6}{r['dtype']:>10}"
                f"{r['splits']:>7}{r['max_err']:>11.2e}{r['tol']:>10.1e}{r['seconds']:>7.2f}"
                f"  {'ok' if r['ok'] else 'FAIL'}"
            )
        bad = sum(not r["ok"] for r in rows)
        print(f"\n{len(rows) - bad}/{len(rows)} cases agree with the reference.")
        return 1 if bad else 0

    dtype = DTYPES[args.dtype]
    name = torch.cuda.get_device_name()
    spec = spec_bandwidth_gbs(name)
    copy_bw = measure_copy_bandwidth_gbs()
    rows = run_cuda_benchmark(
        args.batch, args.seq_len, args.num_heads, args.num_kv_heads, args.head_dim, args.block_size, dtype,
        args.splits, args.iters, args.ragged, args.seed,
    )  # fmt: skip
    print(
        f"device: {name}; spec bandwidth {f'{spec:.0f} GB/s' if spec else 'unknown'}; "
        f"measured device-to-device copy {copy_bw:.0f} GB/s"
    )
    print(
        f"shape: B={args.batch} S={args.seq_len}{' (ragged)' if args.ragged else ''} heads {args.num_heads}q/"
        f"{args.num_kv_heads}kv D={args.head_dim} {args.dtype} block {args.block_size} splits {args.splits}; "
        f"{rows[0]['bytes'] / 1e9:.3f} GB read per step\n"
    )
    print(f"{'variant':<12}{'ms':>9}{'GB/s':>9}{'% spec':>9}{'% copy':>9}{'max err':>10}")
    for r in rows:
        pct_spec = f"{100 * r['gb_per_s'] / spec:.1f}" if spec else "n/a"
        print(
            f"{r['variant']:<12}{r['ms']:>9.3f}{r['gb_per_s']:>9.0f}{pct_spec:>9}"
            f"{100 * r['gb_per_s'] / copy_bw:>9.1f}{r['max_err_vs_sdpa']:>10.2e}"
        )
    by = {r["variant"]: r for r in rows}
    overhead = by["paged"]["ms"] / by["contiguous"]["ms"] - 1
    peak = spec or copy_bw
    share = by["paged"]["gb_per_s"] / peak
    print(f"\npaged vs contiguous: {100 * overhead:+.1f}% time (target within 10%)")
    which = "spec" if spec else "copy"
    print(f"paged kernel at {100 * share:.1f}% of {which} peak (target >= 60%, stretch 75%)")
    return 0
