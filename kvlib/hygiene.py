"""Memory hygiene: what autograd keeps alive while a model generates, and what a training step costs.

Generation needs no gradients, but PyTorch records an autograd graph for every operation on a tensor
that requires grad (the parameters do) unless told otherwise. Each recorded operation keeps the
tensors its backward needs ("saved tensors": a matmul keeps its input, softmax its output). With a KV
cache the graph does not die with the step's logits: the cached keys and values were computed from
the step's activations, so they carry a ``grad_fn`` chain back through every earlier step, and the
whole history of activations stays reachable from the cache. Chapter 09 measures that leak
(:func:`graph_memory_per_step`), what ``detach`` changes, and the fix (``torch.no_grad`` or
``torch.inference_mode``; :func:`generate_without_graph` is the reference of the graded exercise).

How the graph is measured, and why it is exact: :func:`torch.autograd.graph.saved_tensors_hooks`
calls a hook for every tensor autograd saves. The hook stores ``t.detach()`` (same storage, a Python
object nobody else holds) and keeps only a weak reference to it, so the object lives exactly as long
as the graph holds it. After each step, the storages of the saved tensors still alive, parameters
excluded (they live anyway), are the bytes the graph keeps alive; ``graph_only_bytes`` leaves out the
storages the cache holds too. A torch profiler run (:func:`memory_timeline`, or :func:`profile_memory`
around any code) counts the same bytes from the allocator's side: tensor memory allocated during
generation and not yet freed.

Training memory (:func:`training_step_memory`) compares a plain step with activation checkpointing
(``torch.utils.checkpoint`` around each decoder layer: keep only each layer's input, recompute the
inside during backward) and bf16 autocast, peak measured by :func:`kvlib.memory.measure_allocations`.

On CUDA the same functions read the caching allocator (``torch.cuda.memory_allocated``,
``max_memory_allocated`` after ``reset_peak_memory_stats``), and :func:`cuda_memory_history` records a
memory snapshot (the file https://pytorch.org/memory_viz draws) with :func:`snapshot_timeline` as its
live-bytes curve.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kvlib.cache.base import ForwardBatch
from kvlib.cache.dense import NaiveKVCache
from kvlib.generate import _check_generation_fits, _check_prompt, new_token_positions
from kvlib.memory import _quiet_stderr, _require_measurable, _storage_key, cache_nbytes, measure_allocations
from kvlib.model import TinyDecoder, rope_cos_sin
from kvlib.validate import describe, require_bool, require_int, require_tensor

REGIMES: tuple[str, ...] = ("grad", "detach_logits", "detach_cache", "no_grad", "inference_mode")
"""How a generation loop treats autograd:

