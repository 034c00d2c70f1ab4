"""A token-level stand-in for the KV tensors, to test a block manager end to end.

Instead of keys and values, each slot of the flat cache remembers which token's KV it holds.
Driving a :class:`~kvlib.paged.manager.BlockManager` through :class:`TokenKV` does what an engine
does with real tensors (reuse prefix hits, perform copy-on-write copies, write new tokens), and
:meth:`TokenKV.check` then proves every sequence reads back exactly its own tokens: a stale cache
entry, a wrongly shared block or a missed copy shows up as a wrong token.
"""

from __future__ import annotations

from kvlib.paged.manager import BlockManager

__all__ = ["TokenKV"]


class TokenKV:
    """A token-level stand-in for the KV tensors: ``slot -> token`` whose KV the slot holds.

    Writing follows what an engine does: compute the KV of positions the cache did not supply,
    perform the copy-on-write copies, then write the new token. ``check`` proves every sequence
    reads back exactly its own tokens (a stale or wrongly shared block would show here). Its checks
    raise AssertionError explicitly, so they also hold under ``python -O``."""

    def __init__(self, mgr: BlockManager) -> None:
        self.mgr = mgr
        self.slots: dict[int, int] = {}

    def admit(self, seq_id: int, prompt: list[int]) -> int:
        seq = self.mgr.allocate(seq_id, prompt)
        for p in range(seq.num_cached_tokens):  # reused KV must already be right
            if self.slots.get(self.mgr.slot(seq_id, p)) != prompt[p]:
                raise AssertionError(f"prefix hit at {p} reads wrong KV")
        for p in range(seq.num_cached_tokens, len(prompt)):
            self.slots[self.mgr.slot(seq_id, p)] = prompt[p]
        return seq.num_cached_tokens

    def append(self, seq_id: int, token: int) -> list[tuple[int, int]]:
        copies = self.mgr.append(seq_id, token)
        bs = self.mgr.block_size
        for src, dst in copies:
            for o in range(bs):
                if src * bs + o in self.slots:
                    self.slots[dst * bs + o] = self.slots[src * bs + o]
        n = len(self.mgr.seqs[seq_id].tokens)
        self.slots[self.mgr.slot(seq_id, n - 1)] = token
        return copies

    def check(self) -> None:
        for seq in self.mgr.seqs.values():
            got = [self.slots.get(self.mgr.slot(seq.seq_id, p)) for p in range(len(seq.tokens))]
            if got != seq.tokens:
                raise AssertionError(f"sequence {seq.seq_id} reads {got}, expected {seq.tokens}")
