"""Greedy generation with and without a KV cache, and the timings chapter 01 plots.

Without a cache every new token re-runs the model over the whole sequence: step t costs O(t)
projections and O(t^2) attention scores, so n tokens cost O(n^2) projections overall. With a
cache the prompt is processed once ("prefill", all T prompt tokens in one call, filling the
cache) and each further token is one call on a single token ("decode"): it computes q, k, v
for that token only, appends k, v to the cache and attends to everything cached, so step t
costs O(t) attention and O(1) projections.

Positions matter: the token generated at step s (0-based, after a prompt of T tokens) sits at
position T + s. The decode call that *feeds* that token therefore passes `positions=[T + s]`;
an off-by-one here silently rotates the keys by the wrong RoPE angle.

Any model with `forward(input_ids [B, T], positions=None, cache=None) -> logits [B, T, V]`
works (kvlib's TinyDecoder); `cache` is any object with the kvlib cache contract.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from kvlib.cache.base import rotates_keys
from kvlib.model import require_cache, require_cache_room
from kvlib.validate import require_bool, require_device, require_int, require_tensor


def _check_prompt(
    prompt_ids: Any, max_new_tokens: Any, name: str = "max_new_tokens", minimum: int = 0
) -> int:
    """Validate a [batch, T] LongTensor prompt and the step count; returns the count as an int."""
    require_tensor("prompt_ids", prompt_ids, layout="[batch, T] of token ids (torch.long)")
    if prompt_ids.dim() != 2 or prompt_ids.dtype != torch.long:
        raise ValueError(
            f"prompt_ids must be a LongTensor of shape [batch, T] with T >= 1, "
            f"got {tuple(prompt_ids.shape)} {prompt_ids.dtype}"
        )
    if prompt_ids.shape[1] < 1:
        raise ValueError("prompt_ids must contain at least one token")
    return require_int(name, max_new_tokens, minimum=minimum)


def _check_model(model: Any) -> None:
    if not callable(model):
        what = type(model).__name__
        raise TypeError(f"model must be callable as model(input_ids, positions=..., cache=...), got {what}")


def _check_fits_context(model: Any, last_position: int, what: str) -> None:
    """Refuse up front when a run would feed ``last_position`` past the model's context
    (``config.max_seq_len``), instead of failing midway with a half-filled cache."""
    context = getattr(getattr(model, "config", None), "max_seq_len", None)
    if not isinstance(context, int) or getattr(model, "allow_long_context", False):
        return
    if last_position >= context:
        raise ValueError(
            f"{what} needs positions up to {last_position}, past the model's context "
            f"(max_seq_len={context}: positions 0..{context - 1})"
        )


def _check_generation_fits(model: Any, prompt_len: int, max_new_tokens: int, cache: Any = None) -> None:
    """The last call feeds the token chosen at step N-2, at position T + N - 2. A cache that rotates
    keys itself (a sink cache) numbers positions inside the cache, so only its prefill must fit."""
    if max_new_tokens > 0:
        if rotates_keys(cache):
            _check_fits_context(model, prompt_len - 1, f"a prompt of {prompt_len} tokens (one prefill call)")
            return
        what = f"a prompt of {prompt_len} tokens plus max_new_tokens={max_new_tokens}"
        _check_fits_context(model, prompt_len + max_new_tokens - 2, what)


def _check_cache_instance(model: Any, cache: Any, prompt_len: int, max_new_tokens: int) -> None:
    """An empty cache instance with as many layers as the model and room for the whole run
    (else it fails at layer L, or when full, half filled)."""
    if cache is None:
        raise TypeError("cache must be a KV cache instance, got None; use generate_uncached for no cache")
    require_cache(cache, num_layers=getattr(getattr(model, "config", None), "num_layers", None))
    if cache.seq_len != 0:
        raise ValueError(
            f"generate needs an empty cache, this one holds {cache.seq_len} tokens; call reset()"
        )
    if max_new_tokens > 0:  # the prefill stores the prompt, each later call one token
        what = f"a prompt of {prompt_len} tokens plus max_new_tokens={max_new_tokens}"
        require_cache_room(cache, prompt_len + max_new_tokens - 1, what)


def new_token_positions(start: int, length: int, device: torch.device | None = None) -> torch.Tensor:
    """Absolute positions of `length` tokens appended after `start` cached ones: a 1-D torch.long [length]."""
    start = require_int("start", start, minimum=0)
    length = require_int("length", length, minimum=0)
    if device is not None and not isinstance(device, torch.device):  # generate passes a torch.device
        device = require_device("device", device)
    return torch.arange(start, start + length, dtype=torch.long, device=device)  # [T]


@torch.no_grad()
def generate(
    model: Any,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    cache: Any,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Greedy generation with a KV cache: one prefill call, then one decode call per extra token.

    prompt_ids: [B, T] token ids. `cache` must be empty. Returns the ids [B, T + max_new_tokens]
    (prompt followed by the new tokens) and, with `return_logits=True`, also the next-token
    logits of every step [B, max_new_tokens, V]. Makes exactly max_new_tokens model calls:
    call 0 is the prefill over positions 0..T-1, call s >= 1 feeds the token chosen at step s-1
    at position T + s - 1.
    """
    _check_model(model)
    max_new_tokens = _check_prompt(prompt_ids, max_new_tokens)
    return_logits = require_bool("return_logits", return_logits)
    _check_cache_instance(model, cache, prompt_ids.shape[1], max_new_tokens)
    _check_generation_fits(model, prompt_ids.shape[1], max_new_tokens, cache)
    batch, prompt_len = prompt_ids.shape
    ids, step_logits = prompt_ids, []
    next_input, position = prompt_ids, 0
    for _ in range(max_new_tokens):
        logits = model(
            next_input, positions=new_token_positions(position, next_input.shape[1], ids.device), cache=cache
        )
        position += next_input.shape[1]
        last = logits[:, -1, :]  # [B, V] the next-token distribution
        token = last.argmax(dim=-1, keepdim=True)  # [B, 1], greedy
        step_logits.append(last)
        ids = torch.cat([ids, token], dim=1)  # [B, T + s + 1]
        next_input = token
    if return_logits:
        vocab = step_logits[0].shape[-1] if step_logits else 0
        stacked = (
            torch.stack(step_logits, dim=1)
            if step_logits
            else prompt_ids.new_zeros((batch, 0, vocab)).float()
        )
        return ids, stacked  # [B, T + N], [B, N, V]
    return ids


