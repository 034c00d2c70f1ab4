# MISTAKE: drops the partial block by popping tokens off the caller's list
# EXPECT: changed its input tokens
def block_hashes(tokens, block_size: int) -> list[int]:
    if isinstance(tokens, list):
        while len(tokens) % block_size:
            tokens.pop()
    keys, parent = [], None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = block_hash(parent, tuple(tokens[start : start + block_size]))
        keys.append(parent)
    return keys
