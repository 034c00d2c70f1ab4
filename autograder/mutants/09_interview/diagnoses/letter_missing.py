# MISTAKE: answers three reports and forgets the fourth
# EXPECT: missing the letter
def diagnoses() -> dict:
    return {
        "A": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
    }
