# MISTAKE: counts blocks, rounding every prompt up to whole blocks, instead of tokens
# EXPECT: the saved share of blocks
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    per_prompt = -(-(system_len + question_len) // block_size)
    shared = system_len // block_size
    return 1 - (shared + users * (per_prompt - shared)) / (users * per_prompt)
