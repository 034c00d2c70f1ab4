"""Transformers interop: any kvlib KV cache inside transformers' ``generate``.

``as_hf_cache(cache, model.config)`` wraps a kvlib cache in a ``transformers.Cache``, so that
``model.generate(ids, past_key_values=as_hf_cache(...))`` on a Llama checkpoint stores and reads every
key and value through kvlib. ``as_hf_cache(cache, model.config, model=model)`` goes further: the
model's attention becomes kvlib's attention seam (:func:`kvlib.cache.base.attend`), so every kvlib cache
runs inside ``generate`` exactly as inside :class:`kvlib.model.TinyDecoder`, the evicting ones of
chapter 05 included. Two modes, one rule: without ``model`` the cache is only *storage* for transformers'
attention; with ``model`` kvlib *computes* the attention.

How the two interfaces meet (transformers 5.23, pinned exactly in pyproject.toml):

- transformers' ``Cache`` is a list of per-layer objects (``CacheLayerMixin``); its Llama attention
  rotates the new queries and keys by RoPE, calls ``past_key_values.update(key_states, value_states,
  layer_idx)`` ([B, num_kv_heads, T_new, head_dim]), then hands the queries and whatever ``update``
  returned to the function ``config._attn_implementation`` names in its ``AttentionInterface``
  ("sdpa" by default), with one causal mask for all layers that ``LlamaModel`` built before the first
  layer ran, from ``get_seq_length()`` (the position of the first new token) and
  ``get_mask_sizes(query_length)`` (how many keys every layer's ``update`` is about to return, and the
  position of the first of them).

**Storage mode** (no ``model``): each :class:`KVLibLayer` forwards ``update`` to kvlib's
``update(layer, k, v)``, word for word the same contract, and transformers' own attention (sdpa) attends
over what it returned. The mask is fixed before any key is stored, so the adapter must know in advance
what the kvlib cache will return. A cache that keeps everything returns every token it has seen plus the
new ones; a cache that evicts (:class:`~kvlib.cache.evict.SlidingWindowKVCache`) returns fewer, and says
how many through ``kv_length_after(layer, new_tokens) -> int``. The adapter then places the returned keys
as if they were the latest ``kv_length`` positions: every kept old key stays visible to every new query
and the new keys (last in position order, per the kvlib contract) are masked causally among themselves.
That is exact for any eviction policy on unpadded batches whose keys stay rotated at their absolute
positions. With left padding, transformers' padding mask indexes keys by position, which is exact only
for a cache that keeps a contiguous window (the padded positions are then the ones it holds).
``update`` checks that the cache returned exactly the length the mask was built for, and raises
otherwise (an evicting cache without ``kv_length_after``, or a kvlib cache changed behind the adapter's
back). Without the check, a mismatch is a shape error deep inside attention when a mask is built, and
goes unnoticed when transformers skips it (one query, no padding).

Storage mode cannot serve a cache that needs more than ``update``: one with its own ``attend``
(:class:`~kvlib.cache.heads.HeadSplitKVCache`: heads keep different numbers of tokens, which no single
[B, KV, n, D] tensor holds), one that needs keys before RoPE (``rotates_keys``,
:class:`~kvlib.cache.evict.SinkKVCache`) or the attention weights (``observe_attention``,
:class:`~kvlib.cache.evict.H2OKVCache`: sdpa never computes them). ``as_hf_cache`` refuses those
without ``model``.

**Seam mode** (``model=model``): ``as_hf_cache`` registers one attention function, named
:data:`KVLIB_ATTENTION` ("kvlib"), in transformers' ``AttentionInterface`` (with sdpa's mask function
under the same name in ``AttentionMaskInterface``) and switches the model to it with
``model.set_attn_implementation("kvlib")``. Each :class:`SeamLayer` then stores nothing in ``update``: it
passes the new keys and values straight through and leaves a note saying which kvlib cache and layer
they belong to. The attention function finds that note (the keys it receives are the very tensors
``update`` returned) and runs ``kvlib.cache.base.attend(cache, layer, q, k, v, batch)``, the call
TinyDecoder's attention makes, with a :class:`~kvlib.cache.base.ForwardBatch` built from the
``position_ids`` transformers passes along. So the cache stores, evicts, observes weights or attends
its own way exactly as in TinyDecoder, and transformers' mask is not used (the seam is causal with the
new queries as the last keys, like TinyDecoder; a mask that is not the plain causal one means padding,
which is refused). One step needs care: transformers has already rotated the queries and keys at
their absolute positions, and a ``rotates_keys`` cache wants them before RoPE. A RoPE rotation by angle
a is undone by the rotation by -a (the same pairs, ``sin`` negated), so the seam un-rotates both at
``position_ids`` in float32 before calling ``attend``, which rotates them again at their places in the
cache, as it does for TinyDecoder. That needs plain RoPE (``rope_type`` "default"); scaled RoPE variants
are refused for such caches. Positions past ``max_position_embeddings`` are fine: transformers' RoPE has
no limit, and a sink cache never shows the model an angle past ``num_sinks + window``.

A call of the switched model that does not come through a seam-mode cache (a ``DynamicCache``, a
storage-mode kvlib cache, no cache) runs transformers' own sdpa attention with sdpa's mask, so switching
changes nothing else (``model.set_attn_implementation("sdpa")`` switches back). A seam-mode cache run by a
model whose attention is not kvlib's would attend over the new tokens only; its ``update`` raises
instead, and so does the next ``update`` when the previous layer's keys never reached kvlib's attention.

Both modes refuse, with ``NotImplementedError``, what a kvlib cache cannot do: beam search
(``reorder_cache``), assisted decoding (``crop``), batch expansion after prefill
(``batch_repeat_interleave`` / ``batch_select_indices``) and ``torch.compile`` (the adapter reports
``is_compileable = False``, so ``generate`` neither compiles nor builds static masks). Seam mode also
refuses attention dropout (a model in training mode), a scaling other than ``head_dim ** -0.5`` and
sliding-window or soft-capped attention layers: kvlib's attention computes none of these.
:class:`~kvlib.cache.mla.LatentKVCache` stores MLA latents, which a Llama model does not produce, and is
refused in both. ``kvlib.paged.PagedKVCache`` attends only; it goes in through :class:`PagedRows`, which
gives it ``update``: batch row b is paged sequence b, and each update writes the keys into the block
pools and gathers every row's keys back.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Cache, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from kvlib.cache.base import ForwardBatch, attend, rotates_keys
from kvlib.cache.mla import LatentKVCache
from kvlib.model import apply_rope, require_cache, rope_cos_sin
from kvlib.paged.cache import PagedKVCache
from kvlib.validate import describe

__all__ = ["KVLIB_ATTENTION", "KVLibCache", "KVLibLayer", "PagedRows", "SeamLayer", "as_hf_cache"]

KV_LENGTH_HOOK = "kv_length_after"  # optional: what an evicting kvlib cache's update will return
KVLIB_ATTENTION = "kvlib"  # the name of kvlib's attention in transformers' AttentionInterface


class KVLibLayer(CacheLayerMixin):
    """One model layer's view of a kvlib cache in storage mode: ``update`` forwards to
    ``cache.update(layer, k, v)`` and transformers attends over what it returns.

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
        # a cache that already holds a prompt continues after it (an attend-only cache counts from 0)
        self.seen = getattr(cache, "seq_len", 0)
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


