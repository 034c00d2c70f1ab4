"""Four serving problems, measured: the reports chapter 09 asks you to diagnose.

Each scenario runs one of kvlib's simulators on a workload that brings out one classic problem of KV
memory in a serving engine, and writes what an engineer on call would read: a dashboard of metrics
beside a *healthy reference* (the same workload on a server without the problem) and an excerpt of the
engine's log. The reports never say what is wrong: the learner names the bottleneck and the fix from
the menus :data:`BOTTLENECKS` and :data:`FIXES`, and :func:`answer_key` grades the answer. The four
come under the letters A to D in an order drawn once with a fixed seed (:data:`LETTER_SEED`), so that
the order of the letters says nothing.

Every scenario serves the same deployment: Llama-2-7B in fp16 (512 KiB of keys and values per token,
from :data:`kvlib.memory.MODEL_CONFIGS`) on one NVIDIA A10 (24 GB, 600 GB/s, 125 TFLOPS of dense fp16
tensor math, PCIe 4.0 x16, per NVIDIA's A10 data sheet). Of the memory the 13.4 GB of weights leave,
the KV cache gets 6 GiB (the rest goes to activations and the CUDA context): 12,288 token slots, 768
blocks of 16 tokens. The scenarios, and the kvlib code each one runs:

- ``contiguous``: requests reserve one contiguous range of prompt + max_tokens slots when admitted
  (:func:`kvlib.paged.simulate.simulate_stream` over a :class:`~kvlib.paged.allocators.
  ContiguousAllocator` that reserves so); healthy: the paged allocator, blocks of 16;
- ``static``: requests are served in fixed batches of 6, each a dense [6, longest prompt + longest
  output] cache that runs until its longest request ends (counted here, step by step, as Hugging
  Face's ``generate`` runs a padded batch; :mod:`kvlib.serve.baselines` does it with the real model);
  healthy: continuous batching over the paged allocator;
- ``preemption``: a Poisson stream of chat requests on the chapter 08 scheduler
  (:class:`~kvlib.serve.scheduler.Scheduler` with :class:`~kvlib.serve.block_count.BlockCountMemory`,
  preemption by swap) with more running sequences than the KV memory holds as they grow; healthy: the
  same with keys and values stored in 8 bits (twice the tokens in the same 6 GiB); the explanation also
  runs it with fewer sequences at once;
- ``prefix``: a batch job asks questions about 64 documents, in submission order, on the block manager
  with a radix prefix cache (:class:`~kvlib.paged.manager.BlockManager`, the trace of
  :mod:`kvlib.bench.prefix_eviction`); healthy: the same queue served document by document; the
  explanation also runs it with a pool twice as large and with half as many requests at once.

Time in the ``preemption`` scenario is *modelled*, never measured (this CPU has no PCIe link and no
A10): a step lasts as long as the slower of reading the weights and the KV it attends to at 600 GB/s
and its matrix math (2 FLOPs per parameter and token) at 125 TFLOPS; copying KV to or from host memory
adds its bytes at 25 GB/s, not overlapped with compute. 25 GB/s is our assumption for pinned-memory
copies on PCIe 4.0 x16, about 80% of the link's 31.5 GB/s per direction (16 GT/s per lane, 128b/130b
encoding, per the PCI-SIG specification). Real kernels reach less than peak, so real steps are longer
and the copies an even smaller share of them. Every modelled number is labelled "(modelled)".
"""

from __future__ import annotations

import copy
import functools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from kvlib.memory import MODEL_CONFIGS, GiB
from kvlib.paged.allocators import ContiguousAllocator, PagedAllocator
from kvlib.paged.manager import BlockManager
from kvlib.paged.simulate import StreamResult, simulate_stream
from kvlib.paged.workload import PREFIX_TOKEN, Request, chat_workload, shared_prefix_trace
from kvlib.roofline import GPU_SPECS
from kvlib.serve.block_count import BlockCountMemory
from kvlib.serve.scheduler import Scheduler, SequenceState
from kvlib.serve.workload import poisson_arrivals
from kvlib.validate import require_int

__all__ = [
    "BOTTLENECKS",
    "FIXES",
    "LETTERS",
    "LETTER_SEED",
    "Report",
    "scenario_reports",
    "answer_key",
    "explanations",
]

# --- the deployment every scenario serves ---------------------------------------------------------------

MODEL = MODEL_CONFIGS["Llama-2-7B"]
GPU = "NVIDIA A10 (24 GB)"
HBM_BYTES_PER_S = GPU_SPECS["A10"].bandwidth  # 600 GB/s of GDDR6
PEAK_FLOPS = GPU_SPECS["A10"].peak_flops  # 125 TFLOPS of dense 16-bit tensor math (250 with sparsity)
PCIE_BYTES_PER_S = 25e9  # assumed: ~80% of PCIe 4.0 x16's 31.5 GB/s per direction (see module docstring)
WEIGHT_BYTES = MODEL.params_b * 1e9 * 2  # fp16
KV_BYTES_PER_TOKEN = MODEL.kv_bytes_per_token("fp16")  # 524,288: 2 * 32 layers * 32 heads * 128 * 2 bytes
KV_POOL_GIB = 6
POOL_SLOTS = KV_POOL_GIB * GiB // KV_BYTES_PER_TOKEN  # 12,288 token slots
BLOCK_SIZE = 16
POOL_BLOCKS = POOL_SLOTS // BLOCK_SIZE  # 768
MAX_LEN = 2048  # the server's longest request (prompt + output)

