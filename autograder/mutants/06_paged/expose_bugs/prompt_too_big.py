# MISTAKE: forces the eviction with a prompt larger than the whole pool, which the correct manager refuses
# EXPECT: OutOfBlocks
def expose_bugs() -> dict[str, tuple[list[tuple], str]]:
    hit = [1, 2, 3, 4]
    return {
        "A": ([("allocate", 0, hit), ("free", 0), ("allocate", 1, hit)], "registered_blocks_cached"),
        "B": ([("allocate", 0, [1]), ("fork", 0, 1), ("append", 0, 2), ("append", 1, 3)], "reads_own_tokens"),
        "C": ([("allocate", 0, [1])], "cached_blocks_full"),
        "D": ([("allocate", 0, hit), ("free", 0), ("allocate", 1, list(range(10, 40)))], "block_states"),
        "E": ([("allocate", 0, [1, 2, 3]), ("allocate", 1, [1, 2, 3])], "one_block_per_prefix"),
    }
