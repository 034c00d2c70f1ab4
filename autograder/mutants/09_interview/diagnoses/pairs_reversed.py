# MISTAKE: each pair written (fix, bottleneck) instead of (bottleneck, fix)
# EXPECT: each pair is (bottleneck, fix)
def diagnoses() -> dict:
    return {
        "A": ("continuous batching of unpadded sequences", "padding in variable-length batches"),
        "B": ("serve requests that share a prefix back to back", "prefix cache thrashing"),
        "C": ("paged KV: fixed-size blocks allocated on demand", "fragmented contiguous KV allocation"),
        "D": (
            "an 8-bit KV cache (twice the tokens per GiB)",
            "preemption: KV memory too small for the load",
        ),
    }
