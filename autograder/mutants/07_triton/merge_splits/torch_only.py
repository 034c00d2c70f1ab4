# MISTAKE: merges the splits with torch operations instead of writing a Triton kernel
# EXPECT: no Triton kernel was launched
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
def merge_splits(partials: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """Merge split-K partial results."""
    w = torch.exp2(lse - lse.amax(dim=-1, keepdim=True))  # (batch, heads, splits)
    return (w[..., None] * partials).sum(dim=2) / w.sum(dim=-1, keepdim=True)
