# MISTAKE: counts the whole system prompt as shared, its partial last block included
# EXPECT: only its full blocks are
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    return (users - 1) * system_len / (users * (system_len + question_len))
