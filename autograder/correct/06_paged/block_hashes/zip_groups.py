# VALID: groups the tokens with zip over one shared iterator (a short tail is dropped by zip itself) and reads the parent key back from the result list
def block_hashes(tokens, block_size: int) -> list[int]:
    keys = []
    for block in zip(*[iter(tokens)] * block_size):  # tuples of block_size consecutive tokens
        keys.append(block_hash(keys[-1] if keys else None, block))
    return keys
