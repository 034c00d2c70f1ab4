# VALID: longer sequences that still fit the slack (shortest + 2), built in a loop as tuples of tuples, with the prefix cached by decoding rather than by the prompt
def expose_bugs():
    def decode(seq_id, tokens):
        return tuple(("append", seq_id, t) for t in tokens)

    wipe = (("allocate", 0, (1, 2)),) + decode(0, [3]) + (("free", 0), ("allocate", 1, (1, 2, 3, 5)))
    shared = (("allocate", 0, (1, 2)), ("fork", 0, 1), ("append", 1, 7), ("append", 0, 8))
    partial = (("allocate", 0, (1, 2, 3)),) + decode(0, [4, 5])
    stale = (("allocate", 0, (1, 2, 3, 4, 5, 6, 7)), ("free", 0), ("reclaim", 2))
    twins = (("allocate", 0, (1,)),) + decode(0, [2, 3]) + (("allocate", 1, (1, 2, 3)),)
    return {
        "A": (list(wipe), "registered_blocks_cached"),
        "B": (list(shared), "reads_own_tokens"),
        "C": (list(partial), "cached_blocks_full"),
        "D": (list(stale), "block_states"),
        "E": (list(twins), "one_block_per_prefix"),
    }
