"""PagedKVCache: block tables backed by real key/value pools, and a model that attends through them.

:class:`~kvlib.paged.manager.BlockManager` only does bookkeeping (block ids, slots, copy-on-write
copies). This class adds the tensors: for every layer one key pool and one value pool of shape
``(num_blocks, block_size, num_kv_heads, head_dim)``, the layout the Triton kernel of
:mod:`kvlib.kernels` reads. A serving loop drives it like this:

    cache = PagedKVCache.for_model(model, num_blocks=64, block_size=16, prefix_cache="radix")
    skipped = cache.add_sequence(0, prompt)          # prompt tokens whose K/V a prefix hit already holds
    logits = cache.step(model, [0, 1, 2])            # one forward over every row's uncomputed tokens
    cache.append_token(0, int(logits[0].argmax()))   # the next step feeds it

Each step is a *ragged batch*: row b carries the tokens of its sequence that have no K/V yet (a whole
prompt suffix after a prefix hit, or one decode token), right-padded to the longest row, at the row's
own positions. In every layer :meth:`attend` writes the real tokens' keys and values into their slots
and then attends through the block tables: by gathering each row's blocks into a padded tensor
(``backend="gather"``, any step) or, for decode steps, with the Triton paged kernel
(``backend="triton"``; prefill steps still gather, as the kernel handles one query per row).
A step's tokens count as computed once the last layer has stored them; :meth:`step` undoes that if
the rest of the forward fails, so a failed step can be retried.

Padding is the price of the [B, T] layout: a step that mixes a 100-token prompt with decode tokens
runs the model on B x 100 token slots. ``tokens_computed`` counts the real tokens (what prefix hits
save), ``token_slots`` the slots the model ran, padding included. vLLM avoids the padding by
flattening every row into one token stream with cumulative lengths.

Where things are checked: the public methods (``add_sequence``, ``append_token``, ``fork``, ``free``,
``prepare``) validate their arguments before changing anything; :meth:`attend` runs once per layer
on tensors :meth:`prepare` built, so it only checks that the forward is the prepared step (shapes at
every layer, positions and lengths once, at layer 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from kvlib.attention import ragged_attention
from kvlib.paged.manager import BlockManager
from kvlib.paged.prefix import PrefixCache
from kvlib.validate import describe, require_device, require_int

__all__ = ["PagedKVCache", "SwappedSequence"]

BACKENDS = ("gather", "triton")


@dataclass
class SwappedSequence:
    """A sequence swapped out to host memory: its tokens and its first ``num_computed`` tokens' K/V,
    per layer (num_computed, num_kv_heads, head_dim)."""

    tokens: list[int]
    num_computed: int
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@dataclass
class _Step:
    """The rows of the next forward pass, as :meth:`PagedKVCache.prepare` laid them out."""

    seq_ids: list[int]
    lengths: list[int]  # real (uncomputed) tokens per row
    width: int  # T: the longest row, the others are padded to it
    token_index: torch.Tensor  # (N,) flat index b * T + i of every real token in the [B, T] batch
    slots: torch.Tensor  # (N,) the pool slot each real token's K/V goes to
    block_table: torch.Tensor  # int32 (B, max_blocks): every row's physical blocks, padded with 0
    block_ids: torch.Tensor  # the same as int64, for indexing the pools
    kv_lens: torch.Tensor  # int32 (B,): tokens each row attends over once this step is written
    q_positions: torch.Tensor  # (B, T): position of every query (padding repeats the row's last one)
    max_kv_len: int
    filled_blocks: list[int]  # blocks this step completes: a prefix hit may read them afterwards
    computed_before: list[int]  # each row's _computed before the step (restored if its forward fails)
    next_layer: int = 0
    committed: bool = False


class PagedKVCache:
    """Paged key/value storage for many sequences of different lengths, with prefix sharing and forks.

    Args:
        num_layers, num_kv_heads, head_dim: the model's attention shape (see :meth:`for_model`).
        num_blocks, block_size: the pool: ``num_blocks`` physical blocks of ``block_size`` tokens.
        prefix_cache: ``None``, ``"hash"`` or ``"radix"`` (see :class:`BlockManager`): a new prompt
            that starts with a cached prefix reuses its blocks and the model skips those tokens.
        backend: ``"gather"`` (PyTorch: gather the blocks, then masked attention) or ``"triton"``
            (the paged decode kernel for decode steps; on CPU it runs in Triton's interpreter, slowly).
        dtype, device: of the pools (the model's dtype and device).
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        num_blocks: int,
        block_size: int,
        *,
        prefix_cache: str | PrefixCache | None = None,
        backend: str = "gather",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)
        self.head_dim = require_int("head_dim", head_dim, minimum=1)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {describe(backend)}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {describe(dtype)}")
        self.manager = BlockManager(num_blocks, block_size, prefix_cache)  # checks both sizes
        self.block_size = self.manager.block_size
        self.backend = backend
        self._decode_kernel = _load_decode_kernel() if backend == "triton" else None
        shape = (self.manager.num_blocks, self.block_size, self.num_kv_heads, self.head_dim)
        device = require_device("device", device)
        self.k_pools = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_layers)]
        self.v_pools = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_layers)]
        self.device = self.k_pools[0].device
        self._computed: dict[int, int] = {}  # seq_id -> leading tokens whose K/V are in the pools
        # block_id -> holds the K/V of all its tokens, so a prefix hit may read it. A prompt's full
        # blocks enter the prefix cache when the prompt is admitted, before the model has run on it.
        self._filled = [False] * self.manager.num_blocks
        self._step: _Step | None = None
        self.tokens_computed = 0  # tokens the model has run on through this cache (hits skip theirs)
        self.token_slots = 0  # rows x width of every step: the model's work, padding included
        self.bytes_swapped = 0  # K/V bytes copied between device and host by swap_out and swap_in

    @classmethod
    def for_model(cls, model: Any, num_blocks: int, block_size: int, **options: Any) -> PagedKVCache:
        """A cache shaped for ``model`` (a TinyDecoder), in its dtype and on its device."""
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "num_kv_heads"):
            raise TypeError(f"model must be a kvlib TinyDecoder (with .config), got {describe(model)}")
        weight = next(model.parameters())
        options = {"dtype": weight.dtype, "device": weight.device} | options
        return cls(config.num_layers, config.num_kv_heads, config.head_dim, num_blocks, block_size, **options)

    # --- sequences ----------------------------------------------------------------------------------

    def add_sequence(self, seq_id: int, prompt: Iterable[int]) -> int:
        """Admit a sequence; returns how many leading prompt tokens a prefix hit already holds
        (the model skips them). Raises :class:`~kvlib.paged.blocks.OutOfBlocks` and changes nothing
        when the pool cannot hold the prompt."""
        table = self.manager.allocate(seq_id, prompt)
        hit_blocks = table.num_cached_tokens // self.block_size
        for block_id in table.block_ids[hit_blocks:]:
            self._filled[block_id] = False  # fresh: whatever it held belonged to someone else
        self._computed[table.seq_id] = table.num_cached_tokens
        return table.num_cached_tokens

    def append_token(self, seq_id: int, token: int) -> None:
        """Add a generated token to a sequence (the next step computes its K/V). A last block shared
        with a fork is copied first (copy-on-write), in every layer's pools."""
        copies = self.manager.append(seq_id, token)  # validates first: a refused token changes nothing
        self._step = None  # a prepared step no longer matches the tables
        for src, dst in copies:
            for pool in (*self.k_pools, *self.v_pools):
                pool[dst] = pool[src]
        last_block = self.manager._get(seq_id).block_ids[-1]
        self._filled[last_block] = False  # it holds a token without K/V (and may be fresh)

    def fork(self, parent_id: int, child_id: int) -> None:
        """A child sequence that shares every block of ``parent_id`` until one of them writes."""
        child = self.manager.fork(parent_id, child_id)
        self._computed[child.seq_id] = self._computed[self.manager._get(parent_id).seq_id]

    def free(self, seq_id: int) -> None:
        """Drop a sequence; its blocks go back to the pool (or stay cached for prefix hits)."""
        seq_id = self.manager._get(seq_id).seq_id  # KeyError naming an unknown id, before any change
        self._step = None
        self.manager.free(seq_id)
        del self._computed[seq_id]

    def reset(self) -> None:
        """Free every sequence (cached prefixes stay reusable until evicted)."""
        for seq_id in list(self._computed):
            self.free(seq_id)

    def tokens(self, seq_id: int) -> list[int]:
        """The sequence's tokens so far (prompt, then appended ones)."""
        return list(self.manager._get(seq_id).tokens)

    def num_computed(self, seq_id: int) -> int:
        """Leading tokens of the sequence whose K/V are in the pools."""
        self.manager._get(seq_id)  # KeyError naming an unknown id
        return self._computed[seq_id]

    # --- swapping to host memory ----------------------------------------------------------------------

    def swap_out(self, seq_id: int) -> SwappedSequence:
        """Copy a sequence's computed K/V to host memory (pinned under CUDA, so the copy back can run
        asynchronously) and free it; :meth:`swap_in` brings it back. Preemption by swap, as vLLM v0 did
        it (v1 only recomputes)."""
        table = self.manager._get(seq_id)  # KeyError naming an unknown id, before any change
        num_computed = self._computed[table.seq_id]
        slots = torch.tensor(self.manager.slot_mapping(table.seq_id)[:num_computed], device=self.device)
        keys, values = (
            [self._to_host(pool, slots) for pool in pools] for pools in (self.k_pools, self.v_pools)
        )
        swapped = SwappedSequence(list(table.tokens), num_computed, keys, values)
        self.bytes_swapped += swapped.nbytes
        self.free(table.seq_id)
        return swapped

    def swap_in(self, seq_id: int, swapped: SwappedSequence, pending_token: int | None = None) -> None:
        """Readmit a swapped sequence with its K/V copied back (nothing recomputed), then append
        ``pending_token`` if given. Raises :class:`~kvlib.paged.blocks.OutOfBlocks` and changes nothing
        when the pool cannot hold it all."""
        if not isinstance(swapped, SwappedSequence):
            raise TypeError(f"swapped must be what swap_out returned, got {describe(swapped)}")
        if pending_token is not None:  # checked before anything changes (append_token would, too late)
            pending_token = require_int("pending_token", pending_token, minimum=0)
        extra = 0 if pending_token is None else int(len(swapped.tokens) % self.block_size == 0)
        hit, need, pinned = self.manager._plan(swapped.tokens)
        self.manager._check_available(need + extra, pinned)  # the append below cannot fail then
        self.add_sequence(seq_id, swapped.tokens)
        n, bs = swapped.num_computed, self.block_size
        blocks, mapping = self.manager.block_table(seq_id), self.manager.slot_mapping(seq_id)
        # only blocks without K/V: a filled prefix hit is shared, and rewriting it (with values that may
        # differ in the last bit) could change what its other readers compute
        positions = [p for p in range(n) if not self._filled[blocks[p // bs]]]
        slots = torch.tensor([mapping[p] for p in positions], dtype=torch.long, device=self.device)
        index = torch.tensor(positions, dtype=torch.long)
        for pools, saved in ((self.k_pools, swapped.keys), (self.v_pools, swapped.values)):
            for pool, host in zip(pools, saved):
                rows = host if len(positions) == n else host[index]  # indexing would lose the pinning
                self._slot_rows(pool)[slots] = rows.to(self.device, non_blocking=True)
        for block_id in blocks[: n // bs]:
            self._filled[block_id] = True
        self._computed[seq_id] = max(n, self._computed[seq_id])  # a prefix hit may reach further
        self.bytes_swapped += swapped.nbytes * len(positions) // max(n, 1)  # the rows copied back
        if pending_token is not None:
            self.append_token(seq_id, pending_token)

    # --- one forward pass -----------------------------------------------------------------------------

    def prepare(
        self, seq_ids: Iterable[int], num_tokens: Iterable[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lay out the next forward over ``seq_ids``: ``(input_ids [B, T], positions [B, T], lengths [B])``.

        Row b holds the tokens of ``seq_ids[b]`` that have no K/V yet, right-padded to the longest
        row; pass all three to the model with ``cache=self`` (or call :meth:`step`). Each sequence
        needs at least one such token (a new prompt, or a token added with :meth:`append_token`).
        ``num_tokens[b]`` (>= 1) caps row b at its next that many tokens: a prefill chunk (chunked
        prefill); the row's logits then follow its last computed token.
        """
        ids = self._check_rows(seq_ids)
        caps = self._check_caps(num_tokens, len(ids))
        tables = [self.manager.seqs[s] for s in ids]
        computed = [self._computed[s] for s in ids]
        done = self._rewind_unfilled_hits(tables, computed, caps)
        lengths = [min(len(t.tokens) - c, cap) for t, c, cap in zip(tables, done, caps)]
        for seq_id, n in zip(ids, lengths):
            if n == 0:
                raise ValueError(
                    f"sequence {seq_id} has no token without K/V: append_token() the next token before "
                    "running it again"
                )
        self._step = self._layout(tables, done, lengths, computed)
        return self._batch_tensors(tables, done, lengths)

    @torch.no_grad()
    def step(
        self, model: Any, seq_ids: Iterable[int], num_tokens: Iterable[int] | None = None
    ) -> torch.Tensor:
        """Run ``model`` on the prepared rows; returns the logits after each row's last token [B, V]
        (``num_tokens`` as in :meth:`prepare`).

        If the forward raises, even after the last layer stored its keys (in the last MLP, say), the
        cache is left as before the step, so the step can be retried."""
        input_ids, positions, lengths = self.prepare(seq_ids, num_tokens)
        step = self._step
        try:
            logits = model(input_ids, positions=positions, cache=self, lengths=lengths)  # (B, T, V)
        except BaseException:
            self._undo(step)
            raise
        return logits[torch.arange(len(lengths), device=logits.device), lengths - 1]  # (B, V)

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: Any
    ) -> torch.Tensor:
        """Store the step's new k, v [B, KV, T, D] of ``layer`` in their slots, then attend:
        q [B, H, T, D] -> [B, H, T, D]. Called by the model, once per layer, after :meth:`prepare`."""
        step = self._check_forward(layer, k, q)
        if layer == 0:
            _check_batch_matches(batch, step)
        self._write(step, layer, k, v)
        k_pool, v_pool = self._pools(layer)
        if self._decode_kernel is not None and step.width == 1:
            query = q[:, :, 0].to(k_pool.dtype)  # (B, H, D): the kernel reads q and the pools in one dtype
            lens = {"max_seq_len": step.max_kv_len, "check": False}  # prepare built and checked the tables
            out = self._decode_kernel(query, k_pool, v_pool, step.block_table, step.kv_lens, **lens)
            out = out.to(q.dtype)[:, :, None]  # (B, H, 1, D)
        else:
            keys, values = (self._gather(pool, step) for pool in (k_pool, v_pool))  # (B, KV, S, D)
            out = ragged_attention(q, keys, values, step.q_positions)
        self._layer_done(step)
        return out

    def write_and_gather(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For a caller that attends by itself (transformers, through :mod:`kvlib.hf`): store the
        prepared step's k, v [B, KV, T, D] of ``layer`` and return every row's keys and values
        [B, KV, S, D], S the longest row (a shorter row's tail holds other data: mask it)."""
        step = self._check_forward(layer, k)
        self._write(step, layer, k, v)
        keys, values = (self._gather(pool, step)[:, :, : step.max_kv_len] for pool in self._pools(layer))
        self._layer_done(step)
        return keys, values

    # --- internals ----------------------------------------------------------------------------------

    def _to_host(self, pool: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The K or V rows at ``slots`` as a host tensor (num_slots, num_kv_heads, head_dim), pinned
        under CUDA: a copy from pinned memory can overlap compute, from pageable memory it cannot."""
        rows = self._slot_rows(pool)[slots]  # indexing copies
        return rows.to("cpu").pin_memory() if self.device.type == "cuda" else rows

    def _slot_rows(self, pool: torch.Tensor) -> torch.Tensor:
        """A pool viewed as one row per token slot: (num_blocks * block_size, num_kv_heads, head_dim)."""
        return pool.view(-1, self.num_kv_heads, self.head_dim)

    def _pools(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k_pools[layer], self.v_pools[layer]

    def _write(self, step: _Step, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Copy the real tokens' keys and values into their slots (vLLM calls it reshape_and_cache)."""
        rows, width = len(step.seq_ids), step.width
        with torch.no_grad():  # the pools are inference state, never part of an autograd graph
            for pool, new in zip(self._pools(layer), (k, v)):
                real = new.transpose(1, 2).reshape(rows * width, self.num_kv_heads, self.head_dim)
                self._slot_rows(pool).index_copy_(0, step.slots, real[step.token_index].to(pool.dtype))

    def _layer_done(self, step: _Step) -> None:
        step.next_layer += 1
        if step.next_layer == self.num_layers:
            self._commit(step)

    def _gather(self, pool: torch.Tensor, step: _Step) -> torch.Tensor:
        """Every row's blocks in logical order: (B, KV, max_blocks * block_size, D); past a row's
        length the slots hold other data, which the causal mask hides."""
        rows, max_blocks = step.block_ids.shape
        flat = pool.view(pool.shape[0], -1)  # (num_blocks, block_size * KV * D): one row per block
        # index_select on whole rows copies block by block, about 3x faster than advanced indexing here
        blocks = flat.index_select(0, step.block_ids.flatten())  # (B * max_blocks, block_size * KV * D)
        tokens = blocks.view(rows, max_blocks * self.block_size, *pool.shape[2:])  # (B, S, KV, D)
        return tokens.transpose(1, 2)  # (B, KV, S, D)

    def _commit(self, step: _Step) -> None:
        """The last layer has stored the step: its tokens now have K/V in every layer."""
        for seq_id, kv_len in zip(step.seq_ids, step.kv_lens.tolist()):
            self._computed[seq_id] = kv_len
        for block_id in step.filled_blocks:
            self._filled[block_id] = True
        self.tokens_computed += sum(step.lengths)
        self.token_slots += len(step.seq_ids) * step.width
        step.committed = True
        self._step = None

    def _undo(self, step: _Step) -> None:
        """Forget a step whose forward failed: after the commit, put the counts back (the blocks it
        marked filled held no K/V before it, or it would not have written them)."""
        self._step = None
        if not step.committed:
            return
        for seq_id, before in zip(step.seq_ids, step.computed_before):
            self._computed[seq_id] = before
        for block_id in step.filled_blocks:
            self._filled[block_id] = False
        self.tokens_computed -= sum(step.lengths)
        self.token_slots -= len(step.seq_ids) * step.width

    def _check_rows(self, seq_ids: Iterable[int]) -> list[int]:
        if isinstance(seq_ids, (str, bytes)) or not isinstance(seq_ids, Iterable):
            raise TypeError(f"seq_ids must be a list of sequence ids, got {describe(seq_ids)}")
        ids = [self.manager._get(s).seq_id for s in seq_ids]  # KeyError naming an unknown id
        if not ids:
            raise ValueError("seq_ids is empty: a step needs at least one sequence")
        if len(set(ids)) != len(ids):
            raise ValueError(f"seq_ids must be distinct (one row per sequence), got {ids}")
        return ids

    def _blocks_filled_by(self, tables: list, done: list[int], lengths: list[int]) -> list[int]:
        """Blocks whose last token this step computes."""
        bs = self.block_size
        return [b for t, c, n in zip(tables, done, lengths) for b in t.block_ids[c // bs : (c + n) // bs]]

    def _rewind_unfilled_hits(self, tables: list, computed: list[int], caps: list[float]) -> list[int]:
        """Where each row starts computing. A prefix hit may reach blocks that hold no K/V yet: the
        prompt that registered them (at admission) has not run, or was freed or failed before it did.
        Another row of this step filling them is enough (every row writes before any row attends);
        otherwise the row recomputes from the first such block, writing the same K/V into it."""
        bs = self.block_size
        lengths = [min(len(t.tokens) - c, cap) for t, c, cap in zip(tables, computed, caps)]
        being_filled = set(self._blocks_filled_by(tables, computed, lengths))
        starts = []
        for table, c in zip(tables, computed):
            for i, block_id in enumerate(table.block_ids[: c // bs]):
                if not (self._filled[block_id] or block_id in being_filled):
                    c = i * bs
                    break
            starts.append(c)
        return starts

    def _layout(self, tables: list, done: list[int], lengths: list[int], computed: list[int]) -> _Step:
        bs, width, device = self.block_size, max(lengths), self.device
        kv_lens = [c + n for c, n in zip(done, lengths)]
        max_blocks = -(-max(kv_lens) // bs)
        table_rows = [t.block_ids[: -(-n // bs)] for t, n in zip(tables, kv_lens)]
        block_table = torch.tensor([r + [0] * (max_blocks - len(r)) for r in table_rows], dtype=torch.int32)
        token_index, slots = [], []
        for b, (t, c, n) in enumerate(zip(tables, done, lengths)):
            token_index += range(b * width, b * width + n)
            slots += [t.block_ids[p // bs] * bs + p % bs for p in range(c, c + n)]
        return _Step(
            seq_ids=[t.seq_id for t in tables],
            lengths=lengths,
            width=width,
            token_index=torch.tensor(token_index, device=device),
            slots=torch.tensor(slots, device=device),
            block_table=block_table.to(device),
            block_ids=block_table.to(device=device, dtype=torch.long),
            kv_lens=torch.tensor(kv_lens, dtype=torch.int32, device=device),
            q_positions=_padded_positions(done, lengths, width).to(device),
            max_kv_len=max(kv_lens),
            filled_blocks=self._blocks_filled_by(tables, done, lengths),
            computed_before=computed,
        )

    def _batch_tensors(
        self, tables: list, done: list[int], lengths: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(lengths)
        input_ids = torch.zeros((len(tables), width), dtype=torch.long)
        for b, (t, c, n) in enumerate(zip(tables, done, lengths)):
            input_ids[b, :n] = torch.tensor(t.tokens[c : c + n])
        positions = _padded_positions(done, lengths, width)
        lengths_t = torch.tensor(lengths, dtype=torch.long)
        return input_ids.to(self.device), positions.to(self.device), lengths_t.to(self.device)

    def _check_caps(self, num_tokens: Iterable[int] | None, rows: int) -> list[float]:
        if num_tokens is None:
            return [math.inf] * rows
        if isinstance(num_tokens, (str, bytes)) or not isinstance(num_tokens, Iterable):
            raise TypeError(
                f"num_tokens must be a list of token counts (one per row), got {describe(num_tokens)}"
            )
        caps = [require_int(f"num_tokens[{i}]", n, minimum=1) for i, n in enumerate(num_tokens)]
        if len(caps) != rows:
            raise ValueError(f"num_tokens has {len(caps)} entries for {rows} rows: give one per sequence")
        return caps

    def _check_forward(self, layer: int, k: torch.Tensor, q: torch.Tensor | None = None) -> _Step:
        """The forward is the one :meth:`prepare` laid out, its layers in order, k shaped like the pools."""
        step = self._step
        if step is None:
            raise RuntimeError(
                "PagedKVCache: no step prepared; call prepare(seq_ids) (or step(model, seq_ids)) and pass "
                "its input_ids, positions and lengths to the model"
            )
        if layer != step.next_layer:
            raise RuntimeError(f"PagedKVCache: layer {layer} attended, expected layer {step.next_layer}")
        expected = (len(step.seq_ids), self.num_kv_heads, step.width, self.head_dim)
        q_matches = q is None or (q.shape[0], q.shape[2]) == (expected[0], step.width)
        if tuple(k.shape) != expected or not q_matches:
            raise ValueError(
                f"PagedKVCache: the forward does not match the prepared step: keys {list(k.shape)}, "
                f"expected {list(expected)} (rows, num_kv_heads, prepared tokens, head_dim)"
            )
        return step

    def nbytes(self) -> int:
        """Bytes of the key and value pools (every block, used or not)."""
        return sum(p.numel() * p.element_size() for p in (*self.k_pools, *self.v_pools))

    def __repr__(self) -> str:
        return (
            f"PagedKVCache(layers={self.num_layers}, blocks={self.manager.num_blocks}x{self.block_size}, "
            f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, backend={self.backend!r}, "
            f"sequences={len(self._computed)})"
        )


def _check_batch_matches(batch: Any, step: _Step) -> None:
    """The model runs the prepared step: the same positions (RoPE angles) and, if given, lengths.
    Once per forward (layer 0): the cache masks with its own positions, RoPE used the caller's."""
    if not torch.equal(batch.positions, step.q_positions):
        raise ValueError(
            "PagedKVCache: the forward's positions differ from the prepared step's; pass the positions "
            "prepare() returned"
        )
    lengths = batch.lengths
    if lengths is not None and lengths.tolist() != step.lengths:
        raise ValueError(
            f"PagedKVCache: the forward's lengths {lengths.tolist()} differ from the prepared step's "
            f"{step.lengths}; pass the lengths prepare() returned"
        )


def _padded_positions(done: list[int], lengths: list[int], width: int) -> torch.Tensor:
    """(B, T) positions: row b's real tokens at done[b] .. done[b] + n - 1, padding repeats the last
    one (so a padded query still has a key to attend to, and its output is merely ignored)."""
    offsets = torch.arange(width)[None, :].clamp(max=torch.tensor(lengths)[:, None] - 1)  # (B, T)
    return torch.tensor(done)[:, None] + offsets


def _load_decode_kernel() -> Any:
    """The Triton decode kernel, imported only when asked for (kvlib.kernels picks the interpreter on
    CPU, which must happen before Triton compiles anything)."""
    from kvlib.kernels import paged_attention_decode

    return paged_attention_decode
