"""Request streams for the chapter 06 simulators: one :class:`Request` per prompt, and their lengths.

*Mixed chat stream* (:func:`chat_workload`). Prompt and output lengths are drawn from log-normal
distributions, clipped to the context window. We chose the log-normal because published
length distributions of chat traffic have its shape: most requests are short, a long right tail
of long ones, a mode well below the mean. This holds for the ShareGPT conversations used by
the vLLM paper (Kwon et al., SOSP 2023, whose length histograms are right-skewed with a long tail),
for LMSYS-Chat-1M (Zheng et al., 2023) and for the production traces Microsoft released with the
Splitwise paper (Patel et al., ISCA 2024), where conversation prompts and outputs are also
heavy-tailed. The medians and spreads below are our own round numbers in the range those sources
show (prompts of a few hundred tokens, outputs of a few hundred tokens), not fitted values:
``prompt ~ LogNormal(ln 200, 1.0)`` (median 200, mean ~330) and ``output ~ LogNormal(ln 250, 0.8)``
(median 250, mean ~345), with ``prompt + output <= max_len`` (2048).

:data:`WORKLOADS` holds that preset and two more, with the mean lengths of the vLLM paper's
sharing data sets (ShareGPT, Alpaca), for :mod:`kvlib.paged.sharing`.

*Shared-prefix trace* (:func:`shared_prefix_trace`): prompts that start with one of a few shared
prefixes, for the prefix-eviction benchmark and chapter 09's prefix-cache diagnosis.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvlib.validate import describe, require_int, require_number

__all__ = ["Request", "chat_workload", "WORKLOADS"]


@dataclass(frozen=True)
class Request:
    """One request: prompt tokens and the number of tokens it will generate (>= 1)."""

    prompt_len: int
    output_len: int

    def __post_init__(self) -> None:
        # a negative or zero length would make the simulator report shares above 100% or never end
        require_int("prompt_len", self.prompt_len, minimum=1)
        require_int("output_len", self.output_len, minimum=1)

    @property
    def total_len(self) -> int:
        return self.prompt_len + self.output_len


def _require_requests(requests: Any) -> list[Request]:
    """A non-empty sequence of :class:`Request` (a bare tuple of lengths is a common slip)."""
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
        raise TypeError(f"requests must be a non-empty list of Request, got {describe(requests)}")
    if not requests:
        raise ValueError("requests must be a non-empty list of Request, got an empty one")
    for i, req in enumerate(requests):
        if not isinstance(req, Request):
            raise TypeError(f"requests[{i}] must be a Request, got {describe(req)}")
    return list(requests)


# log-normal (median, sigma) presets: ``chat`` is the mixed stream; the other two mimic the mean
# lengths the vLLM paper reports for its two sharing data sets (ShareGPT: about 161 prompt /
# 338 output tokens on average; Alpaca: about 19 / 58), keeping the log-normal shape
WORKLOADS: dict[str, dict[str, float]] = {
    "chat": {"prompt_median": 200.0, "prompt_sigma": 1.0, "output_median": 250.0, "output_sigma": 0.8},
    "sharegpt": {"prompt_median": 100.0, "prompt_sigma": 1.0, "output_median": 245.0, "output_sigma": 0.8},
    "alpaca": {"prompt_median": 15.0, "prompt_sigma": 0.7, "output_median": 45.0, "output_sigma": 0.7},
}


def chat_workload(
    n: int,
    seed: int = 0,
    max_len: int = 2048,
    prompt_median: float = 200.0,
    prompt_sigma: float = 1.0,
    output_median: float = 250.0,
    output_sigma: float = 0.8,
) -> list[Request]:
    """``n`` requests with log-normal prompt/output lengths (see the module docstring for why).

    Lengths are rounded, at least 1, and clipped so that ``prompt + output <= max_len``."""
    n = require_int("n", n, minimum=0)
    max_len = require_int("max_len", max_len, minimum=2)  # room for one prompt and one output token
    prompt_median = require_number("prompt_median", prompt_median, inclusive=False)
    output_median = require_number("output_median", output_median, inclusive=False)
    prompt_sigma = require_number("prompt_sigma", prompt_sigma)
    output_sigma = require_number("output_sigma", output_sigma)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = min(max(1, round(rng.lognormvariate(math.log(prompt_median), prompt_sigma))), max_len - 1)
        o = min(max(1, round(rng.lognormvariate(math.log(output_median), output_sigma))), max_len - p)
        out.append(Request(p, o))
    return out


# token ids above any vocabulary: a group's prefix and each question start with one of their own,
# so groups never share a block and questions never share one with each other
PREFIX_TOKEN, QUESTION_TOKEN, VOCAB = 100_000, 200_000, 32_000

Trace = list[tuple[list[int], list[int]]]  # (prompt, output tokens) per request, in arrival order


def shared_prefix_trace(
    requests: int, groups: int, prefix_len: int, question_len: int, output_len: int, seed: int = 0
) -> Trace:
    """``requests`` ``(prompt, output)`` pairs; each prompt is one of ``groups`` shared prefixes (drawn
    at random per request) followed by a question of its own."""
    rng = random.Random(seed)

    def tokens(first: int, n: int) -> list[int]:
        return [first] + [rng.randrange(VOCAB) for _ in range(n - 1)]

    prefixes = [tokens(PREFIX_TOKEN + g, prefix_len) for g in range(groups)]
    trace = []
    for i in range(requests):
        prompt = prefixes[rng.randrange(groups)] + tokens(QUESTION_TOKEN + i, question_len)
        trace.append((prompt, [rng.randrange(VOCAB) for _ in range(output_len)]))
    return trace
