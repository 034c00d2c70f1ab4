# VALID: labels typed with other capitals and spacing, the dict built with zip
def diagnoses() -> dict:
    bottlenecks = [
        "Padding in variable-length batches",
        "Prefix  cache thrashing",
        "FRAGMENTED contiguous KV allocation",
        " preemption: KV memory too small for the load ",
    ]
    fixes = [
        "Continuous batching of unpadded sequences",
        "serve requests that share a prefix back to back",
        "Paged KV: fixed-size blocks allocated on demand",
        "an 8-bit KV cache (twice the tokens per GiB)",
    ]
    return dict(zip("ABCD", zip(bottlenecks, fixes)))