# --- the menus --------------------------------------------------------------------------------------------

BOTTLENECKS: tuple[str, ...] = (
    "compute-bound prefill",
    "prefix cache thrashing",
    "host-device (PCIe) bandwidth",
    "padding in variable-length batches",
    "CPU-side scheduling overhead",
    "fragmented contiguous KV allocation",
    "preemption: KV memory too small for the load",
)
FIXES: tuple[str, ...] = (
    "chunked prefill",
    "continuous batching of unpadded sequences",
    "overlap host-device copies with compute",
    "an 8-bit KV cache (twice the tokens per GiB)",
    "CUDA graphs for the decode step",
    "paged KV: fixed-size blocks allocated on demand",
    "serve requests that share a prefix back to back",
)
_ANSWERS: dict[str, tuple[str, str]] = {
    "contiguous": (BOTTLENECKS[5], FIXES[5]),
    "static": (BOTTLENECKS[3], FIXES[1]),
    "preemption": (BOTTLENECKS[6], FIXES[3]),
    "prefix": (BOTTLENECKS[1], FIXES[6]),
}
KINDS = ("contiguous", "static", "preemption", "prefix")

LETTER_SEED = 4  # draws the order below once: no scenario keeps its place in KINDS
LETTERS: dict[str, str] = dict(zip("ABCD", random.Random(LETTER_SEED).sample(KINDS, len(KINDS))))


