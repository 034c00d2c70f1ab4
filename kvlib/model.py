"""TinyDecoder: a Llama-style decoder written to be read, with an explicit KV cache and explicit positions.

The architecture is Llama's (and the shipped checkpoints are ``LlamaForCausalLM`` checkpoints):

    x = embed(ids)                                              # (B, T, C)
    for each layer:
        x = x + Attention(RMSNorm(x))                           # RoPE on q and k, causal, MHA or GQA
        x = x + MLP(RMSNorm(x))                                 # SwiGLU: down(silu(gate(x)) * up(x))
    logits = lm_head(RMSNorm(x))                                # (B, T, V), float32

What is different from a training-oriented implementation is the interface of ``forward``:
``positions`` (the absolute index of every input token, given to RoPE) and ``cache`` (any object with
the :class:`kvlib.cache.base.KVCache` interface) are explicit, so the chapters can swap caches and
reason about positions (prefill at offset 0, decode step t at offset t, positions after eviction).

Parameter names follow Hugging Face's Llama (``self_attn.q_proj`` ...) so a checkpoint's tensors load
one to one (HF puts everything but ``lm_head`` under a ``model.`` prefix).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kvlib.attention import repeat_kv
from kvlib.cache.base import ForwardBatch, attend, rotates_keys
from kvlib.compat import old_field_names
from kvlib.validate import describe, require_bool, require_int, require_number, require_tensor

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL_NAMES: tuple[str, ...] = ("shakespeare-mha", "shakespeare-gqa")


@old_field_names  # n_layers, n_heads, n_kv_heads still work: learners wrote code against them
@dataclass
class ModelConfig:
    """Hyper-parameters of a TinyDecoder (field names are ours; ``to_hf_config`` maps them to Llama's)."""

    vocab_size: int = 1024
    dim: int = 256  # model width C
    num_layers: int = 6
    num_heads: int = 8  # query heads
    num_kv_heads: int = 8  # key/value heads (num_heads: MHA, 1: MQA, in between: GQA)
    ffn_dim: int = 704  # SwiGLU hidden width
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (TypeError/ValueError naming it). Run at construction and again by
        TinyDecoder, since a dataclass field edited afterwards (``cfg.num_heads = 3``) is not re-checked."""
        # Normalise numpy ints to Python ints too: the config is written to JSON by save_pretrained.
        positive_ints = (
            "vocab_size",
            "dim",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "ffn_dim",
            "max_seq_len",
        )
        for name in positive_ints:
            setattr(self, name, require_int(name, getattr(self, name), minimum=1))
        self.rope_theta = require_number("rope_theta", self.rope_theta, minimum=0, inclusive=False)
        self.norm_eps = require_number("norm_eps", self.norm_eps, minimum=0)
        self.tie_embeddings = require_bool("tie_embeddings", self.tie_embeddings)
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be divisible by num_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelConfig:
        """Build from a Llama ``config.json`` dict (``rope_parameters`` or the older ``rope_theta``).

        Errors name the config.json key. Without a ``head_dim`` key, head_dim is
        ``hidden_size // num_attention_heads`` (Llama's rule).
        """
        if not isinstance(cfg, dict):
            raise TypeError(f"a Llama config must be a JSON object (dict), got {describe(cfg)}")
        missing = [key for key in _HF_REQUIRED if key not in cfg]
        if missing:
            raise ValueError(f"config is missing {missing}; a Llama config.json needs {list(_HF_REQUIRED)}")
        ints = {key: require_int(key, cfg[key], minimum=1) for key in _HF_REQUIRED}
        num_heads = ints["num_attention_heads"]
        raw_kv_heads = cfg.get("num_key_value_heads")
        num_kv_heads = (
            num_heads if raw_kv_heads is None else require_int("num_key_value_heads", raw_kv_heads, minimum=1)
        )
        rope = cfg.get("rope_parameters") or {}
        if not isinstance(rope, dict) or rope.get("rope_type", "default") != "default":
            raise ValueError(f"only default RoPE is supported, got rope_parameters={rope}")
        # checked here so that the error names the config.json key, not our field name
        rope_key = "rope_parameters.rope_theta" if "rope_theta" in rope else "rope_theta"
        rope_theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
        rope_theta = require_number(rope_key, rope_theta, minimum=0, inclusive=False)
        norm_eps = require_number("rms_norm_eps", cfg.get("rms_norm_eps", 1e-6), minimum=0)
        tied = require_bool("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
        derived = ints["hidden_size"] // num_heads
        if cfg.get("head_dim") is not None and require_int("head_dim", cfg["head_dim"], minimum=1) != derived:
            raise ValueError(
                f"head_dim must equal hidden_size // num_attention_heads = {ints['hidden_size']} // "
                f"{num_heads} = {derived}, got head_dim={cfg['head_dim']}"
            )
        return cls(
            vocab_size=ints["vocab_size"],
            dim=ints["hidden_size"],
            num_layers=ints["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            ffn_dim=ints["intermediate_size"],
            max_seq_len=ints["max_position_embeddings"],
            rope_theta=rope_theta,
            norm_eps=norm_eps,
            tie_embeddings=tied,
        )

    def to_hf_config(self) -> dict[str, Any]:
        """A ``config.json`` dict that ``transformers`` loads as ``LlamaForCausalLM`` (transformers 5)."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_seq_len,
            "rms_norm_eps": self.norm_eps,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "tie_word_embeddings": self.tie_embeddings,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": 0,
            "eos_token_id": 0,
        }

    def weight_layout(self) -> dict[str, Any]:
        """The config.json keys that fix the weights' layout, saved beside the tensors by save_pretrained.

        Tensor shapes alone cannot pin these down: 8 heads of 32 and 16 heads of 16 have the same
        [256, 256] projections, so an edited config.json would load and compute wrong logits.
        """
        hf = self.to_hf_config()
        return {key: hf[key] for key in _LAYOUT_KEYS}


