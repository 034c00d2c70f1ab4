# MISTAKE: hashes every block on its own (parent key None each time), so equal blocks at two positions share a key
# EXPECT: fold in the parent key
def block_hashes(tokens, block_size: int) -> list[int]:
    keys = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        keys.append(block_hash(None, tuple(tokens[start : start + block_size])))
    return keys
