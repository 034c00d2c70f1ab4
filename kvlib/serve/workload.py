"""Request streams for the serving engine: real prompts, log-normal lengths, Poisson arrivals.

Lengths come from :func:`kvlib.paged.workload.chat_workload` (the log-normal mix the fragmentation
simulator uses, justified there), scaled from its 2,048-token context to the model's: our shipped model
reads 512 tokens, so a ``chat`` request has a median prompt of 50 and a median output of 62 tokens.
Prompt tokens are real text: consecutive tokens of the validation plays from a random offset.

Arrivals form a Poisson process of ``rate`` requests per second (exponential gaps, as vLLM's serving
benchmark draws them); ``rate=math.inf`` puts every request at t = 0 (an offline batch).

Two mixes: ``"chat"`` (independent prompts) and ``"shared-prefix"`` (every prompt starts with the same
``system_len``-token system prompt, then its own question: what prefix caching serves).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from kvlib.paged.workload import WORKLOADS, chat_workload
from kvlib.validate import describe, require_int, require_number

__all__ = ["TimedRequest", "poisson_arrivals", "serving_workload", "MIXES"]

MIXES = ("chat", "shared-prefix")
REFERENCE_CONTEXT = 2048  # the context chat_workload's medians are set for


@dataclass(frozen=True)
class TimedRequest:
    """A request as a load generator submits it: prompt tokens, tokens to generate, arrival time (s)."""

    prompt: tuple[int, ...]
    max_tokens: int
    arrival_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, tuple) or not self.prompt:
            raise TypeError(f"prompt must be a non-empty tuple of token ids, got {describe(self.prompt)}")
        require_int("max_tokens", self.max_tokens, minimum=1)
        require_number("arrival_s", self.arrival_s)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> list[float]:
    """``n`` arrival times of a Poisson process with ``rate`` arrivals per second, from t = 0
    (the first request arrives at 0); ``rate=math.inf``: all at 0."""
    n = require_int("n", n, minimum=0)
    if rate != math.inf:
        rate = require_number("rate (requests per second)", rate, inclusive=False)
    rng = random.Random(seed)
    times, t = [], 0.0
    for i in range(n):
        if i and rate != math.inf:
            t += rng.expovariate(rate)
        times.append(t)
    return times


def serving_workload(
    n: int,
    rate: float = math.inf,
    *,
    mix: str = "chat",
    context: int = 512,
    system_len: int = 128,
    seed: int = 0,
) -> list[TimedRequest]:
    """``n`` requests of ``mix`` arriving at ``rate`` per second; prompt + output fits ``context``."""
    from kvlib.data import token_ids

    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}, got {describe(mix)}")
    context = require_int("context", context, minimum=2)
    shared = mix == "shared-prefix"
    system_len = require_int("system_len", system_len, minimum=1, maximum=context - 2) if shared else 0
    scale = context / REFERENCE_CONTEXT
    medians = {k: v * scale if k.endswith("median") else v for k, v in WORKLOADS["chat"].items()}
    lengths = chat_workload(n, seed, max_len=context - system_len, **medians)
    text = token_ids("val").tolist()
    rng = random.Random(seed + 1)
    system = tuple(text[:system_len])  # the same opening for every shared-prefix request
    out = []
    for length, arrival in zip(lengths, poisson_arrivals(n, rate, seed)):
        start = rng.randrange(system_len, len(text) - length.prompt_len)
        prompt = system + tuple(text[start : start + length.prompt_len])
        out.append(TimedRequest(prompt, length.output_len, arrival))
    return out
