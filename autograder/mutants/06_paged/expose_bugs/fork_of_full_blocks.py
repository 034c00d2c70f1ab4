# MISTAKE: forks a sequence whose blocks are all full, so no partly written block is shared
# EXPECT: does not expose manager B
def expose_bugs() -> dict[str, tuple[list[tuple], str]]:
    hit = [1, 2, 3, 4]
    return {
        "A": ([("allocate", 0, hit), ("free", 0), ("allocate", 1, hit)], "registered_blocks_cached"),
        "B": ([("allocate", 0, [1, 2, 3]), ("fork", 0, 1), ("append", 0, 4), ("append", 1, 5)], "reads_own_tokens"),
        "C": ([("allocate", 0, [1])], "cached_blocks_full"),
        "D": ([("allocate", 0, hit), ("free", 0), ("reclaim", 1)], "block_states"),
        "E": ([("allocate", 0, [1, 2, 3]), ("allocate", 1, [1, 2, 3])], "one_block_per_prefix"),
    }
