# MISTAKE: loads the partials without the head_dim mask (reads the next split's or head's numbers)
# EXPECT: past head_dim
# NEEDS: interpreter (only the load trace of Triton's CPU interpreter catches it; compiled on a GPU it passes)
@triton.jit
def merge_kernel(part_ptr, lse_ptr, out_ptr, num_splits,
                 stride_pb, stride_ph, stride_ps, stride_lb, stride_lh, stride_ob, stride_oh,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    s_mask = s < num_splits
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + s, mask=s_mask, other=float("-inf"))
    w = tl.exp2(lse - tl.max(lse, axis=0))  # each split's share, relative to the largest
    part = tl.load(part_ptr + b * stride_pb + h * stride_ph + s[:, None] * stride_ps + d[None, :],
                   mask=s_mask[:, None], other=0.0)
    out = tl.sum(part * w[:, None], axis=0) / tl.sum(w, axis=0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out, mask=d < HEAD_DIM)
def merge_splits(partials: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """Merge split-K partial results with a Triton kernel (one program per (sequence, head)).

    partials: float32 (batch, num_heads, num_splits, head_dim); partials[b, h, s] is the attention
              output over split s's tokens alone (normalised within that split).
    lse:      float32 (batch, num_heads, num_splits), each split's log-sum-exp of its scores
              IN BASE 2 (log2 of sum 2^score); -inf for an empty split (weight 0; its partial holds zeros).
              Each (b, h) has at least one finite entry.
    num_splits and head_dim may be any size >= 1. Inputs are not modified.
    Returns float32 (batch, num_heads, head_dim): sum_s w_s * partials[..., s, :] / sum_s w_s with
    w_s = 2^(lse_s - max_s lse_s), so lse values of 1e4 do not overflow.
    """
    batch, num_heads, num_splits, head_dim = partials.shape
    out = torch.empty((batch, num_heads, head_dim), dtype=torch.float32, device=partials.device)
    merge_kernel[(batch, num_heads)](
        partials, lse, out, num_splits,
        partials.stride(0), partials.stride(1), partials.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim),
        BLOCK_S=max(2, triton.next_power_of_2(num_splits)),
    )
    return out