@torch.no_grad()
def generate_uncached(
    model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, return_logits: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Greedy generation that re-runs the model over the whole sequence at every step (no cache).

    Same return values as `generate`. This is the O(n^2) baseline the cache must reproduce.
    """
    _check_model(model)
    max_new_tokens = _check_prompt(prompt_ids, max_new_tokens)
    return_logits = require_bool("return_logits", return_logits)
    _check_generation_fits(model, prompt_ids.shape[1], max_new_tokens)
    ids, step_logits = prompt_ids, []
    for _ in range(max_new_tokens):
        logits = model(ids, positions=new_token_positions(0, ids.shape[1], ids.device), cache=None)
        last = logits[:, -1, :]  # [B, V]
        step_logits.append(last)
        ids = torch.cat([ids, last.argmax(dim=-1, keepdim=True)], dim=1)
    if return_logits:
        return ids, torch.stack(step_logits, dim=1)  # [B, T + N], [B, N, V]
    return ids


def compare_cached_uncached(
    model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, cache: Any
) -> tuple[float, bool]:
    """Generate greedily with `cache` and without one; (max |logit difference| over every step, same ids).

    Each run picks its own greedy tokens, so a cache that changes one token makes the runs diverge
    and the difference shows in every later step, not only where the cache went wrong.
    """
    ids_c, logits_c = generate(model, prompt_ids, max_new_tokens, cache, return_logits=True)
    ids_u, logits_u = generate_uncached(model, prompt_ids, max_new_tokens, return_logits=True)
    return (logits_c - logits_u).abs().max().item(), bool(torch.equal(ids_c, ids_u))


@torch.no_grad()
def generate_ragged(
    model: Any, cache: Any, prompts: list[list[int]], max_new_tokens: int, return_logits: bool = False
) -> list[list[int]] | tuple[list[list[int]], list[torch.Tensor]]:
    """Greedy generation of prompts of different lengths together: one ragged forward per step.

    ``cache`` keeps a length per sequence (``kvlib.paged.PagedKVCache``): prompt i becomes its
    sequence i (ids 0 .. n-1 must be free) and is freed at the end (with a prefix cache its full
    blocks stay cached). Step 0 runs every prompt (minus what a prefix hit already holds), each later
    step one token per prompt. Returns the new tokens of every prompt and, with ``return_logits``,
    each prompt's next-token logits per step [max_new_tokens, V], as ``generate`` gives them alone.
    """
    _check_model(model)
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise TypeError(f"prompts must be a non-empty list of token-id lists, got {type(prompts).__name__}")
    max_new_tokens = require_int("max_new_tokens", max_new_tokens, minimum=0)
    return_logits = require_bool("return_logits", return_logits)
    for prompt in prompts:
        _check_generation_fits(model, len(prompt), max_new_tokens)
    seq_ids = list(range(len(prompts)))
    new_tokens: list[list[int]] = [[] for _ in prompts]
    step_logits: list[list[torch.Tensor]] = [[] for _ in prompts]
    added: list[int] = []
    try:
        for seq_id, prompt in zip(seq_ids, prompts):
            cache.add_sequence(seq_id, prompt)
            added.append(seq_id)
        for _ in range(max_new_tokens):
            last = cache.step(model, seq_ids)  # (n, V): each row's next-token logits
            for row, token in enumerate(last.argmax(dim=-1).tolist()):
                new_tokens[row].append(token)
                step_logits[row].append(last[row])
                cache.append_token(seq_ids[row], token)
    finally:  # the cache is reusable after an error too (e.g. OutOfBlocks admitting prompt 5)
        for seq_id in added:
            cache.free(seq_id)
    if return_logits:
        vocab = getattr(getattr(model, "config", None), "vocab_size", 0)
        stacked = [torch.stack(rows) if rows else torch.zeros(0, vocab) for rows in step_logits]
        return new_tokens, stacked
    return new_tokens


@dataclass
class GenerationTimings:
    """Wall-clock split of one cached generation: the prefill call and each decode call."""

    prompt_len: int
    prefill_s: float
    decode_s: list[float] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.prefill_s + sum(self.decode_s)

    @property
    def mean_decode_s(self) -> float:
        return sum(self.decode_s) / len(self.decode_s) if self.decode_s else float("nan")


@torch.no_grad()
def timed_generate(
    model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, cache: Any
) -> tuple[torch.Tensor, GenerationTimings]:
    """`generate` with a stopwatch around the prefill call and each decode call (max_new_tokens >= 1:
    the prefill produces the first token)."""
    _check_model(model)
    max_new_tokens = _check_prompt(prompt_ids, max_new_tokens, minimum=1)
    _check_cache_instance(model, cache, prompt_ids.shape[1], max_new_tokens)
    _check_generation_fits(model, prompt_ids.shape[1], max_new_tokens, cache)
    prompt_len = prompt_ids.shape[1]
    start = time.perf_counter()
    logits = model(prompt_ids, positions=new_token_positions(0, prompt_len, prompt_ids.device), cache=cache)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    timings = GenerationTimings(prompt_len, time.perf_counter() - start)
    ids = torch.cat([prompt_ids, token], dim=1)
    for step in range(1, max_new_tokens):
        start = time.perf_counter()
        position = new_token_positions(prompt_len + step - 1, 1, ids.device)
        logits = model(token, positions=position, cache=cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        timings.decode_s.append(time.perf_counter() - start)
        ids = torch.cat([ids, token], dim=1)
    return ids, timings


@torch.no_grad()
def time_next_token(
    model: Any, context_ids: torch.Tensor, make_cache: Any = None, repeats: int = 3, steps: int = 4
) -> float:
    """Seconds per extra token after `context_ids` [B, n]: mean over `steps`, best of `repeats`.

    With `make_cache` (a zero-argument factory) the context is prefilled once, untimed, and then
    `steps` decode calls on one token each are timed: the cost of a cached step at length ~n.
    Without it every timed step is a full forward over the n + s tokens so far, the uncached cost.
    """
    _check_model(model)
    steps = _check_prompt(context_ids, steps, name="steps", minimum=1)
    repeats = require_int("repeats", repeats, minimum=1)
    if make_cache is not None and not callable(make_cache):
        raise TypeError(
            f"make_cache must be a zero-argument cache factory or None, got {type(make_cache).__name__}"
        )
    n = context_ids.shape[1]
    # the cached run decodes at positions n .. n + steps - 1
    _check_fits_context(model, n + steps - 1, f"a context of {n} tokens plus steps={steps}")
    token = context_ids[:, -1:]
    best = float("inf")
    for _ in range(repeats):
        if make_cache is not None:
            cache = make_cache()
            require_cache_room(cache, n + steps, f"a context of {n} tokens plus steps={steps}")
            model(context_ids, positions=new_token_positions(0, n, context_ids.device), cache=cache)
            start = time.perf_counter()
            for s in range(steps):
                model(token, positions=new_token_positions(n + s, 1, context_ids.device), cache=cache)
        else:
            ids = context_ids
            start = time.perf_counter()
            for _ in range(steps):
                model(ids, positions=new_token_positions(0, ids.shape[1], ids.device), cache=None)
                ids = torch.cat([ids, token], dim=1)
        best = min(best, (time.perf_counter() - start) / steps)
    return best
