# MISTAKE: starts the chain with parent key 0 instead of None
# EXPECT: key_{-1} = None
def block_hashes(tokens, block_size: int) -> list[int]:
    keys, parent = [], 0
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        keys.append(parent)
    return keys
