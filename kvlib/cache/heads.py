"""Which KV heads need the whole history, and a cache that keeps it only for them (chapter 05).

Two halves:

- **Scoring heads.** :func:`head_importance` gives every KV head of every layer one number, higher
  = more important, by one of three methods:

  * ``"gradient"`` (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): a gate
    ``xi[l, h]`` (all ones) multiplies the values of KV head h in layer l, which scales the outputs
    of every query head of that group; the score is ``E_x |dL(x)/dxi[l, h]|``, the first-order change
    of the loss if the head were switched off. The gate goes in through the attention seam (a cache
    whose ``update`` returns ``v * xi``), so the model code is untouched.
  * ``"variance"``: how much the group's attention output varies from token to token. One forward,
    no backward; a proxy, see :func:`head_importance` for what it misses.
  * ``"distant_attention"``: the attention weight the head puts on tokens that a sinks + window
    cache would evict: the question DuoAttention's split asks. One forward.

  :func:`plan_from_scores` turns scores into a plan (a bool [num_layers, num_kv_heads], True = keep
  the full history); :func:`random_plan` is the control every score has to beat.

- **Keeping history per head.** :class:`HeadSplitKVCache` is DuoAttention's split (Xiao et al.
  2024): the heads a plan marks True ("retrieval heads") keep every token; the others ("streaming
  heads") keep the first ``num_sinks`` tokens and the last ``window``, like StreamingLLM, so their
  memory stops growing. :func:`pruned_kv_fraction` is the resulting KV size as a fraction of a dense
  cache's, the number a pruning plan buys.

Heads keep different numbers of tokens, so their keys do not fit one [B, KV, n, D] tensor: the cache
computes attention itself (its own ``attend``, see :mod:`kvlib.cache.base`), once over the full heads'
history and once over the streaming heads' sinks and window, and puts the outputs back in head order.
Keys stay rotated at their absolute positions (DuoAttention's streaming heads do not re-number their
tokens, unlike :class:`~kvlib.cache.evict.SinkKVCache`), so positions are bounded by the model's
context as with a dense cache.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kvlib.attention import causal_attention, repeat_kv
from kvlib.cache.base import ForwardBatch
from kvlib.cache.dense import KV_DIMS, check_appendable, check_layer, check_same_kind
from kvlib.data import _eval_mode  # one home for "eval mode, every submodule restored after"
from kvlib.validate import describe, require_bool, require_int, require_tensor

__all__ = [
    "IMPORTANCE_METHODS",
    "HeadSplitKVCache",
    "check_plan",
    "distant_attention",
    "head_importance",
    "plan_from_scores",
    "pruned_kv_fraction",
    "random_plan",
]

IMPORTANCE_METHODS: tuple[str, ...] = ("gradient", "variance", "distant_attention")
_PLAN_LAYOUT = "[num_layers, num_kv_heads] of torch.bool (True = the head keeps every token)"


# ---------------------------------------------------------------------------------------------------------
# Head importance
# ---------------------------------------------------------------------------------------------------------


class _GateCache:
    """Stores nothing; multiplies each KV head's values by its gate: v[b, h] * gates[b, layer, h].

    One gate per batch row, so that one backward of the summed row losses gives every row's own
    gradient (row b's loss depends only on row b's gates). Keys and values of the current call are all
    that attention sees, so attention is the plain causal attention of the model without a cache.
    """

    def __init__(self, gates: torch.Tensor) -> None:
        self.gates = gates  # (B, L, KV) float32, requires_grad
        self.num_layers = gates.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = self.gates[:, layer].to(v.dtype)[:, :, None, None]  # (B, KV, 1, 1)
        return k, v * gate

    @property
    def seq_len(self) -> int:
        return 0

    def reset(self) -> None:
        pass


class _VarianceCache:
    """Stores nothing; computes causal attention and records, per layer, the variance score of each group."""

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.scores: list[torch.Tensor | None] = [None] * num_layers

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch
    ) -> torch.Tensor:
        B, H, T, D = q.shape
        KV = k.shape[1]
        out = causal_attention(q, repeat_kv(k, H // KV), repeat_kv(v, H // KV))  # (B, H, T, D)
        group = out.float().view(B, KV, H // KV, T, D)  # query heads of KV head h: h*n_rep .. (h+1)*n_rep-1
        per_row = group.var(dim=3, correction=0).mean(dim=(2, 3))  # (B, KV): over tokens, then dims
        self.scores[layer] = per_row.mean(dim=0)  # (KV,)
        return out

    def reset(self) -> None:
        self.scores = [None] * self.num_layers


class _DistantAttentionCache(_VarianceCache):
    """Stores nothing; records, per layer and KV head, the attention mass a streaming head would lose."""

    def __init__(self, num_layers: int, num_sinks: int, window: int) -> None:
        super().__init__(num_layers)
        self.num_sinks, self.window = num_sinks, window

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch
    ) -> torch.Tensor:
        B, H, T, D = q.shape
        KV = k.shape[1]
        out, weights = causal_attention(
            q, repeat_kv(k, H // KV), repeat_kv(v, H // KV), return_weights=True
        )  # weights (B, H, T, T) float32
        self.scores[layer] = distant_attention(weights, KV, self.num_sinks, self.window)  # (KV,)
        return out


def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    """The attention a sinks + window head would lose, per KV head: float32 [num_kv_heads].

    ``weights``: [B, H, T, T] causal softmax weights of one layer for a sequence at positions 0 .. T-1
    (query p's row sums to one over keys 0 .. p); query heads ``g*G .. g*G+G-1`` (G = H // num_kv_heads)
    read KV head g. For each query p, the weight on keys j with ``num_sinks <= j < p - window`` (neither
    a sink nor among the last ``window`` keys before it), averaged over the queries that have such keys
    (``p > num_sinks + window``), the G query heads of the group and the B rows. Needs
    ``T > num_sinks + window + 1``; ``weights`` is not modified.
    """
    require_tensor("weights", weights, 4, "[B, H, T, T] causal softmax weights")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be floating point [B, H, T, T], got dtype {weights.dtype}")
    B, H, T, T_keys = weights.shape
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)
    num_sinks = require_int("num_sinks", num_sinks, minimum=0)
    window = require_int("window", window, minimum=1)
    if T != T_keys or B < 1 or H % num_kv_heads:
        raise ValueError(
            f"weights must be [B >= 1, H (a multiple of num_kv_heads={num_kv_heads}), T, T], "
            f"got shape {list(weights.shape)}"
        )
    if T <= num_sinks + window + 1:
        raise ValueError(
            f"weights need T > num_sinks + window + 1 = {num_sinks + window + 1} (earlier queries lose "
            f"nothing), got T={T}"
        )
    p = torch.arange(T, device=weights.device)[:, None]  # query positions
    j = torch.arange(T, device=weights.device)[None, :]  # key positions
    dropped = (j >= num_sinks) & (j < p - window)  # (T, T): neither a sink nor in the window
    first = num_sinks + window + 1  # the first query that loses a key
    lost = (weights.float() * dropped).sum(-1)[:, :, first:]  # (B, H, T - first)
    return lost.reshape(B, num_kv_heads, H // num_kv_heads, -1).mean(dim=(0, 2, 3))  # (KV,)


def _check_model(model: Any) -> tuple[int, int, int]:
    config = getattr(model, "config", None)
    names = ("num_layers", "num_kv_heads", "max_seq_len")
    if not isinstance(model, torch.nn.Module) or not all(
        isinstance(getattr(config, n, None), int) for n in names
    ):
        raise TypeError(
            "model must be a kvlib TinyDecoder (an nn.Module whose config has num_layers, num_kv_heads and "
            f"max_seq_len), e.g. kvlib.model.load_model('shakespeare-gqa'), got {describe(model)}"
        )
    return config.num_layers, config.num_kv_heads, config.max_seq_len


def _check_tokens(tokens: Any, context: int, vocab_size: int | None) -> None:
    require_tensor("tokens", tokens, 2, "[B, T] of token ids (torch.long)")
    if tokens.dtype not in (torch.long, torch.int32):
        raise TypeError(f"tokens must be integer token ids (torch.long) [B, T], got dtype {tokens.dtype}")
    B, T = tokens.shape
    if B < 1 or not 2 <= T <= context:
        raise ValueError(
            f"tokens must be [B >= 1, T] with 2 <= T <= {context} (the model's context; the loss needs a "
            f"next token), got shape {list(tokens.shape)}"
        )
    if vocab_size is not None and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"tokens must be token ids in [0, {vocab_size}), got values outside it")


def head_importance(
    model: Any,
    tokens: torch.Tensor,
    method: str = "gradient",
    *,
    normalize: bool = False,
    num_sinks: int = 4,
    window: int = 64,
) -> torch.Tensor:
    """One importance score per KV head: float32 [num_layers, num_kv_heads], higher = more important.

    ``model``: a :class:`kvlib.model.TinyDecoder` (any dtype and device). ``tokens``: LongTensor [B, T],
    ``2 <= T <= model.config.max_seq_len``, moved to the model's device; each row is one sequence at
    positions ``0 .. T-1``. Neither the model's parameters (values or ``.grad``) nor its train/eval
    mode change: it runs in eval mode and every module's mode is restored afterwards.

    ``method="gradient"`` (Michel et al. 2019). A gate ``xi[l, h] = 1`` multiplies the values of KV
    head h in layer l, so it scales the output of every query head of that group (their attention
    weights sum to one). With ``L_b`` the mean next-token cross-entropy of row b (over its T-1
    targets), the score is ``mean_b |dL_b / dxi[l, h]|``: the first-order change of the loss if the
    group were removed (``xi = 0``), taken in absolute value per row before averaging so that rows
    where the head helps and rows where it hurts do not cancel. Cost: one forward and one backward
    (gradients for the gates only; parameters get none).

    ``method="variance"``. For the query heads of KV head h in layer l, their attention outputs
    ``o[b, t]`` (the n_rep heads' [n_rep * head_dim] vector, before ``o_proj``); the score is the
    variance over the T tokens of each coordinate, averaged over coordinates and then over rows:
    ``mean_b mean_c Var_t(o[b, t, c])`` (population variance). Why a proxy: a head whose output
    hardly changes from token to token (typically one parked on the first token, an attention sink)
    adds a near-constant vector that a bias would replace, so evicting its history costs little;
    and it needs one forward, no labels, no backward. What it misses: the loss (a head can vary a
    lot along directions ``o_proj`` and the later layers ignore), the scale of each layer (outputs of
    different layers are not on one scale, so ranking across layers is rough), and above all *where*
    the variation comes from: a local head (previous-token, n-gram) varies as much as a head that
    retrieves distant tokens, but only the second needs the full history DuoAttention keeps.

    ``method="distant_attention"``: the attention a streaming head of :class:`HeadSplitKVCache` (with
    ``num_sinks`` and ``window``) would lose. For each query at position p, the softmax weight its
    head puts on keys j with ``num_sinks <= j < p - window`` (neither a sink nor in the window),
    averaged over the group's query heads, the queries that have such keys
    (``p > num_sinks + window``, so T must exceed ``num_sinks + window + 1``) and the rows. Unlike the
    two scores above it asks the question the split cache poses (does this head read far back?),
    in the spirit of DuoAttention, which trains a gate per head on exactly that trade-off. What it
    misses: how much the lost weight matters (a far key whose value is like the window's costs
    nothing), and the renormalisation (a streaming head's softmax gives the lost mass to the kept
    keys). One forward, no backward.

    ``normalize``: divide the scores of each layer by their L2 norm over the layer's KV heads (Michel
    et al. do this before pruning globally). Off by default, for every method alike: a plan ranks
    heads across layers, and per-layer normalisation erases exactly that comparison. With 2 KV heads
    per layer (``shakespeare-gqa``) the better head of every layer scores at least 1/sqrt(2) after it
    and the other at most that, so a plan of half the heads becomes one head per layer whatever the
    gradients say. The gradient scores are all derivatives of one loss and the distant-attention
    scores all fractions of a softmax, so each is comparable across layers without it; the variance
    scores are not (see above), which is one of that proxy's limits.
    """
    num_layers, num_kv_heads, context = _check_model(model)
    vocab = getattr(model.config, "vocab_size", None)
    _check_tokens(tokens, context, vocab if isinstance(vocab, int) else None)
    if not isinstance(method, str) or method not in IMPORTANCE_METHODS:
        raise ValueError(f"method must be one of {IMPORTANCE_METHODS}, got {describe(method)}")
    normalize = require_bool("normalize", normalize)
    num_sinks = require_int("num_sinks", num_sinks, minimum=0)
    window = require_int("window", window, minimum=1)
    if method == "distant_attention" and tokens.shape[1] <= num_sinks + window + 1:
        raise ValueError(
            f"method='distant_attention' needs T > num_sinks + window + 1 = {num_sinks + window + 1} tokens "
            f"(earlier queries lose nothing to a window of {window}), got T={tokens.shape[1]}"
        )
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    B, T = tokens.shape
    positions = torch.arange(T, device=device)
    with _eval_mode(model):
        if method == "gradient":
            with torch.enable_grad():
                gates = torch.ones(B, num_layers, num_kv_heads, device=device, requires_grad=True)
                logits = model(tokens, positions=positions, cache=_GateCache(gates))  # (B, T, V) float32
                nll = F.cross_entropy(
                    logits[:, :-1].reshape(B * (T - 1), -1), tokens[:, 1:].reshape(-1), reduction="none"
                )
                row_loss = nll.view(B, T - 1).mean(dim=1)  # (B,): L_b
                (grad,) = torch.autograd.grad(row_loss.sum(), gates)  # (B, L, KV): dL_b / dxi_b
            scores = grad.abs().mean(dim=0)
        else:
            recorder = (
                _VarianceCache(num_layers)
                if method == "variance"
                else _DistantAttentionCache(num_layers, num_sinks, window)
            )
            with torch.no_grad():
                model(tokens, positions=positions, cache=recorder)
            scores = torch.stack(recorder.scores)  # (L, KV)
    scores = scores.detach().float().cpu()
    if normalize:
        scores = scores / scores.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return scores


# ---------------------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------------------


def check_plan(
    full_heads: Any, num_layers: int | None = None, num_kv_heads: int | None = None
) -> torch.Tensor:
    """``full_heads`` as a CPU bool tensor [num_layers, num_kv_heads] (a copy), or an error naming the
    expected shape and dtype; ``num_layers`` / ``num_kv_heads`` pin those dims when given."""
    require_tensor("full_heads", full_heads, 2, _PLAN_LAYOUT)
    if full_heads.dtype != torch.bool:
        raise TypeError(f"full_heads must be {_PLAN_LAYOUT}, got dtype {full_heads.dtype}")
    L, KV = full_heads.shape
    if L < 1 or KV < 1:
        raise ValueError(f"full_heads must be {_PLAN_LAYOUT} with both dims >= 1, got shape {[L, KV]}")
    for name, want, got in (("num_layers", num_layers, L), ("num_kv_heads", num_kv_heads, KV)):
        if want is not None and want != got:
            raise ValueError(
                f"full_heads must have {name}={want} (shape {_PLAN_LAYOUT}), got shape {[L, KV]}"
            )
    return full_heads.detach().to("cpu", copy=True)


def plan_from_scores(scores: torch.Tensor, num_full: int) -> torch.Tensor:
    """The ``num_full`` highest-scoring KV heads across all layers: bool [num_layers, num_kv_heads].

    ``scores``: real tensor [num_layers, num_kv_heads] (e.g. from :func:`head_importance`), no NaN.
    Ties go to the lower layer, then the lower head (a stable sort of the row-major order).
    """
    require_tensor("scores", scores, 2, "[num_layers, num_kv_heads] of importance scores")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must be a real tensor [num_layers, num_kv_heads], got dtype {scores.dtype}")
    if scores.numel() == 0:
        raise ValueError(
            f"scores must be [num_layers >= 1, num_kv_heads >= 1], got shape {list(scores.shape)}"
        )
    flat = scores.detach().cpu().double().reshape(-1)
    if torch.isnan(flat).any():
        raise ValueError("scores must not contain NaN (a NaN has no rank)")
    num_full = require_int("num_full", num_full, minimum=0, maximum=flat.numel())
    order = torch.argsort(flat, descending=True, stable=True)  # ties: earlier (layer, head) first
    plan = torch.zeros(flat.numel(), dtype=torch.bool)
    plan[order[:num_full]] = True
    return plan.view(scores.shape)


def random_plan(num_layers: int, num_kv_heads: int, num_full: int, seed: int) -> torch.Tensor:
    """``num_full`` KV heads chosen uniformly at random: bool [num_layers, num_kv_heads], the control.

    Deterministic for a ``seed`` (its own generator: the global torch RNG is neither used nor changed).
    """
    num_layers = require_int("num_layers", num_layers, minimum=1)
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=1)
    total = num_layers * num_kv_heads
    num_full = require_int("num_full", num_full, minimum=0, maximum=total)
    seed = require_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    plan = torch.zeros(total, dtype=torch.bool)
    plan[torch.randperm(total, generator=generator)[:num_full]] = True
    return plan.view(num_layers, num_kv_heads)


def pruned_kv_fraction(full_heads: torch.Tensor, seq_len: int, num_sinks: int, window: int) -> float:
    """KV bytes of a :class:`HeadSplitKVCache` holding ``seq_len`` tokens over a dense cache's.

    With F heads marked full out of N = num_layers * num_kv_heads, and every streaming head keeping
    ``min(seq_len, num_sinks + window)`` tokens (its sinks and window; no head stores more than seen):

        fraction = (F * seq_len + (N - F) * min(seq_len, num_sinks + window)) / (N * seq_len)

    Batch, head_dim and dtype cancel. The memory a plan saves is ``1 - fraction``; it tends to F / N
    as the sequence grows.
    """
    plan = check_plan(full_heads)
    seq_len = require_int("seq_len", seq_len, minimum=1)
    num_sinks = require_int("num_sinks", num_sinks, minimum=0)
    window = require_int("window", window, minimum=1)
    total, full = plan.numel(), int(plan.sum())
    kept = full * seq_len + (total - full) * min(seq_len, num_sinks + window)
    return kept / (total * seq_len)


# ---------------------------------------------------------------------------------------------------------
# The split cache
# ---------------------------------------------------------------------------------------------------------


class HeadSplitKVCache:
    """DuoAttention's split: full history for the KV heads a plan marks True, sinks + window for the rest.

    ``full_heads``: bool [num_layers, num_kv_heads] (:func:`plan_from_scores`, :func:`random_plan`),
    copied. A full head keeps every token. A streaming head keeps the stream's first ``num_sinks``
    tokens and its last ``window``; its memory is fixed at ``num_sinks + window`` tokens. Keys are
    stored rotated at their absolute positions, as the model hands them over (no re-rotation).

    The cache attends itself (``attend``, called by :func:`kvlib.cache.base.attend`): query heads of a
    full KV head attend causally over the whole history, those of a streaming head over its sinks and
    window; both also over all the new tokens of the call, causally (like the caches of
    :mod:`kvlib.cache.evict`, a prefill chunk attends fully over itself, and eviction applies to later
    calls). So a query at position p of a call that started at position c sees, in a streaming head,
    the keys ``j <= p`` with ``j < num_sinks`` or ``j >= c - window``. Outputs return in query-head order.

    Every call of a layer must keep the batch size, head_dim, dtype and device of its first call, with
    num_kv_heads = ``full_heads.shape[1]``; a mismatch raises and leaves the cache as it was. Rows of
    one batch share their length (a ragged ``batch.lengths`` is refused). In transformers' ``generate``
    it needs ``kvlib.hf.as_hf_cache(cache, model.config, model=model)``, which runs this ``attend``
    (heads of different lengths cannot be returned as one tensor by ``update``).
    """

    def __init__(self, num_layers: int, full_heads: torch.Tensor, num_sinks: int, window: int) -> None:
        self.num_layers = require_int("num_layers", num_layers, minimum=1)
        self.full_heads = check_plan(full_heads, num_layers=self.num_layers)
        self.num_kv_heads = self.full_heads.shape[1]
        self.num_sinks = require_int("num_sinks", num_sinks, minimum=0)
        self.window = require_int("window", window, minimum=1)
        self._full_idx = [row.nonzero().flatten() for row in self.full_heads]  # KV heads, ascending
        self._stream_idx = [(~row).nonzero().flatten() for row in self.full_heads]
        self.reset()

    def reset(self) -> None:
        n = self.num_layers
        self.full_k: list[torch.Tensor | None] = [None] * n  # (B, F_l, seen, D)
        self.full_v: list[torch.Tensor | None] = [None] * n
        self.stream_k: list[torch.Tensor | None] = [None] * n  # (B, KV - F_l, kept, D): sinks, then window
        self.stream_v: list[torch.Tensor | None] = [None] * n
        self.seen = [0] * n

    @property
    def seq_len(self) -> int:
        """Tokens seen by layer 0, evicted ones included: the position of the next token."""
        return self.seen[0]

    def _stream_kept(self, seen: int) -> int:
        return min(seen, self.num_sinks + self.window)

    def kept_positions(self, layer: int) -> list[torch.Tensor]:
        """Absolute positions each KV head of ``layer`` keeps, oldest first: a list of num_kv_heads
        LongTensors [kept_h] (the same for every batch row; full heads keep ``0 .. seq_len - 1``)."""
        seen, S = self.seen[check_layer(layer, self.num_layers)], self.num_sinks
        recent = min(max(0, seen - S), self.window)
        stream = torch.cat([torch.arange(min(seen, S)), torch.arange(seen - recent, seen)])
        return [torch.arange(seen) if full else stream.clone() for full in self.full_heads[layer].tolist()]

    def nbytes(self) -> int:
        """Bytes of the keys and values held, all layers."""
        tensors = self.full_k + self.full_v + self.stream_k + self.stream_v
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def _check(self, layer: int, q: Any, k: Any, v: Any, batch: Any) -> None:
        if not isinstance(batch, ForwardBatch):
            raise TypeError(f"batch must be a kvlib.cache.base.ForwardBatch, got {describe(batch)}")
        if batch.lengths is not None:
            raise ValueError(
                "HeadSplitKVCache keeps one length for the whole batch, so it cannot store rows of different "
                "lengths (batch.lengths is set): the padding would be cached as tokens; run rows of equal "
                "length, or one row at a time"
            )
        require_tensor("q", q, 4, "[B, num_heads, T_new, head_dim]")
        require_tensor("k", k, 4, "[B, num_kv_heads, T_new, head_dim]")
        require_tensor("v", v, 4, "[B, num_kv_heads, T_new, head_dim]")
        check_same_kind(("k", "v"), k, v)
        B, KV, T, D = k.shape
        if KV != self.num_kv_heads:
            raise ValueError(
                f"k has {KV} KV heads but the plan full_heads is [{self.num_layers}, {self.num_kv_heads}]: "
                "make the plan with the model's num_kv_heads"
            )
        if q.shape[0] != B or q.shape[2] != T or q.shape[3] != D or q.shape[1] % KV:
            raise ValueError(
                f"q must be [B={B}, num_heads (a multiple of {KV}), T_new={T}, head_dim={D}] to match k "
                f"{list(k.shape)}, got {list(q.shape)}"
            )
        if q.device != k.device:
            raise ValueError(f"q is on {q.device} but k and v on {k.device}")
        for stored in (self.full_k[layer], self.stream_k[layer]):
            if stored is not None:
                new = k[:, : stored.shape[1]]  # same heads count as stored: compares batch, head_dim, dtype
                check_appendable(f"layer {layer} k", stored, new, 2, KV_DIMS)

    def attend(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: ForwardBatch
    ) -> torch.Tensor:
        """Store k, v [B, KV, T_new, D] of ``layer`` and return the attention output [B, H, T_new, D]
        of the queries q [B, H, T_new, D] (dtype of q), each head over the tokens its KV head keeps."""
        layer = check_layer(layer, self.num_layers)
        self._check(layer, q, k, v, batch)
        B, H, T, D = q.shape
        KV, n_rep = self.num_kv_heads, H // self.num_kv_heads
        grouped = q.view(B, KV, n_rep, T, D)  # query heads of KV head h: h*n_rep .. (h+1)*n_rep - 1
        out = torch.empty_like(grouped)  # (B, KV, n_rep, T, D)
        seen = self.seen[layer] + T
        full, stream = self._full_idx[layer].to(k.device), self._stream_idx[layer].to(k.device)
        new_state = {}
        for name, heads in (("full", full), ("stream", stream)):
            if heads.numel() == 0:
                continue
            old_k, old_v = getattr(self, f"{name}_k")[layer], getattr(self, f"{name}_v")[layer]
            keys, values = k.index_select(1, heads), v.index_select(1, heads)  # (B, n_heads, T, D)
            if old_k is not None:
                keys = torch.cat([old_k, keys], 2)  # (B, n_heads, kept + T, D)
                values = torch.cat([old_v, values], 2)
            queries = grouped.index_select(1, heads).reshape(B, heads.numel() * n_rep, T, D)
            attended = causal_attention(queries, repeat_kv(keys, n_rep), repeat_kv(values, n_rep))
            out[:, heads] = attended.view(B, heads.numel(), n_rep, T, D)
            if name == "stream":  # keep the first num_sinks and the last window of what was attended over
                sinks = min(seen, self.num_sinks)
                recent = self._stream_kept(seen) - sinks
                n = keys.shape[2]
                keep = torch.cat([torch.arange(sinks), torch.arange(n - recent, n)]).to(k.device)
                keys, values = keys.index_select(2, keep), values.index_select(2, keep)
            new_state[name] = (keys, values)
        for name, (keys, values) in new_state.items():  # stored only once everything has succeeded
            getattr(self, f"{name}_k")[layer], getattr(self, f"{name}_v")[layer] = keys, values
        self.seen[layer] = seen
        return out.view(B, H, T, D)