_HF_REQUIRED = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings",
)  # fmt: skip
_LAYOUT_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "tie_word_embeddings",
)  # fmt: skip
LAYOUT_METADATA_KEY = "kvlib.weight_layout"  # safetensors metadata entry written by save_pretrained


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32 (as Llama does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles ``pos * theta^(-2i/D)``, shaped to broadcast over [B, H, T, D].

    positions [T] -> (1, 1, T, D); positions [B, T] -> (B, 1, T, D). Angles are computed in float32.
    Frequency i is used twice (for dims i and i + D/2): Llama rotates the pair (x_i, x_{i+D/2}).
    """
    _check_rope_args(positions, head_dim, theta, dtype)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[..., None] * inv_freq  # (..., T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, D)
    angles = angles[None, None] if positions.dim() == 1 else angles[:, None]  # (1|B, 1, T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _check_rope_args(positions: Any, head_dim: Any, theta: Any, dtype: Any) -> None:
    """Metadata only (no device sync): rope_cos_sin runs once per forward."""
    require_tensor("positions", positions, layout="[T] or [B, T] of token positions")
    if positions.dim() not in (1, 2) or positions.dtype == torch.bool or positions.is_complex():
        raise ValueError(
            f"positions must be a real tensor [T] or [B, T], "
            f"got shape {list(positions.shape)} {positions.dtype}"
        )
    head_dim = require_int("head_dim", head_dim, minimum=2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE (it rotates pairs of dims), got {head_dim}")
    require_number("theta", theta, minimum=0, inclusive=False)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        # an integer dtype would round every cos/sin to 0 or 1 and rotate nothing
        raise TypeError(
            f"dtype must be a floating-point torch.dtype such as torch.float32, got {describe(dtype)}"
        )


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+D/2}) of x [B, H, T, D] by its angle: x*cos + rotate_half(x)*sin.

    cos and sin come from :func:`rope_cos_sin` and end in the same (T, D) as x.
    """
    _check_rope_shapes(x, cos, sin)
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, D/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, H, T, D)
    return x * cos + rotated * sin


def _check_rope_shapes(x: Any, cos: Any, sin: Any) -> None:
    """Metadata only: apply_rope runs twice per layer per forward."""
    require_tensor("x", x, 4, "[B, H, T, D]")
    if x.shape[-1] % 2:
        raise ValueError(f"x must have an even last dim D (RoPE rotates pairs), got shape {list(x.shape)}")
    for name, t in (("cos", cos), ("sin", sin)):
        require_tensor(name, t, layout="[1|B, 1, T, D] from rope_cos_sin")
        if t.dim() != 4 or t.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"{name} must be [1|B, 1, T, D] with (T, D) = {tuple(x.shape[-2:])} as in x "
                f"{list(x.shape)}, got shape {list(t.shape)}"
            )


