"""Transformers interop: any kvlib KV cache inside transformers' ``generate``.

``as_hf_cache(cache, model.config)`` wraps a kvlib cache (dense, static, GQA, and the quantized and
evicting caches to come: anything with ``update(layer, k, v)``, ``seq_len`` and ``reset()``) in a
``transformers.Cache``, so that ``model.generate(ids, past_key_values=as_hf_cache(...))`` on a
Llama checkpoint stores and reads every key and value through kvlib.

How the two interfaces meet (transformers 5.23, pinned exactly in pyproject.toml):

- transformers' ``Cache`` is a list of per-layer objects (``CacheLayerMixin``); its Llama attention
  calls ``past_key_values.update(key_states, value_states, layer_idx)`` with keys already rotated
  by RoPE, shaped [B, num_kv_heads, T_new, head_dim], and attends over what it returns. That is
  kvlib's ``update(layer, k, v)`` word for word, so each ``KVLibLayer`` forwards to it.
- Before the first layer runs, ``LlamaModel`` builds one causal mask for all layers from
  ``get_seq_length()`` (the position of the first new token) and ``get_mask_sizes(query_length)``
  (how many keys every layer's ``update`` is about to return, and the position of the first of
  them). The mask is fixed before any key is stored, so the adapter must know in advance what the
  kvlib cache will return. A cache that keeps everything returns every token it has seen plus the
  new ones; a cache that evicts (a window, H2O) returns fewer, and says how many through an
  optional method ``kv_length_after(layer, new_tokens) -> int``. The adapter then places the
  returned keys as if they were the latest ``kv_length`` positions: every kept old key stays
  visible to every new query and the new keys (last in position order, per the kvlib contract)
  are masked causally among themselves. That is exact for any eviction policy on unpadded batches.
  With left padding, transformers' padding mask indexes keys by position, which is exact only for a
  cache that keeps a contiguous window (the padded positions are then the ones it holds).
- ``update`` checks that the cache returned exactly the length the mask was built for, and raises
  otherwise (an evicting cache without ``kv_length_after``, or a kvlib cache changed behind the
  adapter's back). Without the check, a mismatch is a shape error deep inside attention when a mask
  is built, and goes unnoticed when transformers skips it (one query, no padding), so the same cache
  would work in some calls and fail in others.

The kvlib seam (``kvlib.cache.base``) lets a cache do more than ``update``; through transformers
only ``update`` is used. A cache's own ``attend`` is bypassed (transformers attends over what
``update`` returns, which for such a cache must still be every key it keeps). A cache that needs
keys before RoPE (``rotates_keys``) or the attention weights (``observe_attention``) cannot get them
from transformers' attention, and ``as_hf_cache`` refuses it. ``kvlib.paged.PagedKVCache`` attends
only; it goes in through :class:`PagedRows`, which gives it ``update``: batch row b is paged sequence
b, and each update writes the keys into the block pools and gathers every row's keys back.

What a kvlib cache cannot do is refused with ``NotImplementedError``: beam search
(``reorder_cache``), assisted decoding (``crop``), batch expansion after prefill
(``batch_repeat_interleave`` / ``batch_select_indices``) and ``torch.compile`` (the adapter reports
``is_compileable = False``, so ``generate`` neither compiles nor builds static masks).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Cache, PreTrainedConfig
from transformers.cache_utils import CacheLayerMixin

from kvlib.cache.base import rotates_keys
from kvlib.cache.mla import LatentKVCache
from kvlib.model import require_cache
from kvlib.paged.cache import PagedKVCache

__all__ = ["KVLibCache", "KVLibLayer", "PagedRows", "as_hf_cache"]

KV_LENGTH_HOOK = "kv_length_after"  # optional: what an evicting kvlib cache's update will return


class KVLibLayer(CacheLayerMixin):
    """One model layer's view of a kvlib cache: ``update`` forwards to ``cache.update(layer, k, v)``.

    ``seen`` counts the tokens this layer has stored since the cache was wrapped (or reset), which
    is the position of its next token; the kvlib cache keeps the keys themselves, so the ``keys`` and
    ``values`` attributes of transformers' own layers stay None here.
    """

    is_compileable = False  # a Python object with argument checks, not a fixed-address buffer
    is_croppable = False
    is_sliding = False

    def __init__(self, cache: Any, layer: int) -> None:
        super().__init__()
        self.cache, self.layer = cache, layer
        self.seen = cache.seq_len  # a cache that already holds a prompt continues after it
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to allocate: the kvlib cache sizes its own storage on its first update."""

    def kv_length(self, new_tokens: int) -> int:
        """Keys ``update`` will return after storing ``new_tokens`` more: all tokens seen, unless the
        kvlib cache evicts and says otherwise through ``kv_length_after``."""
        hook = getattr(self.cache, KV_LENGTH_HOOK, None)
        return self.seen + new_tokens if hook is None else hook(self.layer, new_tokens)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store [B, num_kv_heads, T_new, head_dim] keys/values; return all kept, as the mask expects."""
        new = key_states.shape[-2]
        expected = self.kv_length(new)
        keys, values = self.cache.update(self.layer, key_states, value_states)
        if keys.shape[-2] != expected:
            raise RuntimeError(
                f"{type(self.cache).__name__}.update returned {keys.shape[-2]} keys for layer {self.layer} "
                f"but transformers' attention mask was sized for {expected} ({self.seen} tokens seen + "
                f"{new} new): a cache that evicts must define {KV_LENGTH_HOOK}(layer, new_tokens); a "
                "cache changed outside the adapter must be reset through it (hf_cache.reset())"
            )
        self.seen += new
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """``(kv_length, kv_offset)``: the keys the next update returns and the position of the first,
        counted so that the last ``query_length`` keys are the new tokens themselves."""
        kv_length = self.kv_length(query_length)
        if kv_length < query_length:
            raise NotImplementedError(
                f"{type(self.cache).__name__} would keep {kv_length} of the {query_length} new tokens of "
                f"layer {self.layer}: the new tokens' own keys must all be returned (prefill in chunks "
                "no longer than what the cache keeps)"
            )
        return kv_length, self.seen + query_length - kv_length

    def get_seq_length(self) -> int:
        """Tokens this layer has seen: the position of the next token, evicted tokens included."""
        return self.seen

    def get_max_length(self) -> int:
        """The kvlib cache's capacity if it has one (``max_seq_len``, StaticKVCache), else -1 (none)."""
        capacity = getattr(self.cache, "max_seq_len", None)
        return capacity if isinstance(capacity, int) and not isinstance(capacity, bool) else -1

    def reset(self) -> None:
        """Forget the count; ``KVLibCache.reset`` resets the kvlib cache itself, once for all layers."""
        self.seen = 0

    def _refuse(self, what: str) -> None:
        raise NotImplementedError(
            f"{what} is not supported by kvlib caches (the kvlib cache contract is update/seq_len/reset): "
            "use greedy or sampled decoding with one sequence per prompt"
        )

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._refuse("beam search (reorder_cache)")

    def crop(self, tokens_to_remove: int) -> None:
        self._refuse("cropping the cache (assisted decoding, crop)")

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.seen:  # nothing stored yet: generate's expansion of an empty cache is a no-op
            self._refuse("expanding a filled cache over the batch (batch_repeat_interleave)")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.seen:
            self._refuse("selecting batch rows of a filled cache (batch_select_indices)")


