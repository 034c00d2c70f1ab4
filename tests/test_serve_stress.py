"""The serving engine under load: 240 concurrent requests of varying lengths on a pool so small that
requests are preempted (by recompute, or by swap) and cached prefixes evicted all the time; a quarter
of them sample (temperature and top_p, each with its own seed), the others decode greedily.

After every step the block bookkeeping is audited (BlockManager.check_invariants, and each block's
reference count recomputed from the running requests' tables); at the end every request has
finished, no block is held, and every output equals the one the engine gives on a pool that never
preempts (a seeded sample too: the same seed gives the same tokens whatever else runs), which for a
sample of the greedy requests equals generating them alone with the dense cache.
Run with ``-s`` to see the figures (requests, steps, preemptions, evictions, swapped bytes, wall time).
"""

from __future__ import annotations

import random
import time

import pytest
from serve_helpers import check_block_ownership, dense_greedy, shipped_model, text_slice

from kvlib.serve.engine import Engine, SamplingParams

pytestmark = [pytest.mark.ch08, pytest.mark.usefixtures("one_torch_thread")]

NUM_REQUESTS = 240
BLOCK_SIZE = 4
SMALL_POOL = 64  # blocks of 4 tokens: 256 token slots for up to 32 running requests of up to 80 tokens
MAX_NUM_SEQS = 32
DENSE_SAMPLE = 20


def _workload(seed: int = 0) -> list[tuple[list[int], SamplingParams]]:
    """(prompt, params) pairs: 1 to 16 tokens of text, a third of them (1 to 8) after one of three system
    prompts (prefix hits, and cached blocks to evict), outputs of 1 to 40 tokens (sequences grow a lot
    after admission: that is what preempts them); every fourth request samples."""
    rng = random.Random(seed)
    systems = [text_slice(100_000 + 1000 * i, 8 * (i + 2)) for i in range(3)]  # 16, 24, 32 tokens
    requests = []
    for i in range(NUM_REQUESTS):
        own = text_slice(rng.randrange(0, 110_000), rng.randint(1, 8 if i % 3 == 0 else 16))
        prompt = rng.choice(systems) + own if i % 3 == 0 else own
        max_tokens = rng.randint(1, 40)
        sampled = {"temperature": 0.8, "top_p": 0.9, "seed": i} if i % 4 == 1 else {}
        requests.append((prompt, SamplingParams(max_tokens=max_tokens, **sampled)))
    return requests


def _serve(requests, *, audit: bool, **engine_args) -> tuple[Engine, list[list[int]], int]:
    """Submit every request at once, step until all finish; returns the engine, the outputs in
    submission order and the number of steps."""
    engine = Engine(shipped_model(), block_size=BLOCK_SIZE, max_num_seqs=MAX_NUM_SEQS, **engine_args)
    ids = [engine.submit(prompt, params) for prompt, params in requests]
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
        assert steps < 20 * NUM_REQUESTS, "the engine stopped making progress"
        if audit:
            engine.cache.manager.check_invariants()
            check_block_ownership(engine)
    return engine, [engine.requests[i].output for i in ids], steps


@pytest.fixture(scope="module")
def workload():
    return _workload()


@pytest.fixture(scope="module")
def unpressured(workload):
    """The outputs on a pool that holds every request at once: no preemption, nothing evicted."""
    blocks = sum(-(-(len(prompt) + params.max_tokens) // BLOCK_SIZE) for prompt, params in workload)
    engine, outputs, _ = _serve(workload, audit=False, num_blocks=blocks, prefix_cache="radix")
    assert engine.scheduler.num_preemptions == 0 and engine.cache.manager.cache.num_evicted == 0
    return outputs


def test_unpressured_outputs_equal_dense_generation_alone(workload, unpressured) -> None:
    greedy = [i for i, (_, params) in enumerate(workload) if params.temperature == 0]
    for i in random.Random(1).sample(greedy, DENSE_SAMPLE):
        prompt, params = workload[i]
        assert unpressured[i] == dense_greedy(prompt, params.max_tokens), f"request {i}"


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_many_requests_on_a_small_pool(workload, unpressured, preemption) -> None:
    start = time.perf_counter()
    engine, outputs, steps = _serve(
        workload, audit=True, num_blocks=SMALL_POOL, prefix_cache="radix", preemption=preemption
    )
    wall = time.perf_counter() - start
    manager, evicted = engine.cache.manager, engine.cache.manager.cache.num_evicted
    peak_running = max(entry["running"] for entry in engine.step_log)
    peak_swapped = max(entry["swapped"] for entry in engine.step_log)
    print(
        f"\n{preemption}: {NUM_REQUESTS} requests, {steps} steps, {engine.scheduler.num_preemptions} "
        f"preemptions, {evicted} blocks evicted, {engine.cache.bytes_swapped} bytes swapped, "
        f"{engine.cache.tokens_computed} tokens computed, at most {peak_running} running and "
        f"{peak_swapped} swapped, {wall:.1f} s"
    )
    assert engine.scheduler.num_preemptions > 0 and evicted > 0  # the pool really was under pressure
    assert (engine.cache.bytes_swapped > 0) == (preemption == "swap")
    assert all(r.finish_reason == "length" for r in engine.requests.values())
    assert manager.num_used_blocks == 0 and not manager.seqs  # no leak (idle cached blocks may stay)
    assert manager.num_free_blocks + manager.cache.num_evictable == SMALL_POOL
    mismatched = [i for i, (a, b) in enumerate(zip(outputs, unpressured)) if a != b]
    assert not mismatched, f"requests {mismatched} differ from the unpressured run"