@dataclass
class _Handoff:
    """What a seam-mode ``update`` leaves for kvlib's attention function: whose keys these are."""

    layer: SeamLayer
    key: torch.Tensor


_HANDOFF = threading.local()  # .pending: the _Handoff between a layer's update and its attention call


def _take_handoff() -> _Handoff | None:
    pending = getattr(_HANDOFF, "pending", None)
    _HANDOFF.pending = None
    return pending


class SeamLayer(KVLibLayer):
    """One model layer's view of a kvlib cache in seam mode: kvlib computes the attention.

    ``update`` stores nothing: it returns the new keys and values as they came and hands them to
    :func:`kvlib_attention`, which calls :func:`kvlib.cache.base.attend` (the cache stores them there).
    The mask transformers builds from :meth:`get_mask_sizes` covers every position seen, so a padded
    batch shows up in it and is refused.
    """

    def __init__(self, cache: Any, layer: int, config: PreTrainedConfig) -> None:
        super().__init__(cache, layer)
        self.config = config

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pass the new keys and values through to kvlib's attention function, which stores them."""
        implementation = self.config._attn_implementation
        if implementation != KVLIB_ATTENTION:
            raise RuntimeError(
                "this cache was wrapped with as_hf_cache(..., model=model), so kvlib computes its attention, "
                f"but the model's attention implementation is now {implementation!r}: transformers would "
                f"attend over the new tokens only; call model.set_attn_implementation({KVLIB_ATTENTION!r}) "
                "again before running this cache"
            )
        stale = _take_handoff()
        if stale is not None:
            raise RuntimeError(
                f"the keys of layer {stale.layer.layer} never reached kvlib's attention: the model that runs "
                "this cache is not the one given to as_hf_cache(..., model=model), or its attention does not "
                "call the attention implementation right after the cache's update (a Llama-style model does)"
            )
        _HANDOFF.pending = _Handoff(self, key_states)
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """Every position seen plus the new ones: the mask kvlib checks for padding (it attends causally
        over what the cache keeps, with the new queries last, and needs no mask)."""
        return self.seen + query_length, 0

    def attend(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
        dropout: float,
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
        """The attention output [B, T, H, D] (transformers' layout) of queries [B, H, T, D], by
        :func:`kvlib.cache.base.attend` over this layer's kvlib cache."""
        B, H, T, D = query.shape
        self._check_call(module, attention_mask, scaling, dropout, kwargs, T, D)
        positions = kwargs.get("position_ids")
        if positions is None:  # LlamaModel always passes them; a bare attention call may not
            positions = torch.arange(self.seen, self.seen + T, device=query.device)
        positions = positions.to(query.device).expand(B, T)  # (B, T): [1, T] in generate
        theta = _rope_theta(self.config)
        cos, sin = rope_cos_sin(positions, D, theta, query.dtype)  # (B, 1, T, D)
        if rotates_keys(self.cache):  # transformers rotated them at `positions`: undo it
            cos32, sin32 = rope_cos_sin(positions, D, theta, torch.float32)
            query, key = _unrotate(query, cos32, sin32), _unrotate(key, cos32, sin32)
        batch = ForwardBatch(positions, None, cos, sin, theta)
        out = attend(self.cache, self.layer, query, key, value, batch)  # (B, H, T, D)
        self.seen += T
        return out.transpose(1, 2).contiguous()  # (B, T, H, D)

    def _check_call(
        self,
        module: torch.nn.Module,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
        dropout: float,
        kwargs: dict[str, Any],
        T: int,
        D: int,
    ) -> None:
        module_layer = getattr(module, "layer_idx", self.layer)
        if module_layer != self.layer:
            raise RuntimeError(
                f"kvlib's attention got the keys of cache layer {self.layer} in model layer {module_layer}"
            )
        if dropout:
            raise NotImplementedError(
                f"attention dropout ({dropout}): kvlib's attention has none; call model.eval() first"
            )
        if scaling is not None and not math.isclose(scaling, D**-0.5, rel_tol=1e-6):
            raise NotImplementedError(
                f"attention scaling {scaling}: kvlib's attention divides scores by sqrt(head_dim={D})"
            )
        for name in ("sliding_window", "softcap", "s_aux"):
            if kwargs.get(name) is not None:
                raise NotImplementedError(
                    f"an attention layer with {name}={kwargs[name]!r}: kvlib's attention is plain causal "
                    "attention over what the cache keeps"
                )
        if attention_mask is None:  # transformers skipped it: causal without padding
            return
        S = self.seen + T
        q_pos = torch.arange(self.seen, S, device=attention_mask.device)
        causal = torch.arange(S, device=attention_mask.device) <= q_pos[:, None]  # (T, S)
        plain = attention_mask.dtype == torch.bool and torch.equal(
            attention_mask, causal.expand_as(attention_mask)
        )
        if not plain:
            raise NotImplementedError(
                "a padded batch (the attention mask hides some tokens): kvlib caches keep one length for the "
                "whole batch, so the padding would be cached and attended as tokens; generate rows of equal "
                "length without padding, or one row at a time"
            )


def _rope_theta(config: PreTrainedConfig) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _unrotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, D] rotated by RoPE with float32 ``cos``, ``sin`` [B, 1, T, D] -> x before RoPE:
    rotating by -angle is rotating with sin negated, and rotations compose (maths in float32)."""
    return apply_rope(x.float(), cos, -sin).to(x.dtype)


def kvlib_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention implementation "kvlib" (``AttentionInterface``): for keys a seam-mode
    cache's ``update`` just handed over, kvlib's seam computes the attention; otherwise transformers'
    sdpa does, with sdpa's mask. Returns (output [B, T, H, D], None): no weights for transformers."""
    pending = _take_handoff()
    if pending is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if pending.key is not key:
        raise RuntimeError(
            f"kvlib's attention got other keys than layer {pending.layer.layer}'s update returned: this "
            "model changes the keys between the cache and the attention call, which kvlib cannot follow"
        )
    return pending.layer.attend(module, query, key, value, attention_mask, scaling, dropout, kwargs), None


