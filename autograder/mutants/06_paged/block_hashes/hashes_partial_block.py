# MISTAKE: steps over every block start, so the trailing partial block gets a key too
# EXPECT: partial block got a key
def block_hashes(tokens, block_size: int) -> list[int]:
    keys, parent = [], None
    for start in range(0, len(tokens), block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        keys.append(parent)
    return keys
