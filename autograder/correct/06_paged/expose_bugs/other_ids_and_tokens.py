# VALID: other sequence ids and tokens, ops as lists, lower-case letters and names with stray spaces; D evicts through an allocation that runs short of free blocks instead of reclaim
def expose_bugs():
    first = [9, 9, 9, 1]
    answer = {}
    answer["a"] = ([["allocate", 5, first], ["free", 5], ["allocate", 7, first]], " Registered_Blocks_Cached ")
    answer["b"] = ([["allocate", 3, [6, 6]], ["fork", 3, 4], ["append", 4, 7], ["append", 3, 8]], "reads_own_tokens")
    answer["c"] = ([["allocate", 2, [7, 8, 9, 1]]], "cached_blocks_full")
    # 7 blocks are free after the free; a prompt of 22 tokens needs 8, so the idle block is evicted
    answer["d"] = ([["allocate", 1, first], ["free", 1], ["allocate", 2, list(range(100, 122))]], "block_states")
    answer["e"] = ([["allocate", 0, [4, 4, 4, 1]], ["allocate", 1, [4, 4, 4]]], "one_block_per_prefix")
    return answer