AttentionInterface.register(KVLIB_ATTENTION, kvlib_attention)
AttentionMaskInterface.register(KVLIB_ATTENTION, sdpa_mask)


def _use_kvlib_attention(model: PreTrainedModel) -> None:
    """Switch ``model`` to the "kvlib" attention implementation (a no-op if it uses it already)."""
    if model.config._attn_implementation != KVLIB_ATTENTION:
        model.set_attn_implementation(KVLIB_ATTENTION)
    if model.config._attn_implementation != KVLIB_ATTENTION:  # transformers only warns when it cannot
        raise TypeError(
            f"{type(model).__name__} cannot switch its attention implementation (it does not call "
            "transformers' AttentionInterface), so kvlib cannot compute its attention"
        )


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
    """A ``transformers.Cache`` whose layers store into one kvlib cache (see the module docstring):
    :class:`KVLibLayer` in storage mode, :class:`SeamLayer` in seam mode (``seam_config`` given)."""

    def __init__(self, cache: Any, num_layers: int, seam_config: PreTrainedConfig | None = None) -> None:
        if seam_config is None:
            layers = [KVLibLayer(cache, layer) for layer in range(num_layers)]
        else:
            layers = [SeamLayer(cache, layer, seam_config) for layer in range(num_layers)]
        super().__init__(layers=layers)
        self.kvlib_cache = cache
        self.seam = seam_config is not None

    def reset(self) -> None:
        """Empty the kvlib cache (``reset()``) and start counting positions from 0 again."""
        pending = getattr(_HANDOFF, "pending", None)
        if pending is not None and pending.layer in self.layers:  # a forward that failed midway
            _HANDOFF.pending = None
        self.kvlib_cache.reset()
        super().reset()


