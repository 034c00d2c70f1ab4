# VALID: pairs as namedtuples (a tuple subclass), labels looked up in the menus with .index
from collections import namedtuple

Pair = namedtuple("Pair", "bottleneck fix")


def diagnoses() -> dict:
    raw = {
        "A": ("padding in variable-length batches", "continuous batching of unpadded sequences"),
        "B": ("prefix cache thrashing", "serve requests that share a prefix back to back"),
        "C": ("fragmented contiguous KV allocation", "paged KV: fixed-size blocks allocated on demand"),
        "D": ("preemption: KV memory too small for the load", "an 8-bit KV cache (twice the tokens per GiB)"),
    }
    return {k: Pair(BOTTLENECKS[BOTTLENECKS.index(b)], FIXES[FIXES.index(f)]) for k, (b, f) in raw.items()}
