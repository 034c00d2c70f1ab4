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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kvlib.attention import causal_attention, repeat_kv

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL_NAMES: tuple[str, ...] = ("shakespeare-mha", "shakespeare-gqa")


@dataclass
class ModelConfig:
    """Hyper-parameters of a TinyDecoder (field names are ours; ``to_hf_config`` maps them to Llama's)."""

    vocab_size: int = 1024
    dim: int = 256  # model width C
    n_layers: int = 6
    n_heads: int = 8  # query heads
    n_kv_heads: int = 8  # key/value heads (n_heads: MHA, 1: MQA, in between: GQA)
    ffn_dim: int = 704  # SwiGLU hidden width
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelConfig:
        """Build from a Llama ``config.json`` dict (``rope_parameters`` or the older ``rope_theta``)."""
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"only default RoPE is supported, got rope_parameters={rope}")
        if cfg.get("head_dim") not in (None, cfg["hidden_size"] // cfg["num_attention_heads"]):
            raise ValueError("head_dim must equal hidden_size // num_attention_heads")
        return cls(
            vocab_size=cfg["vocab_size"],
            dim=cfg["hidden_size"],
            n_layers=cfg["num_hidden_layers"],
            n_heads=cfg["num_attention_heads"],
            n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            ffn_dim=cfg["intermediate_size"],
            max_seq_len=cfg["max_position_embeddings"],
            rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
            norm_eps=cfg.get("rms_norm_eps", 1e-6),
            tie_embeddings=cfg.get("tie_word_embeddings", False),
        )

    def to_hf_config(self) -> dict[str, Any]:
        """A ``config.json`` dict that ``transformers`` loads as ``LlamaForCausalLM`` (transformers 5)."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
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
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[..., None] * inv_freq  # (..., T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, D)
    angles = angles[None, None] if positions.dim() == 1 else angles[:, None]  # (1|B, 1, T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+D/2}) of x [B, H, T, D] by its angle: x*cos + rotate_half(x)*sin."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, D/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, H, T, D)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention with RoPE and an optional KV cache."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: Any = None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, T_all, D): everything cached so far
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, T_all, D)
        if self.training and cache is None:
            # Training only: PyTorch's fused kernel computes the same thing as causal_attention, faster.
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        else:
            out = causal_attention(q, k, v)  # (B, H, T, D); queries are the last T cached positions
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*D)
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

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: Any = None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyDecoder(nn.Module):
    """The course's decoder. ``forward(input_ids, positions=None, cache=None) -> float32 logits``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 style: scale residual projections by depth
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        """Distinct parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, cache: Any = None
    ) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V] (float32).

        positions: LongTensor [T] or [B, T], the absolute position of each input token (RoPE angle).
        Default: ``cache.seq_len + arange(T)`` with a cache (continue where the cache stopped), else
        ``arange(T)``. With a cache, every layer stores its new keys/values and attends over all of them.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if positions is None:
            offset = cache.seq_len if cache is not None else 0
            positions = torch.arange(offset, offset + T, device=input_ids.device)  # (T,)
        if positions.shape not in ((T,), (B, T)):
            raise ValueError(f"positions must be [T]={T} or [B, T]={B, T}, got {tuple(positions.shape)}")
        x = self.embed_tokens(input_ids)  # (B, T, C)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, cache)
        return self.lm_head(self.norm(x)).float()  # (B, T, V)

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
        """Write ``config.json`` and ``model.safetensors`` (weights cast to ``dtype``) into ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_hf_config() | {"dtype": str(dtype).removeprefix("torch.")}
        (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tensors = {k: v.detach().to(dtype).contiguous() for k, v in self.hf_state_dict().items()}
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, dtype: torch.dtype = torch.float32) -> TinyDecoder:
        """Load a checkpoint folder (or a name in :data:`MODEL_NAMES`) in eval mode, weights in ``dtype``."""
        from safetensors.torch import load_file

        path = Path(path_or_name)
        if not path.is_dir():
            path = checkpoint_path(str(path_or_name))
        config = ModelConfig.from_hf_config(json.loads((path / "config.json").read_text()))
        model = cls(config)
        tensors = load_file(str(path / "model.safetensors"))
        state = {k.removeprefix("model."): v for k, v in tensors.items()}
        if config.tie_embeddings:
            state["lm_head.weight"] = state["embed_tokens.weight"]
        model.load_state_dict(state, strict=True)
        return model.to(dtype).eval()


def checkpoint_path(name: str) -> Path:
    """Folder of a shipped checkpoint, e.g. ``checkpoint_path("shakespeare-gqa")``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    path = ASSETS / name
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"checkpoint {path} is missing; train it with `python -m kvlib.train`")
    return path


def load_model(name: str = "shakespeare-mha", dtype: torch.dtype = torch.float32) -> TinyDecoder:
    """A shipped checkpoint as a TinyDecoder in eval mode."""
    return TinyDecoder.from_pretrained(checkpoint_path(name), dtype=dtype)


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
    "apply_rope",
    "rope_cos_sin",
]
