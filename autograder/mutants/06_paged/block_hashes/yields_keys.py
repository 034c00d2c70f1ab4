# MISTAKE: a generator instead of a list
# EXPECT: must return a list
def block_hashes(tokens, block_size: int) -> list[int]:
    parent = None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        yield parent
