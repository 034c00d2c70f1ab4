# MISTAKE: collects the keys in a mutable default argument, so every call appends to the same list
# EXPECT: keeps keys from an earlier call
def block_hashes(tokens, block_size: int, keys=[]) -> list[int]:
    parent = None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        keys.append(parent)
    return keys
