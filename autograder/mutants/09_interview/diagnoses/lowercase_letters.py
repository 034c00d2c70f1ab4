# MISTAKE: keys the answer by lowercase letters, not the capitals the reports are printed under
# EXPECT: capital letters
def diagnoses() -> dict:
    return {
        "a": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "b": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "c": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "d": (
            "preemption: KV memory too small for the load",
            "an 8-bit KV cache (twice the tokens per GiB)",
        ),
    }
