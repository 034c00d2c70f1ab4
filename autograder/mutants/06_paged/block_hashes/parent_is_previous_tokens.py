# MISTAKE: folds in the previous block's tokens instead of the previous key, so a key covers only two blocks
# EXPECT: previous KEY, not the previous block's tokens
def block_hashes(tokens, block_size: int) -> list[int]:
    keys, previous = [], None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = tuple(tokens[start : start + block_size])
        keys.append(block_hash(previous, block))
        previous = block
    return keys
