# VALID: converts to a tuple once, counts full blocks with divmod and builds the chain recursively from the end
def block_hashes(tokens, block_size: int) -> list[int]:
    tokens = tuple(tokens)
    n_full, _ = divmod(len(tokens), block_size)

    def chain(n):  # the keys of the first n blocks
        if n == 0:
            return []
        before = chain(n - 1)
        parent = before[-1] if before else None
        return before + [block_hash(parent, tokens[(n - 1) * block_size : n * block_size])]

    return chain(n_full)
