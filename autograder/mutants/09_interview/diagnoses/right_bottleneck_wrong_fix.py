# MISTAKE: the preempting server diagnosed right, but "fixed" by hiding the host copies
# EXPECT: the bottleneck is right
def diagnoses() -> dict:
    return {
        "A": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "D": ("preemption: KV memory too small for the load", "overlap host-device copies with compute"),
    }