class Attention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention with RoPE; the cache produces the output.

    The layer projects q, k, v, rotates them by RoPE and hands them to :func:`kvlib.cache.base.attend`:
    a plain cache stores k, v and returns everything it holds to attend over; a paged, quantized or
    evicting cache may attend its own way. That one call is the whole contract with the cache.
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, cache: Any = None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if not rotates_keys(cache):  # a StreamingLLM-style cache rotates them at positions of its own
            q, k = apply_rope(q, batch.cos, batch.sin), apply_rope(k, batch.cos, batch.sin)
        if self.training and cache is None:
            # Training only: PyTorch's fused kernel computes the same thing as causal_attention, faster.
            n_rep = self.num_heads // self.num_kv_heads
            out = F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)
        else:
            out = attend(cache, self.layer_idx, q, k, v, batch)  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)
        return self.o_proj(out)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, cache: Any = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), batch, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyDecoder(nn.Module):
    """The course's decoder. ``forward(input_ids, positions=None, cache=None) -> float32 logits``.

    ``allow_long_context`` (constructor keyword and attribute, default False): positions at or past
    ``config.max_seq_len`` were never seen in training and give silently worse logits, so ``forward``
    raises on them. A chapter that extends the context sets ``model.allow_long_context = True`` on purpose.
    A cache with ``rotates_keys`` (StreamingLLM) picks the RoPE angles itself, so it needs no such flag.
    """

    def __init__(self, config: ModelConfig, *, allow_long_context: bool = False) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {describe(config)}")
        config.validate()  # a field edited after construction would otherwise build a wrong model
        self.config = config
        self.allow_long_context = allow_long_context
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 style: scale residual projections by depth
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.num_layers))

    @property
    def allow_long_context(self) -> bool:
        return self._allow_long_context

    @allow_long_context.setter
    def allow_long_context(self, value: bool) -> None:
        # a string such as "no" is truthy and would switch the context check off
        self._allow_long_context = require_bool("allow_long_context", value)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        """Distinct parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: Any = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V] (float32).

        positions: LongTensor [T] or [B, T], the absolute position of each input token (RoPE angle).
        Default: ``cache.seq_len + arange(T)`` with a cache (continue where the cache stopped), else
        ``arange(T)``. With a cache, every layer hands its new keys/values to the cache, which
        produces the attention output (:func:`kvlib.cache.base.attend`).

        lengths: LongTensor [B], a ragged batch: row b holds ``lengths[b]`` real tokens (1..T) followed
        by padding, each row at its own ``positions[b]``. The logits of padding are meaningless. Only
        a cache with per-row lengths (``kvlib.paged.PagedKVCache``) can store such a batch.
        """
        require_tensor("input_ids", input_ids, layout="[B, T] of token ids (torch.long)")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if cache is not None:
            require_cache(cache, num_layers=self.config.num_layers)  # before any layer writes to it
        if positions is None:
            offset = _next_position(cache)
            positions = torch.arange(offset, offset + T, device=input_ids.device)  # (T,)
        require_tensor("positions", positions, layout="[T] or [B, T] (torch.long)")
        if positions.shape not in ((T,), (B, T)):
            raise ValueError(f"positions must be [T]={T} or [B, T]={B, T}, got {tuple(positions.shape)}")
        # a cache that rotates keys itself picks the angles, so the stream's positions may pass the context
        self._check_values(
            input_ids, positions, long_context_ok=self.allow_long_context or rotates_keys(cache)
        )
        if lengths is not None:
            _check_lengths(lengths, B, T, input_ids.device)
        x = self.embed_tokens(input_ids)  # (B, T, C)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        batch = ForwardBatch(positions.expand(B, T), lengths, cos, sin, self.config.rope_theta)
        for layer in self.layers:
            x = layer(x, batch, cache)
        return self.lm_head(self.norm(x)).float()  # (B, T, V)

    def _check_values(self, input_ids: torch.Tensor, positions: torch.Tensor, long_context_ok: bool) -> None:
        """dtypes, devices and ranges of the inputs, checked once per forward (one device sync)."""
        for name, t in (("input_ids", input_ids), ("positions", positions)):
            if t.dtype not in (torch.long, torch.int32):
                raise ValueError(f"{name} must be integers (torch.long), got dtype {t.dtype}")
        device = self.embed_tokens.weight.device
        if input_ids.device != device or positions.device != device:
            raise ValueError(
                f"input_ids ({input_ids.device}) and positions ({positions.device}) must be on the "
                f"model's device ({device})"
            )
        if input_ids.numel() == 0:
            return
        low_id, high_id, low_pos, high_pos = torch.stack(
            [input_ids.min().long(), input_ids.max().long(), positions.min().long(), positions.max().long()]
        ).tolist()
        vocab, context = self.config.vocab_size, self.config.max_seq_len
        if low_id < 0 or high_id >= vocab:
            bad = low_id if low_id < 0 else high_id
            raise ValueError(f"input_ids must be token ids in [0, vocab_size={vocab}), got id {bad}")
        if low_pos < 0:
            raise ValueError(f"positions must be >= 0, got {low_pos}")
        if high_pos >= context and not long_context_ok:
            raise ValueError(
                f"position {high_pos} is past the model's context (max_seq_len={context}: positions "
                f"0..{context - 1}); {input_ids.shape[1]} input token(s) at positions {low_pos}..{high_pos}. "
                "Set model.allow_long_context = True to go past it on purpose"
            )

    # --- checkpoints (Hugging Face Llama layout) -----------------------------------------------------------

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors under Hugging Face Llama names (``model.`` prefix; ``lm_head`` omitted when tied)."""
        out = {}
        for name, t in self.state_dict().items():
            if name == "lm_head.weight":
                if not self.config.tie_embeddings:
                    out[name] = t
            else:
                out["model." + name] = t
        return out

    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """Write ``config.json`` and ``model.safetensors`` (weights cast to ``dtype``) into ``path``.

        The safetensors header also records :meth:`ModelConfig.weight_layout`, so that loading can
        tell an edited config.json (say 16 heads of 16 instead of 8 of 32) from the one it was saved with.
        """
        from safetensors.torch import save_file

        _check_float_dtype(dtype)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_hf_config() | {"dtype": str(dtype).removeprefix("torch.")}
        (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tensors = {k: v.detach().to(dtype).contiguous() for k, v in self.hf_state_dict().items()}
        metadata = {"format": "pt", LAYOUT_METADATA_KEY: json.dumps(self.config.weight_layout())}
        save_file(tensors, str(path / "model.safetensors"), metadata=metadata)

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, dtype: torch.dtype = torch.float32) -> TinyDecoder:
        """Load a checkpoint folder (or a name in :data:`MODEL_NAMES`) in eval mode, weights in ``dtype``.

        Every mistake in the folder is one error naming the file (and the tensor): a missing folder or
        file, a config.json that is not JSON or lacks a key, a config whose layers, heads or head_dim
        disagree with the tensors (or with the layout recorded at save time), non-float or NaN/inf weights.
        """
        _check_float_dtype(dtype)
        path = _checkpoint_folder(path_or_name)
        config_file, weights_file = path / "config.json", path / "model.safetensors"
        config = _read_config(config_file)
        tensors, metadata = _read_weights(weights_file)
        model = cls(config)
        state = _checked_state(model, tensors, weights_file)
        # after the shape checks: what is left is a config the tensors cannot tell from the saved one
        _check_recorded_layout(config, metadata, config_file, weights_file)
        model.load_state_dict(state, strict=True)
        return model.to(dtype).eval()


# --- checkpoint loading: each check names the file, the tensor and what the config implies ----------------


def _check_float_dtype(dtype: Any) -> None:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float16, got {describe(dtype)}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.float16, got {dtype}")


def _checkpoint_folder(path_or_name: Any) -> Path:
    """A shipped name or an existing folder; a missing path says so and lists the shipped names."""
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(
            f"path_or_name must be a checkpoint folder or one of {MODEL_NAMES}, got {describe(path_or_name)}"
        )
    if str(path_or_name) in MODEL_NAMES:
        return checkpoint_path(str(path_or_name))
    path = Path(path_or_name)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(
            f"{path} is a file; pass the checkpoint folder that holds config.json and model.safetensors"
        )
    raise FileNotFoundError(
        f"no checkpoint folder {path} (the path does not exist) and not a shipped model: "
        f"choose one of {', '.join(MODEL_NAMES)} or a folder with config.json and model.safetensors"
    )


def _read_config(config_file: Path) -> ModelConfig:
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: a checkpoint folder needs config.json")
    try:
        raw = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_file} is not valid JSON ({exc})") from None
    try:
        return ModelConfig.from_hf_config(raw)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{config_file}: {exc}") from None


def _read_weights(weights_file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if not weights_file.is_file():
        raise FileNotFoundError(f"{weights_file} is missing: a checkpoint folder needs model.safetensors")
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except SafetensorError as exc:
        raise ValueError(f"{weights_file} is not a readable safetensors file ({exc})") from None


def _check_recorded_layout(
    config: ModelConfig, metadata: dict[str, str], config_file: Path, weights_file: Path
) -> None:
    """config.json against the layout save_pretrained recorded (files from elsewhere have none)."""
    if LAYOUT_METADATA_KEY not in metadata:
        return
    recorded = json.loads(metadata[LAYOUT_METADATA_KEY])
    for key, value in config.weight_layout().items():
        if key in recorded and recorded[key] != value:
            raise ValueError(
                f"{config_file} gives {key}={value} (with head_dim={config.head_dim}) but {weights_file} was "
                f"saved with {key}={recorded[key]}: the weights fit either, the logits would be wrong; "
                f"fix config.json"
            )


_SHAPE_HINTS = {  # which config.json keys set each tensor's shape, for the error message
    "q_proj": "num_attention_heads x head_dim, hidden_size",
    "k_proj": "num_key_value_heads x head_dim, hidden_size",
    "v_proj": "num_key_value_heads x head_dim, hidden_size",
    "o_proj": "hidden_size, num_attention_heads x head_dim",
    "gate_proj": "intermediate_size, hidden_size",
    "up_proj": "intermediate_size, hidden_size",
    "down_proj": "hidden_size, intermediate_size",
    "embed_tokens": "vocab_size, hidden_size",
    "lm_head": "vocab_size, hidden_size",
}


def _checked_state(model: TinyDecoder, tensors: dict[str, torch.Tensor], weights_file: Path) -> dict:
    """The file's tensors under the model's names, after checking names, shapes, dtypes and values."""
    state = {k.removeprefix("model."): v for k, v in tensors.items()}
    file_name = {k.removeprefix("model."): k for k in tensors}
    cfg = model.config
    if cfg.tie_embeddings and "embed_tokens.weight" in state:
        lm_head = state.get("lm_head.weight")
        if lm_head is not None and not torch.equal(lm_head, state["embed_tokens.weight"]):
            raise ValueError(
                f"{weights_file} has an lm_head.weight that differs from the embedding, but config.json "
                "says tie_word_embeddings=true (the lm_head would be ignored); set it to false"
            )
        state["lm_head.weight"] = state["embed_tokens.weight"]
    _check_names(model, state, file_name, weights_file)
    expected = model.state_dict()
    for name, t in state.items():
        where = f"tensor {file_name.get(name, name)} in {weights_file}"
        if t.shape != expected[name].shape:
            kind = name.split(".")[-2]
            hint = f" ({_SHAPE_HINTS[kind]})" if kind in _SHAPE_HINTS else " (hidden_size)"
            raise ValueError(
                f"{where} has shape {list(t.shape)} but config.json implies "
                f"{list(expected[name].shape)}{hint}"
            )
        if not t.is_floating_point():
            raise ValueError(f"{where} has dtype {t.dtype}; weights must be floating point")
        finite = torch.isfinite(t)
        if not finite.all():
            first = tuple(torch.nonzero(~finite)[0].tolist())
            raise ValueError(
                f"{where} holds {int((~finite).sum())} NaN/inf value(s), first at index {first}: "
                "the file is corrupt"
            )
    return state


def _check_names(model: TinyDecoder, state: dict, file_name: dict[str, str], weights_file: Path) -> None:
    """Missing or unexpected tensors: a layer count that disagrees is said in those words."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if not (missing or unexpected):
        return
    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    n_file = max(layers) + 1 if layers else 0
    if n_file != model.config.num_layers:
        example = f"model.{missing[0]} is missing" if missing else f"{file_name[unexpected[0]]} is unexpected"
        raise ValueError(
            f"config.json gives num_hidden_layers={model.config.num_layers} but {weights_file} holds "
            f"{n_file} layers (tensor {example})"
        )
    if missing:
        raise ValueError(f"{weights_file} has no tensor model.{missing[0]}, which config.json implies")
    raise ValueError(
        f"{weights_file} has a tensor {file_name[unexpected[0]]} that config.json does not describe"
    )