- ``grad``: nothing done, grad mode on (a notebook's default): every step records a graph, and the
  cache keeps all of them alive;
- ``detach_logits``: grad on, each step's logits detached: the cache still carries the graph;
- ``detach_cache``: grad on, the cache's keys and values detached after each step (and the logits):
  each step still records a graph while it runs, but nothing keeps it afterwards;
- ``no_grad``, ``inference_mode``: no graph recorded at all (inference mode also skips the version
  counters and view tracking, and its outputs cannot be saved for a later backward).
"""


def _check_model(model: Any) -> TinyDecoder:
    if not isinstance(model, TinyDecoder):
        raise TypeError(f"model must be a kvlib TinyDecoder (e.g. load_model()), got {describe(model)}")
    return model


def _check_regime(regime: Any) -> str:
    if not isinstance(regime, str):
        raise TypeError(f"regime must be one of {', '.join(REGIMES)} (a str), got {describe(regime)}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    return regime


def _check_ids(model: TinyDecoder, input_ids: Any, n_new: Any, minimum: int = 0) -> int:
    """input_ids [B, T] torch.long on the model's device; n_new an int >= minimum that fits the context."""
    n_new = _check_prompt(input_ids, n_new, name="n_new", minimum=minimum)
    device = model.embed_tokens.weight.device
    if input_ids.device != device:
        raise ValueError(f"input_ids is on {input_ids.device} but the model on {device}")
    _check_generation_fits(model, input_ids.shape[1], n_new)
    return n_new


def _regime_context(regime: str) -> contextlib.AbstractContextManager:
    if regime == "no_grad":
        return torch.no_grad()
    if regime == "inference_mode":
        return torch.inference_mode()
    return torch.enable_grad()


def _greedy_steps(
    model: TinyDecoder, input_ids: torch.Tensor, n_new: int, regime: str
) -> Iterator[tuple[int, NaiveKVCache, torch.Tensor]]:
    """Cached greedy generation under ``regime``: yields (step, cache, new tokens so far [B, step + 1])
    after each model call, once the step's logits are dropped. Step 0 is the prefill."""
    cache = NaiveKVCache(model.config.num_layers)
    tokens: list[torch.Tensor] = []
    next_input, position = input_ids, 0
    with _regime_context(regime):
        for step in range(n_new):
            positions = new_token_positions(position, next_input.shape[1], input_ids.device)
            logits = model(next_input, positions=positions, cache=cache)  # [B, T_in, V]
            position += next_input.shape[1]
            if regime in ("detach_logits", "detach_cache"):
                logits = logits.detach()
            if regime == "detach_cache":  # the stored tensors, not copies: same bytes, no grad_fn
                cache.keys = [k.detach() for k in cache.keys]
                cache.values = [v.detach() for v in cache.values]
            next_input = logits[:, -1].argmax(dim=-1, keepdim=True)  # [B, 1] long: carries no graph
            del logits
            tokens.append(next_input)
            yield step, cache, torch.cat(tokens, dim=1)


class _SavedTensors:
    """Weak references to every tensor autograd saves inside the ``with`` block (see the module doc)."""

    def __init__(self, exclude: set[tuple[str, int]]) -> None:
        self.exclude = exclude
        self.refs: list[weakref.ref] = []

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        held = tensor.detach()  # the graph's own handle on the storage, referenced by nothing else
        self.refs.append(weakref.ref(held))
        return held

    @contextlib.contextmanager
    def recording(self) -> Iterator[_SavedTensors]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda held: held):
            yield self

    def alive(self) -> dict[tuple[str, int], int]:
        """Storage key -> bytes of every saved storage still referenced by a graph (exclusions left out)."""
        out = {}
        for ref in self.refs:
            tensor = ref()
            if tensor is not None:
                key = _storage_key(tensor)
                if key not in self.exclude:
                    out[key] = tensor.untyped_storage().nbytes()
        return out


def _storage_keys(tensors: Iterator[torch.Tensor]) -> set[tuple[str, int]]:
    return {_storage_key(t) for t in tensors if t is not None}


@dataclass(frozen=True)
class StepMemory:
    """Memory after one step of a cached generation (step 0 is the prefill).

    ``saved_tensors``: tensors autograd saved for backward during this step (0 without a graph).
    ``graph_bytes``: storage bytes that some autograd graph still references after the step,
    parameters and the prompt excluded (they live anyway). ``graph_only_bytes``: the part of it that
    the cache does not hold as well, i.e. what dropping the graph would free. ``device_bytes``: on
    CUDA, ``torch.cuda.memory_allocated`` above its value at the start (None on CPU, where
    :func:`memory_timeline` gives the same count).
    """

    step: int
    cached_tokens: int
    cache_bytes: int
    saved_tensors: int
    graph_bytes: int
    graph_only_bytes: int
    device_bytes: int | None = None


@dataclass(frozen=True)
class GraphMemory:
    """One generation under one regime: the new tokens [B, n_new] and the memory after each step."""

    regime: str
    tokens: torch.Tensor
    steps: list[StepMemory]


