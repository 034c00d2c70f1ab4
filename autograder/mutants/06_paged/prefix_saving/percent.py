# MISTAKE: returns a percentage
# EXPECT: a percentage
def prefix_saving(users: int, system_len: int, question_len: int, block_size: int) -> float:
    shared = system_len // block_size * block_size
    return 100 * (users - 1) * shared / (users * (system_len + question_len))
