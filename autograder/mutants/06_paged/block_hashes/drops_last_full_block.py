# MISTAKE: off by one in the loop bound: the last full block is skipped when len(tokens) is a multiple of block_size
# EXPECT: last full block has no key
def block_hashes(tokens, block_size: int) -> list[int]:
    keys, parent = [], None
    for start in range(0, len(tokens) - block_size, block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        keys.append(parent)
    return keys
