"""Shared by the serving tests (test_serve_engine, test_serve_stress, test_paged_swap_chunks): the shipped
model, prompts cut from the validation plays, the dense greedy reference, and an exact audit of who
holds which block in an engine."""

from __future__ import annotations

import functools
from collections import Counter

import torch

from kvlib.cache.dense import NaiveKVCache
from kvlib.data import token_ids
from kvlib.generate import generate
from kvlib.model import load_model


@functools.cache
def shipped_model(name: str = "shakespeare-mha"):
    return load_model(name)


@functools.cache
def _text() -> tuple[int, ...]:
    return tuple(token_ids("val").tolist())


def text_slice(start: int, length: int) -> list[int]:
    """``length`` consecutive tokens of the validation plays from ``start``: a real prompt."""
    text = _text()
    assert 0 <= start and start + length <= len(text), (start, length)
    return list(text[start : start + length])


@functools.cache
def _dense(prompt: tuple[int, ...], max_tokens: int) -> tuple[int, ...]:
    model = shipped_model()
    ids = generate(model, torch.tensor([prompt]), max_tokens, NaiveKVCache(model.config.num_layers))
    return tuple(ids[0, len(prompt) :].tolist())


def dense_greedy(prompt, max_tokens: int) -> list[int]:
    """What greedy generation of ``prompt`` alone with the dense cache produces: the reference every
    batching, preemption and prefix-sharing mode must reproduce token for token."""
    return list(_dense(tuple(prompt), max_tokens))


def check_block_ownership(engine) -> None:
    """Every block's reference count is exactly the number of block tables that list it, and the
    tables are exactly those of the running requests (waiting, swapped and finished ones hold no block;
    a swapped one holds its K/V on the host instead). Recomputed here from the engine's own queues,
    independently of BlockManager.check_invariants (which the caller runs too)."""
    manager, scheduler = engine.cache.manager, engine.scheduler
    running = {s.seq_id for s in scheduler.running}
    assert set(manager.seqs) == running, f"tables {sorted(manager.seqs)} but running {sorted(running)}"
    owners = Counter(b for table in manager.seqs.values() for b in table.block_ids)
    cached = manager.cache.cached_blocks() if manager.cache is not None else {}
    for block_id, block in enumerate(manager.allocator.blocks):
        assert block.ref_count == owners[block_id], (
            f"block {block_id}: ref_count {block.ref_count}, held by {owners[block_id]} table(s)"
        )
        if owners[block_id] == 0:  # unowned: on the free list, or idle in the prefix cache, not both
            assert manager.allocator.is_free(block_id) != (block_id in cached), f"block {block_id} leaked"
    assert manager.num_used_blocks == len(owners)
    for seq in scheduler.swapped:
        assert engine.requests[seq.seq_id].swapped is not None, f"swapped request {seq.seq_id} has no K/V"
    for request in engine.requests.values():
        if request.finished or request.state in scheduler.waiting:
            assert request.swapped is None, f"request {request.request_id} still keeps swapped K/V"
