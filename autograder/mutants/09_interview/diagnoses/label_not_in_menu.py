# MISTAKE: writes a label in its own words instead of copying it from the menu
# EXPECT: is not one of the labels in BOTTLENECKS
def diagnoses() -> dict:
    return {
        "A": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "B": ("cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "D": (
            "preemption: KV memory too small for the load",
            "an 8-bit KV cache (twice the tokens per GiB)",
        ),
    }