class PagedRows:
    """A :class:`~kvlib.paged.cache.PagedKVCache` behind the update/seq_len/reset contract, for transformers.

    transformers' batches are uniform (every row as long as the others) and its attention hands the
    cache keys and values, never token ids. So batch row b is paged sequence b, all rows grow by the
    same tokens, and the sequences hold placeholder token ids: a paged cache with a prefix cache, which
    matches prompts by token ids, is refused. At layer 0 of each forward the sequences grow by the new
    tokens and the step is prepared; every layer then writes its keys and values into the block pools
    and gets every row's keys and values back by gather (``write_and_gather``).
    """

    PLACEHOLDER_TOKEN = 0

    def __init__(self, paged: PagedKVCache) -> None:
        if paged.manager.cache is not None:
            raise ValueError(
                "a PagedKVCache with a prefix cache cannot run inside transformers: transformers never "
                "hands the cache token ids, which prefix caching matches on; make it with prefix_cache=None"
            )
        if paged.manager.seqs:
            raise ValueError(
                f"the PagedKVCache must be empty, it holds {len(paged.manager.seqs)} sequence(s)"
            )
        self.paged = paged
        self.num_layers = paged.num_layers
        self.rows = 0  # batch rows = paged sequences 0 .. rows - 1
        self.length = 0  # tokens in every row

    @property
    def seq_len(self) -> int:
        return self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, KV, T_new, D] of ``layer``; return every row's keys and values so far."""
        if layer == 0:
            self._grow(k.shape[0], k.shape[2])
        return self.paged.write_and_gather(layer, k, v)

    def _grow(self, rows: int, new_tokens: int) -> None:
        if self.length and rows != self.rows:
            raise ValueError(f"the batch changed from {self.rows} to {rows} rows; reset the cache first")
        paged, token = self.paged, self.PLACEHOLDER_TOKEN
        if not self.length:
            try:
                for row in range(rows):
                    paged.add_sequence(row, [token] * new_tokens)
            except Exception:  # OutOfBlocks at row r: leave no half-admitted batch behind
                paged.reset()
                raise
        else:
            for row in range(rows):
                for _ in range(new_tokens):
                    paged.append_token(row, token)
        paged.prepare(range(rows))
        self.rows, self.length = rows, self.length + new_tokens

    def reset(self) -> None:
        self.paged.reset()
        self.rows = self.length = 0