def _needs_seam(cache: Any) -> str | None:
    """Why ``cache`` cannot run in storage mode (transformers' attention over what update returns)."""
    name = type(cache).__name__
    if getattr(cache, "attend", None) is not None:
        return f"{name} computes attention itself (its own attend)"
    if rotates_keys(cache):
        return f"{name} has rotates_keys=True (it wants keys before RoPE; transformers rotates them first)"
    if getattr(cache, "observe_attention", None) is not None:
        return f"{name} needs observe_attention (the attention weights, which sdpa never computes)"
    return None


def as_hf_cache(cache: Any, config: PreTrainedConfig, *, model: PreTrainedModel | None = None) -> KVLibCache:
    """Wrap ``cache`` (a kvlib KV cache) for ``model.generate(..., past_key_values=...)`` of the model
    whose transformers config is ``config`` (``model.config``). Like transformers' own caches it
    carries over between calls: ``hf_cache.reset()`` (which resets ``cache`` too) before a new prompt.

    Without ``model`` (storage mode) transformers attends over what ``cache.update`` returns. With
    ``model`` (seam mode) the model is switched to kvlib's attention implementation and
    :func:`kvlib.cache.base.attend` computes every layer's attention, as in TinyDecoder: needed for a
    cache with its own ``attend``, ``rotates_keys`` or ``observe_attention`` (see the module docstring).

    TypeError if ``cache`` is not a kvlib KV cache instance, stores MLA latents instead of keys and
    values, or needs the seam and ``model`` is missing; if ``config`` is not a transformers config or
    ``model`` not a transformers model, or the model cannot switch its attention, or (``rotates_keys``)
    its RoPE is not the default one. ValueError if the cache was made for a different number of layers
    than the model has, or ``config`` is not ``model.config``.
    """
    if not isinstance(config, PreTrainedConfig):
        # a model's repr is its whole module tree: name the type, not the value
        raise TypeError(
            f"config must be the transformers model's config (model.config), got {type(config).__name__}"
        )
    if model is not None:
        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"model must be a transformers model (PreTrainedModel), got {describe(model)}")
        if model.config is not config:
            raise ValueError("config must be model.config, the config of the model given as model=")
    if isinstance(cache, PagedKVCache):
        cache = PagedRows(cache)
    require_cache(cache)
    if isinstance(cache, LatentKVCache):
        raise TypeError(
            "LatentKVCache stores MLA latents, not keys and values: transformers' attention hands the cache "
            "per-head keys and values [B, num_kv_heads, T, head_dim]; use a dense, static or GQA cache"
        )
    reason = _needs_seam(cache)
    if reason is not None and model is None:
        raise TypeError(
            f"{reason}: transformers' own attention cannot serve it; pass the model, "
            "as_hf_cache(cache, model.config, model=model), so that kvlib computes the attention"
        )
    num_layers = config.num_hidden_layers
    cache_layers = getattr(cache, "num_layers", None)
    if isinstance(cache_layers, int) and cache_layers != num_layers:
        raise ValueError(
            f"{type(cache).__name__} has num_layers={cache_layers} but the model has {num_layers} layers "
            f"(config.num_hidden_layers): make the cache with num_layers={num_layers}"
        )
    if model is None:
        return KVLibCache(cache, num_layers)
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rotates_keys(cache) and rope_type != "default":
        raise TypeError(
            f"{type(cache).__name__} has rotates_keys=True, so kvlib un-rotates the keys transformers "
            f"rotated; that needs plain RoPE, and this model's rope_type is {rope_type!r}"
        )
    _use_kvlib_attention(model)
    return KVLibCache(cache, num_layers, seam_config=config)
