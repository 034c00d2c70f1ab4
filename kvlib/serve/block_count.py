"""A :class:`~kvlib.serve.scheduler.KVMemory` that only counts blocks: the scheduler without a model.

:class:`BlockCountMemory` is a pool of ``num_blocks`` blocks of ``block_size`` token slots; a sequence
on the device holds ceil(slots / block_size) of them. It logs every call and refuses, with a clear
error, a call that breaks the contract a scheduler must keep: admit only a sequence that holds nothing
(with nothing computed), grow only a resident sequence that produced a token, release only what is
held, swap in only what was swapped out. Chapter 08's notebook walks a scheduler through it step by
step, the grader replays learners' schedulers on it, and the scheduler's tests use it.
"""

from __future__ import annotations

from kvlib.serve.scheduler import SequenceState
from kvlib.validate import describe, require_int

__all__ = ["BlockCountMemory"]


def _prefix_hits(hits: object) -> dict[int, int]:
    if hits is None:
        return {}
    if not isinstance(hits, dict):
        raise TypeError(f"prefix_hits must be a dict of seq_id -> tokens reused, got {describe(hits)}")
    return {
        require_int("prefix_hits key", k): require_int(f"prefix_hits[{k}]", v, minimum=0)
        for k, v in hits.items()
    }


class BlockCountMemory:
    """Blocks counted per sequence, and a log of calls.

    ``prefix_hits`` maps a seq_id to the ``num_computed`` its admission sets (a prefix-cache hit that
    saves that many prompt tokens). ``calls`` lists (method, seq_id, answer) in call order.
    """

    def __init__(self, num_blocks: int, block_size: int = 4, prefix_hits: dict[int, int] | None = None):
        self.num_blocks = require_int("num_blocks", num_blocks, minimum=1)
        self.block_size = require_int("block_size", block_size, minimum=1)
        self.prefix_hits = _prefix_hits(prefix_hits)
        self.device: dict[int, int] = {}  # seq_id -> token slots held in device blocks
        self.host: dict[int, int] = {}  # seq_id -> tokens swapped out to host memory
        self.calls: list[tuple[str, int, bool | None]] = []

    def blocks(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def free_blocks(self) -> int:
        return self.num_blocks - sum(self.blocks(n) for n in self.device.values())

    def count(self, method: str, seq_id: int) -> int:
        """How many times ``method`` was called for ``seq_id``."""
        return sum(1 for name, sid, _ in self.calls if name == method and sid == seq_id)

    def _log(self, method: str, seq: SequenceState, answer: bool | None = None) -> bool | None:
        self.calls.append((method, seq.seq_id, answer))
        return answer

    @staticmethod
    def _refuse(condition: bool, message: str) -> None:
        if not condition:
            raise RuntimeError(message)

    def admit(self, seq: SequenceState) -> bool:
        sid = seq.seq_id
        self._refuse(
            sid not in self.device and sid not in self.host,
            f"admit of sequence {sid}, which already holds memory (admitted twice?)",
        )
        self._refuse(
            seq.num_computed == 0 and not seq.needs_slot,
            f"admit of sequence {sid} with num_computed={seq.num_computed}, needs_slot={seq.needs_slot}: "
            "a waiting sequence has nothing computed (a recompute preemption must reset it)",
        )
        fits = self.blocks(seq.num_tokens) <= self.free_blocks
        if fits:
            self.device[sid] = seq.num_tokens
            # a hit never covers the last token: it must run to produce the next one
            seq.num_computed = min(self.prefix_hits.get(sid, 0), seq.num_tokens - 1)
        return self._log("admit", seq, fits)

    def grow(self, seq: SequenceState) -> bool:
        held = self.device.get(seq.seq_id)
        self._refuse(
            seq.needs_slot and held == seq.num_tokens - 1,
            f"grow of sequence {seq.seq_id} (num_tokens={seq.num_tokens}, needs_slot={seq.needs_slot}) "
            f"holding {held} slots: grow only a running sequence whose last token has no slot yet",
        )
        fits = self.blocks(held + 1) - self.blocks(held) <= self.free_blocks
        if fits:
            self.device[seq.seq_id] = held + 1
        return self._log("grow", seq, fits)

    def release(self, seq: SequenceState) -> None:
        self._refuse(
            seq.seq_id in self.device or seq.seq_id in self.host,
            f"release of sequence {seq.seq_id}, which holds nothing (released twice?)",
        )
        self.device.pop(seq.seq_id, None)
        self.host.pop(seq.seq_id, None)
        self._log("release", seq)

    def swap_out(self, seq: SequenceState) -> None:
        self._refuse(
            seq.seq_id in self.device, f"swap_out of sequence {seq.seq_id}, which holds no device memory"
        )
        self.host[seq.seq_id] = self.device.pop(seq.seq_id)
        self._log("swap_out", seq)

    def swap_in(self, seq: SequenceState) -> bool:
        sid = seq.seq_id
        self._refuse(sid in self.host, f"swap_in of sequence {sid}, which was not swapped out")
        tokens = self.host[sid] + seq.needs_slot  # room for the pending token too
        self._refuse(
            tokens == seq.num_tokens,
            f"swap_in of sequence {sid} (num_tokens={seq.num_tokens}, needs_slot={seq.needs_slot}): host "
            f"holds {self.host[sid]} tokens",
        )
        fits = self.blocks(tokens) <= self.free_blocks
        if fits:
            self.device[sid] = tokens
            del self.host[sid]
        return self._log("swap_in", seq, fits)