def _next_position(cache: Any) -> int:
    """Where a forward without explicit positions starts: after what the cache holds (0 without one)."""
    if cache is None:
        return 0
    if not hasattr(cache, "seq_len"):
        raise ValueError(
            f"{type(cache).__name__} keeps a length per sequence, so the model cannot guess the "
            "positions: pass positions=... (e.g. from the cache's prepare())"
        )
    return cache.seq_len


def _check_lengths(lengths: Any, batch: int, width: int, device: torch.device) -> None:
    """``lengths`` of a ragged batch: integers [B], each in [1, T] (a row has at least one real token)."""
    require_tensor("lengths", lengths, layout="[B] real tokens per row (torch.long)")
    if lengths.shape != (batch,) or lengths.dtype not in (torch.long, torch.int32):
        raise ValueError(
            f"lengths must be an integer tensor [B]={[batch]}, "
            f"got shape {list(lengths.shape)} {lengths.dtype}"
        )
    if lengths.device != device:
        raise ValueError(f"lengths is on {lengths.device} but input_ids on {device}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > width):
        raise ValueError(
            f"lengths must lie in [1, T={width}] (real tokens of each row), got {lengths.tolist()}"
        )


def require_cache(cache: Any, num_layers: int | None = None) -> None:
    """TypeError unless ``cache`` is a cache instance with the KVCache interface (update, seq_len, reset)
    or a cache that attends itself (attend, reset); ValueError if it exposes ``num_layers`` and that
    differs from the model's ``num_layers``.

    Without it a class or another object would fail deep inside forward (``'str' has no attribute``),
    and a cache with too few layers would fail at the first missing layer after the others had
    stored the new tokens (a half-written cache).
    """
    # the names of kvlib.cache.base.KVCache, checked by hand: isinstance against the runtime Protocol
    # costs about 15 us per forward, hasattr 0.5 us
    interface = ("attend", "reset") if hasattr(cache, "attend") else ("update", "seq_len", "reset")
    if isinstance(cache, type) or not all(hasattr(cache, a) for a in interface):
        what = f"the class {cache.__name__} (call it)" if isinstance(cache, type) else type(cache).__name__
        raise TypeError(
            f"cache must be a KV cache instance (update, seq_len, reset; or attend, reset), got {what}"
        )
    cache_layers = getattr(cache, "num_layers", None)
    if isinstance(num_layers, int) and isinstance(cache_layers, int) and cache_layers != num_layers:
        raise ValueError(
            f"cache has num_layers={cache_layers} but the model has {num_layers} layers; "
            f"make the cache with num_layers=model.config.num_layers"
        )


def require_cache_room(cache: Any, new_tokens: int, what: str) -> None:
    """ValueError if a cache with a fixed capacity (``max_seq_len``, e.g. StaticKVCache) cannot take
    ``new_tokens`` more tokens: found up front, not when it fills halfway through a run."""
    capacity = getattr(cache, "max_seq_len", None)
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        return
    free = capacity - cache.seq_len
    if new_tokens > free:
        raise ValueError(
            f"{what} stores {new_tokens} tokens in the cache, but it has room for {free} "
            f"(max_seq_len={capacity}, {cache.seq_len} cached); allocate a cache with "
            f"max_seq_len >= {cache.seq_len + new_tokens}"
        )


def checkpoint_path(name: str) -> Path:
    """Folder of a shipped checkpoint, e.g. ``checkpoint_path("shakespeare-gqa")``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    path = ASSETS / name
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"checkpoint {path} is missing; train it with `python -m kvlib.train`")
    return path


def load_model(name: str | Path = "shakespeare-mha", dtype: torch.dtype = torch.float32) -> TinyDecoder:
    """A shipped checkpoint (a name in :data:`MODEL_NAMES`) or a checkpoint folder, in eval mode."""
    return TinyDecoder.from_pretrained(name, dtype=dtype)


def gpt2_shaped_model(
    n_layer: int = 12,
    n_head: int = 12,
    n_embd: int = 768,
    n_positions: int = 1024,
    vocab_size: int = 50257,
    seed: int = 0,
) -> nn.Module:
    """A ``transformers.GPT2LMHeadModel`` with random weights (GPT-2 124M shape by default), for profiling.

    Built from a ``GPT2Config`` (absolute position embeddings, MHA), nothing downloaded. Eval mode.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, vocab_size=vocab_size
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


__all__ = [
    "MODEL_NAMES",
    "ModelConfig",
    "TinyDecoder",
    "checkpoint_path",
    "gpt2_shaped_model",
    "load_model",
    "require_cache",
    "require_cache_room",
    "apply_rope",
    "rope_cos_sin",
]
