# MISTAKE: caches the lost-key mask in a module-level dict keyed by T alone, so a later call with other num_sinks/window reuses a stale mask
# EXPECT: must depend on T, num_sinks and window
_MASKS = {}


def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    B, H, T, _ = weights.shape
    G = H // num_kv_heads
    if T not in _MASKS:
        p = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        _MASKS[T] = ((j >= num_sinks) & (j < p - window)).float()
    first = num_sinks + window + 1
    lost = (weights.float() * _MASKS[T]).sum(-1)[:, :, first:]
    return lost.reshape(B, num_kv_heads, G, T - first).mean(dim=(0, 2, 3))