# --- reports ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One server's report: what it serves (``setup``), a dashboard of ``rows`` (metric, this server,
    healthy reference), a ``log`` excerpt, and the numbers behind them (``metrics`` for this server,
    ``healthy`` for the reference, ``extra`` for measurements only the explanation uses)."""

    letter: str
    setup: str
    rows: tuple[tuple[str, str, str], ...]
    log: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    healthy: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """The report as printed: setup, dashboard table, log excerpt."""
        width = max(len(label) for label, _, _ in self.rows)
        head = f"{'metric':<{width}}  {'this server':>14}  {'healthy reference':>18}"
        lines = [f"Server {self.letter}", "", self.setup, "", head, "-" * len(head)]
        lines += [f"{label:<{width}}  {mine:>14}  {ref:>18}" for label, mine, ref in self.rows]
        lines += ["", "log (excerpt):", *(f"  {line}" for line in self.log)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


Row = tuple[str, str, Callable[[float], str]]  # (metric key, label, format)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _int(x: float) -> str:
    return f"{x:,.0f}"


def _one(x: float) -> str:
    return f"{x:,.1f}"


def _rows(spec: list[Row], mine: dict[str, float], ref: dict[str, float]) -> tuple[tuple[str, str, str], ...]:
    return tuple((label, fmt(mine[key]), fmt(ref[key])) for key, label, fmt in spec)


# --- contiguous reservations ------------------------------------------------------------------------------

CONTIGUOUS_REQUESTS = 100
MAX_TOKENS = 1024  # what the clients ask for; outputs never exceed it


class _ReservingAllocator(ContiguousAllocator):
    """First-fit contiguous ranges of prompt + max_tokens slots (what an engine that cannot grow a
    request's buffer must reserve), logging admissions and the first refusal of each request."""

    def __init__(self, budget: int, max_tokens: int, max_len: int) -> None:
        super().__init__(budget, "max", max_len)
        self.max_tokens = max_tokens
        self.name = "contiguous (prompt + max_tokens)"
        self.events: list[tuple[str, str]] = []  # (kind, line)
        self._refused: set[int] = set()

    def need(self, req: Request) -> int:
        return min(self.max_len, req.prompt_len + self.max_tokens)

    def admit(self, rid: int, req: Request, num_tokens: int | None = None) -> bool:
        holes = list(self.holes)
        ok = super().admit(rid, req, num_tokens)
        need, free = self.need(req), sum(n for _, n in holes)
        if ok:
            start, size = self.ranges[rid]
            slots = f"[{start:,}, {start + size:,})"
            self.events.append(
                ("admit", f"admit request {rid}: slots {slots} for a {req.prompt_len:,}-token prompt")
            )
        elif rid not in self._refused:
            self._refused.add(rid)
            kind = "refuse-free" if free >= need else "refuse-full"
            largest = max((n for _, n in holes), default=0)
            ranges = f"{free:,} slots free in {len(holes)} range(s), the largest {largest:,}"
            self.events.append((kind, f"request {rid} waits: needs {need:,} contiguous slots; {ranges}"))
        return ok


def _stream_metrics(result: StreamResult) -> dict[str, float]:
    return {
        "steps": result.steps,
        "mean_running": result.mean_running,
        "reserved_share": result.budget_utilization / result.token_share,
        "token_share": result.token_share,
        "future_share": result.reservation_share,
        "never_share": result.internal_share,
        "unusable_free_share": result.external_share,
        "preemptions": result.preemptions,
    }


CONTIGUOUS_ROWS: list[Row] = [
    ("steps", "steps to serve the queue", _int),
    ("mean_running", "requests running (mean)", _one),
    ("reserved_share", "KV slots reserved, of the pool", _pct),
    ("token_share", "reserved slots holding a token", _pct),
    ("future_share", "reserved slots kept for tokens to come", _pct),
    ("never_share", "reserved slots never written", _pct),
    ("unusable_free_share", "free slots the head of the queue could not use", _pct),
    ("preemptions", "preemptions", _int),
]


def _contiguous(seed: int) -> Report:
    requests = [
        Request(r.prompt_len, min(r.output_len, MAX_TOKENS)) for r in chat_workload(CONTIGUOUS_REQUESTS, seed)
    ]
    allocator = _ReservingAllocator(POOL_SLOTS, MAX_TOKENS, MAX_LEN)
    mine = _stream_metrics(simulate_stream(requests, allocator))
    healthy = _stream_metrics(simulate_stream(requests, PagedAllocator(POOL_SLOTS, BLOCK_SIZE)))
    admits = [line for kind, line in allocator.events if kind == "admit"]
    refusals = [line for kind, line in allocator.events if kind == "refuse-free"]
    log = (*admits[:4], "...", *refusals[:4])
    setup = (
        f"{CONTIGUOUS_REQUESTS} chat requests queued at once (prompts of median 200 tokens; clients ask for "
        f"max_tokens={MAX_TOKENS}, answers of median 250), served first come first served; the scheduler "
        f"admits and retires requests at every step. {MODEL.name} fp16 on an {GPU}, KV memory {KV_POOL_GIB} "
        f"GiB = {POOL_SLOTS:,} token slots. Shares are averaged over the steps."
    )
    return Report("", setup, _rows(CONTIGUOUS_ROWS, mine, healthy), log, mine, healthy)


# --- static batches ---------------------------------------------------------------------------------------

STATIC_REQUESTS = 48
STATIC_BATCH = POOL_SLOTS // MAX_LEN  # 6 rows of the longest request fill the pool


def _static_batches(requests: list[Request], batch_size: int) -> tuple[dict[str, float], list[str]]:
    """Serve ``requests`` in arrival order in batches of ``batch_size``, each a dense [B, P + t] cache
    (P its longest prompt, left padding) that runs until its longest output ends; count every slot."""
    slots = useful = left = after = rows = finished_rows = pad_prefill = prefill = steps = 0
    waits: list[int] = []
    log: list[str] = []
    for first in range(0, len(requests), batch_size):
        batch = requests[first : first + batch_size]
        longest_prompt = max(r.prompt_len for r in batch)
        longest_output = max(r.output_len for r in batch)
        waits += [steps] * len(batch)
        prefill += len(batch) * longest_prompt
        pad_prefill += sum(longest_prompt - r.prompt_len for r in batch)
        for t in range(1, longest_output + 1):  # step t holds P + t slots per row
            slots += len(batch) * (longest_prompt + t)
            left += sum(longest_prompt - r.prompt_len for r in batch)
            useful += sum(r.prompt_len + min(t, r.output_len) for r in batch)
            after += sum(max(0, t - r.output_len) for r in batch)
            rows += len(batch)
            finished_rows += sum(t > r.output_len for r in batch)
        steps += longest_output
        if len(log) < 6:
            n = first // batch_size + 1
            done = sum(r.output_len <= longest_output // 2 for r in batch)
            log.append(
                f"batch {n}: {len(batch)} requests, prompts "
                f"{min(r.prompt_len for r in batch):,}..{longest_prompt:,} tokens, outputs "
                f"{min(r.output_len for r in batch):,}..{longest_output:,}: KV tensor [{len(batch)}, "
                f"{longest_prompt + longest_output:,}], {longest_output:,} steps; at step "
                f"{longest_output // 2:,}, {done} of {len(batch)} rows have finished"
            )
    metrics = {
        "steps": steps,
        "token_share": useful / slots,
        "left_share": left / slots,
        "after_share": after / slots,
        "prefill_pad_share": pad_prefill / prefill,
        "finished_rows_share": finished_rows / rows,
        "mean_wait_steps": statistics.fmean(waits),
    }
    return metrics, log


STATIC_ROWS: list[Row] = [
    ("steps", "steps to serve the queue", _int),
    ("token_share", "KV slots holding a token of a live request", _pct),
    ("left_share", "KV slots before a prompt's first token", _pct),
    ("after_share", "KV slots after a request's last token", _pct),
    ("prefill_pad_share", "prefill token slots that are padding", _pct),
    ("finished_rows_share", "decode rows computed for finished requests", _pct),
]


def _static(seed: int) -> Report:
    requests = chat_workload(STATIC_REQUESTS, seed + 1)
    mine, log = _static_batches(requests, STATIC_BATCH)
    paged = simulate_stream(requests, PagedAllocator(POOL_SLOTS, BLOCK_SIZE))
    healthy = {
        "steps": paged.steps,
        "token_share": paged.token_share,
        "left_share": 0.0,  # ragged rows: each holds its own tokens, nothing before or after them
        "after_share": 0.0,
        "prefill_pad_share": 0.0,
        "finished_rows_share": 0.0,  # a finished request leaves the batch at once
        "mean_wait_steps": math.nan,
    }
    setup = (
        f"{STATIC_REQUESTS} chat requests queued at once (prompts of median 200 tokens, answers of median "
        f"250, at most {MAX_LEN:,} tokens in all), served in arrival order in batches of {STATIC_BATCH} "
        f"({STATIC_BATCH} x {MAX_LEN:,} = {STATIC_BATCH * MAX_LEN:,} slots: the KV memory holds a batch of "
        f"the longest requests). {MODEL.name} fp16 on an {GPU}, KV memory {KV_POOL_GIB} GiB. Shares are over "
        "every step of every batch."
    )
    return Report("", setup, _rows(STATIC_ROWS, mine, healthy), tuple(log), mine, healthy)


# --- preemption under memory pressure ---------------------------------------------------------------------

PREEMPTION_REQUESTS = 80
ARRIVAL_RATE = 1.6  # requests per second
MAX_NUM_SEQS = 64
FEWER_SEQS = 12  # the explanation's alternative: fewer running sequences in the same memory
TOKEN_BUDGET = 2048


class _CountingMemory(BlockCountMemory):
    """BlockCountMemory that counts the tokens copied to and from host memory since ``reset``."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        super().__init__(num_blocks, block_size)
        self.moved: list[tuple[str, int, int]] = []  # (direction, seq_id, tokens)

    def swap_out(self, seq: SequenceState) -> None:
        tokens = self.device.get(seq.seq_id, 0)
        super().swap_out(seq)
        self.moved.append(("to host", seq.seq_id, tokens))

    def swap_in(self, seq: SequenceState) -> bool:
        tokens = self.host.get(seq.seq_id, 0)
        ok = super().swap_in(seq)
        if ok:
            self.moved.append(("from host", seq.seq_id, tokens))
        return ok


def _serve_with_preemption(
    requests: list[Request],
    arrivals: list[float],
    num_blocks: int,
    kv_bytes_per_token: float,
    max_num_seqs: int = MAX_NUM_SEQS,
) -> tuple[dict[str, float], list[str]]:
    """Serve a timed stream on the chapter 08 scheduler (swap preemption), the clock being modelled."""
    memory = _CountingMemory(num_blocks, BLOCK_SIZE)
    sched = Scheduler(memory, token_budget=TOKEN_BUDGET, max_num_seqs=max_num_seqs, preemption="swap")
    now = compute_total = copy_total = 0.0
    steps = produced = 0
    nxt = 0
    step_times: list[float] = []
    copy_steps: list[tuple[float, float]] = []  # (compute, copy) of the steps that copy KV
    last: dict[int, float] = {}
    gaps: list[float] = []
    ttft: list[float] = []
    used = running = waiting = host = 0.0
    max_host = 0
    preempted: set[int] = set()
    log: list[str] = []
    next_summary = 20.0
    while nxt < len(requests) or sched.has_work():
        while nxt < len(requests) and arrivals[nxt] <= now:
            sched.add(SequenceState(nxt, requests[nxt].prompt_len))
            nxt += 1
        if not sched.has_work():
            now = arrivals[nxt]
            continue
        memory.moved.clear()
        plan = sched.schedule()
        steps += 1
        kv_read = sum(seq.num_tokens for seq, _ in plan.rows) * kv_bytes_per_token
        compute = max(
            (WEIGHT_BYTES + kv_read) / HBM_BYTES_PER_S,
            2 * MODEL.params_b * 1e9 * plan.num_tokens / PEAK_FLOPS,
        )
        copied = sum(tokens for _, _, tokens in memory.moved) * kv_bytes_per_token / PCIE_BYTES_PER_S
        now += compute + copied
        compute_total += compute
        copy_total += copied
        step_times.append(compute + copied)
        if memory.moved:
            copy_steps.append((compute, copied))
            preempted.update(sid for direction, sid, _ in memory.moved if direction == "to host")
            if len(log) < 8:
                moves = ", ".join(
                    f"seq {sid} {direction} ({tokens:,} tokens, {tokens * kv_bytes_per_token / 1e9:.2f} GB)"
                    for direction, sid, tokens in memory.moved
                )
                log.append(
                    f"t={now:7.2f} s step {steps:,}: running {len(sched.running)}, waiting "
                    f"{len(sched.waiting)}, in host memory {len(sched.swapped)} | {moves} | compute "
                    f"{1e3 * compute:.1f} ms + copy {1e3 * copied:.1f} ms (modelled)"
                )
        if now >= next_summary and len(log) < 12:
            log.append(
                f"t={now:7.2f} s: running {len(sched.running)}, in host memory {len(sched.swapped)}, waiting "
                f"{len(sched.waiting)}, KV blocks in use {100 * (1 - memory.free_blocks / num_blocks):.1f}%"
            )
            next_summary += 20.0
        used += 1 - memory.free_blocks / num_blocks
        running += len(sched.running)
        waiting += len(sched.waiting)
        host += len(sched.swapped)
        max_host = max(max_host, len(sched.swapped))
        for seq, n in plan.rows:
            if sched.commit(seq, seq.num_computed + n):
                produced += 1
                if seq.seq_id in last:
                    gaps.append(now - last[seq.seq_id])
                else:
                    ttft.append(now - arrivals[seq.seq_id])
                last[seq.seq_id] = now
        for seq in [
            s
            for s in sched.running
            if s.num_tokens - requests[s.seq_id].prompt_len >= requests[s.seq_id].output_len
        ]:
            sched.finish(seq)
    step_times.sort()
    metrics = {
        "throughput": produced / now,
        "ttft_p50": _quantile(ttft, 0.5),
        "ttft_p99": _quantile(ttft, 0.99),
        "gap_p99_ms": 1e3 * _quantile(gaps, 0.99),
        "gap_max": max(gaps),
        "step_p50_ms": 1e3 * _quantile(step_times, 0.5),
        "step_p99_ms": 1e3 * _quantile(step_times, 0.99),
        "mean_running": running / steps,
        "mean_waiting": waiting / steps,
        "mean_host": host / steps,
        "max_host": max_host,
        "preemptions": sched.num_preemptions,
        "preempted_share": len(preempted) / len(requests),
        "blocks_used": used / steps,
        "copy_share": copy_total / (compute_total + copy_total),
        "copy_step_share": len(copy_steps) / steps,
        "copy_step_compute_ms": 1e3 * statistics.fmean(c for c, _ in copy_steps) if copy_steps else 0.0,
        "copy_step_copy_ms": 1e3 * statistics.fmean(k for _, k in copy_steps) if copy_steps else 0.0,
        "seconds": now,
    }
    return metrics, log


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between ranks, as :func:`kvlib.serve.metrics.percentile` (q a fraction)."""
    data = sorted(values)
    rank = (len(data) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


PREEMPTION_ROWS: list[Row] = [
    ("throughput", "tokens out per second (modelled)", _int),
    ("ttft_p50", "time to first token p50, s (modelled)", lambda x: f"{x:.2f}"),
    ("ttft_p99", "time to first token p99, s (modelled)", lambda x: f"{x:.2f}"),
    ("gap_p99_ms", "gap between tokens p99, ms (modelled)", _one),
    ("gap_max", "longest gap in one stream, s (modelled)", lambda x: f"{x:.2f}"),
    ("step_p50_ms", "step time p50, ms (modelled)", _one),
    ("step_p99_ms", "step time p99, ms (modelled)", _one),
    ("mean_running", "requests running (mean)", _one),
    ("mean_waiting", "requests waiting (mean)", _one),
    ("mean_host", "requests in host memory (mean)", _one),
    ("preemptions", "preemptions", _int),
    ("preempted_share", "requests preempted at least once", _pct),
    ("blocks_used", "KV blocks in use (mean)", _pct),
    ("copy_share", "time copying KV host<->device (modelled)", _pct),
    ("copy_step_compute_ms", "steps that copy: compute, ms (modelled)", _one),
    ("copy_step_copy_ms", "steps that copy: copy, ms (modelled)", _one),
]


def _preemption(seed: int) -> Report:
    requests = chat_workload(PREEMPTION_REQUESTS, seed + 2, prompt_median=50.0, output_median=600.0)
    arrivals = poisson_arrivals(PREEMPTION_REQUESTS, ARRIVAL_RATE, seed + 2)
    mine, log = _serve_with_preemption(requests, arrivals, POOL_BLOCKS, KV_BYTES_PER_TOKEN, MAX_NUM_SEQS)
    eight_bit = MODEL.kv_bytes_per_token("int8")  # one byte per element, scales left out
    healthy, _ = _serve_with_preemption(requests, arrivals, 2 * POOL_BLOCKS, eight_bit, MAX_NUM_SEQS)
    fewer, _ = _serve_with_preemption(requests, arrivals, POOL_BLOCKS, KV_BYTES_PER_TOKEN, FEWER_SEQS)
    extra = {
        "fewer_seqs": FEWER_SEQS,
        "fewer_preemptions": fewer["preemptions"],
        "fewer_ttft_p50": fewer["ttft_p50"],
        "fewer_throughput": fewer["throughput"],
    }
    setup = (
        f"{PREEMPTION_REQUESTS} chat requests arriving at {ARRIVAL_RATE} per second (Poisson), prompts of "
        f"median 50 tokens, answers of median 600; continuous batching with up to {MAX_NUM_SEQS} sequences "
        f"running and {TOKEN_BUDGET:,} tokens per step; a sequence that cannot grow preempts the newest, "
        f"whose KV goes to host memory until there is room again (swap mode, as vLLM V0 offered; V1 "
        f"recomputes instead). {MODEL.name} fp16 on an {GPU}, KV memory "
        f"{KV_POOL_GIB} GiB = {POOL_BLOCKS} blocks of {BLOCK_SIZE}. Times are modelled from the A10's data "
        f"sheet and {PCIE_BYTES_PER_S / 1e9:.0f} GB/s for host copies (see kvlib.serve.diagnosis)."
    )
    return Report("", setup, _rows(PREEMPTION_ROWS, mine, healthy), tuple(log), mine, healthy, extra)


# --- prefix cache under an interleaved queue ---------------------------------------------------------------

PREFIX_REQUESTS = 256
DOCUMENTS = 64
DOCUMENT_LEN = 512
QUESTION_LEN = 96
ANSWER_LEN = 64
PREFIX_CONCURRENCY = 8


def _replay_prefix(
    trace: list[tuple[list[int], list[int]]], num_blocks: int, concurrency: int
) -> tuple[dict[str, float], list[str]]:
    """Serve ``trace`` ``concurrency`` at a time through a BlockManager with a radix prefix cache (the
    loop of :func:`kvlib.bench.prefix_eviction.replay`), recording hits, evictions and reuse distances."""
    mgr = BlockManager(num_blocks, BLOCK_SIZE, prefix_cache="radix")
    cache = mgr.cache
    assert cache is not None  # internal: "radix" always builds one
    waiting = list(enumerate(trace))[::-1]
    running: list[tuple[int, list[int]]] = []
    hit_tokens = prompt_tokens = recomputed = seen_before = 0
    last_served: dict[int, int] = {}
    distances: list[int] = []
    held = idle = 0.0
    samples = 0
    log: list[str] = []
    while waiting or running:
        while waiting and len(running) < concurrency:
            seq_id, (prompt, output) = waiting.pop()
            document = prompt[0] - PREFIX_TOKEN
            before = cache.num_evicted
            hit = mgr.allocate(seq_id, prompt).num_cached_tokens
            evicted_now = cache.num_evicted - before
            hit_tokens += hit
            prompt_tokens += len(prompt)
            served = seq_id  # requests are admitted in trace order: the index is the admission order
            if document in last_served:
                seen_before += 1
                distances.append(served - last_served[document])
                recomputed += DOCUMENT_LEN - min(hit, DOCUMENT_LEN // BLOCK_SIZE * BLOCK_SIZE)
                if len(log) < 8 and (hit < DOCUMENT_LEN // 2 or len(log) < 2):
                    log.append(
                        f"request {seq_id} (document {document}, last asked {served - last_served[document]} "
                        f"requests earlier): {hit} of {len(prompt)} prompt tokens cached; {evicted_now} idle "
                        "blocks evicted to admit it"
                    )
            last_served[document] = served
            running.append((seq_id, output[::-1]))
        for seq_id, todo in running:
            mgr.append(seq_id, todo.pop())
            if not todo:
                mgr.free(seq_id)
        running = [r for r in running if r[1]]
        held += mgr.num_used_blocks / num_blocks
        idle += (mgr.num_available_blocks - mgr.num_free_blocks) / num_blocks
        samples += 1
    evicted = cache.num_evicted  # at admissions and when a running request takes a block
    best = seen_before * (DOCUMENT_LEN // BLOCK_SIZE * BLOCK_SIZE)
    metrics = {
        "hit_share": hit_tokens / prompt_tokens,
        "best_share": best / prompt_tokens,
        "recomputed_per_request": recomputed / len(trace),
        "evicted_per_request": evicted / len(trace),
        "median_distance": statistics.median(distances) if distances else math.nan,
        "held_share": held / samples,
        "idle_share": idle / samples,
        "hit_tokens": hit_tokens,
        "evicted": evicted,
    }
    return metrics, log


PREFIX_ROWS: list[Row] = [
    ("hit_share", "prompt tokens found in the prefix cache", _pct),
    ("best_share", "best possible (a document's first ask computes it)", _pct),
    ("recomputed_per_request", "document tokens computed again, per request", _one),
    ("evicted_per_request", "cached blocks evicted, per request", _one),
    ("median_distance", "requests between two asks of a document (median)", _one),
    ("held_share", "KV blocks held by running requests (mean)", _pct),
    ("idle_share", "KV blocks cached and idle (mean)", _pct),
]


def _prefix(seed: int) -> Report:
    trace = shared_prefix_trace(PREFIX_REQUESTS, DOCUMENTS, DOCUMENT_LEN, QUESTION_LEN, ANSWER_LEN, seed + 3)
    mine, log = _replay_prefix(trace, POOL_BLOCKS, PREFIX_CONCURRENCY)
    grouped = sorted(trace, key=lambda pair: pair[0][0])  # stable: each document's questions in order
    healthy, _ = _replay_prefix(grouped, POOL_BLOCKS, PREFIX_CONCURRENCY)
    twice, _ = _replay_prefix(trace, 2 * POOL_BLOCKS, PREFIX_CONCURRENCY)
    half, _ = _replay_prefix(trace, POOL_BLOCKS, PREFIX_CONCURRENCY // 2)
    doc_blocks = DOCUMENTS * (DOCUMENT_LEN // BLOCK_SIZE)
    setup = (
        f"A batch job asks {PREFIX_REQUESTS} questions about {DOCUMENTS} documents "
        f"({PREFIX_REQUESTS // DOCUMENTS} per document on average): each prompt is a {DOCUMENT_LEN}-token "
        f"document and a {QUESTION_LEN}-token question, each answer {ANSWER_LEN} tokens. All are queued at "
        f"once in the order the job submitted them and served {PREFIX_CONCURRENCY} at a time, first come "
        "first served. Prefix caching is on (radix tree; idle blocks stay cached until room is needed, "
        f"least recently used first). {MODEL.name} fp16 on an {GPU}, KV memory {POOL_BLOCKS} blocks of "
        f"{BLOCK_SIZE}; the documents fill {doc_blocks:,} blocks."
    )
    extra = {
        "twice_pool_hit_share": twice["hit_share"],
        "half_concurrency_hit_share": half["hit_share"],
        "document_blocks": doc_blocks,
    }
    return Report("", setup, _rows(PREFIX_ROWS, mine, healthy), tuple(log), mine, healthy, extra)


# --- public API ---------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[int], Report]] = {
    "contiguous": _contiguous,
    "static": _static,
    "preemption": _preemption,
    "prefix": _prefix,
}


@functools.lru_cache(maxsize=4)
def _reports(seed: int) -> dict[str, Report]:
    out = {}
    for letter, kind in LETTERS.items():
        report = _BUILDERS[kind](seed)
        out[letter] = Report(
            letter, *(getattr(report, f) for f in ("setup", "rows", "log", "metrics", "healthy", "extra"))
        )
    return out


def scenario_reports(seed: int = 0) -> dict[str, Report]:
    """The four reports, letter -> :class:`Report`, from workloads drawn with ``seed`` (the same seed,
    the same reports). Computed once per seed (a few seconds); each call returns fresh copies."""
    seed = require_int("seed", seed, minimum=0)
    return copy.deepcopy(_reports(seed))


def answer_key() -> dict[str, tuple[str, str]]:
    """Letter -> (bottleneck, fix), each a label from :data:`BOTTLENECKS` and :data:`FIXES`."""
    return {letter: _ANSWERS[kind] for letter, kind in LETTERS.items()}


def explanations(seed: int = 0) -> dict[str, str]:
    """Letter -> why its answer is what it is, in words around the numbers of :func:`scenario_reports`
    (the same ``seed``), to read after answering."""
    reports = scenario_reports(seed)
    return {letter: _EXPLAIN[LETTERS[letter]](reports[letter]) for letter in LETTERS}


def _explain_contiguous(r: Report) -> str:
    m, h = r.metrics, r.healthy
    bottleneck, fix = _ANSWERS["contiguous"]
    return (
        f"Server {r.letter}: {bottleneck}; fix: {fix}.\nThe server reserves {_pct(m['reserved_share'])} of "
        f"its KV memory, yet only {_pct(m['token_share'])} of what it reserves holds a token: "
        f"{_pct(m['never_share'])} is reserved for answers that end before max_tokens and is never written, "
        f"{_pct(m['future_share'])} waits for tokens still to come. On top, {_pct(m['unusable_free_share'])} "
        "of the pool is free but cut into ranges too short for the request at the head of the queue (the "
        "log's 'waits' lines: enough slots free in total, no range large enough). Each request's memory is "
        "one contiguous range sized before anyone knows how long the answer will be: waste inside the "
        f"ranges, holes between them. Allocating {BLOCK_SIZE}-token blocks as tokens arrive (vLLM's "
        "PagedAttention, Kwon et al., SOSP 2023) lets any free block serve any request and bounds the waste "
        f"to one partial block per request: the healthy reference holds a token in {_pct(h['token_share'])} "
        f"of its reserved slots, runs {_one(h['mean_running'])} requests at once instead of "
        f"{_one(m['mean_running'])}, and serves the queue in {_int(h['steps'])} steps instead of "
        f"{_int(m['steps'])}. It preempts {_int(h['preemptions'])} times where the contiguous server never "
        "does: paging admits requests while blocks are free, betting that not all will grow at once, and "
        "preempts one when the bet fails, a cost far smaller than reserving max_tokens for everyone. The "
        "scheduler already admits at every step and nothing is padded, so batching is not what to change."
    )


def _explain_static(r: Report) -> str:
    m, h = r.metrics, r.healthy
    bottleneck, fix = _ANSWERS["static"]
    return (
        f"Server {r.letter}: {bottleneck}; fix: {fix}.\nOnly {_pct(m['token_share'])} of the KV slots hold a "
        f"token of a live request: {_pct(m['left_share'])} sit before the shorter prompts, padded to the "
        f"batch's longest, and {_pct(m['after_share'])} hold tokens generated after a request had ended, "
        "because a row stays in its batch until the longest answer is done. Compute goes the same way: "
        f"{_pct(m['prefill_pad_share'])} of the prefill slots are padding and "
        f"{_pct(m['finished_rows_share'])} of the decode rows compute for finished requests, while the queue "
        f"waits for whole batches (on average {_int(m['mean_wait_steps'])} steps before a request's batch "
        "starts). Continuous batching (Orca, Yu et al., OSDI 2022) lets a finished request leave and a "
        "waiting one join at every step, and keeping each sequence at its own length (ragged rows, here in "
        "a paged cache) removes the padding: the healthy reference holds a token in "
        f"{_pct(h['token_share'])} of its slots and serves the queue in {_int(h['steps'])} steps instead of "
        f"{_int(m['steps'])}. Paging alone would store the rows without the rectangle, but they would still "
        "wait for their batch's longest answer."
    )


def _explain_preemption(r: Report) -> str:
    m, h, x = r.metrics, r.healthy, r.extra
    bottleneck, fix = _ANSWERS["preemption"]
    healthy_preemptions = (
        "never preempts"
        if h["preemptions"] == 0
        else f"preempts {_int(h['preemptions'])} times instead of {_int(m['preemptions'])}"
    )
    return (
        f"Server {r.letter}: {bottleneck}; fix: {fix}.\nKV blocks are {_pct(m['blocks_used'])} in use on "
        f"average and the server preempted {_int(m['preemptions'])} times ({_pct(m['preempted_share'])} of "
        f"the requests at least once), with up to {_int(m['max_host'])} requests parked in host memory. The "
        f"copies themselves are cheap: they take {_pct(m['copy_share'])} of the modelled time, and even in "
        f"the steps that copy they add {_one(m['copy_step_copy_ms'])} ms to "
        f"{_one(m['copy_step_compute_ms'])} ms of compute, so the PCIe link is not the bottleneck and "
        "overlapping the copies would buy little. The stall is the wait: a preempted request's stream stops "
        f"until memory frees up (the longest gap in one stream is {m['gap_max']:.2f} s against "
        f"{h['gap_max']:.2f} s healthy), and while any request sits in host memory no new one is admitted, "
        f"so the p99 time to first token reaches {m['ttft_p99']:.2f} s against {h['ttft_p99']:.2f} s. "
        f"Prefill is not it either: the p99 step takes {_one(m['step_p99_ms'])} ms. The running sequences "
        "outgrow the memory. Keys and values in 8 bits (vLLM's FP8 KV cache; chapter 04 measured what int8 "
        f"costs in perplexity) fit twice the tokens in the same {KV_POOL_GIB} GiB: the healthy reference "
        f"{healthy_preemptions} and serves {_int(h['throughput'])} tokens/s against {_int(m['throughput'])}. "
        "vLLM's tuning guide lists the other ways out of preemption: more memory for the cache, or fewer "
        "sequences at once (max_num_seqs). The latter trades the freezes for a queue here: with at most "
        f"{_int(x['fewer_seqs'])} running, the server preempts {_int(x['fewer_preemptions'])} times, but the "
        f"median request waits {x['fewer_ttft_p50']:.2f} s for its first token (against {m['ttft_p50']:.2f} "
        f"s) and {_int(x['fewer_throughput'])} tokens/s come out."
    )


def _explain_prefix(r: Report) -> str:
    m, h, x = r.metrics, r.healthy, r.extra
    bottleneck, fix = _ANSWERS["prefix"]
    return (
        f"Server {r.letter}: {bottleneck}; fix: {fix}.\nThe job could find {_pct(m['best_share'])} of its "
        "prompt tokens in the cache (every question after a document's first), but finds "
        f"{_pct(m['hit_share'])}: on average a request computes again {_one(m['recomputed_per_request'])} "
        "document tokens that an earlier request had cached. The questions about one document come a median "
        f"{_one(m['median_distance'])} requests apart, and in between the other documents "
        f"({_int(x['document_blocks'])} blocks in all, against {POOL_BLOCKS} in the pool) push it out, least "
        "recently used first: the cache evicts what it is about to need. Running requests hold "
        f"{_pct(m['held_share'])} of the blocks, but they are not the cause: with half as many at once the "
        f"hit rate is still {_pct(x['half_concurrency_hit_share'])}, and even a pool twice as large only "
        f"reaches {_pct(x['twice_pool_hit_share'])}. Serving each document's questions back to back (the "
        "whole job is queued at once, so the server is free to pick the order; SGLang's cache-aware "
        "scheduling orders its queue by longest cached prefix, Zheng et al., 2024) reaches "
        f"{_pct(h['hit_share'])} in the same memory."
    )


_EXPLAIN: dict[str, Callable[[Report], str]] = {
    "contiguous": _explain_contiguous,
    "static": _explain_static,
    "preemption": _explain_preemption,
    "prefix": _explain_prefix,
}
