# VALID: one per-token routine in float64, reused on x.transpose(-1, -2) for the channel layout; no clamp (lo and hi are the group's own min and max, so the codes stay in 0..L); a tiny floor instead of a where for constant groups
import torch


def _fake_quantize_rows(x: torch.Tensor, levels: int, group_size: int) -> torch.Tensor:
    *lead, rows, n = x.shape
    groups = x.reshape(*lead, rows, n // group_size, group_size)
    lo = groups.min(dim=-1, keepdim=True).values
    hi = groups.max(dim=-1, keepdim=True).values
    scale = ((hi - lo) / levels).clamp(min=1e-30)
    return (torch.round((groups - lo) / scale) * scale + lo).reshape(x.shape)


def layout_errors(x: torch.Tensor, bits: int, group_size: int) -> dict[str, float]:
    x64 = x.double()
    levels = 2**bits - 1
    per_token = _fake_quantize_rows(x64, levels, group_size)
    per_channel = _fake_quantize_rows(x64.transpose(-1, -2), levels, group_size).transpose(-1, -2)
    norm = torch.linalg.vector_norm(x64)
    return {
        "per_token": float(torch.linalg.vector_norm(x64 - per_token) / norm),
        "per_channel": float(torch.linalg.vector_norm(x64 - per_channel) / norm),
    }
