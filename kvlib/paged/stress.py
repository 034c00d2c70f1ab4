"""A stress workload for block managers: many concurrent requests, recorded as operations, replayable.

:func:`record_stress_ops` drives kvlib's :class:`~kvlib.paged.manager.BlockManager` (with a hash prefix
cache) through a seeded serving loop: requests that share a few system prompts arrive, some fork into
parallel samples, every running sequence decodes one token per step, finished ones are freed, and a
sequence that cannot get a block preempts the newest running one (freed, restarted later from its
prompt). Every manager call is recorded as an operation tuple:

- ``("allocate", seq_id, prompt)``, ``("append", seq_id, token)``, ``("fork", parent_id, child_id)``,
  ``("free", seq_id)``.

:func:`replay_decisions` runs such a list on any object with those methods (kvlib's manager, or one
built from a learner's parts) and returns one comparable outcome per operation, so two managers can be
checked for identical decisions (same blocks, same prefix hits, same copies, same refusals) and timed
on exactly the same work. The operations are those of :mod:`kvlib.paged.trace` (which draws them),
checked by its :func:`~kvlib.paged.trace.check_ops`.

Admission asks for room for the whole prompt (free plus evictable blocks >= its blocks) before it
calls ``allocate``, so no admission fails half-way in any manager; an ``append`` may still raise
:class:`~kvlib.paged.blocks.OutOfBlocks`, which is part of the recorded outcome.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvlib.paged.blocks import OutOfBlocks
from kvlib.paged.manager import BlockManager
from kvlib.paged.trace import check_ops
from kvlib.validate import describe, require_int

__all__ = ["StressConfig", "record_stress_ops", "replay_decisions"]


@dataclass(frozen=True)
class StressConfig:
    """The workload's shape. Lengths are in tokens; ``vocab`` small enough that questions repeat."""

    num_requests: int = 400
    num_blocks: int = 256
    block_size: int = 8
    system_prompts: int = 3
    system_len: int = 44
    max_question: int = 40
    max_output: int = 60
    fork_share: float = 0.2  # requests that fork 1-2 parallel samples right after admission
    max_running: int = 48
    vocab: int = 50

    def __post_init__(self) -> None:
        for name in ("num_requests", "num_blocks", "block_size", "max_question", "max_output", "max_running"):
            require_int(name, getattr(self, name), minimum=1)
        require_int("system_prompts", self.system_prompts, minimum=0)
        require_int("system_len", self.system_len, minimum=0)
        require_int("vocab", self.vocab, minimum=2)
        if not 0 <= self.fork_share <= 1:
            raise ValueError(f"fork_share must be in [0, 1], got {self.fork_share}")
        longest = self.system_len + self.max_question + self.max_output
        need = 3 * -(-longest // self.block_size)
        if need > self.num_blocks:
            raise ValueError(
                f"num_blocks {self.num_blocks} is too small: a request and two forks of up to {longest} "
                f"tokens need {need} blocks of {self.block_size}"
            )


def record_stress_ops(config: StressConfig | None = None, seed: int = 0) -> list[tuple]:
    """Run the serving loop on kvlib's BlockManager and return the operations it performed, in order."""
    config = config or StressConfig()
    if not isinstance(config, StressConfig):
        raise TypeError(f"config must be a StressConfig, got {describe(config)}")
    rng = random.Random(require_int("seed", seed))
    manager = BlockManager(config.num_blocks, config.block_size, prefix_cache="hash")
    systems = [
        [rng.randrange(config.vocab) for _ in range(config.system_len)] for _ in range(config.system_prompts)
    ]
    waiting = []  # (prompt, output_len, forks)
    for _ in range(config.num_requests):
        system = rng.choice(systems) if systems and rng.random() < 0.8 else []
        question = [rng.randrange(config.vocab) for _ in range(rng.randint(1, config.max_question))]
        forks = rng.randint(1, 2) if rng.random() < config.fork_share else 0
        waiting.append((system + question, rng.randint(1, config.max_output), forks))
    ops: list[tuple] = []
    running: dict[int, tuple[int, tuple]] = {}  # seq_id -> (tokens left to generate, its request)
    next_id = 0

    def do(op: tuple) -> Any:
        ops.append(op)
        return getattr(manager, op[0])(*op[1:])

    while waiting or running:
        while waiting and len(running) < config.max_running:
            prompt, out_len, forks = waiting[0]
            if manager.num_available_blocks < manager.blocks_needed(len(prompt)) + forks + 1:
                break  # room for the prompt and the forks' first copies, or wait
            waiting.pop(0)
            do(("allocate", next_id, list(prompt)))
            running[next_id] = (out_len, (prompt, out_len, forks))
            parent, next_id = next_id, next_id + 1
            for _ in range(forks):  # parallel samples share the prompt's blocks
                do(("fork", parent, next_id))
                running[next_id] = (out_len, (prompt, out_len, 0))
                next_id += 1
        if not running:
            raise RuntimeError("a waiting request can never be admitted: num_blocks too small")
        for seq_id in list(running):
            if seq_id not in running:  # preempted earlier in this step
                continue
            try:
                do(("append", seq_id, rng.randrange(config.vocab)))
            except OutOfBlocks:
                victim = max(running)  # the newest: it loses the least work
                do(("free", victim))
                waiting.insert(0, running.pop(victim)[1])  # restarts later, from its prompt
                continue
            left, request = running[seq_id]
            if left == 1:
                do(("free", seq_id))
                del running[seq_id]
            else:
                running[seq_id] = (left - 1, request)
    return ops


def _outcome(manager: Any, op: tuple) -> tuple:
    """Apply one operation; return what it decided, in a form two managers can be compared by."""
    name, *args = op
    try:
        result = getattr(manager, name)(*args)
    except OutOfBlocks:
        return ("OutOfBlocks",)
    if name in ("allocate", "fork"):
        return (list(result.block_ids), result.num_cached_tokens if name == "allocate" else None)
    if name == "append":
        return tuple(tuple(copy) for copy in result)
    return ()  # free, reclaim


def replay_decisions(ops: Sequence[tuple], manager: Any) -> list[tuple]:
    """Run ``ops`` on ``manager`` (any object with the methods they name); one outcome per op: the block
    ids and prefix-hit tokens of an admission, the child's blocks of a fork, the copies of an append,
    ``("OutOfBlocks",)`` for a refusal, ``()`` otherwise. Malformed ops raise before any is run."""
    return [_outcome(manager, op) for op in check_ops(ops)]
