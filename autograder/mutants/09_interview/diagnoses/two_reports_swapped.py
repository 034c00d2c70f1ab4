# MISTAKE: the answers of two reports exchanged (read A's numbers as C's and C's as A's)
# EXPECT: is not what report A shows
def diagnoses() -> dict:
    return {
        "A": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "D": (
            "preemption: KV memory too small for the load",
            "an 8-bit KV cache (twice the tokens per GiB)",
        ),
    }
