"""Hugging Face baselines for the serving benchmark: static batching with ``generate``, and transformers'
own continuous batching, on the same checkpoint and workload as :class:`kvlib.serve.engine.Engine`.

**Static batching** (:func:`static_batching`): requests are grouped in arrival order into batches of
``batch_size``; a batch starts when its last member has arrived and the previous batch is done, and runs
``model.generate`` (greedy, left padding) for the largest ``max_tokens`` of its members. Each request
keeps only its own ``max_tokens`` tokens: the rest are steps static batching computes for nothing, while
the requests that arrived meanwhile wait for the whole batch to end. Every token of step ``i`` is
stamped when the step's logits are ready (a LogitsProcessor that reads the clock and changes nothing):
the end of the step, when the engine stamps its tokens too. With
:class:`~kvlib.serve.engine.VirtualClock`, idle time before a batch's last arrival is skipped, as the
engine skips it.

**Continuous batching** (:func:`continuous_batching`): transformers' ``ContinuousBatchingManager``
(``model.init_continuous_batching``), a paged cache with a scheduler in a background thread. Requests are
added at their arrival times in real time (its thread cannot skip idle time), each with its own
``max_new_tokens``; the manager records a ``time.perf_counter`` timestamp for every token.

Neither baseline stops at the checkpoint's end-of-sequence token (token 0): the engine has no stop
token unless a request sets one, and a stop would make the outputs incomparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kvlib.serve.engine import VirtualClock
from kvlib.serve.metrics import RequestTimes
from kvlib.serve.workload import TimedRequest
from kvlib.validate import describe, require_int

__all__ = [
    "ServedRequest",
    "load_hf_model",
    "arrival_batches",
    "static_batching",
    "continuous_batching",
]

PAD_TOKEN = 0  # masked out by the attention mask; any id would do


@dataclass
class ServedRequest:
    """One request as a baseline served it: output tokens and when each was produced (seconds)."""

    arrival_s: float
    output: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)

    def times(self) -> RequestTimes:
        return RequestTimes(self.arrival_s, list(self.token_times))


def load_hf_model(name_or_path: str | Path = "shakespeare-mha") -> Any:
    """A shipped checkpoint (a name in :data:`kvlib.model.MODEL_NAMES`) or a checkpoint folder as a
    transformers ``LlamaForCausalLM`` in float32, offline, with its end-of-sequence stop turned off."""
    from transformers import AutoModelForCausalLM

    from kvlib.model import MODEL_NAMES, checkpoint_path

    path = checkpoint_path(name_or_path) if name_or_path in MODEL_NAMES else Path(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    model.generation_config.eos_token_id = None
    return model


def arrival_batches(workload: Sequence[TimedRequest], batch_size: int) -> list[list[int]]:
    """Indices of ``workload`` in arrival order (ties by position), cut into batches of ``batch_size``."""
    batch_size = require_int("batch_size", batch_size, minimum=1)
    order = sorted(range(len(workload)), key=lambda i: workload[i].arrival_s)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _left_padded(prompts: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask [B, longest prompt], prompts aligned to the right."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_TOKEN, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


class _StepClock:
    """A LogitsProcessor that changes nothing: it records the clock once per generation step."""

    def __init__(self, clock: Callable[[], float], on_step: Callable[[int], None] | None = None) -> None:
        self.clock = clock
        self.on_step = on_step
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.times.append(self.clock())
        if self.on_step is not None:
            self.on_step(len(self.times))
        return scores


def _check_workload(workload: Any) -> list[TimedRequest]:
    if not isinstance(workload, Sequence) or not workload:
        raise TypeError(f"workload must be a non-empty list of TimedRequest, got {describe(workload)}")
    for i, item in enumerate(workload):
        if not isinstance(item, TimedRequest):
            raise TypeError(f"workload[{i}] must be a TimedRequest, got {describe(item)}")
    return list(workload)


@torch.no_grad()
def static_batching(
    model: Any,
    workload: Sequence[TimedRequest],
    batch_size: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[int], None] | None = None,
) -> list[ServedRequest]:
    """Serve ``workload`` (arrivals in seconds from now) by static batching with ``model.generate``;
    returns each request's output and token times, in workload order. ``progress`` is called with the
    number of requests finished after each generation step."""
    from transformers import GenerationConfig, LogitsProcessorList

    workload = _check_workload(workload)
    start = clock()
    served = [ServedRequest(start + item.arrival_s) for item in workload]
    finished = 0
    for batch in arrival_batches(workload, batch_size):
        ready = max(served[i].arrival_s for i in batch)
        if clock() < ready and isinstance(clock, VirtualClock):
            clock.skip_to(ready)  # nothing runs before the last member arrives: skip the idle time
        while clock() < ready:  # a real clock waits
            time.sleep(min(ready - clock(), 0.01))
        lengths = [workload[i].max_tokens for i in batch]

        def on_step(step: int, lengths: list[int] = lengths, done_before: int = finished) -> None:
            if progress is not None:
                progress(done_before + sum(n <= step for n in lengths))

        stamps = _StepClock(clock, on_step)
        ids, mask = _left_padded([workload[i].prompt for i in batch])
        config = GenerationConfig(do_sample=False, max_new_tokens=max(lengths), pad_token_id=PAD_TOKEN)
        config.eos_token_id = None
        out = model.generate(
            ids, attention_mask=mask, generation_config=config, logits_processor=LogitsProcessorList([stamps])
        )
        new = out[:, ids.shape[1] :].tolist()
        for row, i in enumerate(batch):
            n = workload[i].max_tokens
            served[i].output = new[row][:n]
            served[i].token_times = stamps.times[:n]
        finished += len(batch)
    return served


def continuous_batching(
    model: Any,
    workload: Sequence[TimedRequest],
    *,
    block_size: int = 16,
    num_blocks: int | None = None,
    max_batch_tokens: int = 2048,
    max_requests_per_batch: int = 64,
    progress: Callable[[int], None] | None = None,
    timeout_s: float = 600.0,
) -> list[ServedRequest]:
    """Serve ``workload`` with transformers' ContinuousBatchingManager, each request added at its
    arrival (seconds from now, in real time); returns outputs and token times (``time.perf_counter``)
    in workload order. Raises RuntimeError when a request fails or the manager stops early, and
    whatever transformers raises when it cannot run the model at all."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    workload = _check_workload(workload)
    cb_config = ContinuousBatchingConfig(
        page_size=require_int("block_size", block_size, minimum=4),
        num_blocks=num_blocks,
        max_batch_tokens=max_batch_tokens,
        max_requests_per_batch=max_requests_per_batch,
        auto_switch_to_flash=False,
        seed=0,
    )
    gen_config = GenerationConfig(do_sample=False, max_new_tokens=max(r.max_tokens for r in workload))
    gen_config.eos_token_id = -1  # transformers' way to say "no stop token" here
    manager = model.init_continuous_batching(
        generation_config=gen_config, continuous_batching_config=cb_config
    )
    order = sorted(range(len(workload)), key=lambda i: workload[i].arrival_s)
    results: dict[str, Any] = {}
    manager.warmup()  # allocates its KV cache now, not while the first requests wait (no-op otherwise on CPU)
    manager.start()
    try:
        start = time.perf_counter()
        served = [ServedRequest(start + item.arrival_s) for item in workload]
        for i in order:
            while (wait := served[i].arrival_s - time.perf_counter()) > 0:
                _collect(manager, results, progress, min(wait, 0.05))
            manager.add_request(
                list(workload[i].prompt),
                request_id=str(i),
                max_new_tokens=workload[i].max_tokens,
                record_timestamps=True,
                eos_token_id=-1,
            )
        deadline = time.perf_counter() + timeout_s
        while len(results) < len(workload):
            if not manager.is_running() or time.perf_counter() > deadline:
                raise RuntimeError(
                    f"transformers' continuous batching stopped after {len(results)} of {len(workload)} "
                    f"requests: {manager.background_thread_status.fatal_error or 'timed out'}"
                )
            _collect(manager, results, progress, 0.5)
    finally:
        manager.stop(block=True, timeout=10)
        manager.destroy()
    for key, result in results.items():
        if result.error is not None:
            raise RuntimeError(f"transformers' continuous batching failed request {key}: {result.error}")
        served[int(key)].output = list(result.generated_tokens)
        served[int(key)].token_times = list(result.timestamps or [])
    return served


def _collect(
    manager: Any, results: dict[str, Any], progress: Callable[[int], None] | None, wait: float
) -> None:
    """Take the finished results the manager has (waiting at most ``wait`` seconds for the first)."""
    result = manager.get_result(timeout=wait)
    while result is not None:
        if result.is_finished():
            results[result.request_id] = result
            if progress is not None:
                progress(len(results))
        result = manager.get_result(timeout=0)
