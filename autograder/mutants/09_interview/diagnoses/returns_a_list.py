# MISTAKE: returns the pairs as a list in report order instead of a dict keyed by letter
# EXPECT: must return a dict
def diagnoses() -> dict:
    return [
        ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        ("preemption: KV memory too small for the load", "an 8-bit KV cache (twice the tokens per GiB)"),
    ]
