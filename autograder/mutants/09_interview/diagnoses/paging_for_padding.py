# MISTAKE: padded static batches "fixed" by paging alone (finished rows still wait for the batch)
# EXPECT: paging alone
def diagnoses() -> dict:
    return {
        "A": ("padding in variable-length batches", "paged KV: fixed-size blocks allocated on demand"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "D": (
            "preemption: KV memory too small for the load",
            "an 8-bit KV cache (twice the tokens per GiB)",
        ),
    }
