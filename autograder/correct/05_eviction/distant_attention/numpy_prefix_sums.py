# VALID: NumPy in float64 with prefix sums along the keys, one KV head at a time, heads picked by h // G; returns a float32 tensor
import numpy as np


def distant_attention(weights: torch.Tensor, num_kv_heads: int, num_sinks: int, window: int) -> torch.Tensor:
    w = weights.detach().to(torch.float64).numpy()
    B, H, T, _ = w.shape
    G = H // num_kv_heads
    prefix = np.concatenate([np.zeros((B, H, T, 1)), np.cumsum(w, axis=-1)], axis=-1)  # prefix[..., j] = keys < j
    queries = np.arange(num_sinks + window + 1, T)
    lost = prefix[:, :, queries, queries - window] - prefix[:, :, queries, num_sinks]  # (B, H, n)
    scores = []
    for g in range(num_kv_heads):
        heads = [h for h in range(H) if h // G == g]
        scores.append(lost[:, heads, :].mean())
    return torch.tensor(scores, dtype=torch.float32)
