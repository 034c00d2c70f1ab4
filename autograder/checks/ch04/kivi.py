"""Exercise `kivi_cache`: a KIVI-style cache, quantized groups of old tokens and a full-precision window.

Every update of the learner's `KIVICache` is compared, bit for bit, with kvlib's `QuantizedKVCache` built
with the same arguments (the learner is allowed to call `kvlib.quant.quantize`, so the same quantize calls
give the same numbers). The scenarios split tokens every way the rule must not care about (a long prompt
then one token at a time, chunks that cross group boundaries, residual 0, a residual that is not a
multiple of G, G not dividing head_dim), in fp32/fp16/bf16, on several layers, two instances in turn,
after reset(), and inside the shipped model. Bytes are checked twice: `nbytes()` against
`kvlib.memory.quantized_kv_cache_bytes`, and the tensors reachable from the object
(`kvlib.memory.cache_nbytes`) against the same number, so a cache that keeps full-precision copies
saves nothing and fails. A wrong result is matched against the classic wrong windows (aging at
`residual`, one group per update, the newest tokens quantized, granularities swapped, ...) and named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..common import CheckFailed, as_int, assert_close, call, expect, matches
from ..delegation import graded
from ..fixtures import generator, randn
from ..properties import assert_dtype, assert_unchanged, call_pure, interleaved, snapshot

# kvlib's KIVI cache has the exercise's constructor (num_layers, bits, group_size, residual) and methods;
# the module also holds FloatKVCache and the helpers that would hand in a working cache.
REFERENCES = ("kvlib.cache.quantized.QuantizedKVCache", "kvlib.cache.quantized")

# Written into the caller's k and v after every update: a cache that kept a view of them returns it.
_SENTINEL = 4096.0

_ALIASING = (
    "update returned a tensor that a later update overwrote in place; return new tensors (torch.cat "
    "makes one) and never write into a tensor you handed out"
)
_QUANTIZE_HINT = (
    "quantize the oldest group_size tokens of the window, keys with quantize(k_old, bits, 'kivi', "
    "'per_channel', group_size) and values with quantize(v_old, bits, 'kivi', 'per_token', Gv), and "
    "return the store dequantized (oldest group first), then the window"
)


@dataclass(frozen=True)
class _Config:
    num_layers: int
    bits: int
    group_size: int
    residual: int
    B: int
    KV: int
    D: int
    dtype: torch.dtype = torch.float32
    defaults: bool = False  # build the learner's cache as KIVICache(num_layers), defaults untouched

    @property
    def value_group(self) -> int:
        return self.group_size if self.D % self.group_size == 0 else self.D

    def quantized(self, n: int) -> int:
        """Tokens in the store after n tokens: whole groups of those past the window."""
        return max(0, (n - self.residual) // self.group_size) * self.group_size

    def label(self) -> str:
        args = (
            f"KIVICache({self.num_layers}) (the defaults: bits=2, group_size=32, residual=128)"
            if self.defaults
            else f"KIVICache({self.num_layers}, bits={self.bits}, group_size={self.group_size}, "
            f"residual={self.residual})"
        )
        dtype = str(self.dtype).replace("torch.", "")
        return f"{args} with {dtype} k, v of shape [B={self.B}, KV={self.KV}, T_new, D={self.D}]"


def _make(cls: Any, cfg: _Config) -> Any:
    if cfg.defaults:
        return call(cls, cfg.num_layers, what=f"KIVICache({cfg.num_layers})")
    return call(
        cls, cfg.num_layers, bits=cfg.bits, group_size=cfg.group_size, residual=cfg.residual,
        what=cfg.label().split(" with ")[0],
    )  # fmt: skip


def _reference(cfg: _Config) -> Any:
    from kvlib.cache.quantized import QuantizedKVCache

    # bits always explicit: QuantizedKVCache defaults to 4 bits, the exercise to 2
    return QuantizedKVCache(cfg.num_layers, cfg.bits, cfg.group_size, cfg.residual)


def _seq_len(cache: Any) -> int:
    expect(hasattr(cache, "seq_len"), "KIVICache has no seq_len property")
    value = call(lambda: cache.seq_len, what="KIVICache.seq_len")
    expect(not callable(value), "seq_len must be a property (cache.seq_len), not a method: add @property")
    return as_int(value, "seq_len")


def _nbytes(cache: Any) -> int:
    method = getattr(cache, "nbytes", None)
    expect(callable(method), "KIVICache needs an nbytes() method")
    return as_int(call(method, what="KIVICache.nbytes"), "nbytes()")


# --- the classic wrong windows, simulated from the tokens a layer was given ---------------------------


@dataclass(frozen=True)
class _Rule:
    threshold: str = "residual+G"  # "residual": as soon as the window exceeds residual; "strict": > R + G
    loop: bool = True  # False: at most one group per update
    whole_chunk: bool = False  # every group due in an update quantized as ONE per-channel key group
    oldest: bool = True  # False: the newest group is quantized
    keys: str = "per_channel"
    values: str = "per_token"
    value_group: int | None = None  # None: Gv (G if it divides D, else D)
    bits: int | None = None  # None: the configured bits
    scheme: str = "kivi"
    window_first: bool = False  # the window returned before the store
    prepend: bool = False  # each new group put before the older ones
    float32_copy: bool = False  # quantize(x.float(), ...): float32 scales, dequantized then cast back


_WRONG_RULES: tuple[tuple[str, _Rule], ...] = (
    (
        "the store and the window are returned in the wrong order (window first): return all tokens in "
        "position order, the store dequantized first (the oldest tokens), then the window",
        _Rule(window_first=True),
    ),
    (
        "you quantized the newest tokens of the window; age the OLDEST group_size tokens (window[:, :, "
        ":G]) and keep the newest in full precision (the window always holds the most recent tokens)",
        _Rule(oldest=False),
    ),
    (
        "tokens age as soon as the window holds more than residual tokens; the rule is: while the window "
        "holds residual + group_size tokens or more, quantize its oldest group_size tokens (so the window "
        "keeps min(n, residual) tokens at least)",
        _Rule(threshold="residual"),
    ),
    (
        "a group ages only once the window holds MORE than residual + group_size tokens (> where >= "
        "belongs): quantize while the window holds residual + group_size tokens or more",
        _Rule(threshold="strict"),
    ),
    (
        "the keys aged in one update were quantized as one per-channel group (quantize(..., 'per_channel') "
        "without group_size, or with the number of aged tokens): each group of group_size tokens gets its "
        "own scales, quantize(k_old, bits, 'kivi', 'per_channel', group_size)",
        _Rule(whole_chunk=True),
    ),
    (
        "only one group was quantized per update (an `if` where a `while` belongs): a long prompt leaves "
        "too many tokens in the window; keep quantizing while the window holds residual + group_size "
        "tokens or more",
        _Rule(loop=False),
    ),
    (
        "keys and values are quantized with swapped granularities: keys per channel (a group of G tokens "
        "shares a scale per channel), values per token",
        _Rule(keys="per_token", values="per_channel"),
    ),
    (
        "keys must be quantized per channel (quantize(k_old, bits, 'kivi', 'per_channel', group_size)): "
        "you quantized them per token",
        _Rule(keys="per_token"),
    ),
    (
        "values must be quantized per token (quantize(v_old, bits, 'kivi', 'per_token', Gv)): you "
        "quantized them per channel",
        _Rule(values="per_channel"),
    ),
    (
        "each new group was put before the older ones: append it to the END of the store, so the store "
        "stays in position order",
        _Rule(prepend=True),
    ),
    (
        "quantized with the 'asymmetric' scheme; KIVI keeps the group minimum: scheme 'kivi'",
        _Rule(scheme="asymmetric"),
    ),
    (
        "quantized with the 'symmetric' scheme; KIVI keeps the group minimum: scheme 'kivi'",
        _Rule(scheme="symmetric"),
    ),
)


def _simulate(inputs: list[tuple[Tensor, Tensor]], cfg: _Config, rule: _Rule) -> tuple[Tensor, Tensor]:
    """(k_all, v_all) after feeding `inputs` [(k, v), ...] to a cache that follows `rule`."""
    from kvlib.quant import quantize

    G, R = cfg.group_size, cfg.residual
    bits = cfg.bits if rule.bits is None else rule.bits
    gv = cfg.value_group if rule.value_group is None else rule.value_group
    store: list[tuple[Tensor, Tensor]] = []
    wk, wv = inputs[0][0][:, :, :0], inputs[0][1][:, :, :0]

    def due() -> int:
        """Tokens to age now (0: none)."""
        n = wk.shape[-2]
        if rule.whole_chunk:
            return cfg.quantized(n)
        ready = {"residual": n > R, "strict": n > R + G}.get(rule.threshold, n >= R + G)
        return G if ready and n >= G else 0

    for k, v in inputs:
        wk, wv = torch.cat([wk, k], dim=-2), torch.cat([wv, v], dim=-2)
        for _ in range(wk.shape[-2] if rule.loop else 1):
            n_old = due()
            if not n_old:
                break
            part = slice(None, n_old) if rule.oldest else slice(wk.shape[-2] - n_old, None)
            keep = slice(n_old, None) if rule.oldest else slice(None, wk.shape[-2] - n_old)
            key_group = n_old if rule.keys == "per_channel" else gv
            value_group = G if rule.values == "per_channel" else gv
            old_k, old_v = wk[:, :, part], wv[:, :, part]
            if rule.float32_copy:
                old_k, old_v = old_k.float(), old_v.float()
            qk = quantize(old_k, bits, rule.scheme, rule.keys, key_group)
            qv = quantize(old_v, bits, rule.scheme, rule.values, value_group)
            group = (qk.dequantize().to(wk.dtype), qv.dequantize().to(wv.dtype))
            store = [group, *store] if rule.prepend else [*store, group]
            wk, wv = wk[:, :, keep], wv[:, :, keep]
    ks, vs = [g[0] for g in store], [g[1] for g in store]
    if rule.window_first:
        return torch.cat([wk, *ks], dim=-2), torch.cat([wv, *vs], dim=-2)
    return torch.cat([*ks, wk], dim=-2), torch.cat([*vs, wv], dim=-2)


_FLOAT32_COPY = (
    "you quantized a float32 copy: pass the tokens in their own dtype; quantize computes in float32 inside "
    "and stores its scales in the input's dtype"
)


def _wrong_rules(cfg: _Config) -> list[tuple[str, _Rule]]:
    rules = list(_WRONG_RULES)
    if cfg.dtype != torch.float32:  # in float32 the copy is the tokens themselves: not a mistake
        rules.append((_FLOAT32_COPY, _Rule(float32_copy=True)))
    for bits in (2, 4, 8):
        if bits != cfg.bits:
            rules.append(
                (
                    f"the codes have {bits} bits, not bits={cfg.bits}"
                    + (
                        ": KIVICache(num_layers) defaults to bits=2, group_size=32, residual=128"
                        if cfg.defaults
                        else ": pass self.bits to quantize, do not hard-code it"
                    ),
                    _Rule(bits=bits),
                )
            )
    # widest first: tiny groups reproduce any values almost exactly (a group of 1 is lossless)
    for g in (g for g in range(cfg.D, 0, -1) if cfg.D % g == 0 and g != cfg.value_group):
        what = "over the whole head_dim" if g == cfg.D else f"in groups of {g} channel" + "s" * (g > 1)
        rules.append(
            (
                f"values are quantized per token {what}; Gv = group_size ({cfg.group_size}) when it divides "
                f"D (here {cfg.D}), otherwise the whole D",
                _Rule(value_group=g),
            )
        )
    return rules


def _diagnose(got: tuple[Tensor, Tensor], inputs: list[tuple[Tensor, Tensor]], cfg: _Config) -> str | None:
    for message, rule in _wrong_rules(cfg):
        try:
            wrong = _simulate(inputs, cfg, rule)
        except Exception:  # noqa: BLE001 - a rule that cannot run on these sizes matches nothing
            continue
        if matches(got[0], wrong[0], atol=1e-6) and matches(got[1], wrong[1], atol=1e-6):
            return message
    return None


# --- one learner cache driven beside kvlib's ----------------------------------------------------------


class _Driver:
    """Feeds one learner cache and a QuantizedKVCache the same tokens and compares every result."""

    def __init__(self, cls: Any, cfg: _Config, seed: int, label: str = "a new KIVICache") -> None:
        self.cfg = cfg
        self.cache = _make(cls, cfg)
        self.gen = generator(seed)
        self.transposed = False  # inputs as views k.transpose(1, 2) of [B, T, KV, D], as a model makes them
        self._start(label)

    def _start(self, label: str) -> None:
        self.ref = _reference(self.cfg)
        self.inputs: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(self.cfg.num_layers)]
        self.returned: list[tuple[Any, Any]] = []
        held = _seq_len(self.cache)
        if held != 0:
            raise CheckFailed(
                f"{label} already holds {held} tokens before any update: caches share state (lists or "
                "dicts in class attributes, a mutable default argument or module-level variables); create "
                "every layer's window and store in __init__, on self"
            )
        nbytes = _nbytes(self.cache)
        expect(nbytes == 0, f"{label} must hold 0 bytes before any update (nbytes() returned {nbytes})")

    def stored(self, layer: int) -> int:
        return sum(k.shape[-2] for k, _ in self.inputs[layer])

    def where(self, layer: int) -> str:
        sizes = [k.shape[-2] for k, _ in self.inputs[layer]]
        return (
            f"{self.cfg.label()}, layer {layer}, after updates of {sizes} tokens ({sum(sizes)} stored, "
            f"{self.cfg.quantized(sum(sizes))} of them quantized)"
        )

    def _new(self, n_new: int) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        if self.transposed:
            k = randn(self.gen, cfg.B, n_new, cfg.KV, cfg.D, dtype=cfg.dtype).transpose(1, 2)
            v = randn(self.gen, cfg.B, n_new, cfg.KV, cfg.D, dtype=cfg.dtype).transpose(1, 2)
            return k, v
        shape = (cfg.B, cfg.KV, n_new, cfg.D)
        return randn(self.gen, *shape, dtype=cfg.dtype), randn(self.gen, *shape, dtype=cfg.dtype)

    def update(self, layer: int, n_new: int) -> tuple[Tensor, Tensor]:
        k, v = self._new(n_new)
        self.inputs[layer].append((k.clone(), v.clone()))
        out = call_pure(self.cache.update, layer, k, v, what="KIVICache.update")
        expect(
            isinstance(out, (tuple, list)) and len(out) == 2,
            f"update(layer, k, v) must return a pair (k_all, v_all), got {type(out).__name__}",
        )
        want = self.ref.update(layer, *self.inputs[layer][-1])
        self._compare(out, want, layer)
        # The caller reuses its buffers (a model's projections): a cache must hold its own copy.
        k.fill_(_SENTINEL), v.fill_(_SENTINEL)
        for result, copy in self.returned:
            assert_unchanged(result, copy, "a (k_all, v_all) pair that update returned earlier", _ALIASING)
        self.returned.append((out, snapshot(out)))
        return out[0], out[1]

    def _compare(self, out: Any, want: tuple[Tensor, Tensor], layer: int) -> None:
        where = self.where(layer)
        for i, name in enumerate(("k_all", "v_all")):
            got = out[i]
            expect(
                isinstance(got, torch.Tensor), f"{where}: {name} must be a tensor, got {type(got).__name__}"
            )
            _check_shape(got, want[i], self, layer, name)
            assert_dtype(
                got, self.cfg.dtype, f"{where}: {name}",
                hint="dequantize() returns the input's dtype and the window must stay as given: do not "
                "convert (.float()) and do not start the window from a float32 tensor (torch.zeros(...) "
                "without dtype=k.dtype), which torch.cat promotes everything to",
            )  # fmt: skip
            if bool((got.detach().double().abs() >= _SENTINEL / 2).any()):
                raise CheckFailed(
                    f"{where}: {name} holds values that the caller wrote into its own k/v tensors AFTER "
                    "an earlier update returned: the cache kept the caller's tensor (or a view of it) "
                    "instead of a copy. Store new tokens with torch.cat (a new tensor) or k.clone()"
                )
        if torch.equal(out[0], want[0]) and torch.equal(out[1], want[1]):
            return
        mistake = _diagnose((out[0], out[1]), self.inputs[layer], self.cfg)
        if mistake:
            raise CheckFailed(f"{where}: {mistake}")
        if torch.equal(out[0], want[1]) and torch.equal(out[1], want[0]):
            raise CheckFailed(f"{where}: keys and values are swapped: return (k_all, v_all) in that order")
        n = self.stored(layer)
        q = self.cfg.quantized(n)
        for i, name in enumerate(("k_all", "v_all")):
            if not torch.equal(out[i][:, :, q:], want[i][:, :, q:]):
                raise CheckFailed(
                    f"{where}: the newest {n - q} tokens of {name} (the window) must be returned exactly "
                    f"as given, after the {q} quantized ones; {_QUANTIZE_HINT}"
                )
        raise CheckFailed(f"{where}: the {q} quantized tokens of k_all or v_all are wrong; {_QUANTIZE_HINT}")

    def step(self, n_new: int) -> None:
        """n_new tokens for every layer in turn, as a forward pass does; then seq_len and the bytes."""
        for layer in range(self.cfg.num_layers):
            self.update(layer, n_new)
            if layer == 0 and self.cfg.num_layers > 1:  # the model reads seq_len between layer updates
                self.check_seq_len(between=True)
        self.check_seq_len()
        self.check_bytes()

    def check_seq_len(self, between: bool = False) -> None:
        n = self.stored(0)
        got = _seq_len(self.cache)
        if got == n:
            return
        q = self.cfg.quantized(n)
        calls = len(self.inputs[0])
        everything = sum(self.stored(i) for i in range(self.cfg.num_layers))
        hints = [
            (q > 0 and got == n - q, "seq_len counts only the window; the quantized tokens are stored too"),
            (q > 0 and got == q, "seq_len counts only the quantized store; add the window's tokens"),
            (calls != n and got == calls, "seq_len must count tokens, not calls to update"),
            (got == everything, "seq_len adds the tokens of every layer; count layer 0's only"),
            (between and got == n - self.inputs[0][-1][0].shape[-2],
             "seq_len lags behind layer 0 while a forward pass is halfway through the layers (it reads "
             "another layer or a counter advanced by the last one): read layer 0's own count"),
        ]  # fmt: skip
        hint = next((h for ok, h in hints if ok), "seq_len must be the number of tokens stored in layer 0")
        moment = " (after layer 0's update, before the other layers')" if between else ""
        raise CheckFailed(
            f"{self.cfg.label()}: after {n} tokens{moment}, seq_len must be {n}, got {got}: {hint}"
        )

    def lengths(self) -> list[int]:
        return [self.stored(layer) for layer in range(self.cfg.num_layers)]

    def check_bytes(self) -> None:
        _check_bytes(self.cache, self.cfg, self.lengths(), self.ref)

    def reset(self) -> None:
        reset = getattr(self.cache, "reset", None)
        expect(callable(reset), "KIVICache needs a reset() method")
        before = self.lengths()
        call(reset, what="KIVICache.reset")
        try:
            self._start("a KIVICache after reset()")
        except CheckFailed as exc:
            raise CheckFailed(
                f"after {before[0]} tokens then reset(): {exc}. reset() must forget every token of every "
                "layer: the windows and the quantized stores"
            ) from None


def _check_shape(got: Tensor, want: Tensor, driver: _Driver, layer: int, name: str) -> None:
    if tuple(got.shape) == tuple(want.shape):
        return
    cfg = driver.cfg
    n = driver.stored(layer)
    q = cfg.quantized(n)
    n_new = driver.inputs[layer][-1][0].shape[-2]
    T = got.shape[-2] if got.dim() == 4 else None
    others = sum(driver.stored(i) for i in range(cfg.num_layers) if i != layer)
    hints = [
        (got.dim() != 4 or tuple(got.shape[:2]) != tuple(want.shape[:2]) or got.shape[3] != cfg.D,
         "the result must be [B, KV, T, D]: concatenate on the sequence axis, dim=-2"),
        (T == n_new and n_new != n, "you returned only the new tokens; return every token of the layer"),
        (q > 0 and T == n - q, "you returned only the window; return the store dequantized, then the window"),
        (q > 0 and T == q, "you returned only the quantized store; the window's tokens follow it"),
        (T is not None and others and T == n + others,
         "it holds the tokens of every layer: one state for all layers; keep a window and a store per "
         "layer (index them with `layer`)"),
        (T is not None and T > n,
         "it holds more tokens than this layer was given: one state for all layers (use the layer index), "
         "or caches that share state (class attributes, module-level variables)"),
        (T is not None and T < n,
         "tokens were lost: every token must be kept exactly once, in the store (once quantized) or in "
         "the window"),
    ]  # fmt: skip
    hint = next((h for ok, h in hints if ok), "")
    raise CheckFailed(
        f"{driver.where(layer)}: {name} must have shape {tuple(want.shape)}, got {tuple(got.shape)}"
        + (f": {hint}" if hint else "")
    )


def _check_bytes(cache: Any, cfg: _Config, lengths: list[int], ref: Any) -> None:
    """nbytes() equals the formula, and so do the bytes of the tensors reachable from the object."""
    from kvlib.memory import cache_nbytes, quantized_kv_cache_bytes

    def formula(n: int) -> int:
        return quantized_kv_cache_bytes(
            1, cfg.KV, cfg.D, n, cfg.B, cfg.bits, cfg.group_size, cfg.residual, dtype=cfg.dtype
        )

    want = sum(formula(n) for n in lengths)
    assert want == ref.nbytes(), "kvlib's formula and QuantizedKVCache disagree"  # the grader's own sanity
    where = f"{cfg.label()}, after {lengths[0]} tokens per layer ({cfg.quantized(lengths[0])} quantized)"
    got = _nbytes(cache)
    if got != want:
        raise CheckFailed(
            f"{where}: nbytes() must be {want}, got {got}: {_nbytes_hint(got, want, cfg, lengths)}"
        )
    measured = cache_nbytes(cache)
    if measured == want:
        return
    if measured > want:
        cause = (
            "tensors it keeps are views of larger storages (a slice of the old window, or of the caller's "
            "k), which keep tokens that aged out alive: .clone() a slice you keep"
            if _holds_views(cache)
            else "it keeps full-precision copies beside the quantized store (the dequantized tokens, or "
            "k_all/v_all kept for the next call): a cache that holds dequantized copies saves nothing. Keep "
            "only the QuantizedTensors and the window"
        )
    elif measured == 0:
        cause = (
            "no tensor is reachable from the object: caches that keep their tokens in class attributes or "
            "module-level variables share state; keep the windows and stores on self (created in __init__)"
        )
    else:
        cause = (
            "some of what it stores is not reachable from the object (class attributes, module-level lists)"
        )
    raise CheckFailed(
        f"{where}: the tensors reachable from your cache hold {measured} bytes, but what KIVI stores (and "
        f"what your nbytes() reports) is {want}: {cause}"
    )


def _nbytes_hint(got: int, want: int, cfg: _Config, lengths: list[int]) -> str:
    b = torch.empty(0, dtype=cfg.dtype).element_size()
    row = cfg.B * cfg.KV * cfg.D * b  # one token of keys (or values), all rows and heads, full precision
    quantized = [cfg.quantized(n) for n in lengths]
    window = sum(2 * (n - q) * row for n, q in zip(lengths, quantized))
    full = sum(2 * n * row for n in lengths)
    hints = [
        (any(quantized) and got == full,
         "every token is counted at full precision: the quantized tokens are kept as dequantized float "
         "copies (fake quantization: it saves nothing). Keep the QuantizedTensors and add their nbytes()"),
        (any(quantized) and got == window,
         "only the window is counted; add the QuantizedTensors' nbytes() (keys and values)"),
        (window > 0 and got == want - window, "only the quantized store is counted; add the window's bytes"),
        (len(lengths) > 1 and got * len(lengths) == want,
         "only one layer is counted; add every layer's bytes"),
    ]  # fmt: skip
    return next(
        (h for ok, h in hints if ok),
        "count the QuantizedTensors' nbytes() (codes, scales and minimums of keys and values) plus the "
        "window's keys and values (numel * element_size), over every layer",
    )


def _holds_views(cache: Any) -> bool:
    from kvlib.memory import iter_tensors

    return any(t.untyped_storage().nbytes() > t.numel() * t.element_size() for t in iter_tensors(cache))


# --- scenarios ------------------------------------------------------------------------------------------


def _scenario(cls: Any, cfg: _Config, steps: list[int], seed: int, transposed: bool = False) -> _Driver:
    driver = _Driver(cls, cfg, seed)
    driver.transposed = transposed
    for n_new in steps:
        driver.step(n_new)
    return driver


def _value_groups_error(cls: Any) -> None:
    """G that does not divide D: values use the whole head_dim (quantize would refuse G)."""
    cfg = _Config(2, 2, 4, 2, B=1, KV=2, D=6)
    try:
        _scenario(cls, cfg, [10, 1, 1, 3], seed=44)
    except CheckFailed as exc:
        if "must divide" in str(exc) or "divisible" in str(exc):
            raise CheckFailed(
                f"{exc}. When group_size does not divide head_dim, values are quantized per token over the "
                "whole head_dim: Gv = group_size if it divides D, else D"
            ) from None
        raise


def _reset_case(cls: Any) -> None:
    cfg = _Config(2, 2, 4, 3, B=2, KV=2, D=8)
    driver = _scenario(cls, cfg, [13, 1], seed=50)
    driver.reset()
    for n_new in (2, 9, 1):  # the same shapes again: a new sequence, compared with a fresh reference
        try:
            driver.step(n_new)
        except CheckFailed as exc:
            raise CheckFailed(
                f"after reset(), a new sequence: {exc} (reset() must forget every token of every layer: "
                "the windows AND the quantized stores)"
            ) from None
    driver.reset()


def _two_instances(cls: Any) -> None:
    """Two caches used in turn keep their own tokens (no state in class attributes or defaults)."""
    cfg = _Config(2, 2, 4, 2, B=1, KV=2, D=8)
    sizes = [7, 1, 5, 1]

    made: list[_Driver] = []

    def make() -> _Driver:
        label = "a second new KIVICache" if made else "a new KIVICache"
        made.append(_Driver(cls, cfg, seed=60 + len(made), label=label))
        return made[-1]

    def step(driver: _Driver, which: int, i: int) -> None:
        driver.step(sizes[i] + which)

    interleaved(make, step, len(sizes), "KIVICache")


def _in_the_model(cls: Any) -> None:
    """The shipped GQA model decodes through the learner's cache exactly as through kvlib's."""
    from kvlib.model import load_model

    model = load_model("shakespeare-gqa")
    L = model.config.num_layers
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=generator(70))
    cfg = _Config(L, 2, 4, 3, B=2, KV=model.config.num_kv_heads, D=model.config.head_dim)
    yours = _make(cls, cfg)
    ref = _reference(cfg)
    chunks = [(0, 9)] + [(t, t + 1) for t in range(9, 12)]  # a 9-token prompt, then one token at a time
    with torch.no_grad():
        for start, end in chunks:
            want = model(ids[:, start:end], cache=ref)
            got = call(model, ids[:, start:end], cache=yours, what="the model with your KIVICache")
            assert_close(
                got, want,
                f"shakespeare-gqa's logits for tokens {start}..{end - 1} with your KIVICache({L}, bits=2, "
                "group_size=4, residual=3) as its cache",
                "the cache works alone but not inside the model: update is called once per layer per "
                "forward pass, and seq_len gives the positions of the new tokens",
                atol=1e-4, rtol=1e-4,
            )  # fmt: skip
    _check_bytes(yours, cfg, [12] * L, ref)


_VISIBLE = _Config(2, 2, 4, 4, B=2, KV=2, D=8)


@graded("KIVICache", *REFERENCES)
def kivi_cache_visible(cls: Any) -> None:
    """A batch of 2, 2 KV heads, a 9-token prompt then small steps: groups age out of the window."""
    _scenario(cls, _VISIBLE, [9, 1, 1, 1, 2, 3], seed=1)
    print("kivi_cache: visible tests passed")


_HIDDEN: tuple[tuple[_Config, list[int], bool], ...] = (
    # a long prompt (many groups at once), then one token at a time, inputs as a model's transposed views
    (_Config(2, 4, 4, 3, B=2, KV=2, D=8), [23, 1, 1, 1, 1, 1], True),
    # chunks that cross group boundaries, a residual that is not a multiple of G
    (_Config(1, 2, 4, 5, B=1, KV=3, D=8), [3, 3, 3, 3, 3, 3], False),
    # residual 0: every full group is quantized at once
    (_Config(2, 8, 2, 0, B=2, KV=1, D=4), [5, 1, 1, 2], False),
    # past the visible sizes: head_dim 64, groups of 32, a 100-token prompt
    (_Config(1, 2, 32, 16, B=2, KV=2, D=64), [100, 1, 33], False),
    # fp16 and bf16 in, the same dtype out (scales and minimums stored in it too)
    (_Config(2, 4, 4, 3, B=2, KV=2, D=8, dtype=torch.float16), [9, 1, 1, 4], False),
    (_Config(2, 2, 4, 6, B=1, KV=2, D=8, dtype=torch.bfloat16), [11, 2, 1, 7], True),
    # the defaults: bits=2, group_size=32, residual=128 (a group ages at the 160th token)
    (_Config(1, 2, 32, 128, B=1, KV=1, D=32, defaults=True), [150, 1, 9], False),
)


@graded("KIVICache", *REFERENCES)
def kivi_cache_hidden(cls: Any) -> None:
    _scenario(cls, _VISIBLE, [9, 1, 1, 1, 2, 3], seed=1)
    _two_instances(cls)  # first: shared state would otherwise fail later scenarios with vaguer messages
    for i, (cfg, steps, transposed) in enumerate(_HIDDEN):
        _scenario(cls, cfg, steps, seed=10 + i, transposed=transposed)
    _value_groups_error(cls)
    _reset_case(cls)
    _in_the_model(cls)
    print("kivi_cache: hidden tests passed")