class KVLibCache(Cache):
    """A ``transformers.Cache`` whose layers store into one kvlib cache (see the module docstring)."""

    def __init__(self, cache: Any, num_layers: int) -> None:
        super().__init__(layers=[KVLibLayer(cache, layer) for layer in range(num_layers)])
        self.kvlib_cache = cache

    def reset(self) -> None:
        """Empty the kvlib cache (``reset()``) and start counting positions from 0 again."""
        self.kvlib_cache.reset()
        super().reset()


def as_hf_cache(cache: Any, config: PreTrainedConfig) -> KVLibCache:
    """Wrap ``cache`` (a kvlib KV cache) for ``model.generate(..., past_key_values=...)`` of the model
    whose transformers config is ``config`` (``model.config``). Like transformers' own caches it
    carries over between calls: ``hf_cache.reset()`` (which resets ``cache`` too) before a new prompt.

    TypeError if ``cache`` is not a kvlib KV cache instance (update, seq_len, reset), stores MLA
    latents instead of keys and values, needs keys before RoPE or the attention weights, or if
    ``config`` is not a transformers config; ValueError if
    the cache was made for a different number of layers than the model has.
    """
    if not isinstance(config, PreTrainedConfig):
        # a model's repr is its whole module tree: name the type, not the value
        raise TypeError(
            f"config must be the transformers model's config (model.config), got {type(config).__name__}"
        )
    if isinstance(cache, PagedKVCache):
        cache = PagedRows(cache)
    require_cache(cache)
    if not (hasattr(cache, "update") and hasattr(cache, "seq_len")):  # require_cache accepts attend-only
        raise TypeError(
            f"{type(cache).__name__} attends by itself and has no update/seq_len: transformers' attention "
            "needs a cache whose update(layer, k, v) returns the keys and values it keeps"
        )
    if isinstance(cache, LatentKVCache):
        raise TypeError(
            "LatentKVCache stores MLA latents, not keys and values: transformers' attention hands the cache "
            "per-head keys and values [B, num_kv_heads, T, head_dim]; use a dense, static or GQA cache"
        )
    if rotates_keys(cache):
        raise TypeError(
            f"{type(cache).__name__} has rotates_keys=True, but transformers applies RoPE before the cache "
            "sees the keys: it cannot re-rotate them inside transformers' attention"
        )
    if getattr(cache, "observe_attention", None) is not None:
        raise TypeError(
            f"{type(cache).__name__} needs observe_attention, but transformers' attention never hands the "
            "cache its weights (sdpa does not compute them): its eviction would run blind"
        )
    num_layers = config.num_hidden_layers
    cache_layers = getattr(cache, "num_layers", None)
    if isinstance(cache_layers, int) and cache_layers != num_layers:
        raise ValueError(
            f"{type(cache).__name__} has num_layers={cache_layers} but the model has {num_layers} layers "
            f"(config.num_hidden_layers): make the cache with num_layers={num_layers}"
        )
    return KVLibCache(cache, num_layers)