def graph_memory_per_step(
    model: TinyDecoder, input_ids: torch.Tensor, n_new: int, regime: str = "grad"
) -> GraphMemory:
    """Greedy generation of ``n_new`` tokens with a NaiveKVCache under ``regime`` (see :data:`REGIMES`),
    measuring after every step the bytes the autograd graph keeps alive.

    The regime's grad mode holds only inside this call (the caller's is restored); the parameters keep
    their ``requires_grad``, so ``grad`` shows what a loop written without ``torch.no_grad`` does.
    Tokens are the same in every regime (autograd never changes values).
    """
    model = _check_model(model)
    regime = _check_regime(regime)
    n_new = _check_ids(model, input_ids, n_new, minimum=1)
    cuda = input_ids.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(input_ids.device)
        start = torch.cuda.memory_allocated(input_ids.device)
    # what lives anyway, graph or not: the parameters and the caller's prompt (the embedding saves its ids)
    outside = _storage_keys(itertools.chain(model.parameters(), model.buffers(), [input_ids]))
    saved = _SavedTensors(outside)
    steps, tokens = [], input_ids.new_zeros((input_ids.shape[0], 0))
    with saved.recording():
        before = 0
        for step, cache, tokens in _greedy_steps(model, input_ids, n_new, regime):  # noqa: B007
            alive = saved.alive()
            in_cache = _storage_keys(iter(cache.keys + cache.values))
            device_bytes = None
            if cuda:
                torch.cuda.synchronize(input_ids.device)
                device_bytes = torch.cuda.memory_allocated(input_ids.device) - start
            steps.append(
                StepMemory(
                    step=step,
                    cached_tokens=cache.seq_len,
                    cache_bytes=cache_nbytes(cache),
                    saved_tensors=len(saved.refs) - before,
                    graph_bytes=sum(alive.values()),
                    graph_only_bytes=sum(n for key, n in alive.items() if key not in in_cache),
                    device_bytes=device_bytes,
                )
            )
            before = len(saved.refs)
    return GraphMemory(regime, tokens.clone(), steps)  # clone: inference_mode's tokens are inference tensors


# --- the graded exercise's reference ----------------------------------------------------------------------


