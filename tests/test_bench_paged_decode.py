"""How ``python -m kvlib.bench paged-decode`` times the GPU, checked on CPU with fake CUDA events."""

from __future__ import annotations

import pytest
import torch

from kvlib.bench import paged_decode

pytestmark = pytest.mark.ch07


def test_gpu_timing_covers_back_to_back_calls_with_one_event_pair(monkeypatch):
    """Per-call time must come from N calls queued back to back between one pair of events: a
    sync after every call would add the host's launch overhead to each measurement."""
    log: list[str] = []

    class FakeEvent:  # the "GPU clock" is the number of calls made so far, 2 ms each
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            self.calls = 0

        def record(self) -> None:
            log.append("record")
            self.calls = log.count("call")

        def synchronize(self) -> None:
            log.append("sync")

        def elapsed_time(self, end: FakeEvent) -> float:
            return 2.0 * (end.calls - self.calls)

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: log.append("sync"))
    ms = paged_decode.time_cuda(lambda: log.append("call"), iters=10)
    assert ms == pytest.approx(2.0), "the result is per call"
    first = log.index("record")
    assert log[:first] and set(log[: first - 1]) == {"call"} and log[first - 1] == "sync", (
        "warm-up calls, then one sync before timing"
    )
    timed = log[first:]
    one_round = ["record"] + ["call"] * 10 + ["record", "sync"]  # 10 calls, nothing else, one pair
    rounds = len(timed) // len(one_round)
    assert rounds >= 1 and timed == one_round * rounds, f"timed section: {timed[:30]}"
