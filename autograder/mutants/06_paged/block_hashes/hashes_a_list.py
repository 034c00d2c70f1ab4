# MISTAKE: passes the block as a list slice, which block_hash cannot hash
# EXPECT: as a tuple
def block_hashes(tokens, block_size: int) -> list[int]:
    tokens = list(tokens)
    keys, parent = [], None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = block_hash(parent, tokens[start : start + block_size])
        keys.append(parent)
    return keys