def generate_without_graph(model: TinyDecoder, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy generation with a KV cache that records no autograd graph: the new ids [B, n_new] (torch.long).

    One prefill call over the prompt into an empty NaiveKVCache, then one decode call per further token
    (n_new calls, none for n_new = 0). ``torch.no_grad()`` as a ``with`` block restores the caller's
    grad mode on the way out, also when the model raises; ``torch.set_grad_enabled(False)`` alone would
    leave it off for everything the caller runs next. No graph means no saved activations and no
    ``grad_fn`` on the cached keys, so memory is the cache and one step's temporaries. Unlike
    ``torch.inference_mode``, the result is an ordinary tensor (an inference tensor cannot be saved for
    a later backward, e.g. fed to a training step). Neither ``input_ids`` nor the model is changed.
    """
    model = _check_model(model)
    n_new = _check_ids(model, input_ids, n_new)
    batch = input_ids.shape[0]
    with torch.no_grad():
        cache = NaiveKVCache(model.config.num_layers)
        new = input_ids.new_empty((batch, n_new))  # [B, n_new]
        next_input, position = input_ids, 0
        for step in range(n_new):
            positions = new_token_positions(position, next_input.shape[1], input_ids.device)
            logits = model(next_input, positions=positions, cache=cache)  # [B, T_in, V]
            position += next_input.shape[1]
            new[:, step] = logits[:, -1].argmax(dim=-1)
            next_input = new[:, step : step + 1]  # [B, 1]
    return new


# --- training memory --------------------------------------------------------------------------------------


def _logits(model: TinyDecoder, input_ids: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """The training forward (no cache); with ``checkpointing`` each decoder layer runs under
    ``torch.utils.checkpoint`` (use_reentrant=False), which saves the layer's input only and reruns the
    layer during backward. Same computation as ``TinyDecoder.forward``, written out to reach the layers."""
    if not checkpointing:
        return model(input_ids)
    from torch.utils.checkpoint import checkpoint

    B, T = input_ids.shape
    positions = torch.arange(T, device=input_ids.device)  # (T,)
    x = model.embed_tokens(input_ids)  # (B, T, C)
    cos, sin = rope_cos_sin(positions, model.config.head_dim, model.config.rope_theta, x.dtype)
    batch = ForwardBatch(positions.expand(B, T), None, cos, sin, model.config.rope_theta)
    for layer in model.layers:
        x = checkpoint(layer, x, batch, None, use_reentrant=False)
    return model.lm_head(model.norm(x)).float()  # (B, T, V)


@dataclass(frozen=True)
class TrainingMemory:
    """One training step (forward, next-token loss, backward) and the memory it took.

    ``peak_bytes``: most tensor bytes live at once above the start (the parameters were there before,
    the gradients are allocated inside the step, so they count). ``seconds``: wall time of the
    measured step, profiler attached on CPU.
    """

    checkpointing: bool
    bf16_autocast: bool
    peak_bytes: int
    allocations: int
    loss: float
    seconds: float
    device: str


def training_step_memory(
    model: TinyDecoder, input_ids: torch.Tensor, checkpointing: bool = False, bf16_autocast: bool = False
) -> TrainingMemory:
    """Peak memory of one training step on ``input_ids`` [B, T + 1] (inputs ids[:, :-1], targets ids[:, 1:]).

    ``checkpointing``: activation checkpointing per decoder layer. ``bf16_autocast``: the forward under
    ``torch.autocast(device, dtype=torch.bfloat16)`` (matmuls in bf16, weights kept in fp32). The model
    runs in training mode and is left as it was: its mode and its parameters' ``.grad`` are restored.
    """
    model = _check_model(model)
    require_tensor("input_ids", input_ids, 2, "[B, T + 1] of token ids (torch.long)")
    if input_ids.dtype != torch.long or input_ids.shape[1] < 2:
        raise ValueError(
            f"input_ids must be a torch.long tensor [B, T + 1] with T >= 1 (inputs then targets), "
            f"got shape {list(input_ids.shape)} {input_ids.dtype}"
        )
    checkpointing = require_bool("checkpointing", checkpointing)
    bf16_autocast = require_bool("bf16_autocast", bf16_autocast)
    device = model.embed_tokens.weight.device
    if input_ids.device != device:
        raise ValueError(f"input_ids is on {input_ids.device} but the model on {device}")
    _check_generation_fits(model, input_ids.shape[1] - 1, 1)  # positions 0 .. T - 1

    def step() -> float:
        with torch.enable_grad():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast):
                logits = _logits(model, input_ids[:, :-1], checkpointing)  # [B, T, V]
            loss = F.cross_entropy(logits.float().flatten(0, 1), input_ids[:, 1:].flatten())
            loss.backward()
        return loss.item()

    was_training = model.training
    grads = [p.grad for p in model.parameters()]
    model.train()
    try:
        for p in model.parameters():
            p.grad = None
        started = time.perf_counter()
        loss, stats = measure_allocations(step, device)
        seconds = time.perf_counter() - started
    finally:
        for p, grad in zip(model.parameters(), grads):
            p.grad = grad
        model.train(was_training)
    return TrainingMemory(
        checkpointing, bf16_autocast, stats.peak_bytes, stats.num_allocs, loss, seconds, stats.device
    )


# --- memory over time -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryTimeline:
    """Live tensor bytes over the time of one run: bytes allocated inside it and not yet freed.

    ``times_ms`` and ``live_bytes``: one point per allocation or free; ``step_ends_ms``: when each
    step (0: the prefill) ended, for a generation; ``step_end_bytes``: live bytes at those moments.
    """

    label: str
    times_ms: list[float]
    live_bytes: list[int]
    step_ends_ms: list[float]
    step_end_bytes: list[int]

    @property
    def peak_bytes(self) -> int:
        """The most bytes live at once above the start (0 if the run allocated nothing)."""
        return max(self.live_bytes, default=0)


_STEP = "kvlib.hygiene step "


def _memory_changes(prof: Any) -> tuple[list[tuple[float, int]], list[float]]:
    """(time in us, +bytes allocated or -bytes freed) of every CPU allocation event, in time order, and
    the end times of the step markers.

    The profiler's raw (Kineto) events give each alloc and free with its own timestamp and are read in
    milliseconds. ``prof.events()`` (the public, slower path, kept for a torch without them: 1-2 s for a
    few thousand ops) folds the bytes an op allocates into the op, dated at its start."""
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is not None and hasattr(results, "events"):
        from torch.autograd import DeviceType

        raw = results.events()
        changes = [
            (e.start_ns() / 1000, int(e.nbytes()))
            for e in raw
            if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
        ]
        ends = [e.end_ns() / 1000 for e in raw if e.name().startswith(_STEP)]
    else:
        events = prof.events()
        changes = [
            (e.time_range.start, int(e.self_cpu_memory_usage)) for e in events if e.self_cpu_memory_usage
        ]
        ends = [e.time_range.end for e in events if e.name.startswith(_STEP)]
    return sorted(changes), sorted(ends)


def profile_memory(fn: Callable[[], Any], label: str = "") -> tuple[Any, MemoryTimeline]:
    """Run ``fn()`` under the torch profiler (CPU, ``profile_memory=True``) and replay every tensor
    allocation and free into a live-bytes curve; returns (fn's result, the curve).

    Unlike :func:`kvlib.memory.measure_allocations` (which reads ``prof.events()``, one net number per
    op) each alloc and free counts at its own time, so memory an op allocates and frees inside itself
    shows in the peak, and a few thousand ops are read in milliseconds instead of seconds. Only CPU
    tensors are counted. The profiler slows every op down: the times show the shape, not real speed.
    """
    from torch.profiler import ProfilerActivity, profile

    _require_measurable("profile_memory", fn, "cpu", ("cpu",))
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {describe(label)}")
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    changes, ends = _memory_changes(prof)
    times = [t for t, _ in changes]
    live = list(itertools.accumulate(delta for _, delta in changes))
    origin = min(times[:1] + ends[:1], default=0.0)
    end_bytes = [live[i - 1] if i else 0 for i in (bisect.bisect_right(times, end) for end in ends)]
    timeline = MemoryTimeline(
        label, [(t - origin) / 1000 for t in times], live, [(t - origin) / 1000 for t in ends], end_bytes
    )
    return result, timeline


def memory_timeline(
    model: TinyDecoder, input_ids: torch.Tensor, n_new: int, regime: str = "no_grad"
) -> MemoryTimeline:
    """:func:`profile_memory` of a cached greedy generation of ``n_new`` tokens under ``regime``, with
    the end of every step marked (an empty ``record_function`` scope). CPU only: on CUDA use
    :func:`cuda_memory_history`.
    """
    from torch.profiler import record_function

    model = _check_model(model)
    regime = _check_regime(regime)
    n_new = _check_ids(model, input_ids, n_new, minimum=1)
    if input_ids.device.type != "cpu":
        raise ValueError(
            f"memory_timeline profiles the CPU allocator; the model is on {input_ids.device}: use "
            "cuda_memory_history(lambda: ...) for a CUDA memory snapshot"
        )

    def run() -> None:
        for step, _, _ in _greedy_steps(model, input_ids, n_new, regime):
            # An empty scope: one around the step would, in prof.events(), take the frees made outside
            # any op (Python dropping the step's tensors) as its own, dated at its start.
            with record_function(f"{_STEP}{step}"):
                pass

    return profile_memory(run, regime)[1]


def cuda_memory_history(
    fn: Callable[[], Any], device: str | torch.device = "cuda", max_entries: int = 100_000
) -> dict[str, Any]:
    """Run ``fn()`` with CUDA's memory history recorded and return the snapshot
    (``torch.cuda.memory._snapshot()``: segments plus a trace of every alloc and free). Save it with
    ``pickle`` and drop the file on https://pytorch.org/memory_viz, or read it with
    :func:`snapshot_timeline`. Recording is switched off again afterwards. Needs CUDA (ValueError
    otherwise)."""
    device = _require_measurable("cuda_memory_history", fn, device, ("cuda",))
    max_entries = require_int("max_entries", max_entries, minimum=1)
    torch.cuda.synchronize(device)
    torch.cuda.memory._record_memory_history(max_entries=max_entries)
    try:
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)


def snapshot_timeline(snapshot: Any, device: int = 0) -> tuple[list[float], list[int]]:
    """(times in ms from the first event, live bytes) from a CUDA snapshot's trace of ``device``:
    ``alloc`` adds its size, ``free_completed`` subtracts it (the caching allocator's own segment
    events are not tensor memory and are skipped). Bytes live before the recording started are not in
    the trace, so the curve starts at 0."""
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("device_traces"), list):
        raise TypeError(
            f"snapshot must be the dict of torch.cuda.memory._snapshot() (with 'device_traces'), "
            f"got {describe(snapshot)}"
        )
    traces = snapshot["device_traces"]
    device = require_int("device", device, minimum=0)
    if device >= len(traces):
        raise ValueError(f"device={device} but the snapshot has traces of {len(traces)} device(s)")
    times, live, total = [], [], 0
    for entry in traces[device]:
        sign = {"alloc": 1, "free_completed": -1}.get(entry.get("action"), 0)
        if sign:
            total += sign * int(entry["size"])
            times.append(float(entry.get("time_us", 0)) / 1000)
            live.append(total)
    origin = times[0] if times else 0.0
    return [t - origin for t in times], live


__all__ = [
    "REGIMES",
    "GraphMemory",
    "MemoryTimeline",
    "StepMemory",
    "TrainingMemory",
    "cuda_memory_history",
    "generate_without_graph",
    "graph_memory_per_step",
    "memory_timeline",
    "profile_memory",
    "snapshot_timeline",
    "training_step_memory",
]
