# MISTAKE: the pairs come from a module-level iterator, so a second call finds it used up
# EXPECT: empty dict
ANSWERS = iter(
    [
        ("A", ("padding in variable-length batches", "continuous batching of unpadded sequences")),
        ("B", ("prefix cache thrashing", "serve requests that share a prefix back to back")),
        ("C", ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand")),
        ("D", ("preemption: KV memory too small for the load", "an 8-bit KV cache (twice the tokens per GiB)")),
    ]
)


def diagnoses() -> dict:
    return dict(ANSWERS)
