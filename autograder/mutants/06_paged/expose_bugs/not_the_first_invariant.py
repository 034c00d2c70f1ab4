# MISTAKE: names an invariant that breaks too (the cached block's KV changed), but not the first one checked
# EXPECT: comes first in INVARIANTS
def expose_bugs() -> dict[str, tuple[list[tuple], str]]:
    hit = [1, 2, 3, 4]
    return {
        "A": ([("allocate", 0, hit), ("free", 0), ("allocate", 1, hit)], "registered_blocks_cached"),
        "B": (
            [("allocate", 0, [1]), ("fork", 0, 1), ("append", 0, 3), ("append", 0, 3), ("append", 1, 4)],
            "cached_blocks_full",
        ),
        "C": ([("allocate", 0, [1])], "cached_blocks_full"),
        "D": ([("allocate", 0, hit), ("free", 0), ("reclaim", 1)], "block_states"),
        "E": ([("allocate", 0, [1, 2, 3]), ("allocate", 1, [1, 2, 3])], "one_block_per_prefix"),
    }
